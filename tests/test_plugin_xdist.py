"""The pytest front end on N processes (`pytest -p xdist -n 2 suites ...`) gives the report
and the exit status of a serial pytest run and of the CLI on the same selection: the workers
run the cases and never write the report; the controller writes it from the whole result of
each case, which travels on the case's test report, in the order of a serial run.

Each run is a subprocess started as a user starts it (tests/test_plugin_parity.py's helpers:
the same commands, the same report.json with timing and the command line dropped).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_plugin_parity import MUTANT, SUITES, _cli, _pytest, _report

from conformance.cases import CaseResult, Failure
from conformance.impls import resolve
from conformance.loader import load_suite
from conformance.plugin import decode_result, encode_result
from conformance.session import not_run, run_all
from conformance.trace import TracePoint

XDIST = ("-p", "xdist", "-n", "2")
SNAPSHOT_PERSIST = str(SUITES / "snapshot_persist.yaml")
ENTRIES = str(SUITES / "entries.yaml")
# a node that exits before it says hello: every case fails at the start, for one reason
NEVER_STARTS = f"{sys.executable} -c 'raise SystemExit(3)' --data-dir {{data_dir}}"


def _three(tmp_path: Path, name: str, cli: list[str], pytest_args: list[str],
           xdist_default: str | None = None) -> tuple[tuple[int, int, int], dict[str, Any],
                                                      str]:
    """The CLI, pytest, and pytest on two workers, from one directory; their exit statuses,
    the (common) report, and pytest -n 2's output. With `xdist_default`, the run on workers
    writes where it does by default, which must be that directory."""
    cwd = tmp_path / name
    cwd.mkdir()
    cli_status, cli_out = _cli(cwd, *cli)
    serial_status, serial_out = _pytest(cwd, *pytest_args, "--conformance-out", "serial")
    out = ["--conformance-out", "xdist"] if xdist_default is None else []
    xdist_status, xdist_out = _pytest(cwd, *XDIST, *pytest_args, *out)
    assert "bringing up nodes" in xdist_out, xdist_out[-2000:]  # it did run on workers
    where = xdist_default or "xdist"
    # one report, written once, by the controller, where a serial run would write it
    assert xdist_out.count("report: ") == 1 and f"report: {cwd / where / 'report.md'}" in xdist_out
    assert sorted(p.name for p in cwd.iterdir()) == sorted(["cli", "serial", where.split("/")[0]])
    reports = {run: _report(cwd / path) for run, path in
               (("cli", "cli"), ("serial", "serial"), ("xdist", where))}
    tails = f"--- pytest\n{serial_out[-2000:]}\n--- pytest -n 2\n{xdist_out[-2000:]}"
    assert reports["xdist"] == reports["serial"], f"{name}: the -n 2 report differs\n{tails}"
    assert reports["serial"] == reports["cli"], f"{name}: pytest and the CLI differ\n{tails}"
    return (cli_status, serial_status, xdist_status), reports["xdist"], xdist_out


def _claimed(report: dict[str, Any]) -> bool:
    return bool(report["summary"]["claimed_profile"]["certified"])


def test_certified_every_suite(tmp_path: Path) -> None:
    """The in-process reference on every suite: certified by all three, and the run on
    workers writes the certificate where certify does (every case of the suites ran)."""
    statuses, report, _ = _three(tmp_path, "certified",
                                 ["certify", "--profile", "complete-restore-pin"],
                                 [str(SUITES), "--profile", "complete-restore-pin"],
                                 xdist_default="reports/latest")
    assert _claimed(report) and report["info"]["selection"] is None
    assert statuses == (0, 0, 0)


def test_reference_process_part_of_the_suites(tmp_path: Path) -> None:
    """The reference as a local process: every case passes through all three (a part of
    the suites certifies nothing, the same in all three)."""
    statuses, report, _ = _three(tmp_path, "reference-process",
                                 ["run", ENTRIES, "--impl", "reference-process"],
                                 [ENTRIES, "--impl", "reference-process"])
    assert report["summary"]["cases"]["passed"] == report["summary"]["cases"]["total"] > 4
    assert report["info"]["adapter"] == "reference (local process)"
    assert statuses == (0, 0, 0)


def test_mutant_not_certified(tmp_path: Path) -> None:
    """A mutant as a local process fails cases: the same failures (step, request, reply,
    violations, the timeline's trace) reach the controller, and all three exit 1."""
    mutant = "mutant-process:pin-error-ignored"
    statuses, report, _ = _three(tmp_path, "mutant",
                                 ["run", SNAPSHOT_PERSIST, "--impl", mutant, "--profile",
                                  "complete"],
                                 [SNAPSHOT_PERSIST, "--impl", mutant, "--profile", "complete"])
    failed = [c for c in report["cases"] if c["status"] == "failed"]
    assert failed and all(c["failure"] for c in failed) and not _claimed(report)
    assert statuses == (1, 1, 1)


def test_expectations_and_a_stale_one(tmp_path: Path) -> None:
    """Expectations apply on the workers as in a serial run: known failures are xfailed, a
    listed case that passes is xpassed (strict), which fails all three."""
    failing = [r.case.id for r in run_all(load_suite(Path(SNAPSHOT_PERSIST)).cases,
                                          resolve(MUTANT), 0) if r.status == "failed"]
    passing = "sp-local-pins-snapshot-index"
    assert failing and passing not in failing
    known = tmp_path / "known.yaml"
    known.write_text(yaml.safe_dump({"expected_failures": {c: "known"
                                                           for c in [*failing, passing]}}))
    args = [SNAPSHOT_PERSIST, "--impl", MUTANT, "--expectations", str(known)]
    statuses, report, _ = _three(tmp_path, "stale", ["run", *args], args)
    statuses_by_id = {c["id"]: c["status"] for c in report["cases"]}
    assert statuses_by_id[passing] == "xpassed"
    assert [c for c in failing if statuses_by_id[c] != "xfailed"] == []
    assert statuses == (1, 1, 1)


def test_a_node_that_never_starts(tmp_path: Path) -> None:
    """The give-up rule: the first three cases (in case order) fail at the start for one
    reason, so the others are not run, also on a worker that was not given those three."""
    statuses, report, out = _three(tmp_path, "never-starts",
                                   ["run", SNAPSHOT_PERSIST, "--impl", NEVER_STARTS],
                                   [SNAPSHOT_PERSIST, "--impl", NEVER_STARTS])
    cases = report["summary"]["cases"]
    assert (cases["failed"], cases["not_applicable"]) == (3, cases["total"] - 3)
    assert "never_started" in report["info"]["implementation"]
    assert "3 failed, 17 skipped" in out  # the same pytest outcomes as a serial run
    assert statuses == (1, 1, 1)


def test_an_invalid_suite_file_stops_it_as_it_stops_a_serial_run(tmp_path: Path) -> None:
    """A serial pytest run stops at a file that does not collect (exit 2, no case run, no
    report), as the CLI stops at a usage error; pytest-xdist runs the other files' cases,
    but writes no report either and exits 2."""
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "entries.yaml").write_text(Path(ENTRIES).read_text(encoding="utf-8"))
    (tmp_path / "bad.yaml").write_text("suite: bad\ndescription: x\ncases:\n  - id: 3\n")
    files = ["good/entries.yaml", "bad.yaml"]
    cli, _ = _cli(tmp_path, "run", *files)
    serial, _ = _pytest(tmp_path, *files, "--conformance-out", "serial")
    xdist, xdist_out = _pytest(tmp_path, *XDIST, *files, "--conformance-out", "xdist")
    assert "no report: 1 error(s) during collection" in xdist_out, xdist_out[-2000:]
    assert (cli, serial, xdist) == (2, 2, 2)
    assert not (tmp_path / "serial").exists() and not (tmp_path / "xdist").exists()
    assert not (tmp_path / "cli" / "report.json").exists()


