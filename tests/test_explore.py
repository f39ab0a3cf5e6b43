"""Exploration (conformance/explore/): Hypothesis finds, shrinks, saves and replays.

The short reference run here is the default-test slice of the no-false-positive check;
`tox -e explore-long` runs the same for at least 10 minutes (docs/exploration.md).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from conformance.adapters.base import Adapter, Hello
from conformance.cases import Case
from conformance.cli import main as cli_main
from conformance.explore import (
    Finding,
    exhaustive,
    explore,
    fixture_key,
    flow,
    keep_fixture,
    make_step,
    probe,
    save_fixture,
    sequences,
)
from conformance.impls import Implementation, resolve
from conformance.loader import load_suite

SHORT_RUN_S = float(os.environ.get("EXPLORE_SHORT_S", "30"))
# measured on the reference (docs/exploration.md, bounded exhaustive mode)
EXHAUSTIVE_D2_STATES, EXHAUSTIVE_D2_CRASH_POINT_STATES = 1696, 1304
# a seed whose exploration (crash points only) reaches the bug within these sequences
CRASH_POINT_SEED, CRASH_POINT_EXAMPLES = 1, 2000


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
    assert "SP-003: snapshot_persist" in capsys.readouterr().out  # named by its root cause
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
    # (a finding that fails on the reference too is not this mutant's: see
    # test_reference_recovery_makes_what_it_recovered_durable)
    kept = [f for f in report.findings if not f.rejected]
    assert [f.requirement for f in kept] == ["CO-004"], [
        (f.requirement, f.message) for f in report.findings]
    (f,) = kept
    assert f.replay_red and f.reference_green
    assert [p.name for p in tmp_path.glob("*.yaml")] == [f.path.name if f.path else ""]


def test_exhaustive_depth_2_on_the_reference(tmp_path: Path) -> None:
    """Bounded exhaustive mode: every sequence of <= 2 operations x every crash point at
    each of its hits (the failpoints, and each write / fsync / fsyncdir / rename at its
    1st..4th occurrence in the last operation) x every end fault x every crash point of
    the recovery x both modes. No violation on the reference."""
    report = exhaustive("reference", depth=2, out=tmp_path)
    assert report.sequences == 15
    assert report.crash_nth == 4
    assert report.states == EXHAUSTIVE_D2_STATES
    assert report.crash_point_states == EXHAUSTIVE_D2_CRASH_POINT_STATES
    assert not report.findings, [(f.requirement, f.message) for f in report.findings]
    assert report.steps > 10 * report.states
    assert not list(tmp_path.rglob("*.yaml"))
    # without crash points, the failpoint state space is what it was
    base = exhaustive("reference", depth=2, out=tmp_path, crash_nth=0)
    assert (base.states, base.crash_point_states, base.steps) == (392, 0, 25436)


def test_exhaustive_finds_a_persist_ordering_mutant(tmp_path: Path) -> None:
    report = exhaustive("mutant:pin-after-pointer-save", depth=3, out=tmp_path, first=True,
                        crash_nth=0)
    assert [f.requirement for f in report.findings] == ["DM-004"]
    f = report.findings[0]
    assert f.replay_red and f.reference_green
    assert [s.kind for s in f.steps][:5] == ["open", "failpoint", "apply", "snapshot_begin",
                                             "snapshot_persist"]


def test_exhaustive_with_crash_points_only(tmp_path: Path) -> None:
    """A node without failpoints: the exhaustive mode still enumerates crash orderings,
    at the node's own file-system operations. The mutant writes the meta key and the data
    as two batches; a crash point between them makes the replay apply an add twice."""
    report = exhaustive("mutant:two-batches-index-first", depth=3, out=tmp_path, first=True,
                        hide=("failpoints",))
    assert len(report.findings) == 1 and report.crash_point_states > 0
    f = report.findings[0]
    assert f.requirement == "XR-002", f.message  # what the oracle names after a crash
    kinds = [s.kind for s in f.steps]
    assert "crash_point" in kinds and "failpoint" not in kinds, kinds
    assert f.replay_red and f.reference_green and not f.rejected


def _without_failpoints(spec: str) -> Implementation:
    """`spec` (in process) as a node whose hello lacks the `failpoints` capability."""
    impl = resolve(spec)

    def factory(case: Case) -> Adapter:
        adapter = impl.factory(case)
        start = adapter.start

        def start_without_failpoints(durability: str) -> Hello:
            hello = start(durability)
            return dataclasses.replace(hello, capabilities=hello.capabilities - {"failpoints"})

        adapter.start = start_without_failpoints  # type: ignore[method-assign]
        return adapter
    return Implementation(f"{impl.name}, without failpoints", factory, True)


def test_crash_points_alone_find_and_shrink_a_crash_ordering_bug(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A node that advertises no failpoints still gets crash-ordering exploration: the
    `crash_point` rule stops it at its own writes, fsyncs, directory fsyncs and renames.
    The mutant saves the pointer before it pins the meta key; a crash in between leaves
    pointer > meta. Found, shrunk, saved with its crash_point step, red on the mutant and
    green on the reference."""
    spec = "mutant:pin-after-pointer-save"
    target = probe(spec, impl=_without_failpoints(spec))
    assert "failpoints" not in target.capabilities and "crash_points" in target.capabilities
    report = explore(spec, max_examples=CRASH_POINT_EXAMPLES, seed=CRASH_POINT_SEED,
                     out=tmp_path, database=None, stop_at_first=True, target=target)
    assert len(report.findings) == 1, [(f.requirement, f.message) for f in report.findings]
    f = report.findings[0]
    assert f.requirement == "CO-001", f.message
    kinds = [s.kind for s in f.steps]
    assert "crash_point" in kinds and "failpoint" not in kinds, kinds
    # shrunk (the minimum is 7: open, a data entry, a lease, arm, persist, restart, open)
    assert len(f.steps) <= 10, kinds
    # the crash point covers the one step after it; when that step survives, a crash ends
    # the lifetime, so the fixture replays the same on a node that performs fewer writes
    i = kinds.index("crash_point")
    assert kinds[i + 1] in ("snapshot", "snapshot_persist") and kinds[i + 2] in ("restart",
                                                                                 "crash")
    assert f.path is not None and f.replay_red and f.reference_green and not f.rejected

    (case,) = load_suite(f.path).cases
    assert "crash_points" in case.capabilities and "failpoints" not in case.capabilities
    out = tmp_path / "report"
    assert cli_main(["replay", str(f.path), "--impl", spec, "--out", str(out)]) == 1
    assert "CO-001: " in capsys.readouterr().out  # named by its root cause
    assert cli_main(["replay", str(f.path), "--impl", "reference", "--out", str(out)]) == 0


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


