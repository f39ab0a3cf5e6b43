"""The console summary after a run: each failing case named once, then one line per profile
that lists every failed requirement and what it stopped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from conformance.cases import CaseResult
from conformance.catalog import Catalog

from .model import _order, profile_verdicts
from .text import render, scrub

_SHOWN = ("failed", "error", "xpassed")


def console_summary(results: Sequence[CaseResult], catalog: Catalog,
                    advertised: Iterable[str], selection: str | None = None) -> list[str]:
    """The lines to print: every failed, errored or xpassed case with its root cause, and
    the verdict of every profile (``ProfileVerdict.summary``)."""
    lines: list[str] = []
    for res in _order(results):
        if res.status not in _SHOWN:
            continue
        lines += ["", f"{res.status.upper()} {res.case.suite}::{res.case.id} ({res.case.location})"]
        lines += (render(res) if res.status != "xpassed" else f"  {scrub(res.reason)}"
                  ).splitlines()
    lines += ["", "Profiles:"]
    for v in profile_verdicts(results, catalog, advertised, selection):
        lines.append(f"  {v.profile:<22} {v.summary()}")
    return lines
