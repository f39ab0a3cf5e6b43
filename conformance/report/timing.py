"""The timing fields: the only parts of a report that differ between two runs with the
same seed (docs/report.md, "Deterministic reports").

- report.json: every key named ``started`` or ``duration_s``, at any depth (the run's
  start and duration, each case's duration, the exploration's duration);
- junit.xml: the attributes ``time`` and ``timestamp``;
- report.md: the lines ``- **Started**: ...`` and ``- **Duration**: ...``;
- report.html: the table row of class ``timing``.

:func:`without_timing` drops them, so that two reports can be compared byte for byte.
"""

from __future__ import annotations

import json
import re
from typing import Any

JSON_KEYS = frozenset({"started", "duration_s"})
JUNIT_ATTRIBUTES = ("time", "timestamp")
_JUNIT = re.compile(r' (?:time|timestamp)="[^"]*"')
_MARKDOWN = re.compile(r"^- \*\*(?:Started|Duration)\*\*: .*\n", re.MULTILINE)
_HTML = re.compile(r'^<tr class="timing">.*\n', re.MULTILINE)


def _drop_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_keys(v) for k, v in data.items() if k not in JSON_KEYS}
    if isinstance(data, list):
        return [_drop_keys(v) for v in data]
    return data


def without_timing(name: str, text: str) -> str:
    """The content of report file ``name`` (report.json, junit.xml, report.md or
    report.html) without its timing fields."""
    if name.endswith(".json"):
        return json.dumps(_drop_keys(json.loads(text)), indent=2, ensure_ascii=False)
    if name.endswith(".xml"):
        return _JUNIT.sub("", text)
    if name.endswith(".md"):
        return _MARKDOWN.sub("", text)
    if name.endswith(".html"):
        return _HTML.sub("", text)
    raise ValueError(f"{name}: not a report file (report.json, junit.xml, report.md, "
                     "report.html)")
