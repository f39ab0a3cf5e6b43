"""The process adapter: a node under test as a local child process (docs/protocol.md).

The harness writes one JSON request per line to the child's stdin and reads
replies and events from its stdout; stderr is kept (the last ~200 KB, across
every lifetime) for the report. Every wait has a deadline, the write of a
request included, so a node that hangs or stops reading fails the step instead
of hanging the run.

The child runs in a session of its own, so a crash (SIGKILL to the process
group) takes every process it started with it; what left the group (setsid) is
found through /proc and killed too (reaper.py). No process of the node outlives
`close()`, the adapter's garbage collection, interpreter exit or a SIGINT, SIGTERM
or SIGHUP of the CLI (conformance/interrupts.py); its data directory (the
crash-simulating filesystem under it) is removed (unmounted) right after, in the
background (`spares.settle()` waits for that; the interpreter's exit does). What a
harness killed with SIGKILL left is removed by the next run (conformance/leftovers.py).

Lifetimes are started ahead of need where that changes nothing the node can see
(spares.py): a first lifetime on a fresh data directory while the previous adapter
of the same command runs, and, for a node that said `prestart` in hello, the next
lifetime while the current one runs. `CONFORMANCE_SPARES=off` switches that off.

Power loss: where FUSE works (`conformance.faults.crashfs.available()`), the data
directory is the mount of a crash-simulating filesystem (conformance/faults/crashfs/);
a power loss kills the node, waits until none of its files is open, drops what it had
not synced and restarts it on what survived. The same layer stops the node at its k-th
write, fsync, rename or directory fsync (`arm_crash_point`) and counts its syncs.

    adapter = ProcessAdapter(["python", "examples/minimal_node.py", "--data-dir", "{data_dir}"])
    hello = adapter.start("synced")
    adapter.request("open")
    adapter.crash()
    adapter.start("synced")   # a new process on the same data directory
    adapter.close()
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
import weakref
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from ..forkserver import Program
from ..interrupts import critical
from ..leftovers import make_temp_dir, sweep_once
from ..wire import MAX_DEPTH, MAX_LINE, ReplyViolation, read_reply
from . import spares
from .base import Adapter, AdapterError, Exchange, Hello, ProtocolViolation, RequestTimeout
from .child import Child as _Child
from .child import StderrSink, StderrTail, wait_exit
from .layer import LAYER_FAULTS, LayerFailed, LayerFaults, NodeLayer, unavailable

PLACEHOLDER = "{data_dir}"
PROTOCOL_VERSIONS = (1,)
# one encoder for every request (json.dumps with options builds a new one per call)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
STDERR_LIMIT = 200 * 1024  # bytes of stderr kept, newest last
QUOTE_LIMIT = 300  # characters of an offending line quoted in a ProtocolViolation
EXIT_GRACE = 2.0  # seconds a node whose stdout closed has to exit before it "closed its stdout"


def parse_hello(result: Any) -> Hello:
    """A `hello` result as the protocol defines it; ProtocolViolation quotes a malformed one."""
    try:
        hello = Hello(result["version"], dict(result["implementation"]),
                      frozenset(result["capabilities"]), frozenset(result["entry_kinds"]))
        ok = (isinstance(hello.version, int) and hello.version in PROTOCOL_VERSIONS
              and all(isinstance(c, str) for c in hello.capabilities | hello.entry_kinds))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ProtocolViolation(
            f"hello: malformed result (needs version in {list(PROTOCOL_VERSIONS)}, "
            f"implementation, capabilities, entry_kinds): {json.dumps(result)[:QUOTE_LIMIT]}")
    return hello


class HelloRefused(AdapterError):
    """The node answered `hello` with an error (e.g. `unsupported` for a durability mode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"hello refused: [{code}] {message}")
        self.code = code
        self.detail = message


