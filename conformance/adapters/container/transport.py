"""The TCP connection to a node: JSON lines (docs/protocol.md), one connection at a time.

The node listens on PORT inside its container; the adapter reaches it at the container's IP on
its internal network, or at the published host port (hardening.py, `network`).
"""

from __future__ import annotations

import socket
import time

from ...wire.decode import MAX_LINE as MAX_LINE  # re-exported: the default bound
from ...wire.decode import Overlong

PORT = 7070  # the port the node listens on inside the container (docs/protocol.md)


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

