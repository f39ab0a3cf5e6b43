"""The TCP connection to a node: JSON lines (docs/protocol.md), one connection at a time.

The node listens on PORT inside its container; the adapter reaches it at the container's IP on
its internal network, or at the published host port (hardening.py, `network`).
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time

from ...wire.decode import MAX_LINE as MAX_LINE  # re-exported: the default bound
from ...wire.decode import Overlong

PORT = 7070  # the port the node listens on inside the container (docs/protocol.md)
CLONE_NEWNET = 0x40000000


def netns_problem() -> str | None:
    """Why the harness cannot make its connections inside a container's network namespace
    (`connect_in_netns`), None when it can: that takes root (CAP_SYS_ADMIN) on the engine's
    host and Linux' setns(2)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the harness does not run as root (entering a network namespace needs it)"
    if not os.path.exists(f"/proc/{os.getpid()}/ns/net"):
        return "no /proc/<pid>/ns/net here (not Linux?)"
    try:
        ctypes.CDLL(None, use_errno=True).setns  # noqa: B018 - present or AttributeError
    except (OSError, AttributeError):
        return "the C library has no setns(2)"
    return None


def socket_in_netns(pid: int) -> socket.socket:
    """A TCP socket that belongs to the network namespace of process `pid` (a container's
    PID 1): a socket keeps the namespace it was created in, so it is created by a thread of
    its own that entered the namespace (setns(2) changes the calling thread only), and the
    caller connects it as usual. OSError when the namespace cannot be entered (the process
    is gone)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    got: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into the network namespace of pid {pid}: "
                                   f"{os.strerror(err)}")
            got.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            got.append(exc)

    try:
        # (the thread ends in the container's namespace: it does nothing more there)
        t = threading.Thread(target=make, name="netns-socket", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    result = got[0] if got else OSError("no socket was made in the namespace")
    if isinstance(result, BaseException):
        raise result
    return result


def connect_in_netns(pid: int, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` inside the network namespace of `pid`."""
    sock = socket_in_netns(pid)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """One TCP connection to the node: line reads and writes with deadlines."""

    def __init__(self, sock: socket.socket, max_line: int = MAX_LINE) -> None:
        self.sock = sock
        self.max_line = max_line
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes, deadline: float) -> bool:
        """False when the peer is gone; TimeoutError when it does not read in time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise
        except OSError:
            return False
        return True

    def readline(self, deadline: float) -> bytes | None:
        """The next line; b"" at EOF (a partial last line counts as EOF); None on timeout.

        A line longer than `max_line` comes back as an `Overlong` (its start, which the reply
        check rejects), and the connection reads nothing more: the buffer never holds more
        than the bound and one received chunk."""
        while True:
            nl = self.buf.find(b"\n", 0, self.max_line + 1)
            if nl >= 0:
                line = bytes(self.buf[:nl + 1])
                del self.buf[:nl + 1]
                return line
            if len(self.buf) > self.max_line:
                line = Overlong(self.buf[:Overlong.KEEP])
                self.buf.clear()
                self.eof = True
                return line
            if self.eof:
                return b""
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""  # reset by the peer: it is gone
            if chunk:
                self.buf += chunk
            else:
                self.eof = True