class _Resources:
    """What must be released even if the adapter is never closed (weakref.finalize, atexit).

    Holds no reference to the adapter, so the finalizer does not keep it alive.
    """

    def __init__(self, temp_dir: Path | None) -> None:
        # close() may come from another thread than the case's (an interrupted --jobs run):
        # a process is recorded here, or not started, under this lock
        self.lock = threading.RLock()
        self.released = False
        self.child: _Child | None = None
        # the next lifetimes' processes started ahead of need (spares.py), or their making,
        # in the order of the lifetimes
        self.ahead: list[_Child | Future[_Child]] = []
        # the adapter's own temporary directory (leftovers.make_temp_dir), removed last
        self.temp_dir = temp_dir
        self.layer: NodeLayer | None = None
        self.pool_key: Hashable | None = None  # what it took first-lifetime spares by

    def release(self) -> None:
        # an interrupt must not leave it half done: it runs only once
        with critical(), self.lock:
            self.released = True
            key, self.pool_key = self.pool_key, None
            if key is not None:
                spares.FIRST.closed(key)
            child, self.child = self.child, None
            if child is not None:
                child.kill()
            ahead, self.ahead = self.ahead, []
            for spare in ahead:
                if not isinstance(spare, Future):
                    spare.kill()
                elif threading.current_thread().name.startswith(spares.THREAD_PREFIX):
                    # a collection in the very worker making it: killed once it is made
                    spare.add_done_callback(_kill_made)
                elif (made := _made(spare)) is not None:
                    made.kill()
            # Its node is dead: what held its data is unmounted and removed in the background,
            # off the case's path (an unmount waits for fusermount and the daemon).
            layer, self.layer = self.layer, None
            if layer is not None:
                spares.reclaim(layer.close)
            temp, self.temp_dir = self.temp_dir, None
            if temp is not None:
                spares.reclaim(functools.partial(shutil.rmtree, temp, ignore_errors=True))


def _made(making: Future[_Child]) -> _Child | None:
    """The process a spare's making started; None when it was cancelled or failed."""
    if making.cancel():
        return None
    try:
        return making.result(timeout=spares.TAKE_WAIT)
    except Exception:  # noqa: BLE001 - OSError of the spawn, or a timeout: no process of ours
        return None


def _kill_made(making: Future[_Child]) -> None:
    child = None if making.cancelled() or making.exception() else making.result()
    if child is not None:
        child.kill()


def _no_note(text: str) -> None:
    """A spare's layer writes no marker: the adapter that takes it gets one of its own."""


class _FirstSpare:
    """A first lifetime made ahead of need (spares.FirstLifetimes): a fresh data directory,
    or layer, and the node's process on it, until an adapter takes them."""

    def __init__(self) -> None:
        self.res = _Resources(None)
        self.data_dir = Path()
        # before anything is made: nothing below is left behind, even at exit
        self.finalizer = weakref.finalize(self, self.res.release)

    @classmethod
    def make(cls, argv: tuple[str, ...], env: dict[str, str], layered: bool, timeout: float,
             max_line: int, program: Program | None) -> _FirstSpare | None:
        """A first lifetime and, for a command whose node said `prestart` and whose first
        lifetimes are usually followed by a second, the second's process too."""
        spare = cls()
        res = spare.res
        try:
            if layered:
                res.layer = NodeLayer.take(0, _no_note, timeout=timeout + 20)
                spare.data_dir = res.layer.mountpoint
            else:
                res.temp_dir = make_temp_dir()
                spare.data_dir = res.temp_dir / "data"
                spare.data_dir.mkdir()
            command = [a.replace(PLACEHOLDER, str(spare.data_dir)) for a in argv]
            res.ahead.append(_Child(command, env, StderrSink(STDERR_LIMIT), max_line, program))
            if spares.PRESTART.says(argv) and spares.CONTINUATIONS.likely(argv, 1):
                res.ahead.append(_Child(command, env, StderrSink(STDERR_LIMIT), max_line,
                                        program))
        except (OSError, AdapterError):  # the adapter makes its own, and reports why
            spare.release()
            return None
        return spare

    def release(self) -> None:
        self.finalizer()


