"""ProcessAdapter against real child processes: the reference server and small fake nodes.

Every test checks, through /proc, that no process of any group the adapter started
is left alive afterwards.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.adapters import spares
from conformance.adapters.base import AdapterError, ProtocolViolation, RequestTimeout
from conformance.adapters.process import HelloRefused, ProcessAdapter

REPO = Path(__file__).resolve().parents[1]
REFERENCE = [sys.executable, "-m", "reference_impl.server", "--data-dir", "{data_dir}"]

# A fake node: answers hello, then misbehaves on every later request as `mode` says.
FAKE = textwrap.dedent("""
    import json, os, subprocess, sys, time
    mode = sys.argv[1]
    print("fake node up, X=" + os.environ.get("FAKE_X", "-"), file=sys.stderr, flush=True)
    if mode == "spawn":  # a grandchild in the same process group, to be killed with it
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    def send(obj):
        print(json.dumps(obj), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "hello":
            send({"id": req["id"], "ok": True, "result": {
                "version": 1, "implementation": {"name": "fake", "version": "0"},
                "capabilities": [], "entry_kinds": ["noop"]}})
            if mode == "noread":
                time.sleep(120)
            continue
        if mode == "garbage":
            print("this is not json", flush=True)
        elif mode == "long_garbage":
            print("x" * 5000, flush=True)
        elif mode == "array":
            send([1, 2, 3])
        elif mode == "wrong_id":
            send({"id": req["id"] + 7, "ok": True, "result": {}})
        elif mode == "no_result":
            send({"id": req["id"], "ok": True})
        elif mode == "no_error":
            send({"id": req["id"], "ok": False})
        elif mode == "exit":
            sys.exit(3)
        elif mode == "events":
            send({"event": "first", "n": 1})
            print("", flush=True)  # a blank line is tolerated
            send({"event": "second", "n": 2})
            send({"id": req["id"], "ok": True, "result": {"echo": req.get("x")}})
        # "hang" and "spawn": never answer
""")


def fake(mode: str) -> list[str]:
    return [sys.executable, "-c", FAKE, mode]


def live_members(pgid: int) -> list[int]:
    """Processes of process group `pgid` that are still running (zombies count as gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def assert_gone(pgids: tuple[int, ...] | list[int], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    left = {g: live_members(g) for g in pgids}
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {g: live_members(g) for g in pgids}
    assert not any(left.values()), f"processes left alive: {left}"


@pytest.fixture
def make() -> Iterator[Callable[..., ProcessAdapter]]:
    made: list[ProcessAdapter] = []

    def factory(argv: list[str], **kw: Any) -> ProcessAdapter:
        kw.setdefault("timeout", 10.0)
        adapter = ProcessAdapter(argv, **kw)
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.close()
        assert not adapter.alive()
    assert_gone([pid for adapter in made for pid in adapter.pids])


def raw(index: int, *ops: dict[str, Any], ts: int | None = None) -> dict[str, Any]:
    return {"index": index, "entry": {"kind": "raw", "ts": ts or index, "ops": list(ops)}}


# -- the reference server as the node under test ----------------------------------------


def test_round_trip_hello_open_apply_digest(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    hello = a.start("synced")
    assert hello.version == 1
    assert hello.implementation["name"] == "reference_impl"
    assert "reader" in hello.capabilities and "raw" in hello.entry_kinds
    assert (a.data_dir / "store").exists() is False  # nothing before open
    ex = a.request("open")
    assert ex.reply is not None and ex.reply["ok"], ex.reply
    assert (a.data_dir / "store").is_dir()  # {data_dir} was substituted
    ex = a.request("apply", **raw(1, {"op": "put", "key": "k", "value": "v€"},
                                  {"op": "add", "key": "n", "delta": 2}))
    assert ex.reply == {"id": ex.request["id"], "ok": True, "result": {"result": "ok"}}
    assert a.request("get", key="k").reply["result"] == {"value": "v€"}  # type: ignore[index]
    digest = a.request("digest").reply
    assert digest is not None and len(digest["result"]["digest"]) == 64
    bad = a.request("apply", index=5, entry={"kind": "noop"}).reply
    assert bad is not None and not bad["ok"] and bad["error"]["code"] == "bad_index"
    assert a.alive()
    assert a.describe() == "process: " + " ".join(REFERENCE)


def test_ids_increase_and_shutdown_exits_cleanly(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    a.start("synced")
    ids = [a.request("hlc").request["id"] for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    ex = a.request("shutdown")
    assert ex.reply is not None and ex.reply["ok"]
    assert not a.alive() and a.pid is None
    assert "clean shutdown" in a.logs()
    with pytest.raises(AdapterError, match="not running"):
        a.request("hlc")


def test_crash_then_restart_keeps_synced_data(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    a.start("synced")
    a.request("open")
    for i in range(1, 6):
        assert a.request("apply", **raw(i, {"op": "add", "key": "n", "delta": i})).reply
    before = a.request("digest").reply
    first_pid = a.pid
    a.crash()
    assert not a.alive() and a.pid is None
    assert_gone([first_pid])  # type: ignore[list-item]
    with pytest.raises(AdapterError, match="not running"):
        a.request("digest")
    a.crash()  # crashing a dead node is a no-op

    a.start("synced")
    assert a.pid != first_pid and a.pids[0] == first_pid
    opened = a.request("open").reply
    assert opened is not None and opened["ok"]
    assert opened["result"]["have"] >= 5
    assert a.request("digest").reply["result"] == before["result"]  # type: ignore[index]
    assert a.request("get", key="n").reply["result"] == {"value": "15"}  # type: ignore[index]


def test_crash_failpoint_gives_no_reply(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    a.start("synced")
    assert a.request("failpoint", name="before_pin", action="crash").reply["ok"]  # type: ignore[index]
    a.request("open")
    a.request("apply", **raw(1, {"op": "put", "key": "a", "value": "1"}))
    begun = a.request("snapshot_begin").reply
    assert begun is not None and begun["ok"]
    ex = a.request("snapshot_persist", snapshot=begun["result"]["snapshot"], site="local")
    assert ex.reply is None  # died in flight: "may have happened"
    assert not a.alive()
    assert "simulated crash at failpoint 'before_pin'" in a.logs()
    assert "exit status 137" in a.logs()
    a.start("synced")  # the same data dir: nothing was saved
    opened = a.request("open").reply
    assert opened is not None and opened["result"]["snap"] == 0


def test_cold_start_event_is_collected(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    a.start("synced")
    ex = a.request("open")
    assert ex.reply is not None
    assert [e["event"] for e in ex.events] == ["cold_start"]
    event = dict(ex.events[0])
    del event["event"]
    assert event == ex.reply["result"]
    assert a.request("digest").events == []


def test_unsynced_start_and_already_running(make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    hello = a.start("unsynced")
    assert "unsynced_mode" in hello.capabilities
    with pytest.raises(AdapterError, match="already running"):
        a.start("synced")


# -- misbehaving nodes -----------------------------------------------------------------


def test_hanging_node_times_out_and_is_killed(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("hang"), timeout=1.0)
    a.start("synced")
    pid = a.pid
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"open \(id 2\).*1 s timeout"):
        a.request("open")
    assert time.monotonic() - t0 < 1.0 + 2.0
    assert not a.alive()
    assert_gone([pid])  # type: ignore[list-item]
    assert "timeout during open" in a.logs()


def test_hang_during_hello_times_out(make: Callable[..., ProcessAdapter]) -> None:
    a = make([sys.executable, "-c", "import sys\nfor _ in sys.stdin: pass"], timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout, match="hello"):
        a.start("synced")
    assert time.monotonic() - t0 < 0.5 + 2.0
    assert not a.alive()
    assert_gone(a.pids)


def test_timeout_kills_the_whole_process_group(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("spawn"), timeout=1.0)
    a.start("synced")
    assert a.pid is not None
    deadline = time.monotonic() + 5
    while len(live_members(a.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(live_members(a.pid)) == 2  # the node and its grandchild
    with pytest.raises(RequestTimeout):
        a.request("noop")
    assert_gone(a.pids)


def test_node_that_stops_reading_cannot_block_a_write(
        make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("noread"), timeout=1.0)
    a.start("synced")
    t0 = time.monotonic()
    with pytest.raises(RequestTimeout, match="did not read the request"):
        a.request("apply", index=1, entry={"kind": "raw", "ts": 1, "ops": [
            {"op": "put", "key": "big", "value": "x" * (4 << 20)}]})
    assert time.monotonic() - t0 < 1.0 + 2.0
    assert_gone(a.pids)


@pytest.mark.parametrize(("mode", "what"), [
    ("garbage", "not JSON (Expecting value: line 1 column 1 (char 0)): 'this is not json'"),
    ("array", "not a JSON object (a JSON list): '[1, 2, 3]'"),
    ("wrong_id", "reply id 9 does not match request id 2"),
    ("no_result", "the reply: required field 'result' is missing (schemas/reply.json)"),
    ("no_error", "the reply: required field 'error' is missing (schemas/reply.json)"),
])
def test_protocol_violations(make: Callable[..., ProcessAdapter], mode: str, what: str) -> None:
    a = make(fake(mode))
    a.start("synced")
    with pytest.raises(ProtocolViolation) as info:
        a.request("open")
    assert what in str(info.value)
    assert str(info.value).startswith("open (id 2): ")
    assert not a.alive()
    assert_gone(a.pids)


def test_violation_quotes_at_most_300_chars(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("long_garbage"))
    a.start("synced")
    with pytest.raises(ProtocolViolation) as info:
        a.request("open")
    assert "x" * 300 + "..." in str(info.value)
    assert "x" * 301 not in str(info.value)


def test_node_exiting_on_a_request_gives_no_reply(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("exit"))
    a.start("synced")
    ex = a.request("open")
    assert ex.reply is None and ex.events == []
    assert not a.alive()
    assert "exit status 3" in a.logs()
    with pytest.raises(AdapterError, match="not running"):
        a.request("open")
    a.start("synced")  # it can be restarted
    assert a.alive()


def test_node_dying_during_hello(make: Callable[..., ProcessAdapter]) -> None:
    script = "import sys; print('boom: bad config', file=sys.stderr); sys.exit(2)"
    a = make([sys.executable, "-c", script])
    with pytest.raises(AdapterError, match="exited during hello(?s:.*)boom: bad config"):
        a.start("synced")
    assert not a.alive()


def test_missing_executable_is_an_adapter_error(make: Callable[..., ProcessAdapter]) -> None:
    a = make(["/nonexistent/node-binary", "--data-dir", "{data_dir}"])
    with pytest.raises(AdapterError, match="cannot start"):
        a.start("synced")
    assert not a.alive()


def test_events_and_blank_lines(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("events"))
    a.start("synced")
    ex = a.request("echo", x={"nested": ["ü", 1]})
    assert ex.events == [{"event": "first", "n": 1}, {"event": "second", "n": 2}]
    assert ex.reply is not None and ex.reply["result"] == {"echo": {"nested": ["ü", 1]}}


def test_hello_refusal_is_typed(make: Callable[..., ProcessAdapter], tmp_path: Path) -> None:
    script = tmp_path / "refuse.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps({"id": req["id"], "ok": False, "error": {
                "code": "unsupported", "message": "synced only"}}), flush=True)
    """))
    a = make([sys.executable, str(script)])
    with pytest.raises(HelloRefused, match=r"\[unsupported\] synced only") as info:
        a.start("unsynced")
    assert info.value.code == "unsupported"
    assert not a.alive()


# -- lifecycle: data dir, logs, close, finalizers ------------------------------------------


@pytest.mark.parametrize("use_layer", [False, True], ids=["plain", "crashfs"])
def test_close_removes_its_temp_dir_and_is_idempotent(make: Callable[..., ProcessAdapter],
                                                      use_layer: bool) -> None:
    a = make(REFERENCE, use_layer=use_layer)
    if use_layer and a.layer is None:
        pytest.skip(f"the crash-simulating filesystem is unavailable: {a.unavailable_faults()}")
    a.start("synced")
    a.request("open")
    data_dir = a.data_dir
    # the temp dir holds data/ (with the layer: the mount, beside store/, the backing tree)
    temp = data_dir.parent
    assert data_dir.is_dir() and temp.name.startswith("conformance-")
    assert os.path.ismount(data_dir) == use_layer
    pid = a.pid
    a.close()
    assert_gone([pid])  # type: ignore[list-item]
    assert spares.settle(30)  # the layer is unmounted in the background
    assert not temp.exists() and not os.path.ismount(data_dir)
    a.close()
    a.close()
    with pytest.raises(AdapterError, match="closed"):
        a.start("synced")


def test_given_data_dir_is_kept(make: Callable[..., ProcessAdapter], tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    a = make(REFERENCE, data_dir=data_dir)
    a.start("synced")
    a.request("open")
    a.close()
    assert (data_dir / "store").is_dir()


def test_logs_hold_stderr_of_every_lifetime(make: Callable[..., ProcessAdapter]) -> None:
    a = make(fake("events"), env={"FAKE_X": "from-env"})
    a.start("synced")
    a.crash()
    a.start("synced")
    a.close()
    logs = a.logs()
    assert logs.count("fake node up, X=from-env") == 2
    assert logs.count("--- start #") == 2
    assert logs.index("start #1") < logs.index("crash: SIGKILL") < logs.index("start #2")


def test_garbage_collection_kills_the_node() -> None:
    a = ProcessAdapter(REFERENCE)
    a.start("synced")
    pid, data_dir = a.pid, a.data_dir
    del a
    gc.collect()
    assert_gone([pid])  # type: ignore[list-item]
    assert spares.settle(30)  # a layer under it is unmounted in the background
    assert not data_dir.exists()


def test_interpreter_exit_kills_the_node(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        from conformance.adapters.process import ProcessAdapter
        keep = ProcessAdapter({REFERENCE!r})
        keep.start("synced")
        print(json.dumps([keep.pid, str(keep.data_dir)]), flush=True)
        raise KeyboardInterrupt  # an interrupted run, never closed
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, cwd=REPO)
    assert "KeyboardInterrupt" in out.stderr
    pid, data_dir = json.loads(out.stdout)
    assert_gone([pid])
    assert not Path(data_dir).exists()


def test_argv_validation() -> None:
    with pytest.raises(ValueError):
        ProcessAdapter("python node.py")
    with pytest.raises(ValueError):
        ProcessAdapter([])
    with pytest.raises(ValueError):
        ProcessAdapter(["x"], data_dir=Path("/tmp"), timeout=0)


def test_placeholder_is_a_plain_replace(tmp_path: Path) -> None:
    a = ProcessAdapter(["node", "-c", "{x: 1}", "--dir={data_dir}/sub"], data_dir=tmp_path)
    try:
        assert a.command() == ["node", "-c", "{x: 1}", f"--dir={tmp_path}/sub"]
        assert a.fault_capabilities == frozenset({"process_kill"})
    finally:
        a.close()
    assert tmp_path.exists()
