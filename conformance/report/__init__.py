"""The certification report: what ran, what it proves, and which profiles it certifies.

The package splits along its concepts:

- :mod:`.model`: the status of each requirement and the verdict of each profile
  (:func:`requirement_status`, :func:`profile_verdicts`, :class:`RunInfo`);
- :mod:`.blame`: one failure, one name: the root cause of each failing case (the blame
  order), the rest its consequences;
- :mod:`.text`: a failure in its one wording, and :func:`scrub` (temp paths, pids);
- :mod:`.groups`: failing cases by root cause, not-applicable cases by why;
- :mod:`.json_report`, :mod:`.markdown`, :mod:`.junit`, :mod:`.html`: the output formats,
  ``report.json`` for machines, ``report.md`` and ``report.html`` (with :mod:`.timeline`,
  the picture of each failing case) for people, ``junit.xml`` for CI systems;
- :mod:`.console`: the lines the CLI prints after a run;
- :mod:`.timing`: the timing fields, the only ones that differ between runs of one seed;
- :mod:`.writer`: :func:`write_report` writes the four files into one directory.

Output is deterministic: cases are ordered by suite then case id, requirements by id,
profiles in catalog order; the same seed gives the same files byte for byte except the
timing fields (:mod:`.timing`, docs/report.md).
"""

from __future__ import annotations

from .blame import Blame, blame
from .console import console_summary
from .html import render_html
from .json_report import FORMAT_VERSION, LOG_TAIL_LINES, build_report
from .junit import render_junit
from .markdown import render_markdown
from .model import (
    CASE_STATUSES,
    REQUIREMENT_STATUSES,
    ProfileVerdict,
    RequirementState,
    RequirementStatus,
    RunInfo,
    profile_verdicts,
    requirement_status,
    selection_of,
)
from .text import render, scrub
from .timing import without_timing
from .writer import ReportPaths, write_report

__all__ = [
    "Blame",
    "CASE_STATUSES",
    "FORMAT_VERSION",
    "LOG_TAIL_LINES",
    "REQUIREMENT_STATUSES",
    "ProfileVerdict",
    "ReportPaths",
    "RequirementState",
    "RequirementStatus",
    "RunInfo",
    "blame",
    "build_report",
    "console_summary",
    "profile_verdicts",
    "render_junit",
    "render",
    "render_html",
    "render_markdown",
    "requirement_status",
    "scrub",
    "selection_of",
    "without_timing",
    "write_report",
]
