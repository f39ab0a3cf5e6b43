"""`expect` matchers, and which requirement an unexpected reply field is blamed on."""

from __future__ import annotations

from typing import Any

# Which requirements govern a reply field (for blaming an unexpected value in an `expect`);
# a field not listed is blamed on the case's first requirement.
FIELD_REQUIREMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("open", "outcome"): ("CS-001", "CS-002", "CS-003", "CS-004", "CS-005", "ST-002", "DM-005"),
    ("open", "reason"): ("ST-001", "ST-002", "ST-003", "CS-003", "CS-004", "CS-005", "CS-008"),
    ("open", "effective"): ("CS-006", "CS-007", "XR-004"),
    ("open", "last_applied"): ("CS-006", "CS-007"),
    ("open", "gap"): ("CS-008",),
    ("open", "have"): ("ST-001", "ST-002", "ST-004", "CO-001", "CO-002", "DM-001", "DM-002",
                       "DM-003", "DM-004", "SP-001", "SP-002", "SP-005", "CS-010"),
    ("open", "snap"): ("CO-001", "SP-001", "SP-002", "SP-003", "CO-004"),
    ("open", "compacted"): ("CO-004", "SP-003"),
    ("hlc", "ceiling"): ("HV-001", "HV-006", "EN-007"),
    ("hlc", "cutover"): ("HV-001", "HV-006"),
    ("snapshot_persist", "pinned"): ("SP-001", "SP-002", "SP-004"),
}


def matches(got: Any, matcher: Any) -> tuple[bool, str]:
    if isinstance(matcher, dict) and len(matcher) == 1:
        (op, want), = matcher.items()
        if op in (">=", "<=", ">", "<"):
            if not isinstance(got, int | float):
                return False, f"{op} {want}"
            ok = {">=": got >= want, "<=": got <= want, ">": got > want, "<": got < want}[op]
            return ok, f"{op} {want}"
        if op == "!=":
            return got != want, f"!= {want!r}"
        if op == "in":
            return got in want, f"in {want!r}"
    if isinstance(matcher, list) and isinstance(got, list):
        return [list(x) if isinstance(x, tuple) else x for x in got] == matcher, f"== {matcher!r}"
    return got == matcher, f"== {matcher!r}"
