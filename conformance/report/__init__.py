"""The certification report: what ran, what it proves, and which profiles it certifies.

The package splits along its concepts:

- :mod:`.model`: the status of each requirement and the verdict of each profile
  (:func:`requirement_status`, :func:`profile_verdicts`, :class:`RunInfo`);
- :mod:`.json_report`, :mod:`.markdown`, :mod:`.junit`: the three output formats,
  ``report.json`` for machines, ``report.md`` for people and ``junit.xml`` for CI systems;
- :mod:`.writer`: :func:`write_report` writes all three into one directory.

Output is deterministic: cases are ordered by suite then case id, requirements by id,
profiles in catalog order.
"""

from __future__ import annotations

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
)
from .writer import ReportPaths, write_report

__all__ = [
    "CASE_STATUSES",
    "FORMAT_VERSION",
    "LOG_TAIL_LINES",
    "REQUIREMENT_STATUSES",
    "ProfileVerdict",
    "ReportPaths",
    "RequirementState",
    "RequirementStatus",
    "RunInfo",
    "build_report",
    "profile_verdicts",
    "render_junit",
    "render_markdown",
    "requirement_status",
    "write_report",
]
