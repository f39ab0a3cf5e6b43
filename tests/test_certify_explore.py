"""`conformance certify` includes a seeded exploration budget (issue 12).

The handwritten suites alone once certified a real library that exploration rejected in
seconds. A certificate therefore explores the implementation for a fixed number of
generated sequences with the run's seed, and every verified finding fails it like a
failing case, with its fixture in the report. Here the suites are cut down to one that
cannot see the mutant's bug (the entry semantics), so only the exploration can.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main

REPO = Path(__file__).resolve().parents[1]
ENTRIES = str(REPO / "suites" / "entries.yaml")
PERSIST_BUG = "mutant:pin-after-pointer-save"  # saves the pointer before it pins


def test_the_exploration_budget_rejects_what_the_suites_given_miss(tmp_path: Path) -> None:
    assert main(["certify", "--impl", PERSIST_BUG, "--suites", ENTRIES, "--explore", "0",
                 "--out", str(tmp_path / "suites-only")]) == 0  # the suite alone misses it
    out = tmp_path / "with-exploration"
    assert main(["certify", "--impl", PERSIST_BUG, "--suites", ENTRIES,
                 "--out", str(out)]) == 1
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    exploration = report["info"]["exploration"]
    assert exploration["sequences"] == 200 and exploration["seed"] == 0
    assert exploration["findings"] and not exploration["rejected"]
    for fixture in exploration["findings"]:
        assert Path(fixture).parent == out / "explore" and Path(fixture).is_file()
    failed = {r["id"]: r for r in report["requirements"] if r["status"] == "failed"}
    explored = {cid for r in failed.values() for cid in r["failures"]
                if cid.startswith("explore-")}
    assert explored, failed
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "- **Exploration**: " in md and "budget 200, seed 0" in md
    # the same seed and budget find the same failures again
    again = tmp_path / "again"
    main(["certify", "--impl", PERSIST_BUG, "--suites", ENTRIES, "--out", str(again)])
    report2 = json.loads((again / "report.json").read_text(encoding="utf-8"))
    assert violated(report2["info"]["exploration"]) == violated(exploration)


def violated(exploration: dict[str, list[str]]) -> list[str]:
    """The requirement IDs of the exploration's fixtures (named `<id>-<key>.yaml`)."""
    return sorted(Path(p).name[:6] for p in exploration["findings"])

def test_the_reference_is_certified_with_its_exploration(tmp_path: Path) -> None:
    assert main(["certify", "--out", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["info"]
    assert info["exploration"]["findings"] == [] and info["exploration"]["ran"] >= 200


def test_run_and_replay_never_overwrite_the_certification_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: `run` and `replay` write their own report directories by default, so a
    subset run or a replayed fixture leaves reports/latest, the certificate, alone."""
    monkeypatch.chdir(tmp_path)
    fixture = REPO / "fixtures" / "regressions" / "effective-snap-on-skip.yaml"
    assert main(["run", ENTRIES, "-k", "en-occ"]) == 0
    assert main(["replay", str(fixture)]) == 0
    assert (tmp_path / "reports" / "run" / "report.md").is_file()
    assert (tmp_path / "reports" / "replay" / "report.md").is_file()
    assert not (tmp_path / "reports" / "latest").exists()


def test_a_node_that_cannot_start_is_not_explored(tmp_path: Path) -> None:
    """No hello, no exploration: the certificate says why it did not run (the suites'
    cases already failed), instead of the exploration ending the run in a traceback."""
    from conformance.explore.budget import explore_for_certificate
    from conformance.impls import resolve

    spec = "python /nonexistent/node.py --data-dir {data_dir}"
    done, found = explore_for_certificate(spec, resolve(spec), sequences=5, seed=0,
                                          out=tmp_path)
    assert found == [] and done.ran == 0
    assert done.summary().startswith("not run (budget 5, seed 0): the node exited during hello")