def _plugin(cwd: Path, name: str, body: str) -> None:
    """A plugin module for the pytest runs in `cwd` (-p NAME), wrapping session.run_case."""
    (cwd / f"{name}.py").write_text(
        "import os, time\n"
        "import conformance.session as session\n"
        "real = session.run_case\n"
        "def wrapped(case, factory, seed):\n"
        f"{body}"
        "    return real(case, factory, seed)\n"
        "session.run_case = wrapped\n")


def test_results_in_case_order_whatever_order_workers_finish_in(tmp_path: Path) -> None:
    """The first case of the session finishes last; the report is still a serial run's.
    The order shows in the report: the node is asked who it is, and what it can do, with the
    first case's settings (here every capability, where the second case's has no writer)."""
    first, second = "sp-failed-pin-node-stays-usable", "sp-no-writer-saves-at-both-sites"
    _plugin(tmp_path, "slow_first", f"    if case.id == {first!r}:\n        time.sleep(4)\n")
    args = [SNAPSHOT_PERSIST, "-k", f"{first} or {second}", "-p", "slow_first",
            "--conformance-out"]
    serial, serial_out = _pytest(tmp_path, *args, "serial")
    xdist, xdist_out = _pytest(tmp_path, *XDIST, "-vv", *args, "xdist")
    lines = [ln for ln in xdist_out.splitlines() if "PASSED" in ln]
    assert len(lines) == 2 and second in lines[0], xdist_out[-2000:]  # finished first
    report = _report(tmp_path / "xdist")
    assert report == _report(tmp_path / "serial"), xdist_out[-2000:]
    assert "writer" in report["info"]["capabilities"]
    assert (serial, xdist) == (0, 0), serial_out[-2000:]


