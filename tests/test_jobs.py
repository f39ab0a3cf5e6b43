"""`--jobs N` (issue 15, item 1): cases run N at a time give a serial run's report, the same
failures for a failing mutant, the same early stop for a node that never starts; results
reach `on_result` in the cases' order; an interrupt releases the running cases' nodes and
starts no more."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conformance.cases import Case, CaseResult, Location
from conformance.cli import main
from conformance.parallel import run_parallel
from conformance.report import without_timing
from conformance.session import START_GIVE_UP


def _report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(without_timing(
        "report.json", (out / "report.json").read_text(encoding="utf-8")))
    data["info"].pop("command")  # the command line names --jobs and --out
    return data


def _run_both(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any], int, dict[str, Any]]:
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    rc1 = main(["run", *argv, "--jobs", "1", "--out", str(serial)])
    rc2 = main(["run", *argv, "--jobs", "2", "--out", str(parallel)])
    return rc1, _report(serial), rc2, _report(parallel)


def test_jobs_2_gives_the_serial_report(tmp_path: Path) -> None:
    # 8 cases over 4 suites, some on the crash-simulating filesystem (power loss)
    rc1, serial, rc2, parallel = _run_both(tmp_path, "--impl", "reference-process", "-k", "torn")
    assert (rc1, rc2) == (0, 0)
    assert len({c["suite"] for c in serial["cases"]}) > 1
    assert parallel == serial


def test_jobs_2_gives_a_failing_mutants_failures(tmp_path: Path) -> None:
    rc1, serial, rc2, parallel = _run_both(
        tmp_path, "--impl", "mutant-process:pin-unsynced-in-unsynced-mode", "-k",
        "durability_modes")
    assert (rc1, rc2) == (1, 1)
    failed = [c["id"] for c in serial["cases"] if c["status"] == "failed"]
    assert failed  # the mutant is caught, so there are failures to compare
    assert [c["id"] for c in parallel["cases"] if c["status"] == "failed"] == failed
    assert parallel == serial  # messages and exchanges included


def test_jobs_2_stops_early_when_the_node_never_starts(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "exits.py"
    node.write_text("import sys\nprint('bad config', file=sys.stderr)\nsys.exit(3)\n")
    impl = f"{sys.executable} {node} --data-dir {{data_dir}}"
    rc1, serial, rc2, parallel = _run_both(tmp_path, "suites/entries.yaml", "--impl", impl)
    assert (rc1, rc2) == (1, 1)
    assert "the node never started" in capsys.readouterr().err
    statuses = [c["status"] for c in parallel["cases"]]
    assert len(statuses) == 9  # every case reported ...
    assert statuses.count("failed") == START_GIVE_UP  # ... only the first ones ran
    assert statuses.count("not_applicable") == 9 - START_GIVE_UP
    assert parallel == serial  # the same cases ran, the same were left out


# -- run_parallel itself, on fake adapters -----------------------------------------------------

class FakeAdapter:
    """Blocks its case until the test lets it go, or until it is closed (as a killed node
    makes a pending request fail)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.go = threading.Event()
        self.running = threading.Event()

    def close(self) -> None:
        self.closed.set()

    def alive(self) -> bool:
        return False

    def crash(self) -> None:  # pragma: no cover - alive() is False
        pass

    def wait(self) -> None:
        self.running.set()
        while not (self.go.wait(0.05) or self.closed.is_set()):
            pass


def _cases(n: int) -> list[Case]:
    return [Case(f"c{i}", "", (), (), "synced", (), Location("<test>", 1), "s")
            for i in range(n)]


def test_results_reach_on_result_in_order_when_they_finish_out_of_order() -> None:
    cases = _cases(4)
    adapters = {c.id: FakeAdapter() for c in cases}
    for name in ("c1", "c2", "c3"):
        adapters[name].go.set()
    seen: list[str] = []

    def run_one(case: Case, factory: Any) -> CaseResult:
        adapter = factory(case)
        if case.id == "c2":  # submitted only once c1 finished: c0 ends after c1 and c2 began
            adapters["c0"].go.set()
        adapter.wait()
        return CaseResult(case, "passed")

    results = run_parallel(cases, 2, run_one, lambda c: adapters[c.id],  # type: ignore[arg-type,return-value]
                           lambda r: seen.append(r.case.id), lambda _rs: None,
                           lambda c, why: CaseResult(c, "not_applicable", reason=why))
    assert [r.case.id for r in results] == ["c0", "c1", "c2", "c3"]
    assert seen == ["c0", "c1", "c2", "c3"]


def test_an_interrupt_releases_running_cases_and_starts_no_more() -> None:
    cases = _cases(6)
    adapters = {c.id: FakeAdapter() for c in cases}
    adapters["c0"].go.set()
    made: list[str] = []

    def run_one(case: Case, factory: Any) -> CaseResult:
        adapter = factory(case)
        made.append(case.id)
        adapter.wait()
        return CaseResult(case, "passed")

    def on_result(result: CaseResult) -> None:
        adapters["c1"].running.wait(10)  # c1 is in flight when the "signal" arrives
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_parallel(cases, 2, run_one, lambda c: adapters[c.id],  # type: ignore[arg-type,return-value]
                     on_result, lambda _rs: None,
                     lambda c, why: CaseResult(c, "not_applicable", reason=why))
    assert adapters["c1"].closed.is_set()  # released, not waited out
    assert not adapters["c1"].go.is_set()
    assert made == ["c0", "c1"] or made == ["c1", "c0"]  # nothing beyond the cases in flight
