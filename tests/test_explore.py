"""Exploration (conformance/explore.py): Hypothesis finds, shrinks, saves and replays.

The short reference run here is the default-test slice of the no-false-positive check;
`tox -e explore-long` runs the same for at least 10 minutes (docs/exploration.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.cli import main as cli_main
from conformance.explore import (
    Finding,
    exhaustive,
    explore,
    fixture_key,
    flow,
    make_step,
    save_fixture,
    sequences,
)
from conformance.loader import load_suite

SHORT_RUN_S = float(os.environ.get("EXPLORE_SHORT_S", "30"))


def test_flow_style_reads_back_as_the_same_json() -> None:
    import yaml

    value = {"entry": {"kind": "raw", "ts": 1, "ops": [
        {"op": "put", "key": "a/1", "value": "1"}, {"op": "put", "key": "n", "value": ""},
        {"op": "put", "key": "b/1", "value": "yes"}, {"op": "put", "key": "x", "value": "null"},
        {"op": "put", "key": "y", "value": "9223372036854775807"}]},
        "expect": {"have": None, "pinned": True}, "index": 0, "to": [1, 2]}
    text = flow(value)
    assert "\n" not in text
    assert yaml.safe_load(text) == value


def test_sequences_are_valid_and_counted() -> None:
    seqs = list(sequences(2))
    assert ("data", "begin") in seqs and ("begin",) not in seqs  # no snapshot at index 0
    assert ("persist",) not in seqs  # a persist needs a begun snapshot
    assert len(seqs) == 15
    assert sum(1 for _ in sequences(4)) == 327


def test_reference_survives_a_short_exploration(tmp_path: Path) -> None:
    """No false positive: the reference passes every generated sequence (all adapters'
    judge is the same oracle; the long run is `tox -e explore-long`)."""
    report = explore("reference", time_budget=SHORT_RUN_S, seed=20, out=tmp_path,
                     database=None)
    assert not report.findings, "\n".join(
        f"{f.requirement}: {f.message} -> {f.path}" for f in report.findings)
    assert report.examples > 50 and report.steps > 1000
    assert not list(tmp_path.glob("*.yaml"))


def test_a_mutant_is_found_shrunk_saved_and_replayed(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = "mutant:pin-error-ignored"
    report = explore(spec, time_budget=60, seed=0, out=tmp_path, database=None,
                     stop_at_first=True)
    assert len(report.findings) == 1
    f = report.findings[0]
    assert f.requirement == "SP-003"
    assert f.path is not None and f.path.exists() and not f.duplicate
    assert len(f.steps) <= 5, [s.kind for s in f.steps]  # shrunk: open, arm, entry, persist
    assert f.replay_red and f.reference_green
    assert report.first_failure_s is not None and report.first_failure_steps

    # the fixture is a suite file with the generated steps, exactly as the loader reads them
    suite = load_suite(f.path)
    assert suite.fixture is not None
    assert suite.fixture["guards"] == ["SP-003"]
    assert suite.fixture["catches"] == ["pin-error-ignored"]
    assert suite.fixture["seed"] == 0
    assert "hypothesis_version" in suite.fixture and "reference_impl" in suite.fixture[
        "implementation"]
    (case,) = suite.cases
    assert case.requirements == ("SP-003",)
    assert [(s.kind, s.args) for s in case.steps] == [(s.kind, s.args) for s in f.steps]
    assert "failpoints" in case.capabilities and "writer" in case.capabilities

    # `conformance replay`: red on the mutant, naming the requirement; green on the reference
    out = tmp_path / "report"
    assert cli_main(["replay", str(f.path), "--impl", spec, "--out", str(out)]) == 1
    assert "violates SP-003" in capsys.readouterr().out
    assert cli_main(["replay", str(f.path), "--impl", "reference", "--out", str(out)]) == 0

    # deduplicated by (violated requirement, shrunk steps)
    again = Finding(f.requirement, f.message, f.steps, f.case)
    assert again.key() == f.key() == fixture_key("SP-003", f.case, f.steps)
    save_fixture(again, tmp_path, seed=1, identity="x", spec=spec)
    assert again.duplicate and again.path == f.path
    other = Finding("SP-001", f.message, f.steps, f.case)
    assert other.key() != f.key()
    assert len(list(tmp_path.glob("*.yaml"))) == 1


def test_one_fixture_per_requirement_and_the_machine_names_the_cause(tmp_path: Path) -> None:
    """The mutant removes the old snapshot before the new pointer is durable. Every way it
    shows (an open or a tamper that cannot find the snapshot, a lost entry) is one bug
    against CO-004: one fixture, not one per oracle check or per campaign."""
    spec = "mutant:compaction-before-pointer-durable"
    report = explore(spec, time_budget=15, seed=0, out=tmp_path, database=None)
    assert [f.requirement for f in report.findings] == ["CO-004"], [
        (f.requirement, f.message) for f in report.findings]
    (f,) = report.findings
    assert f.replay_red and f.reference_green
    assert [p.name for p in tmp_path.glob("*.yaml")] == [f.path.name if f.path else ""]


def test_exhaustive_depth_2_on_the_reference(tmp_path: Path) -> None:
    """Bounded exhaustive mode: every sequence of <= 2 operations x every crash point at
    each of its hits x every end fault x every recovery crash point x both modes."""
    report = exhaustive("reference", depth=2, out=tmp_path)
    assert report.sequences == 15
    assert report.states == 392
    assert not report.findings
    assert report.steps > 10 * report.states


def test_exhaustive_finds_a_persist_ordering_mutant(tmp_path: Path) -> None:
    report = exhaustive("mutant:pin-after-pointer-save", depth=3, out=tmp_path, first=True)
    assert [f.requirement for f in report.findings] == ["DM-004"]
    f = report.findings[0]
    assert f.replay_red and f.reference_green
    assert [s.kind for s in f.steps][:5] == ["open", "failpoint", "apply", "snapshot_begin",
                                             "snapshot_persist"]


def test_explore_through_the_local_process_adapter(tmp_path: Path) -> None:
    report = explore("reference-process", max_examples=4, seed=3, out=tmp_path, database=None,
                     step_count=15)
    assert report.examples >= 4 and report.steps > 10
    assert not report.findings


def test_cli_explore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["explore", "--impl", "mutant:torn-meta-as-value", "--time", "30",
                     "--first", "--no-database", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "FOUND" in text and "replay red, reference green" in text
    assert len(list(tmp_path.glob("st-002-*.yaml"))) == 1
    assert cli_main(["explore", "--impl", "mutant:no-such-thing"]) == 2


def test_generated_steps_match_the_loader(tmp_path: Path) -> None:
    """A step built by exploration carries its defaults, as the loader fills them."""
    step = make_step("failpoint", {"name": "pin", "action": "error", "skip": 0}, 0)
    path = tmp_path / "x.yaml"
    path.write_text("suite: x\ndescription: d\ncases:\n  - id: c\n    description: d\n"
                    "    requirements: [SP-003]\n    capabilities: [failpoints]\n    steps:\n"
                    "      - failpoint: {name: pin, action: error}\n")
    (case,) = load_suite(path).cases
    assert case.steps[0].args == step.args