class ProcessAdapter(LayerFaults, Adapter):
    """A node under test run as `argv`, one process per lifetime, on one data directory.

    `argv` items may contain `{data_dir}`, replaced by the data directory. Without
    `data_dir` the adapter makes a temporary one and removes it after `close()`; the
    same directory is reused across restarts. `env` adds variables to the harness's
    environment for the node. `timeout` bounds every request (write and reply).

    `power_loss`: None (the default) mounts the crash-simulating filesystem as the data
    directory when FUSE works here and the directory is the adapter's own; True requires
    it (AdapterError when it cannot be mounted); False never mounts it. `use_layer=False`
    runs this node on a plain directory although the layer is available, for a caller
    that knows no step needs it (a mount per case costs ~0.1 s); the adapter still reports
    the faults the machine can inject. `seed` drives what each power loss keeps.

    `max_line` (bytes, newline included) and `max_depth` bound every line the node writes
    (docs/protocol.md, "Reply validation"); a line over either fails the request.

    `program`: `argv` runs this Python program (the harness's own reference server), whose
    lifetimes may then be forked from a process that imported it once
    (conformance/forkserver/): still a new process for each lifetime, killed with SIGKILL,
    on the same data directory.
    """

    fault_capabilities = frozenset({"process_kill"})

    def __init__(self, argv: Sequence[str], *, data_dir: Path | None = None,
                 timeout: float = 10.0, env: Mapping[str, str] | None = None,
                 name: str | None = None, power_loss: bool | None = None,
                 use_layer: bool = True, seed: int = 0, max_line: int = MAX_LINE,
                 max_depth: int = MAX_DEPTH, program: Program | None = None) -> None:
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a non-empty sequence of strings (not one string)")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if max_line < 1 or max_depth < 1:
            raise ValueError(f"max_line and max_depth must be >= 1, got {max_line}, {max_depth}")
        self.argv: tuple[str, ...] = tuple(argv)
        self.timeout = float(timeout)
        self.max_line, self.max_depth = max_line, max_depth
        self.program = program
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.name = name or " ".join(self.argv)
        owns = data_dir is None
        sweep_once()  # what harnesses killed with SIGKILL left behind
        self._no_layer = unavailable(power_loss, None if owns else (
            "the data directory was given explicitly (the layer mounts its own)"))
        self._layer: NodeLayer | None = None
        self._tail = StderrTail(STDERR_LIMIT)
        self._spares = spares.enabled()
        layered = self._no_layer is None and use_layer
        key = self._pool_key(layered) if owns and self._spares else None
        first = self._take_first_spare(key, layered) if key is not None else None
        if first is not None:
            with critical():  # handed over whole: the spare's finalizer becomes ours
                self._res = first.res
                self._res.pool_key = key
                if first.res.layer is not None:
                    self._layer = first.res.layer = NodeLayer(first.res.layer.fs, seed,
                                                              self._tail.note)
                self.data_dir = first.data_dir
                self._finalizer = weakref.finalize(self, self._res.release)
        elif layered:
            # a layer of its own, mounted ahead of need: store/ (backing) and data/ (mount)
            try:
                self._layer = NodeLayer.take(seed, self._tail.note, timeout=self.timeout + 20)
            except LayerFailed as exc:
                self._no_layer = str(exc)
        if first is None:
            with critical():  # made and recorded for release together
                temp: Path | None = None
                if self._layer is not None:
                    self.data_dir = self._layer.mountpoint
                elif data_dir is None:
                    # data/ inside it: the owner marker stays out of the node's directory
                    temp = make_temp_dir()
                    self.data_dir = temp / "data"
                    self.data_dir.mkdir()
                else:
                    self.data_dir = Path(data_dir)
                    self.data_dir.mkdir(parents=True, exist_ok=True)
                self._res = _Resources(temp)
                self._res.layer = self._layer
                self._res.pool_key = key
                # Runs on close(), on garbage collection, or at interpreter exit, whichever
                # is first.
                self._finalizer = weakref.finalize(self, self._res.release)
        if self._no_layer is None:
            self.fault_capabilities = self.fault_capabilities | LAYER_FAULTS
        self._next_id = 1
        self._answered: tuple[_Child, int] | None = None  # (lifetime, id) of the last reply
        self._starts = 0
        # every process started for this adapter, those started ahead of need included
        self._pids: list[int] = [c.pid for c in self._res.ahead if isinstance(c, _Child)]
        self._closed = False

    def _node_env(self) -> dict[str, str] | None:
        return {**os.environ, **self.env} if self.env is not None else None

    def _pool_key(self, layered: bool) -> Hashable:
        """What a first lifetime started ahead of need must match to be this adapter's."""
        env = self._node_env() or dict(os.environ)
        return (self.argv, tuple(sorted(env.items())), layered, self.timeout, self.max_line,
                self.program)

    def _take_first_spare(self, key: Hashable, layered: bool) -> _FirstSpare | None:
        """This adapter's first lifetime, made ahead of need by a previous adapter of the
        same command (spares.py); the next one is put in the making."""
        env = self._node_env() or dict(os.environ)
        argv, timeout, max_line, program = self.argv, self.timeout, self.max_line, self.program
        spare = spares.FIRST.take(key, lambda: _FirstSpare.make(
            argv, env, layered, timeout, max_line, program))
        if spare is None or spare.finalizer.detach() is None:  # released meanwhile
            return None
        return spare

    # -- introspection ------------------------------------------------------------------

    def describe(self) -> str:
        return f"process: {' '.join(self.argv)}"

    def _kill_for_power_loss(self, mode: str) -> None:
        child = self._res.child
        if child is not None:
            self._retire(child, f"power loss ({mode}): SIGKILL to the process group")

    def command(self) -> list[str]:
        """argv with the `{data_dir}` placeholder replaced (plain replace, not str.format)."""
        return [a.replace(PLACEHOLDER, str(self.data_dir)) for a in self.argv]

    @property
    def pid(self) -> int | None:
        """The running node's pid (also its process group id), None when not running."""
        child = self._res.child
        return child.pid if child is not None else None

    @property
    def pids(self) -> tuple[int, ...]:
        """Every process (group) started for this adapter, oldest first: its lifetimes and
        the processes started ahead of need (spares.py), used or not."""
        return tuple(self._pids)

    def alive(self) -> bool:
        child = self._res.child
        return child is not None and child.alive()

    def logs(self) -> str:
        return self._tail.text()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, durability: str) -> Hello:
        if self._closed:
            raise AdapterError("the adapter is closed")
        child = self._res.child
        if child is not None:
            if child.alive():
                raise AdapterError("the node is already running: crash() or shut it down first")
            self._retire(child, "the node had exited")
        if self._layer is not None:  # a crash point that fired left the device stopped
            self._layer.thaw()
        argv = self.command()
        self._starts += 1
        if self._spares:
            spares.CONTINUATIONS.started(self.argv, self._starts)
        self._tail.note(f"start #{self._starts}: {' '.join(argv)}")
        with critical(), self._res.lock:  # never a node that release() would not know of
            if self._res.released:  # closed by another thread meanwhile
                raise AdapterError("the adapter is closed")
            ahead = self._res.ahead.pop(0) if self._res.ahead else None
            child = _made(ahead) if isinstance(ahead, Future) else ahead
            fresh = child is None
            if child is None:
                try:
                    child = _Child(argv, self._node_env(), StderrSink(STDERR_LIMIT),
                                   self.max_line, self.program)
                except OSError as exc:
                    raise AdapterError(f"cannot start the node {argv[0]!r}: {exc}") from exc
                self._pids.append(child.pid)
            self._res.child = child
        if fresh:
            self._tail.note(f"pid {child.pid}")
        else:  # its stderr so far follows
            # (how long ahead is timing: it stays out of the log, which the report compares)
            self._tail.note(f"pid {child.pid}, started ahead of need")
        child.sink.attach(self._tail)

        ex = self.request("hello", versions=list(PROTOCOL_VERSIONS), harness="conformance",
                          config={"durability": durability})
        if ex.reply is None:
            raise AdapterError(f"the node exited during hello{self._stderr_hint()}")
        if not ex.reply["ok"]:
            err = ex.reply["error"]
            self._retire(child, "hello refused")
            raise HelloRefused(str(err.get("code")), str(err.get("message", "")))
        try:
            hello = parse_hello(ex.reply["result"])
        except ProtocolViolation:
            self._retire(child, "malformed hello")
            raise
        if self._spares:
            prestart = ex.reply["result"].get("prestart") is True
            spares.PRESTART.heard(self.argv, prestart)
            if (prestart and not self._res.ahead
                    and spares.CONTINUATIONS.likely(self.argv, self._starts)):
                self._start_restart_spare()
        return hello

    def _start_restart_spare(self) -> None:
        """The next lifetime's process, started now on the same data directory: the node
        said `prestart` (it touches nothing there before its first request, which it gets
        only after this lifetime's end is complete: docs/protocol.md)."""
        argv, env, max_line, pids = self.command(), self._node_env(), self.max_line, self._pids
        program = self.program

        def make() -> _Child:
            child = _Child(argv, env, StderrSink(STDERR_LIMIT), max_line, program)
            pids.append(child.pid)  # every process it started, for the caller to check
            return child

        with self._res.lock:  # released by another thread meanwhile: nothing to start
            making = None if self._res.released else spares.submit(make)
            if making is not None:
                self._res.ahead.append(making)

    def crash(self) -> None:
        child = self._res.child
        if child is not None:
            self._retire(child, "crash: SIGKILL to the process group")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._res.child is not None:
                self._tail.note("close: SIGKILL to the process group")
        self._finalizer()  # runs _Resources.release at most once

    def __enter__(self) -> ProcessAdapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _retire(self, child: _Child, why: str) -> None:
        """Kill (if needed) and reap one lifetime; the node is not running afterwards."""
        status = child.kill()
        if self._res.child is child:
            self._res.child = None
        self._tail.note(f"{why} (pid {child.pid}, exit status {status})")

    def _stderr_hint(self) -> str:
        tail = self._tail.text().strip()[-500:]
        return f"; stderr ends with:\n{tail}" if tail else ""

    # -- requests -----------------------------------------------------------------------

    def request(self, op: str, **fields: Any) -> Exchange:
        child = self._res.child
        if child is None:
            raise AdapterError(f"{op}: the node is not running (crashed, exited or never started)")
        if "id" in fields:
            raise TypeError("request(): 'id' is assigned by the adapter")
        rid = self._next_id
        self._next_id += 1
        req: dict[str, Any] = {"id": rid, "op": op, **fields}
        data = (_ENCODE(req) + "\n").encode()
        deadline = time.monotonic() + self.timeout
        self._refuse_stray_line(child, req)
        try:
            delivered = child.send(data, deadline)
        except TimeoutError:
            self._timeout(child, op, rid, "the node did not read the request")
        if not delivered:
            # Whether a node that exits at once dies before or after the request is written is
            # a race: a node that did exit is told in the same words either way, so that two
            # runs of one node give one report.
            why = (f"the node exited with {op} (id {rid}) in flight" if self._exits(child)
                   else f"the node closed its stdin; {op} (id {rid}) not delivered")
            self._retire(child, why)
            return Exchange(req, None, [])
        try:
            got = read_reply(lambda: child.read_line(deadline), req,
                             max_line=self.max_line, max_depth=self.max_depth)
        except ProtocolViolation:
            self._retire(child, f"protocol violation during {op} (id {rid}), killed")
            raise
        if got.timed_out:
            self._timeout(child, op, rid, "no reply")
        if got.reply is None:  # EOF: the node died with the request in flight, or it did not
            if not self._exits(child):
                self._violation(child, req, f"the node closed its stdout but is still running "
                                f"{EXIT_GRACE:g} s later (pid {child.pid}): it can send no reply")
            self._retire(child, f"the node exited with {op} (id {rid}) in flight")
            return Exchange(req, None, got.events)
        self._answered = (child, rid)
        if op == "shutdown" and got.reply["ok"]:
            self._await_exit(child)
        return Exchange(req, got.reply, got.events)

    def _refuse_stray_line(self, child: _Child, req: dict[str, Any]) -> None:
        """A line the node wrote after its last reply, before this request (a second reply,
        a late event) answers nothing: the step of the request it followed is to blame, not
        this one. Only what has arrived is seen; a later one is read as this request's."""
        answered, self._answered = self._answered, None
        if answered is None or answered[0] is not child:
            return
        while True:
            item = child.read_line(0.0)  # a deadline past: only what has arrived
            if not item:  # nothing, or EOF (it stays: it is read while waiting for the reply)
                return
            if item.strip():
                self._retire(child, f"protocol violation after request {answered[1]}, killed")
                raise ReplyViolation(req, f"a line written after the reply to request "
                                     f"{answered[1]} and before this request, answering "
                                     "nothing", item, culprit_id=answered[1])

    def _exits(self, child: _Child) -> bool:
        """Whether the node exits within EXIT_GRACE (its stdout has just closed)."""
        return wait_exit(child.proc, EXIT_GRACE)

    def _await_exit(self, child: _Child) -> None:
        """After a successful shutdown the node must exit; one that lingers is killed."""
        if wait_exit(child.proc, self.timeout):
            why = "clean shutdown"
        else:
            why = f"shutdown: still running {self.timeout:g} s after its reply, killed"
        self._retire(child, why)

    def _violation(self, child: _Child, req: dict[str, Any], what: str) -> NoReturn:
        self._retire(child, f"protocol violation during {req['op']} (id {req['id']}), killed")
        raise ReplyViolation(req, what)

    def _timeout(self, child: _Child, op: str, rid: int, what: str) -> NoReturn:
        self._retire(child, f"timeout during {op} (id {rid}), killed")
        raise RequestTimeout(f"{op} (id {rid}): {what} within the {self.timeout:g} s timeout; "
                             f"the node was killed")
