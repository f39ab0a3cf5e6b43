"""The mutant catalog and its regression fixtures: the fast subset of `conformance mutants`.

Every mutant is registered with a catalog requirement; every regression fixture is
green on the reference and red on its mutant, and the failure names the mutant's
requirement; a few mutants also run through the local-process adapter.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conformance.cases import Case
from conformance.catalog import load_catalog
from conformance.cli import main as cli_main
from conformance.impls import resolve
from conformance.loader import load_suite
from conformance.mutation import FIXTURES_DIR
from conformance.runner import run_case
from reference_impl.disk import SimDisk
from reference_impl.mutants import MUTANTS
from reference_impl.node import Node, NodeConfig
from reference_impl.server import main as server_main

NAMES = sorted(MUTANTS)

# Issue 4, item 1: the bug classes the catalog must include (one mutant each, at least).
REQUIRED = (
    "pin-unsynced-in-unsynced-mode", "pin-after-pointer-save", "non-monotonic-pin",
    "pin-error-ignored", "compaction-before-pointer-durable", "delete-prefix-not-bundling-meta",
    "two-batches-index-first", "two-batches-data-first", "index-zero-bumps-meta",
    "hlc-lease-bumps-meta", "meta-key-visible-to-scans", "meta-key-removed-by-delete-prefix",
    "meta-key-in-snapshot-body", "torn-meta-as-error", "torn-meta-as-value",
    "reader-error-aborts-cold-start", "skip-when-have-is-snap-minus-one",
    "restore-when-have-equals-snap", "effective-snap-on-skip", "header-not-applied-on-skip",
    "skip-without-crc-verification", "outcome-reported-before-success", "restore-not-atomic",
    "conflict-hidden-by-already-landed", "hlc-ceiling-backwards-after-restart",
)
# Through the local-process adapter too (the fault each needs is a failpoint or tamper hook).
PROCESS_SUBSET = ("pin-after-pointer-save", "two-batches-index-first",
                  "reader-error-aborts-cold-start", "skip-without-crc-verification")


def fixture_case(name: str) -> Case:
    suite = load_suite(FIXTURES_DIR / f"{name}.yaml")
    assert len(suite.cases) == 1, f"{name}: a regression fixture holds one case"
    return suite.cases[0]


def test_catalog_holds_every_required_bug_class() -> None:
    assert len(MUTANTS) >= 22
    assert set(REQUIRED) <= set(MUTANTS), sorted(set(REQUIRED) - set(MUTANTS))


@pytest.mark.parametrize("name", NAMES)
def test_mutant_is_registered_with_a_catalog_requirement(name: str) -> None:
    m = MUTANTS[name]
    assert m.name == name and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", name)
    load_catalog().by_id(m.requirement)  # KeyError when the ID is not in the catalog
    assert m.bug_class.strip() and "\n" not in m.bug_class
    assert m.needs <= {"power_loss"}
    node = m.make_node(SimDisk(), NodeConfig())
    assert isinstance(node, Node)
    assert node.open().outcome == "fallback"  # a fresh node: no meta key yet


def test_every_fixture_belongs_to_a_mutant() -> None:
    stems = {p.stem for p in FIXTURES_DIR.glob("*.yaml")}
    assert stems == set(MUTANTS), (sorted(stems - set(MUTANTS)), sorted(set(MUTANTS) - stems))


@pytest.mark.parametrize("name", NAMES)
def test_fixture_records_its_mutant_and_requirement(name: str) -> None:
    suite = load_suite(FIXTURES_DIR / f"{name}.yaml")
    assert suite.name == name
    assert suite.fixture is not None
    assert suite.fixture["catches"] == [name]
    assert MUTANTS[name].requirement in suite.fixture["guards"]
    assert MUTANTS[name].requirement in suite.cases[0].requirements


@pytest.mark.parametrize("name", NAMES)
def test_fixture_green_on_reference_red_on_mutant(name: str) -> None:
    case = fixture_case(name)
    ref = run_case(case, resolve("reference").factory)
    assert ref.status == "passed", ref.failure.render() if ref.failure else ref.reason
    mut = run_case(case, resolve(f"mutant:{name}").factory)
    assert mut.status == "failed", f"the fixture does not kill {name}"
    assert mut.failure is not None
    assert mut.failure.requirement == MUTANTS[name].requirement, mut.failure.render()


@pytest.mark.parametrize("name", PROCESS_SUBSET)
def test_fixture_through_the_local_process_adapter(name: str) -> None:
    case = fixture_case(name)
    ref = run_case(case, resolve("reference-process", timeout=20).factory)
    assert ref.status == "passed", ref.failure.render() if ref.failure else ref.reason
    mut = run_case(case, resolve(f"mutant-process:{name}", timeout=20).factory)
    assert mut.status == "failed" and mut.failure is not None
    assert mut.failure.requirement == MUTANTS[name].requirement, mut.failure.render()
    assert f"--mutant {name}" in mut.failure.logs


def test_server_rejects_an_unknown_mutant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        server_main(["--data-dir", str(tmp_path), "--mutant", "no-such-mutant"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-mutant'" in err and "pin-after-pointer-save" in err


@pytest.mark.parametrize("spec", ["mutant:no-such-mutant", "mutant-process:no-such-mutant"])
def test_resolve_rejects_an_unknown_mutant(spec: str) -> None:
    with pytest.raises(ValueError, match="unknown mutant 'no-such-mutant'; known: .*non-monotonic"):
        resolve(spec)


def test_mutants_command_matrix_and_exit_status(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """One suite case that kills pin-error-ignored and nothing else: the other mutant is a
    gap, so the run fails, and the matrix says which case killed what."""
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    text = (FIXTURES_DIR / "pin-error-ignored.yaml").read_text()
    text = text.replace("suite: pin-error-ignored", "suite: mini").replace(
        "id: regression-pin-error-ignored", "id: mini-pin-error")
    (suite_dir / "mini.yaml").write_text(text)
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    for name in ("pin-error-ignored", "lease-assigns-ceiling"):
        shutil.copy(FIXTURES_DIR / f"{name}.yaml", fixtures)
    out = tmp_path / "out"
    code = cli_main(["mutants", "--suites", str(suite_dir), "--fixtures", str(fixtures),
                     "--only", "pin-error-ignored", "--only", "lease-assigns-ceiling",
                     "--jobs", "1", "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    assert code == 1
    data = json.loads((out / "mutants.json").read_text())
    rows = {m["name"]: m for m in data["mutants"]}
    assert rows["pin-error-ignored"]["verdict"] == "killed"
    assert rows["pin-error-ignored"]["fixture_red"] is True
    kills = {k["case"]: k for k in rows["pin-error-ignored"]["kills"]}
    assert kills["mini-pin-error"]["violated"] == "SP-003"
    assert kills["mini-pin-error"]["cites_requirement"] is True
    assert kills["regression-pin-error-ignored"]["source"] == "fixture"
    # killed by its fixture only: a gap in the suite, reported, and the run fails
    assert rows["lease-assigns-ceiling"]["verdict"] == "survived"
    assert rows["lease-assigns-ceiling"]["fixture_red"] is True
    assert data["summary"]["reference_failures"] == 0 and data["ok"] is False
    md = (out / "mutants.md").read_text()
    assert "## Gaps in the suites" in md and "`lease-assigns-ceiling` (EN-007)" in md
    assert "GAP lease-assigns-ceiling (EN-007)" in printed and "FAIL" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["mutants"]["killed"] == 1 and report["mutants"]["total"] == 2


def test_mutants_command_rejects_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["mutants", "--only", "no-such-mutant"]) == 2
    assert "unknown mutant(s) no-such-mutant; known:" in capsys.readouterr().err


def test_docs_list_every_mutant() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "mutants.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z0-9-]+)` \| ([A-Z]{2}-\d{3}) \|",
                                                         doc, re.M)}
    assert rows == {name: m.requirement for name, m in MUTANTS.items()}
