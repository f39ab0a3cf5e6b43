"""The control channel: JSON lines over a Unix socket, one request, one reply.

    {"op": "ping"}                                -> {"ok": true, "mounted": true}
    {"op": "status"}                              -> {"ok": true, "open_handles": 0, "pending_ops": 3,
                                                      "counters": {...}, "frozen": null, ...}
    {"op": "power_loss", "mode": "drop_all", "seed": 7}
                                                  -> {"ok": true, "report": {...}}  (refused while a
                                                     file is open through the mount)
    {"op": "arm", "on": "fsync", "nth": 2}        -> {"ok": true}   (a crash point)
    {"op": "disarm"}                              -> {"ok": true}   (and thaw a stopped device)
    {"op": "unsynced"}                            -> {"ok": true, "unsynced": {...}}

Errors: {"ok": false, "error": "<words>"}. The harness side is `CrashFSClient`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the harness side (CrashFSClient) must import without libfuse
    from .journal import Journal
    from .ops import CrashOps

LINE_LIMIT = 1 << 20


class ControlError(Exception):
    """The layer answered a control request with an error, or did not answer."""


def handle(journal: Journal, ops: CrashOps, req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "ping":
        return {"ok": True, "mounted": ops.mounted.is_set()}
    if op == "status":
        return {"ok": True, "open_handles": ops.open_handles(), **journal.status()}
    if op == "unsynced":
        return {"ok": True, "unsynced": journal.unsynced()}
    if op == "arm":
        journal.arm(str(req.get("on")), int(req.get("nth", 1)))
        return {"ok": True}
    if op == "disarm":
        journal.disarm()
        return {"ok": True}
    if op == "power_loss":
        n = ops.open_handles()
        if n:
            return {"ok": False, "error": f"{n} file(s) still open through the mount: the "
                                          "node (or a process it started) is still running"}
        report = journal.power_loss(str(req.get("mode")), int(req.get("seed", 0)))
        return {"ok": True, "report": report.as_dict(), "summary": report.summary()}
    return {"ok": False, "error": f"unknown control op {op!r}"}


SUN_PATH_MAX = 107  # bytes of an AF_UNIX socket path (sun_path, without its NUL)


@contextlib.contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A name under which `path` can be bound or connected to: itself, or, when it is longer
    than an AF_UNIX path may be (a deep TMPDIR), `/proc/self/fd/N/NAME` through a descriptor
    of its directory, held open meanwhile."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def serve(path: Path, journal: Journal, ops: CrashOps) -> socketserver.BaseServer:
    """Start the control server in a daemon thread; returns it (shutdown() stops it)."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in iter(lambda: self.rfile.readline(LINE_LIMIT), b""):
                try:
                    req = json.loads(raw)
                    reply = handle(journal, ops, req) if isinstance(req, dict) else {
                        "ok": False, "error": "a request is a JSON object"}
                except Exception as exc:  # noqa: BLE001 - any failure is answered, not fatal
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
                self.wfile.flush()

    with reachable(path) as name:
        server = socketserver.ThreadingUnixStreamServer(name, Handler)
    server.daemon_threads = True
    # a short poll interval: shutdown() at unmount waits for the loop to notice
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     name="crashfs-control", daemon=True).start()
    return server


class CrashFSClient:
    """One connection to a layer's control socket; every call has a timeout."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                with reachable(self.path) as name:
                    s.connect(name)
            except OSError:
                s.close()
                raise
            self._sock = s
        return self._sock

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        try:
            s = self._connect()
            s.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            while b"\n" not in self._buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ControlError(f"the crash-simulating filesystem closed its control "
                                       f"socket during {op!r} (the layer died)")
                self._buf += chunk
        except OSError as exc:
            self.close()
            raise ControlError(f"the crash-simulating filesystem did not answer {op!r}: "
                               f"{exc}") from exc
        line, _, self._buf = self._buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise ControlError(f"{op}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""
