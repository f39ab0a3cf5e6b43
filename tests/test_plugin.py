"""The pytest front end's own edges (its parity with the CLI: tests/test_plugin_parity.py):
a harness error is never excused by an expectation, options at fault are named before any
case runs, and a case that does not apply is reported at its YAML line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ROOT / "suites" / "entries.yaml"
COLD_START = ROOT / "suites" / "cold_start.yaml"


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rs", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def _first_case(path: Path) -> str:
    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["cases"][0]["id"])


def test_an_expected_case_that_errors_fails_the_session(tmp_path: Path) -> None:
    """An expectation excuses a failure of the node, never a case the harness could not run
    (the CLI's rule: session.apply_expectations leaves an error as it is)."""
    # a harness that breaks on one case, as a bug in it would
    case = _first_case(ENTRIES)
    (tmp_path / "broken_harness.py").write_text(
        "import conformance.session as session\n"
        "real = session.run_case\n"
        "def broken(case, factory, seed):\n"
        f"    if case.id == {case!r}:\n"
        "        raise RuntimeError('harness bug')\n"
        "    return real(case, factory, seed)\n"
        "session.run_case = broken\n")
    known = tmp_path / "known.yaml"
    known.write_text(yaml.safe_dump({"expected_failures": {case: "known"}}))
    proc = _pytest(tmp_path, str(ENTRIES), "-p", "broken_harness", "--expectations", str(known),
                   "--conformance-out", "out")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"case {case} (" in proc.stdout and "could not run" in proc.stdout
    assert "harness error: RuntimeError: harness bug" in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert {c["id"]: c["status"] for c in report["cases"]}[case] == "error"

    # the same expectation, the harness whole: an expected failure that passes is strict
    (tmp_path / "broken_harness.py").unlink()
    proc = _pytest(tmp_path, str(ENTRIES), "--expectations", str(known))
    assert proc.returncode == 1 and "XPASS(strict)" in proc.stdout, proc.stdout[-3000:]


def test_options_at_fault_are_named_before_any_case_runs(tmp_path: Path) -> None:
    bad_profile = _pytest(tmp_path, str(ENTRIES), "--profile", "gold")
    assert bad_profile.returncode == 4
    assert "--profile: no profile named 'gold'" in bad_profile.stderr
    assert "baseline" in bad_profile.stderr  # the known ones are listed

    broken = tmp_path / "known.yaml"
    broken.write_text("expected_failures: [oops\n")
    bad_file = _pytest(tmp_path, str(ENTRIES), "--expectations", str(broken))
    assert bad_file.returncode == 4
    assert f"--expectations: {broken}: cannot read expectations" in bad_file.stderr
    assert "line 2" in bad_file.stderr
    assert not (tmp_path / "reports").exists()


def test_cases_that_do_not_apply_are_summed_up_per_suite_file_and_reason(
        tmp_path: Path) -> None:
    """Not at the plugin's own line (where pytest would put them), nor one line per case."""
    minimal = f"{sys.executable} {ROOT / 'examples' / 'minimal_node.py'} --data-dir {{data_dir}}"
    # cold_start.yaml: many of its cases need what the minimal node lacks, for few reasons
    proc = _pytest(tmp_path, str(COLD_START), "--impl", minimal)
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert proc.returncode == 0 and skipped, proc.stdout[-3000:]
    report = json.loads((tmp_path / "reports" / "run" / "report.json").read_text("utf-8"))
    reasons = {c["reason"] for c in report["cases"] if c["status"] == "not_applicable"}
    assert len(skipped) == len(reasons) < report["summary"]["cases"]["not_applicable"]
    for line in skipped:
        assert "suites/cold_start.yaml: not applicable: needs " in line, line
        assert "plugin.py" not in line