REFERENCE_RECOVERY_BUG = """\
suite: store-dir-unsynced-after-recovery
description: found by exploration with crash points (conformance explore --hide failpoints)
cases:
  - id: store-dir-unsynced-after-recovery
    description: >-
      install_snapshot is stopped at its 3rd directory fsync: the restored store was
      renamed into place, the rename is not durable yet. The restarted node trusts it,
      acknowledges a pin at 3 as durable, and a power loss takes the rename back.
    requirements: [DM-001]
    capabilities: [crash_points, power_loss, install_snapshot]
    steps:
      - open: {}
      - apply: {entry: {kind: raw, ts: 1, ops: [{op: add, key: n, delta: 1}]}}
      - crash_point: {"on": fsyncdir, nth: 3}
      - install_snapshot: {entries: [{kind: raw, ts: 2, ops: [{op: add, key: n, delta: 1}]}]}
      - restart: {}
      - open: {}
      - apply: {entry: {kind: hlc_lease, ceiling: 100}}
      - snapshot: {site: local}
      - crash: {mode: power, loss: drop_all}
      - restart: {}
      - open: {}
      - check: [state_matches_model]
"""


def test_reference_recovery_makes_what_it_recovered_durable(tmp_path: Path) -> None:
    from conformance.runner import run_case

    path = tmp_path / "store-dir-unsynced-after-recovery.yaml"
    path.write_text(REFERENCE_RECOVERY_BUG)
    (case,) = load_suite(path).cases
    result = run_case(case, resolve("reference").factory, 0)
    assert result.status == "passed", result.failure and result.failure.message


def _finding(steps: list[tuple[str, dict[str, object]]], requirement: str,
             failed_step: int | None) -> Finding:
    made = [make_step(kind, args, i) for i, (kind, args) in enumerate(steps)]
    case = Case(id="explore", description="d", requirements=(requirement,),
                capabilities=("reader",), durability="synced", steps=tuple(made),
                location=made[0].location, suite="explore")
    return Finding(requirement, "m", made, case, failed_step=failed_step)


