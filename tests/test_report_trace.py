"""The per-step trace the runner records and the timeline drawn from it: values come from
the node's replies, are carried forward or unknown (never made up), and the failing step is
highlighted; temp paths and pids never reach a report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from _report_nodes import all_cases, plus_one, run

from conformance.cases import CaseResult
from conformance.catalog import Catalog, load_catalog
from conformance.report import scrub
from conformance.report.blame import failing_expectations
from conformance.report.timeline import render_timeline, series_values
from conformance.trace import TracePoint

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def hv_case(catalog: Catalog) -> CaseResult:
    """hv-restore-applies-header on the node whose open answers effective = snap + 1 after a
    restore: open, apply x3, snapshot at 3, apply, crash, restart, failpoint, open (fails)."""
    case = next(c for c in all_cases(catalog) if c.id == "hv-restore-applies-header")
    (result,) = run([case], plus_one())
    return result


def test_the_trace_holds_what_each_step_reported(hv_case: CaseResult) -> None:
    assert hv_case.status == "failed"
    by_step = {p.step: p for p in hv_case.trace}
    assert [p.step for p in hv_case.trace] == list(range(8))  # the failing step included
    first_open, snapshot, apply, crash, last_open = (by_step[i] for i in (0, 2, 3, 4, 7))
    assert (first_open.applied, first_open.pointer, first_open.effective) == (0, 0, 0)
    assert first_open.meta is None and first_open.meta_absent  # "missing_meta" at open
    assert (snapshot.pointer, snapshot.meta, snapshot.applied) == (3, 3, 3)
    assert apply.applied == 4 and apply.meta is None and apply.pointer is None
    assert crash.event == "crash" and crash.applied is None
    # the failing open: what the node answered, never what the model expected
    assert (last_open.pointer, last_open.effective, last_open.meta) == (3, 4, None)
    assert last_open.log_end == 4 and last_open.meta_floor == 4
    assert last_open.line == hv_case.failure.step.location.line  # type: ignore[union-attr]


def test_a_passing_case_keeps_no_trace(catalog: Catalog) -> None:
    case = next(c for c in all_cases(catalog) if c.id == "hv-restore-applies-header")
    from conformance.impls import resolve

    (result,) = run([case], resolve("reference"))
    assert result.status == "passed" and result.trace == []


def test_values_are_carried_forward_then_unknown_after_a_crash() -> None:
    points = [TracePoint(0, "open", 1, applied=0, pointer=0, effective=0, meta_absent=True),
              TracePoint(1, "apply", 2, applied=2),
              TracePoint(2, "last_applied_index", 3, applied=2, meta=2),
              TracePoint(3, "crash", 4, event="power loss (drop_all)"),
              TracePoint(4, "restart", 5),
              TracePoint(5, "open", 6, applied=1, meta=1, pointer=0, effective=1)]
    meta = series_values(points, "meta")
    assert [(v.value, v.reported) for v in meta] == [
        (0, True), (0, False), (2, True), (None, False), (None, False), (1, True)]
    assert meta[0].absent and meta[1].absent and not meta[2].absent
    assert [v.value for v in series_values(points, "applied")] == [0, 2, 2, None, None, 1]
    effective = series_values(points, "effective")
    assert [(v.value, v.reported) for v in effective] == [
        (0, True), (0, False), (0, False), (None, False), (None, False), (1, True)]


def test_the_timeline_marks_the_failing_step_the_crash_and_the_expected_value(
        hv_case: CaseResult) -> None:
    svg = render_timeline(hv_case.trace, 7, title=hv_case.case.id, key="-x",
                          expect=failing_expectations(hv_case))
    root = ET.fromstring(svg)  # well-formed, inline, nothing to fetch
    assert root.tag == f"{SVG}svg" and "href" not in svg
    failing = root.find(f".//{SVG}g[@id='failing-step-x']")
    assert failing is not None and failing.get("data-step") == "step 8 (open)"
    assert "step 8 (open) failed" in "".join(failing.itertext())
    text = "".join(root.itertext())
    assert "crash" in text and "expected 3" in text  # effective = snap = 3 after a restore
    labels = [e for e in root.iter(f"{SVG}text") if e.get("class") == "step-label"]
    assert [e.text for e in labels] == [str(i) for i in range(1, 9)]
    # no failing step: nothing highlighted
    assert "failing-step" not in render_timeline(hv_case.trace, None)


def test_scrub_replaces_temp_paths_and_pids_only() -> None:
    log = ("--- pid 12345 ---\nopening /tmp/conformance-ab12_x9z/data/meta (pid=77)\n"
           "node: /var/tmp/xyz/conformance-k2j4h5g6 exit status -9\n"
           "applied index 12345 at conformance-level 3\n")
    assert scrub(log) == ("--- pid <pid> ---\nopening <tmp>/conformance-*/data/meta (pid=<pid>)"
                          "\nnode: <tmp>/conformance-* exit status -9\n"
                          "applied index 12345 at conformance-level 3\n")
