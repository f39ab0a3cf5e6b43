"""Deterministic exploration (issue 13, item 5): the same seed, the same findings and fixtures.

With an example budget and no example database, `explore` must find the same failures and
write byte-identical fixtures however fast the machine runs: Hypothesis' engine stops
looking for more failures 10 s after the first and stops shrinking after 5 minutes, on
its clock, so on a slower machine it used to stop earlier and save another (longer)
fixture. The slow machine is simulated where it matters, in the clock the engine reads
(every read 1,000 s later than the last); the runs write into two directories, as two
runs of `conformance explore --out ...` would. A time budget is not reproducible, and
says so.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from hypothesis.internal.conjecture import engine

from conformance.cases import Case, Location
from conformance.cli import main as cli_main
from conformance.explore import explore, make_step
from conformance.explore.findings import Finding
from conformance.explore.fixtures import fixture_text

# A mutant that one seed finds within a small budget (and shrinks: 30 sequences, ~300
# with shrinking, a few seconds in process).
SPEC, SEED, EXAMPLES, STEPS = "mutant:pin-error-ignored", 0, 30, 15


def _summary(findings: list[Finding]) -> list[tuple[object, ...]]:
    return [(f.requirement, f.message, [(s.kind, s.args) for s in f.steps], f.failed_step,
             f.minimized, f.path.name if f.path else None, f.replay_red, f.reference_green)
            for f in findings]


def _fixtures(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.yaml"))}


def test_the_same_seed_gives_the_same_findings_and_fixtures_on_a_slow_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = explore(SPEC, max_examples=EXAMPLES, seed=SEED, out=tmp_path / "a", database=None,
                    step_count=STEPS)
    assert first.findings and first.reproducible

    now = [0.0]

    def slow_clock() -> float:  # every read 1,000 s after the last one
        now[0] += 1000.0
        return now[0]

    monkeypatch.setattr(engine, "time", types.SimpleNamespace(monotonic=slow_clock,
                                                              perf_counter=slow_clock))
    second = explore(SPEC, max_examples=EXAMPLES, seed=SEED, out=tmp_path / "b", database=None,
                     step_count=STEPS)
    assert _summary(second.findings) == _summary(first.findings)
    assert (second.examples, second.steps, second.campaigns) == (
        first.examples, first.steps, first.campaigns)
    fixtures = _fixtures(tmp_path / "a")
    assert fixtures and _fixtures(tmp_path / "b") == fixtures


def test_a_fixture_does_not_depend_on_where_it_is_written_or_on_the_node_process(
        tmp_path: Path) -> None:
    case = Case("explore", "generated", ("XR-001",), (), "synced", (), Location("<explore>", 1),
                "explore")
    finding = Finding("XR-001", f"the node died (pid 4242) with {tmp_path}/node-data/db locked",
                      [make_step("open", {}, 0), make_step("crash", {"mode": "process"}, 1)],
                      case)
    texts = [fixture_text(finding, "x", seed=SEED, identity="node 1", spec=SPEC,
                          out_dir=tmp_path / d) for d in ("a", "b")]
    assert texts[0] == texts[1]
    assert str(tmp_path) not in texts[0] and "4242" not in texts[0]
    assert "the node died (pid N) with <tmp> locked" in texts[0]
    assert "conformance replay x.yaml --impl 'mutant:pin-error-ignored'" in texts[0]


def test_a_time_budget_says_it_is_not_reproducible(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["explore", "--impl", "reference", "--time", "1", "--no-database",
                     "--out", str(tmp_path)]) == 0
    assert "(not reproducible: a time budget: how far a run gets depends on the machine's " \
           "speed; --examples N --no-database gives the same findings and fixtures for the " \
           "same seed)" in capsys.readouterr().out
    assert cli_main(["explore", "--impl", "reference", "--examples", "2", "--no-database",
                     "--out", str(tmp_path)]) == 0
    assert "not reproducible" not in capsys.readouterr().out
    report = explore("reference", max_examples=2, seed=SEED, out=None,
                     database=tmp_path / "db")
    assert not report.reproducible  # the example database replays earlier failures first
