"""One failure, one name (issue 14.3): a wrong reply that stops many cases is reported once,
under the requirement its failing check guards, the rest as its consequences; the console
lists every failed requirement; one check has one wording; a subset run says so once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _report_nodes import all_cases, plus_one, run

from conformance.cases import CaseResult
from conformance.catalog import Catalog, load_catalog
from conformance.cli import main
from conformance.impls import resolve
from conformance.oracle import Oracle
from conformance.report import blame, console_summary, profile_verdicts, requirement_status
from conformance.report.blame import broken_rule
from conformance.report.model import selection_of

ALL_CAPS = ["crash_points", "failpoints", "header_applier", "install_snapshot",
            "pin_after_restore", "power_loss", "process_kill", "reader", "sync_accounting",
            "tamper_hooks", "unsynced_mode", "writer"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def plus_one_results(catalog: Catalog) -> list[CaseResult]:
    return run(all_cases(catalog), plus_one())


def failing(results: list[CaseResult]) -> list[CaseResult]:
    return [r for r in results if r.status == "failed"]


def test_one_off_by_one_bug_is_one_failed_requirement(plus_one_results: list[CaseResult],
                                                      catalog: Catalog) -> None:
    """effective = snap + 1 after a restore fails CS-007 and nothing else; the cases that
    expected effective = snap for HV-006, ST-011, ST-002... stopped at it."""
    bad = failing(plus_one_results)
    assert len(bad) > 10
    # the harness named the case's own requirement for many of them (the bug of issue 14)
    assert {r.failure.requirement for r in bad if r.failure} > {"CS-007"}
    assert {b.root for b in map(blame, bad) if b} == {"CS-007"}
    statuses = requirement_status(plus_one_results, catalog)
    assert [rid for rid, st in statuses.items() if st.status == "failed"] == ["CS-007"]
    for rid in ("HV-006", "ST-011", "ST-002", "SP-006"):
        assert statuses[rid].status != "failed", rid
        assert set(statuses[rid].stopped_by.values()) == {"CS-007"}, rid
    hv = next(r for r in bad if r.case.id == "hv-restore-applies-header")
    b = blame(hv)
    assert b is not None and b.rule == "reply" and b.superseded == "HV-006"
    assert b.message == "CS-007: fallback, but effective = 4"
    assert b.allowed == "effective = snap = 3"
    assert b.consequences == ("HV-006", "HV-007")


def test_the_console_lists_every_failed_requirement(plus_one_results: list[CaseResult],
                                                    catalog: Catalog) -> None:
    lines = console_summary(plus_one_results, catalog, ALL_CAPS)
    profiles = lines[lines.index("Profiles:") + 1:]
    verdicts = profile_verdicts(plus_one_results, catalog, ALL_CAPS)
    assert len(profiles) == len(verdicts)
    for line, v in zip(profiles, verdicts, strict=True):
        assert not v.certified and v.failed == ("CS-007",)
        assert "failed CS-007" in line, line
        for rids in v.consequences.values():  # what the failure left unchecked, all of it
            assert all(rid in line for rid in rids), line
    complete = next(v for v in verdicts if v.name == "complete")
    assert complete.consequences == {"CS-007": ("CS-002", "ST-002")}
    # every failing case is named with its root cause, never the case's own requirement
    hv = lines.index(next(ln for ln in lines if "::hv-restore-applies-header " in ln))
    assert lines[hv + 1] == "CS-007: fallback, but effective = 4"
    assert "violates HV-006" not in "\n".join(lines)


def test_a_requirement_failing_on_its_own_is_still_named(catalog: Catalog) -> None:
    """The blame order does not hide a real second bug: a failure whose reply breaks no
    protocol rule keeps the requirement its check guards."""
    impl = resolve("mutant:hlc-ceiling-backwards-after-restart")
    cases = [c for c in all_cases(catalog) if c.id.startswith("hv-restore-applies-header")]
    results = run(cases, impl)
    assert [r.status for r in results] == ["failed", "failed"]
    assert {blame(r).root for r in results} == {"HV-006"}  # type: ignore[union-attr]
    assert requirement_status(results, catalog)["HV-006"].status == "failed"


def test_one_check_has_one_wording() -> None:
    """The blame rule and the oracle word the same check the same way: CS-007 on a reply
    that the oracle judges, and the same reply judged from the report."""
    reply = {"outcome": "executed", "reason": None, "have": 2, "snap": 3, "effective": 4,
             "gap": -1, "compacted": 3, "last_applied": 4}
    oracle = Oracle(frozenset({"reader", "writer", "header_applier"}), "synced")
    for _ in range(4):
        oracle.log.append({"kind": "noop"})
    oracle.d.pointer_floor = oracle.d.pointer_ceiling = 3
    oracle.d.gap_pointer = 3
    found = {v.requirement: v for v in oracle.on_open(reply, [{"event": "cold_start", **reply}])}
    rule = broken_rule("open", reply)
    assert rule is not None and "CS-007" in found
    assert (rule[0], rule[1], rule[2]) == ("CS-007", found["CS-007"].message,
                                           found["CS-007"].allowed)
    skipped = {**reply, "outcome": "skipped", "have": 5, "effective": 4}
    found = {v.requirement: v for v in oracle.on_open(skipped, [{"event": "cold_start",
                                                                 **skipped}])}
    assert broken_rule("open", skipped) == ("CS-006", found["CS-006"].message,
                                            found["CS-006"].allowed)
    assert broken_rule("open", {**reply, "effective": 3, "last_applied": 3}) is None


def test_a_subset_run_says_not_all_cases_ran(tmp_path: Path) -> None:
    """`run -k` on the correct reference: no requirement is said to have "no case cites it"
    when cases do cite it; one reason says not all cases ran."""
    out = tmp_path / "run"
    assert main(["run", "-k", "cs-fallback", "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["info"]["selection"] == "this run selected -k cs-fallback"
    for profile in data["profiles"]:
        assert not profile["certified"]
        assert profile["reasons"][0] == ("not all cases ran (this run selected -k cs-fallback);"
                                         " `conformance certify` runs them all")
        assert not [r for r in profile["reasons"] if "no case cites it" in r], profile["name"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Not all cases ran (this run selected -k cs-fallback)" in md
    assert "no case cites" not in md


def test_what_counts_as_a_subset() -> None:
    assert selection_of("certify") is None and selection_of("run") is None
    assert selection_of("certify", "skip") == "this certify selected -k skip"
    assert selection_of("run", None, ["suites/cold_start.yaml"]) == (
        "this run selected suites/cold_start.yaml")
    assert selection_of("replay", None, ["f.yaml"]) == "this replay selected f.yaml"
