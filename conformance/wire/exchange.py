"""Reading the lines that answer one request: events, then the reply (docs/protocol.md).

Shared by the process and the container adapters, so that one decoding and checking path
(and one fuzz test) covers both; each adapter brings only its way of getting the next line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .decode import MAX_DEPTH, MAX_LINE, MalformedLine, decode_line
from .validate import ReplyViolation, check_event, check_reply

# The next line from the node: bytes (its newline included, or a piece longer than the
# bound), b"" at the end of the stream, None when the request's deadline passed.
NextLine = Callable[[], "bytes | None"]


@dataclass
class Incoming:
    """What came back for one request: the events, then the reply (None: the stream ended,
    or the deadline passed when `timed_out`)."""

    reply: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False


def read_reply(next_line: NextLine, request: dict[str, Any], *, max_line: int = MAX_LINE,
               max_depth: int = MAX_DEPTH) -> Incoming:
    """Read until the reply to `request`; ReplyViolation at the first line that breaks the
    protocol (blank lines are tolerated)."""
    events: list[dict[str, Any]] = []
    while True:
        raw = next_line()
        if raw is None:
            return Incoming(None, events, timed_out=True)
        if not raw:
            return Incoming(None, events)
        try:
            msg = decode_line(raw, max_line=max_line, max_depth=max_depth)
        except MalformedLine as exc:
            raise ReplyViolation(request, str(exc), raw) from None
        if msg is None:
            continue
        if "id" not in msg:
            check_event(request, msg, raw)
            events.append(msg)
            continue
        check_reply(request, msg, raw)
        return Incoming(msg, events)
