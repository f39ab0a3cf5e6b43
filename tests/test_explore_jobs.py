"""`explore --jobs N` and `--time S` (issue 15, items 1 and 5).

- Campaigns run in worker processes; the run merges their outcomes in campaign order, so
  an example budget without a database gives the same findings, the same report counts and
  byte-identical fixtures with any number of workers.
- A worker has its own nodes: through the process adapter, a run with two workers leaves
  no worker, node or temporary directory behind, when it ends and when it is stopped by a
  signal in the middle.
- A time budget ends generation at the deadline, whatever the campaign's size; shrinking
  and saving are reported apart.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from _leaks import Harness, new_mark, temp_leftovers, wait_marked

from conformance.cli import main as cli_main
from conformance.explore import explore
from conformance.explore.findings import Finding
from conformance.explore.run import COUNT_CAMPAIGN

# A mutant that the first campaigns find (and shrink) within a few seconds in process.
SPEC, SEED, STEPS = "mutant:pin-error-ignored", 0, 15
EXAMPLES = 3 * COUNT_CAMPAIGN  # three campaigns: two workers take turns


def _summary(findings: list[Finding]) -> list[tuple[object, ...]]:
    return [(f.requirement, f.message, [(s.kind, s.args) for s in f.steps], f.failed_step,
             f.seen, f.path.name if f.path else None, f.replay_red, f.reference_green)
            for f in findings]


def _fixtures(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.yaml"))}


def test_two_workers_find_and_save_what_one_process_does(tmp_path: Path) -> None:
    serial = explore(SPEC, max_examples=EXAMPLES, seed=SEED, out=tmp_path / "serial",
                     database=None, step_count=STEPS, jobs=1)
    assert serial.findings and serial.reproducible and serial.campaigns == 3
    # the same mutant found by more than one campaign: the merge keeps one fixture
    assert max(f.seen for f in serial.findings) > 1
    parallel = explore(SPEC, max_examples=EXAMPLES, seed=SEED, out=tmp_path / "parallel",
                       database=None, step_count=STEPS, jobs=2)
    assert parallel.jobs == 2 and parallel.reproducible
    assert _summary(parallel.findings) == _summary(serial.findings)
    assert (parallel.examples, parallel.steps, parallel.campaigns,
            parallel.first_failure_steps, parallel.first_failure_examples) == (
        serial.examples, serial.steps, serial.campaigns, serial.first_failure_steps,
        serial.first_failure_examples)
    fixtures = _fixtures(tmp_path / "serial")
    assert fixtures and _fixtures(tmp_path / "parallel") == fixtures


def test_a_budget_of_one_campaign_runs_in_this_process(tmp_path: Path) -> None:
    report = explore("reference", max_examples=COUNT_CAMPAIGN, seed=SEED, out=tmp_path,
                     database=None, step_count=5, jobs=4)
    assert report.jobs == 1 and report.campaigns == 1 and not report.findings


def test_workers_through_the_process_adapter_leave_nothing(tmp_path: Path) -> None:
    """Two workers, each starting its own reference processes, on a budget of two
    campaigns: the run ends cleanly and nothing it started is left."""
    mark = new_mark()
    harness = Harness(["explore", "--impl", "reference-process", "--examples",
                       str(2 * COUNT_CAMPAIGN), "--steps", "4", "--jobs", "2", "--no-database",
                       "--out", str(tmp_path / "found")], tmp_path / "tmp", mark)
    status = harness.finish(within=600)
    assert status == 0, harness.output[-3000:]
    assert wait_marked(mark) == []
    assert temp_leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_worker_and_node(tmp_path: Path, signum: int) -> None:
    mark = new_mark()
    harness = Harness(["explore", "--impl", "reference-process", "--time", "120", "--jobs", "2",
                       "--no-database", "--out", str(tmp_path / "found")], tmp_path / "tmp", mark)
    assert harness.wait_for("worker process"), harness.output[-3000:]
    time.sleep(4.0)  # the workers have started, probed, and run nodes
    assert len(wait_marked(mark, within=0)) >= 3  # the run, its workers, their nodes
    harness.proc.send_signal(signum)
    status = harness.finish(within=60)
    assert status == 128 + signum, harness.output[-3000:]
    assert "Traceback" not in harness.output, harness.output[-3000:]
    assert wait_marked(mark) == []
    assert temp_leftovers(tmp_path / "tmp") == []


def test_a_time_budget_ends_generation_at_the_deadline(tmp_path: Path) -> None:
    """A first campaign sized far beyond the budget (2,000 sequences) still stops
    generating at the deadline; before issue 15 it ran to its size. The bound below is
    loose on purpose (a loaded machine): the point is 1 s against tens of seconds."""
    report = explore("reference", time_budget=1.0, batch=2000, seed=SEED, out=tmp_path,
                     database=None, jobs=1)
    assert report.examples < 2000
    assert report.generation_s < 1.0 + 5.0, report.timing()
    assert report.time_budget_s == 1.0 and "(budget 1s)" in report.timing()


def test_the_command_reports_the_workers_and_where_the_time_went(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["explore", "--impl", SPEC, "--examples", str(2 * COUNT_CAMPAIGN),
                     "--steps", str(STEPS), "--jobs", "2", "--no-database",
                     "--out", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "up to 2 worker process(es)" in out.err
    assert "; 2 workers" in out.out and "time: last sequence generated after" in out.out
    assert "shrinking" in out.out and "(summed over workers)" in out.out
