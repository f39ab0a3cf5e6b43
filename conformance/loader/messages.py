"""How problems are phrased, shared by the schema and the semantic checks.

A JSON path becomes a human context ("case 'x' step 3 (apply)") that prefixes the
message; a misspelt word gets a "did you mean" from the valid choices; lists of names
are written out plainly.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from conformance.cases import STEP_KINDS

from .problems import JsonPath


def _get(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        found = (isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data)) \
            or (isinstance(part, str) and isinstance(data, dict) and part in data)
        if not found:
            return None
        data = data[part]
    return data


def _where(data: Any, path: Sequence[str | int]) -> tuple[str, JsonPath, str | None]:
    """Split a path into a human context ("case 'x' step 3 (apply)"), the rest, the step kind."""
    rest = tuple(path)
    parts: list[str] = []
    kind: str | None = None
    if len(rest) >= 2 and rest[0] == "cases" and isinstance(rest[1], int):
        case = _get(data, rest[:2])
        cid = case.get("id") if isinstance(case, dict) else None
        parts.append(f"case {cid!r}" if isinstance(cid, str) else f"case {rest[1] + 1}")
        rest = rest[2:]
        if len(rest) >= 2 and rest[0] == "steps" and isinstance(rest[1], int):
            step = f"step {rest[1] + 1}"
            if len(rest) >= 3 and rest[2] in STEP_KINDS:
                kind = str(rest[2])
                step += f" ({kind})"
                rest = rest[3:]
            else:
                value = _get(case, rest[:2])
                if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in STEP_KINDS:
                    step += f" ({next(iter(value))})"
                rest = rest[2:]
            parts.append(step)
    return " ".join(parts), rest, kind


def _did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    if not isinstance(word, str):
        return ""
    options = [c for c in choices if isinstance(c, str)]
    folded = [c for c in options if c.casefold() == word.casefold() and c != word]
    close = folded or difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_of(values: Sequence[Any]) -> str:
    return ", ".join(str(v) if isinstance(v, str) else json.dumps(v) for v in values)


def _context_message(data: Any, path: JsonPath, message: str) -> str:
    context, _, _ = _where(data, path)
    return f"{context}: {message}" if context else message
