"""Strict decoding of one line the node wrote (docs/protocol.md, "Reply validation").

`json.loads` alone accepts what the protocol forbids and fails in ways a harness must not:
NaN and Infinity, floats (`6.0` and `1e308` pass an integer check), duplicate keys (the last
one silently wins), integers of thousands of digits (a ValueError that reads "not JSON"),
nesting deep enough to raise RecursionError, and lone surrogates that crash printing later.
Each is a `MalformedLine` here, naming the field where there is one.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_LINE = 64 * 1024 * 1024  # bytes of one line, its newline included (16x the suites' largest)
MAX_DEPTH = 64  # nesting levels of one line (a reply has at most 4: reply, result, items, item)
U64_MAX = 2**64 - 1
_U64_DIGITS = len(str(U64_MAX))  # 20: more digits is out of range whatever the digits are
QUOTE_LIMIT = 300  # characters of a line quoted in a message


class MalformedLine(ValueError):
    """A line that is not one protocol JSON object; `path` names the field when known."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.problem = problem
        self.path = path


class Overlong(bytes):
    """The start of a line longer than the bound: all a transport keeps of it (it stops
    reading there), so that no line costs more than the bound in memory."""

    KEEP = 1200  # bytes kept: enough to quote QUOTE_LIMIT characters


class _Rejected(Exception):
    """Raised by the strict decoder's hooks at the first forbidden token."""


class _Bad:
    """What the diagnostic decoder puts where a forbidden token was, to find its path."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _float(text: str) -> Any:
    raise _Rejected


def _constant(text: str) -> Any:
    raise _Rejected


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > _U64_DIGITS:
        raise _Rejected
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Rejected
    return obj


# One decoder each, built once (building one per line costs more than the decoding).
_STRICT = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_constant,
                           object_pairs_hook=_object)


def _diag_int(text: str) -> Any:
    digits = len(text) - text.startswith("-")
    if digits > _U64_DIGITS:
        return _Bad(f"a {digits}-digit integer: integer out of range "
                    f"(the protocol's integers are in 0..2**64-1)")
    return int(text)


def _diag_object(pairs: list[tuple[str, Any]]) -> Any:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _Bad(f"duplicate key {_safe_repr(key)} (a JSON object's keys are unique "
                        "in the protocol)")
        seen.add(key)
    return dict(pairs)


_DIAGNOSE = json.JSONDecoder(
    parse_float=lambda t: _Bad(f"{t}: a float (the protocol's numbers are integers)"),
    parse_int=_diag_int,
    parse_constant=lambda t: _Bad(f"{t}: not a JSON number (NaN and Infinity are not JSON)"),
    object_pairs_hook=_diag_object)

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in `text` (brackets inside strings do not count).
    Counted on the text, so that no depth can make the decoder recurse too far."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def decode_line(raw: bytes, *, max_line: int = MAX_LINE,
                max_depth: int = MAX_DEPTH) -> dict[str, Any] | None:
    """One line as the JSON object it must be; None for a blank line (tolerated).

    Raises MalformedLine for anything else: a line over `max_line` bytes (or an `Overlong`
    a transport made of one), not UTF-8, not
    JSON, not an object, nested deeper than `max_depth`, a float, NaN or Infinity, an
    integer of more digits than 2**64-1 has, or a duplicate key. Lone surrogates in strings
    (`"\\ud800"`) are kept as the escape text, so that printing them cannot fail.
    """
    if len(raw) > max_line or isinstance(raw, Overlong):
        raise MalformedLine(f"a line longer than {max_line} bytes (the harness's bound; "
                            "docs/protocol.md, Reply validation)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedLine(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                            f"{exc.start})") from None
    if not text.strip():
        return None
    # Cheap first: fewer opening brackets than the bound cannot nest deeper than it.
    if text.count("[") + text.count("{") > max_depth:
        depth = nesting_depth(text)
        if depth > max_depth:
            raise MalformedLine(f"nested {depth} levels deep, more than the bound of "
                                f"{max_depth} (docs/protocol.md, Reply validation)")
    try:
        msg = _STRICT.decode(text)
    except _Rejected:
        raise _diagnose(text) from None
    except ValueError as exc:  # json.JSONDecodeError: where the syntax broke
        raise MalformedLine(f"not JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise MalformedLine(f"not a JSON object (a JSON {type(msg).__name__})")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        msg = _escape_surrogates(msg)
    obj: dict[str, Any] = msg
    return obj


def _diagnose(text: str) -> MalformedLine:
    """The first forbidden token of a line the strict decoder refused, with its path."""
    found = _first_bad(_DIAGNOSE.decode(text), "")
    assert found is not None, "the strict and the diagnostic decoder disagree"
    path, bad = found
    return MalformedLine(bad.problem, path or "the line")


def _first_bad(value: Any, path: str) -> tuple[str, _Bad] | None:
    if isinstance(value, _Bad):
        return path, value
    if isinstance(value, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub, v in items:
        found = _first_bad(v, sub)
        if found is not None:
            return found
    return None


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value):
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_escape_surrogates(k): _escape_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_surrogates(v) for v in value]
    return value


def _safe_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def quote(raw: bytes) -> str:
    """A line for an error message: decoded leniently, cut at QUOTE_LIMIT characters."""
    text = raw[:Overlong.KEEP].decode("utf-8", errors="replace").rstrip("\r\n")
    if len(text) > QUOTE_LIMIT or len(raw) > Overlong.KEEP or isinstance(raw, Overlong):
        text = text[:QUOTE_LIMIT] + "..."
    return repr(text)
