"""One verdict, whichever front end (issue 14.2): `conformance certify` (or `run`, for a part
of the suites) and `pytest suites` on the same node give the same exit status and the same
report.json, timing and the command line aside.

Each front end runs as a user starts it, in a subprocess, from a directory of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"
MINIMAL = f"{sys.executable} {ROOT / 'examples' / 'minimal_node.py'} --data-dir {{data_dir}}"
MUTANT = "mutant:pin-error-ignored"  # in process; fails the SP-003 cases (snapshot_persist)
# what differs between two runs of the same cases: when, how long, and the command typed
VOLATILE_INFO = ("started", "duration_s", "command")


def _cli(cwd: Path, command: str, *args: str) -> tuple[int, str]:
    extra = ["--explore", "0"] if command == "certify" else []
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", command, *extra, *args,
                           "--out", "cli"], cwd=cwd, capture_output=True, text=True,
                          timeout=900, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _pytest(cwd: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "report.json").read_text(encoding="utf-8"))
    for key in VOLATILE_INFO:
        data["info"].pop(key)
    for case in data["cases"]:
        case.pop("duration_s")
    assert all((path / name).is_file() for name in ("report.md", "junit.xml", "report.html"))
    return data


def _both(tmp_path: Path, name: str, cli: list[str], pytest_args: list[str],
          pytest_default: str | None = None) -> tuple[int, int, dict[str, Any]]:
    """Run both front ends; return their exit statuses and the (common) report. With
    `pytest_default`, pytest writes where it does by default, which must be that directory."""
    cwd = tmp_path / name
    cwd.mkdir()
    cli_status, cli_out = _cli(cwd, *cli)
    out = ["--conformance-out", "pytest"] if pytest_default is None else []
    py_status, py_out = _pytest(cwd, *pytest_args, *out)
    cli_report, py_report = _report(cwd / "cli"), _report(cwd / (pytest_default or "pytest"))
    if pytest_default is not None:
        assert f"report: {cwd / pytest_default / 'report.md'}" in py_out, py_out[-2000:]
    assert py_report == cli_report, (f"{name}: the two reports differ\n--- cli\n{cli_out[-2000:]}"
                                     f"\n--- pytest\n{py_out[-2000:]}")
    return cli_status, py_status, cli_report


def _claimed(report: dict[str, Any]) -> bool:
    return bool(report["summary"]["claimed_profile"]["certified"])


def test_certified_both_exit_zero(tmp_path: Path) -> None:
    cli, py, report = _both(tmp_path, "certified",
                            ["certify", "--profile", "complete-restore-pin"],
                            [str(SUITES), "--profile", "complete-restore-pin"],
                            pytest_default="reports/latest")  # where certify writes
    assert _claimed(report) and report["info"]["selection"] is None
    assert (cli, py) == (0, 0)


def test_not_certified_fails_both_though_no_case_failed(tmp_path: Path) -> None:
    """The issue's example: the minimal node claims `complete` (it lacks the reader and the
    writer); every case that ran passed or did not apply, and pytest used to exit 0."""
    suite = str(SUITES / "entries.yaml")
    cli, py, report = _both(tmp_path, "not-certified",
                            ["run", suite, "--impl", MINIMAL, "--profile", "complete"],
                            [suite, "--impl", MINIMAL, "--profile", "complete"],
                            pytest_default="reports/run")  # a part: never over the certificate
    cases = report["summary"]["cases"]
    assert cases["failed"] == cases["error"] == 0 and cases["passed"] > 0
    assert not _claimed(report)
    assert (cli, py) == (1, 1)


@pytest.fixture(scope="module")
def mutant_failures(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The cases the mutant fails, learned from the CLI (and the same failing run compared)."""
    tmp = tmp_path_factory.mktemp("failing")
    cli, py, report = _both(tmp, "failing", ["certify", "--impl", MUTANT, "--profile", "complete"],
                            [str(SUITES), "--impl", MUTANT, "--profile", "complete"])
    assert (cli, py) == (1, 1)
    failed = [c["id"] for c in report["cases"] if c["status"] == "failed"]
    assert failed and all(c["failure"] for c in report["cases"] if c["id"] in failed)
    return failed


def _expectations(path: Path, cases: list[str]) -> str:
    path.write_text(yaml.safe_dump({"implementation": MUTANT,
                                    "expected_failures": {c: "known" for c in cases}}))
    return str(path)


def test_all_failures_expected_still_not_certified(tmp_path: Path,
                                                   mutant_failures: list[str]) -> None:
    """Every failure is a known one: no case fails the pytest session, yet a known failure
    certifies nothing, so the claimed profile fails both front ends."""
    known = _expectations(tmp_path / "known.yaml", mutant_failures)
    cli, py, report = _both(tmp_path, "expected-claimed",
                            ["certify", "--impl", MUTANT, "--profile", "complete",
                             "--expectations", known],
                            [str(SUITES), "--impl", MUTANT, "--profile", "complete",
                             "--expectations", known])
    assert report["summary"]["cases"]["xfailed"] == len(mutant_failures)
    assert report["summary"]["cases"]["failed"] == 0 and not _claimed(report)
    assert (cli, py) == (1, 1)


def test_all_failures_expected_without_a_claim_passes_both(tmp_path: Path,
                                                           mutant_failures: list[str]) -> None:
    known = _expectations(tmp_path / "known.yaml", mutant_failures)
    suite = str(SUITES / "snapshot_persist.yaml")
    cli, py, report = _both(tmp_path, "expected",
                            ["run", suite, "--impl", MUTANT, "--expectations", known],
                            [suite, "--impl", MUTANT, "--expectations", known])
    assert report["summary"]["cases"]["xfailed"] > 0
    assert (cli, py) == (0, 0)


def test_a_stale_expectation_fails_both(tmp_path: Path, mutant_failures: list[str]) -> None:
    """Strict: a case listed as a known failure that passes (xpassed) fails both."""
    passing = "sp-local-pins-snapshot-index"
    assert passing not in mutant_failures
    known = _expectations(tmp_path / "known.yaml", [*mutant_failures, passing])
    suite = str(SUITES / "snapshot_persist.yaml")
    cli, py, report = _both(tmp_path, "stale",
                            ["run", suite, "--impl", MUTANT, "--expectations", known],
                            [suite, "--impl", MUTANT, "--expectations", known])
    statuses = {c["id"]: c["status"] for c in report["cases"]}
    assert statuses[passing] == "xpassed"
    assert (cli, py) == (1, 1)
