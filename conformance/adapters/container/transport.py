"""The TCP connection to a node: JSON lines (docs/protocol.md), one connection at a time.

The node listens on PORT inside its container; the adapter reaches it at the container's IP on
its internal network, or at the published host port (hardening.py, `network`).
"""

from __future__ import annotations

import socket
import time

from ..base import ProtocolViolation

PORT = 7070  # the port the node listens on inside the container (docs/protocol.md)
MAX_LINE = 64 * 1024 * 1024  # bytes in one protocol line before it is a violation
QUOTE_LIMIT = 300


class Connection:
    """One TCP connection to the node: line reads and writes with deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
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
        """The next line; b"" at EOF (a partial last line counts as EOF); None on timeout."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl + 1])
                del self.buf[:nl + 1]
                return line
            if self.eof:
                return b""
            if len(self.buf) > MAX_LINE:
                raise ProtocolViolation(f"a line longer than {MAX_LINE} bytes")
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


def quote(raw: bytes) -> str:
    """A received line for an error message, cut at QUOTE_LIMIT characters."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return repr(text[:QUOTE_LIMIT] + ("..." if len(text) > QUOTE_LIMIT else ""))
