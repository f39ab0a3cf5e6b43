"""The wire, seen from the harness: every line a node writes decoded strictly and checked
against the reply schemas before anything reads it (docs/protocol.md, "Reply validation").

- decode.py: one line to one JSON object, with bounds (length, depth, integer range);
- validate.py: the schemas of schemas/, compiled; `ReplyViolation`;
- exchange.py: the lines answering one request (events, then the reply), for the adapters.
"""

from .decode import MAX_DEPTH, MAX_LINE, U64_MAX, MalformedLine, decode_line
from .exchange import Incoming, read_reply
from .validate import ReplyViolation, check_event, check_reply

__all__ = ["MAX_DEPTH", "MAX_LINE", "U64_MAX", "Incoming", "MalformedLine", "ReplyViolation",
           "check_event", "check_reply", "decode_line", "read_reply"]