# entry 10 is a type_error (it writes nothing) and entry 11 an ok: a correct node reads 11
TYPE_ERROR_THEN_OK = [
    ("open", {}),
    ("apply", {"generate": {"kind": "add", "key": "n", "count": 8}}),
    ("apply", {"entries": [{"kind": "raw", "ts": 100, "ops": [{"op": "put", "key": "s",
                                                               "value": "x"}]}]}),
    ("apply", {"entries": [{"kind": "raw", "ts": 101, "ops": [{"op": "add", "key": "s",
                                                               "delta": 1}]}]}),
    ("apply", {"entries": [{"kind": "raw", "ts": 102, "ops": [{"op": "add", "key": "n",
                                                               "delta": 1}]}]}),
]


def test_a_fixture_that_fails_on_the_reference_is_not_saved(tmp_path: Path) -> None:
    """Issue 11: an explored expectation the reference does not meet (last_applied_index 9
    after a type_error at 10 and an ok at 11) is the generator's mistake: it is moved to
    not-green/, with why, and no fixture is left where replays look."""
    finding = _finding(TYPE_ERROR_THEN_OK + [
        ("last_applied_index", {"expect": {"index": 9, "present": True}})], "ST-004", 5)
    target = probe("mutant:hlc-lease-bumps-meta")
    keep_fixture(finding, tmp_path, target, seed=0, spec=target.spec)
    assert finding.rejected and finding.reference_green is False
    assert finding.rejected_why == "it fails on the in-process reference too"
    assert not list(tmp_path.glob("*.yaml")) and list((tmp_path / "not-green").glob("*.yaml"))


def test_a_fixture_that_fails_at_another_step_than_found_is_not_saved(tmp_path: Path) -> None:
    """The fixture must fail where it was found: the same sequence filed at step 2 but
    failing at step 7 on the target is not the finding it claims to be."""
    steps = TYPE_ERROR_THEN_OK + [("apply", {"entry": {"kind": "hlc_lease", "ceiling": 9}}),
                                  ("last_applied_index", {"expect": {"index": 11}})]
    target = probe("mutant:hlc-lease-bumps-meta")  # its lease records index 12
    good = _finding(steps, "ST-004", 6)
    keep_fixture(good, tmp_path / "good", target, seed=0, spec=target.spec)
    assert good.replay_red and good.reference_green and not good.rejected, good.rejected_why
    moved = _finding(steps, "ST-004", 1)
    keep_fixture(moved, tmp_path / "moved", target, seed=0, spec=target.spec)
    assert moved.rejected and moved.replay_red is False
    assert moved.rejected_why == ("its replay does not fail the same way on the implementation:"
                                  " it fails at step 7, found at step 2")


def test_a_nondeterministic_node_is_reported_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis gives up with Flaky when the same sequence goes differently on a rerun
    (a real library's background flusher did that under power loss): the run reports it
    and goes on, instead of ending in a traceback."""
    import io

    from hypothesis.errors import FlakyStrategyDefinition

    from conformance.explore import campaign

    calls = []

    def flaky(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise FlakyStrategyDefinition("Inconsistent data generation! Data generation "
                                      "behaved differently between different runs.")

    monkeypatch.setattr(campaign, "run_state_machine_as_test", flaky)
    log = io.StringIO()
    report = explore("reference", max_examples=5, out=tmp_path, database=None, log=log)
    assert report.findings == [] and len(report.nondeterministic) == len(calls) >= 1
    assert "Inconsistent data generation" in report.nondeterministic[0]
    assert "NOT DETERMINISTIC" in log.getvalue()


def test_the_last_shrinking_pass_drops_every_step_the_failure_does_not_need() -> None:
    """A read in the middle and an unrelated entry are not needed for the mutant's lease to
    record its index; the pass drops them, keeps the failing step where it fails, and keeps
    every step whose removal would turn the expectation false on the reference too."""
    from conformance.explore.minimize import minimize

    steps = [("open", {}),
             ("apply", {"entry": {"kind": "raw", "ts": 1, "ops": [{"op": "put", "key": "a",
                                                                    "value": "1"}]}}),
             ("get", {"key": "a"}),
             ("apply", {"entry": {"kind": "hlc_lease", "ceiling": 9}}),
             ("last_applied_index", {"expect": {"index": 1, "present": True}})]
    finding = _finding(steps, "ST-004", 4)
    target = probe("mutant:hlc-lease-bumps-meta")
    assert minimize(finding, target) == 1
    assert [s.kind for s in finding.steps] == ["open", "apply", "apply", "last_applied_index"]
    assert finding.failed_step == 3
