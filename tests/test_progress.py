"""The progress line (issue 14, item 5): on a terminal, cases done / total, the elapsed time
and the failures so far, redrawn in place; elsewhere today's compact output, unchanged."""

from __future__ import annotations

import io
import os
import shutil

import pytest

from conformance.cases import Case, CaseResult, Location
from conformance.session import Progress


def _result(suite: str, case_id: str, status: str) -> CaseResult:
    case = Case(id=case_id, description="", requirements=(), capabilities=(),
                durability="synced", steps=(), location=Location("x.yaml", 1), suite=suite)
    return CaseResult(case, status)  # type: ignore[arg-type]


RESULTS = [("store", "a", "passed"), ("store", "b", "failed"), ("cold_start", "c", "passed"),
           ("cold_start", "d", "not_applicable")]


def _feed(progress: Progress) -> str:
    assert isinstance(progress.out, io.StringIO)
    for suite, case_id, status in RESULTS:
        progress(_result(suite, case_id, status))
    progress.done()
    return progress.out.getvalue()


def test_not_a_terminal_prints_the_compact_lines_only() -> None:
    out = _feed(Progress(out=io.StringIO(), total=4))  # a StringIO is no terminal
    assert out == f"{'store':<24} .F\n{'cold_start':<24} .s\n"


def test_a_terminal_gets_a_live_line_that_ends_as_the_compact_one() -> None:
    out = _feed(Progress(out=io.StringIO(), total=4, live=True))
    assert "[1/4 cases, 0 s]" in out
    assert "[2/4 cases, 0 s, 1 failed]" in out
    assert "[4/4 cases, 0 s, 1 failed]" in out
    # what stays on screen: each live line overwritten by its suite's compact line
    screen = [line.rsplit("\r", 1)[-1].rstrip() for line in out.split("\n") if line]
    assert screen == [f"{'store':<24} .F", f"{'cold_start':<24} .s"]


def test_the_live_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((50, 24)))
    progress = Progress(out=io.StringIO(), total=100, live=True)
    for i in range(60):
        progress(_result("crash_ordering", f"c{i}", "passed"))
    assert isinstance(progress.out, io.StringIO)
    last = progress.out.getvalue().rsplit("\r", 1)[-1]
    assert len(last.rstrip()) <= 49 and "[60/100 cases" in last and "..." in last
    progress.done()


def test_verbose_lines_carry_the_counts_on_a_terminal() -> None:
    out = _feed(Progress(out=io.StringIO(), total=4, live=True, verbose=True))
    assert "store::b FAILED (0.00s) [2/4 cases, 0 s, 1 failed]" in out
