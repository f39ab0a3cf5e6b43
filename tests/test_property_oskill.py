"""Property: exactly once after SIGKILL, on the real filesystem, over the wire protocol.

Each run starts `python -m reference_impl.server` on a fresh data directory and drives a
seeded random sequence of applies (every entry kind), snapshot begin/persist at both
sites (late persists too) and snapshot installs, with SIGKILL at random moments:

  (a) between requests;
  (b) while requests are in flight: they are sent and the process is killed without
      waiting for a reply, so each may or may not have happened: the entries are
      committed all the same, and the replay from effective + 1 settles it;
  (c) at crash failpoints: the process exits 137 at that point with no reply.

After every kill the test reads the data directory itself (meta key, pointer, compaction
mark, the pointer's snapshot) and checks crash ordering (P5: a pointer saved by a pinned
persist is covered by the meta key; the pointer is the last saved or the in-flight one;
the snapshot holds the state at its index), restarts the server on the same directory,
checks the open result against the gate (C1, C2, C4), replays the log from effective + 1
and compares digest and scan with the model: a crash-free in-process reference node that
applied every committed entry exactly once (C6). SIGKILL keeps OS buffers, so unsynced
mode must pass too. Every read of the pipe has a timeout; no child outlives a test.

PROPERTY_SCALE=<float> scales the number of seeded runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _model import (
    ENTRY_KINDS,
    DurableView,
    EntryGen,
    Item,
    Model,
    PointerOracle,
    RandomDraw,
    check_open,
    describe_config,
    read_durable,
)

from reference_impl.disk import OSDisk
from reference_impl.node import NodeConfig
from reference_impl.snapshot import Header

TIMEOUT = 10.0  # seconds, for every reply and every process exit
STEPS = 20
SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))
CONFIGS = (
    NodeConfig(sync=True),
    NodeConfig(sync=False),
    NodeConfig(sync=False, reader=False, writer=False),  # baseline profile
    NodeConfig(sync=False, pin_after_restore=True),
)
RUNS = max(len(CONFIGS), round(32 * SCALE))
CRASH_POINTS = ("before_pin", "after_pin", "after_save", "after_batch_commit", "mid_restore")


class NodeDied(Exception):  # noqa: N818 - an outcome, not an error
    """The server closed its stdout without replying (a crash failpoint, or our SIGKILL)."""


class RemoteError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")


def _flags(config: NodeConfig) -> list[str]:
    flags = [] if config.sync else ["--unsynced"]
    flags += [] if config.reader else ["--no-reader"]
    flags += [] if config.writer else ["--no-writer"]
    flags += [] if config.header_applier else ["--no-header-applier"]
    flags += ["--pin-after-restore"] if config.pin_after_restore else []
    return flags


class Server:
    """One server process and a JSON-lines client whose every wait has a timeout."""

    def __init__(self, data_dir: Path, config: NodeConfig, stderr: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reference_impl.server", "--data-dir", str(data_dir),
             *_flags(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            bufsize=1, start_new_session=True,  # its own process group: killpg reaches all
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # EOF: the process is gone

    def send(self, op: str, **fields: Any) -> int:
        self.next_id += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: the wait for the reply sees EOF
        return self.next_id

    def reply(self, rid: int, op: str) -> dict[str, Any]:
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no reply to {op} (id {rid}) within {TIMEOUT}s") from None
            if line is None:
                raise NodeDied(op)
            msg = json.loads(line)
            if "id" not in msg:
                self.events.append(msg)
                continue
            assert msg["id"] == rid, f"reply {msg} to {op}: expected id {rid}"
            return msg

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        msg = self.reply(self.send(op, **fields), op)
        if not msg["ok"]:
            raise RemoteError(msg["error"])
        result: dict[str, Any] = msg["result"]
        return result

    def kill(self) -> None:
        """SIGKILL the process group (idempotent) and reap it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()

    def wait(self) -> int:
        code = self.proc.wait(timeout=TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            # closing stdin flushes it: BrokenPipeError when the process is dead
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self.reader.join(timeout=TIMEOUT)
        assert not self.reader.is_alive(), "the pipe reader did not finish"
        return code


class KillRun:
    """One seeded sequence against server processes on one data directory."""

    def __init__(self, seed: int, config: NodeConfig, root: Path) -> None:
        self.seed, self.config = seed, config
        self.rng = random.Random(seed)
        self.draw = RandomDraw(self.rng)
        self.data_dir = root / "node"
        self.stderr_path = root / "server-stderr.log"
        self.stderr = open(self.stderr_path, "a")  # noqa: SIM115 - closed in close()
        self.model = Model()
        self.gen = EntryGen()
        self.oracle = PointerOracle(config)
        self.servers: list[Server] = []
        self.server: Server | None = None
        self.pending: dict[int, int] = {}  # snapshot id -> index (this process only)
        # The meta key the live node must report: the last data entry that committed a
        # batch, raised by pins, cleared (or pinned to the snapshot) by a restore.
        self.expected_meta: int | None = None
        self.history: list[str] = []

    # -- plumbing ---------------------------------------------------------------------------

    def where(self) -> str:
        recent = " | ".join(self.history[-8:])
        config = describe_config(self.config)
        return f"[seed {self.seed}, {config}, step {len(self.history)}: ... {recent}]"

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        self.stderr.close()

    def _died(self, server: Server, what: str) -> None:
        """The server stopped replying: it must have exited 137 at a crash failpoint."""
        code = server.wait()
        if code != 137:
            self.stderr.flush()
            tail = self.stderr_path.read_text()[-2000:]
            raise AssertionError(f"{self.where()}: the server died in {what} with exit code "
                                 f"{code}, not 137 (a crash failpoint); stderr:\n{tail}")
        self.history.append(f"CRASH in {what}")
        self.server = None

    def _deliver(self, item: Item) -> bool:
        server = self.server
        assert server is not None
        spec = item.install
        try:
            if spec is not None:
                self.oracle.start("install", spec.index)
                server.call("install_snapshot", index=spec.index, ceiling=spec.ceiling,
                            cutover=spec.cutover, rows=spec.rows)
                self.oracle.installed(spec.index)
                self.pending.clear()
                self.expected_meta = spec.index if self.oracle.restore_pins else None
                return True
            result = server.call("apply", index=item.index, entry=item.entry)["result"]
        except NodeDied:
            self._died(server, item.describe())
            return False
        if self.model.wrote[item.index]:
            self.expected_meta = item.index
        want = self.model.results[item.index]
        assert result == want, (
            f"{self.where()}: {item.describe()} answered {result!r}, the model {want!r}")
        return True

    def _commit(self) -> Item:
        kind = self.draw.choice((*ENTRY_KINDS, "raw", "txn", "install"))
        if kind == "install":
            return self.model.commit_install(*self.gen.install(self.draw))
        return self.model.commit_entry(self.gen.entry(self.draw, kind))

    def _compare(self, what: str) -> None:
        assert self.server is not None
        digest = self.server.call("digest")["digest"]
        if digest != self.model.digest():
            items = [tuple(p) for p in self.server.call("scan", prefix="")["items"]]
            raise AssertionError(
                f"{self.where()} {what}: state differs from the model (every committed entry "
                f"applied exactly once, C6):\n  node:  {items}\n  model: {self.model.scan()}")
        items = [tuple(p) for p in self.server.call("scan", prefix="")["items"]]
        assert items == self.model.scan(), f"{self.where()} {what}: scan differs, digest equal"
        if self.config.reader:
            meta = self.server.call("last_applied_index")
            got = meta["index"] if meta["present"] else None
            assert got == self.expected_meta, (
                f"{self.where()} {what}: last_applied_index {meta}, expected "
                f"{self.expected_meta} (the last data entry that wrote, raised by pins, "
                f"reset by a restore)")

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """(Re)start on the data directory until a cold start and replay succeed."""
        for _ in range(10):
            if self._start_once():
                return
        raise AssertionError(f"{self.where()}: no successful restart in 10 attempts")

    def _read_after_crash(self) -> DurableView:
        """What the dead server left on disk, checked for crash ordering (P5, P6)."""
        where, n = self.where(), self.model.last_index
        disk = OSDisk(self.data_dir)
        try:
            view = read_durable(disk)
        finally:
            disk.close()
        self.oracle.after_crash(view, where)
        assert view.meta is None or view.meta <= n, f"{where}: meta {view.meta} > N={n}"
        if view.pointer is not None:
            assert view.body == self.model.points[view.snap].body, (
                f"{where}: the snapshot at {view.snap} does not hold the state there (P6)")
        return view

    def _start_once(self) -> bool:
        first = not self.servers
        view = None if first else self._read_after_crash()
        where, n = self.where(), self.model.last_index
        server = self.server = Server(self.data_dir, self.config, self.stderr)
        self.servers.append(server)
        self.pending.clear()
        server.call("hello", versions=[1], harness="test_property_oskill",
                    config={"durability": "synced" if self.config.sync else "unsynced"})
        boot = "plain" if first else self.draw.choice(
            ("plain", "plain", "plain", "reader_error", "mid_restore", "after_batch_commit",
             "kill_in_open"))
        if boot == "reader_error":
            server.call("failpoint", name="reader", action="error")
        elif boot in CRASH_POINTS:
            server.call("failpoint", name=boot, action="crash", skip=self.draw.integer(0, 3))
        self.history.append(f"start boot={boot}")
        if view is None:
            opened = server.call("open")
            assert opened["effective"] == 0, f"{where}: fresh open {opened}"
            self.expected_meta = None
            return True
        self.oracle.start("open", view.snap)
        if boot == "kill_in_open":
            server.send("open")
            server.kill()
            self.server = None
            self.history.append("SIGKILL during open")
            return False
        try:
            opened = server.call("open")
        except NodeDied:
            self._died(server, "open")
            self.oracle.abandon()  # mid_restore: the new store never replaced the old one
            return False
        check_open(opened, view, self.config, boot == "reader_error", n, where)
        events = [e for e in server.events if e.get("event") == "cold_start"]
        assert events == [{"event": "cold_start", **opened}], f"{where}: events {events} (C5)"
        self.oracle.opened(opened["outcome"], opened["snap"])
        if opened["outcome"] == "skipped":
            self.expected_meta = opened["have"]
        else:
            pinned = self.oracle.restore_pins and view.pointer is not None
            self.expected_meta = opened["snap"] if pinned else None
        header = view.header or Header()
        hlc = server.call("hlc")
        assert hlc["ceiling"] >= header.ceiling and hlc["cutover"] >= header.cutover, (
            f"{where}: hlc {hlc} after open is below the snapshot header {header} (C3)")
        self.history.append(f"open {opened['outcome']}/{opened['reason']} "
                            f"eff={opened['effective']}")
        for item in self.model.replay_from(opened["effective"]):
            if not self._deliver(item):
                return False
        self._compare(f"after restart + replay {opened['effective'] + 1}..{n}")
        return True

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server = None
        self.history.append("SIGKILL")
        self.start()

    # -- steps ------------------------------------------------------------------------------

    def step(self) -> None:
        action = self.rng.choices(
            ("apply", "snapshot", "persist_late", "failpoint", "kill", "kill_in_flight"),
            weights=(8, 2, 1 if self.pending else 0, 1, 1, 1.5))[0]
        server = self.server
        assert server is not None
        if action == "apply":
            for _ in range(self.draw.integer(1, 3)):
                item = self._commit()
                self.history.append(f"apply {item.describe()}")
                if not self._deliver(item):
                    self.start()
                    return
        elif action == "snapshot":
            begun = server.call("snapshot_begin")
            assert begun["index"] == self.model.last_index
            self.pending[begun["snapshot"]] = begun["index"]
            self.history.append(f"begin #{begun['snapshot']}@{begun['index']}")
            if self.draw.integer(0, 2):
                self._persist(begun["snapshot"])
        elif action == "persist_late":
            self._persist(self.draw.choice(sorted(self.pending)))
        elif action == "failpoint":
            point, skip = self.draw.choice(CRASH_POINTS), self.draw.integer(0, 2)
            server.call("failpoint", name=point, action="crash", skip=skip)
            self.history.append(f"arm {point}/{skip}")
        elif action == "kill":
            self.kill()
        else:
            self._kill_in_flight()
        if self.server is not None:
            self._compare("while up")

    def _persist(self, sid: int) -> None:
        server = self.server
        assert server is not None
        index = self.pending.pop(sid)
        site = self.draw.choice(("local", "config"))
        self.history.append(f"persist #{sid}@{index} {site}")
        stale = self.oracle.pointer is not None and index <= self.oracle.pointer
        if not stale:
            self.oracle.start("persist", index)
        try:
            result = server.call("snapshot_persist", snapshot=sid, site=site)
        except RemoteError as exc:
            assert stale and exc.code == "snapshot_out_of_date", f"{self.where()}: {exc}"
            return
        except NodeDied:
            self._died(server, f"persist@{index}")
            self.start()
            return
        assert not stale and result == {"index": index, "pinned": self.config.writer,
                                        "compacted": index}, f"{self.where()}: {result}"
        self.oracle.persisted(index, result["pinned"])
        if result["pinned"]:
            self.expected_meta = max(self.expected_meta or 0, index)

    def _kill_in_flight(self) -> None:
        """Send requests and SIGKILL without waiting: each may or may not have happened."""
        server = self.server
        assert server is not None
        what = self.draw.choice(("apply", "apply", "persist", "install"))
        if what == "persist" and self.pending:
            sid = self.draw.choice(sorted(self.pending))
            index = self.pending.pop(sid)
            if self.oracle.pointer is None or index > self.oracle.pointer:
                self.oracle.start("persist", index)
            server.send("snapshot_persist", snapshot=sid, site=self.draw.choice(("local", "config")))
            self.history.append(f"in flight: persist@{index}")
        elif what == "install":
            item = self.model.commit_install(*self.gen.install(self.draw))
            assert item.install is not None
            self.oracle.start("install", item.index)
            server.send("install_snapshot", index=item.index, ceiling=item.install.ceiling,
                        cutover=item.install.cutover, rows=item.install.rows)
            self.history.append(f"in flight: {item.describe()}")
        else:
            # A burst of applies; wait for the first `settled` replies, then kill: the
            # server is typically working on the next one (a genuine race).
            sent: list[tuple[int, Item]] = []
            for _ in range(self.draw.integer(1, 4)):
                item = self._commit()
                if item.install is not None:
                    self.oracle.start("install", item.index)
                    rid = server.send("install_snapshot", index=item.index,
                                      ceiling=item.install.ceiling, cutover=item.install.cutover,
                                      rows=item.install.rows)
                    sent.append((rid, item))
                    break  # nothing after an install: at most one pointer move in flight
                sent.append((server.send("apply", index=item.index, entry=item.entry), item))
            settled = self.draw.integer(0, len(sent) - 1)
            for rid, item in sent[:settled]:
                try:
                    msg = server.reply(rid, item.describe())
                except NodeDied:
                    break  # an armed failpoint fired first: the kill below finds it dead
                assert msg["ok"], f"{self.where()}: {item.describe()}: {msg}"
                if item.entry is not None:
                    assert msg["result"]["result"] == self.model.results[item.index]
            self.history.append(f"in flight: {' '.join(i.describe() for _, i in sent)}, "
                                f"{settled} replied")
        self.kill()


def _lingering(marker: str) -> list[str]:
    """Processes whose command line names our data directory (ours, or their children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.req(
    "XR-001", "XR-002", "XR-004", "XR-005", "CO-001", "CO-002", "CO-003", "CO-004",
    "DM-003", "SP-006", "CS-001", "CS-002", "CS-003", "CS-004", "CS-005", "CS-006",
    "CS-007", "CS-008", "CS-009", "CS-010", "CS-011", "ST-004", "ST-008", "EN-003", "EN-006",
)
@pytest.mark.parametrize("seed", range(RUNS))
def test_sigkill_replay_exactly_once(seed: int, tmp_path: Path) -> None:
    run = KillRun(seed, CONFIGS[seed % len(CONFIGS)], tmp_path)
    try:
        run.start()
        for _ in range(STEPS):
            if run.server is None:
                run.start()
            run.step()
        assert run.server is not None
        run.server.call("shutdown")
        assert run.server.wait() == 0
        run.server = None
    finally:
        run.close()
    assert all(s.proc.returncode is not None for s in run.servers)
    assert not _lingering(str(tmp_path)), _lingering(str(tmp_path))
