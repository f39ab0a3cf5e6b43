"""A scripted node for the process adapter, without a process: thousands of exchanges a second.

`ScriptedChild` stands in for `conformance.adapters.process._Child` (install it with
`scripted(monkeypatch)`): the in-process reference answers every request line, on a simulated
disk that survives restarts, and a `Script` may rewrite any line it writes before the adapter
reads it. Everything from `read_line` on is the adapter's real code: `conformance.wire`
(shared with the container adapter; the line bound included) and the runner.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.adapters import process
from conformance.adapters.child import StderrSink
from conformance.adapters.process import ProcessAdapter
from reference_impl.disk import SimDisk
from reference_impl.errors import SimulatedCrash
from reference_impl.node import Node, NodeConfig
from reference_impl.server import Server

# A line that stands for "the node closed its stdout here, and keeps running".
CLOSE = b"<close stdout>"

Rewrite = Callable[[bytes], list[bytes]]


class Script:
    """Which line the node writes is rewritten, and how: `rewrite` replaces the `target`-th
    line (0-based, events and replies alike, over every lifetime) with what it returns; or,
    with `op`, the reply to the first request of that op (`nth`: the nth such reply)."""

    def __init__(self, target: int = -1, rewrite: Rewrite | None = None, *,
                 op: str | None = None, nth: int = 1) -> None:
        self.target = target
        self.rewrite = rewrite
        self.op, self.nth = op, nth
        self.written = 0  # lines the node wrote so far
        self.disks: dict[str, SimDisk] = {}  # data dir -> the node's disk, across lifetimes

    def out(self, line: bytes, request: dict[str, Any]) -> list[bytes]:
        n, self.written = self.written, self.written + 1
        if self.rewrite is None:
            return [line]
        if self.op is not None:
            if request.get("op") != self.op or b'"id":' not in line:
                return [line]
            self.nth -= 1
            return self.rewrite(line) if self.nth == 0 else [line]
        return self.rewrite(line) if n == self.target else [line]


class _Lines:
    """The Server's stdout: what it writes, as lines."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, text: str) -> int:
        self.lines += [ln.encode() + b"\n" for ln in text.splitlines()]
        return len(text)

    def flush(self) -> None:
        pass


class _Proc:
    """What the adapter asks of a Popen: whether and how the node exited."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:  # never blocks: a running scripted node stays running
            raise subprocess.TimeoutExpired("scripted node", timeout or 0)
        return self.returncode


class ScriptedChild:
    """One lifetime of the scripted node (the interface process._Child offers the adapter)."""

    script = Script()
    _pids = itertools.count(10**6)

    def __init__(self, argv: list[str], env: Any, sink: StderrSink, *args: Any) -> None:
        data_dir = argv[-1]
        self.sink = sink  # it writes no stderr
        self.spawned = time.monotonic()
        disk = self.script.disks.setdefault(data_dir, SimDisk())
        self.out = _Lines()
        self.server = Server(Node(disk, NodeConfig()), self.out)  # type: ignore[arg-type]
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.proc = _Proc()
        self.pid = next(self._pids)
        self.closed = False  # stdout closed
        self.eof = False  # the adapter read the end of stdout

    def read_line(self, deadline: float) -> bytes | None:
        """The next stdout line; b"" at EOF (it stays); None when the deadline passed."""
        if self.eof:
            return b""
        try:
            item = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return None
        if item is None:
            self.eof = True
            return b""
        return item

    def alive(self) -> bool:
        return self.proc.returncode is None

    def send(self, data: bytes, deadline: float) -> bool:
        if not self.alive():
            return False
        req = json.loads(data)
        died = False
        try:
            reply = self.server.dispatch(req)
            self.out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        except SimulatedCrash:
            died = True
        if req.get("op") == "shutdown":
            died = True
        lines, self.out.lines = self.out.lines, []
        for line in lines:
            for piece in self.script.out(line, req):
                if self.closed:
                    break
                if piece == CLOSE:
                    self.closed = True
                    self.lines.put(None)
                else:
                    self.lines.put(piece)
        if died:
            self.proc.returncode = 0 if req.get("op") == "shutdown" else -9
            if not self.closed:
                self.closed = True
                self.lines.put(None)
        return True

    def kill(self) -> int | None:
        if self.proc.returncode is None:
            self.proc.returncode = -9
        if not self.closed:
            self.closed = True
            self.lines.put(None)
        return self.proc.returncode


def scripted(monkeypatch: pytest.MonkeyPatch, script: Script) -> None:
    """Make every ProcessAdapter start a ScriptedChild driven by `script`."""
    ScriptedChild.script = script
    monkeypatch.setattr(process, "_Child", ScriptedChild)


def scripted_adapter(data_dir: Path, **kw: Any) -> ProcessAdapter:
    """A process adapter for the scripted node (install it first with `scripted`)."""
    return ProcessAdapter(["scripted-node", "{data_dir}"], data_dir=data_dir, power_loss=False,
                          use_layer=False, **kw)