def test_a_worker_that_dies_leaves_no_report(tmp_path: Path) -> None:
    """A worker killed in a case (xdist reports the case as failed): the controller does not
    write a report without that case's result, as a serial run killed in it writes none."""
    _plugin(tmp_path, "die_in_case",
            "    if case.id == 'en-integer-add' and os.environ.get('PYTEST_XDIST_WORKER'):\n"
            "        os._exit(3)\n")
    status, out = _pytest(tmp_path, *XDIST, ENTRIES, "-p", "die_in_case",
                          "--conformance-out", "out")
    assert status == 1, out[-2000:]
    assert "crashed while running" in out
    assert "no report: the result of 1 case(s) never came back" in out
    assert not (tmp_path / "out").exists()


def _roundtrip(result: CaseResult) -> CaseResult:
    # plain data: through JSON as much as through execnet (pytest-xdist's channel)
    return decode_result(json.loads(json.dumps(encode_result(result))))


def test_a_case_result_travels_whole() -> None:
    """Every field of a CaseResult comes back equal: failing cases (failure, step, request,
    reply, violations, trace), passing ones, cases that do not apply, and a hand-made one
    with every field set."""
    results = run_all(load_suite(Path(SNAPSHOT_PERSIST)).cases, resolve(MUTANT), 0)
    results += run_all(load_suite(SUITES / "cold_start.yaml").cases,
                       resolve("reference", profile_capabilities=frozenset({"reader"})), 0)
    assert {"failed", "passed", "not_applicable"} <= {r.status for r in results}
    assert any(r.trace and r.failure and r.failure.step for r in results)
    case = results[0].case
    results.append(CaseResult(
        case, "error", 1.5, 3, Failure("boom", case.steps[0], {"op": "open"}, {"ok": False},
                                       "anything", "SP-003", "log\nlines"),
        "why", ["SP-003"], {"power_loss": "no FUSE"}, {"apply": [2, 1]}, {"SP-001": "legal"},
        "exited during hello", [TracePoint(0, "open", 3, applied=1, meta_absent=True)]))
    results.append(not_run(case, "the node exited during hello"))
    for result in results:
        assert _roundtrip(result) == result


@pytest.fixture(autouse=True)
def _no_xdist_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests start pytest -n 2 themselves; when they run on a worker of the project's
    own pytest -n, the child must not take its variables for its own."""
    for name in [n for n in os.environ if n.startswith("PYTEST_XDIST")]:
        monkeypatch.delenv(name)
