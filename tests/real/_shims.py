"""The real-library shims of examples/real/ and how tests/real certifies them.

Each shim is certified by ONE `conformance certify` run over every suite, through the
local-process adapter, with its expectations file (known failures as strict xfails), in a
subprocess started as early as possible so that the two shims' runs (and the Rust build)
overlap. `--explore 0`: the certificate's seeded exploration is left out, so the outcome is
the suites' alone and every case id is stable enough for an expectations file.

A missing prerequisite (cargo, pysyncobj, FUSE) skips the tests that need it, with the
reason; under CI=true it fails them instead (as tests/_crashfs.py and tests/container do).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "examples" / "real"
SLED_DIR = REAL / "openraft_sled"
PSO_DIR = REAL / "pysyncobj"
REPORTS = ROOT / "reports" / "real"
SEED = 0
IN_CI = os.environ.get("CI", "").lower() == "true"
# a cold build is about 1-2 min on 2 cores, plus the crates' download on an empty cargo cache
BUILD_TIMEOUT = 1800.0
CERTIFY_TIMEOUT = 1800.0

JOURNAL = ROOT / "examples" / "journal_node" / "node.py"
JOURNAL_ALL = ("reader,writer,header_applier,unsynced_mode,failpoints,tamper_hooks,"
               "install_snapshot,pin_after_restore")


def missing(what: str) -> NoReturn:
    """A prerequisite is missing: skip, or fail under CI=true (CI must not lose coverage)."""
    if IN_CI:
        pytest.fail(f"CI=true, and the real-library tests cannot run: {what}", pytrace=False)
    pytest.skip(what)


def crashfs_problem() -> str | None:
    from conformance.faults.crashfs import available

    problem = available()
    if problem is None:
        return None
    return ("the crash-simulating filesystem (FUSE) is not available, so the power-loss cases "
            f"and findings cannot run: {problem}")


def pysyncobj_problem() -> str | None:
    if importlib.util.find_spec("pysyncobj") is None:
        return (f"pysyncobj is not installed in {sys.executable} (pip install -r "
                f"{(PSO_DIR / 'requirements.txt').relative_to(ROOT)}; tox -e real does it)")
    return None


def cargo_problem() -> str | None:
    if shutil.which("cargo") is None:
        return ("cargo is not on PATH: the openraft_sled shim (Rust) cannot be built "
                "(install a Rust toolchain, e.g. with rustup)")
    return None


def build_sled() -> Path:
    """`cargo build` of the openraft_sled shim (into CARGO_TARGET_DIR when set: tox -e real
    sets it under its env dir, so a rebuild is cached); its binary."""
    manifest = SLED_DIR / "Cargo.toml"
    t0 = time.monotonic()
    build = subprocess.run(["cargo", "build", "--locked", "--manifest-path", str(manifest)],
                           cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if build.returncode != 0:
        pytest.fail(f"cargo build of {manifest.relative_to(ROOT)} failed "
                    f"(exit {build.returncode}):\n{build.stderr[-4000:]}", pytrace=False)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps",
                           "--manifest-path", str(manifest)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    binary = Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "openraft-sled-node"
    if not binary.is_file():
        pytest.fail(f"cargo build succeeded but {binary} is not there", pytrace=False)
    print(f"built {binary} in {time.monotonic() - t0:.1f}s")
    return binary


def sled_command(binary: Path) -> str:
    return f"{shlex.quote(str(binary))} --data-dir {{data_dir}}"


def pso_command() -> str:
    return (f"{shlex.quote(sys.executable)} {shlex.quote(str(PSO_DIR / 'node.py'))} "
            "--data-dir {data_dir}")


def journal_commands() -> dict[str, str]:
    """The second correct node (examples/journal_node): as the brief's default command, and
    with every capability, so that a fixture needing one runs on it instead of not applying."""
    base = f"{shlex.quote(sys.executable)} {shlex.quote(str(JOURNAL))} --data-dir {{data_dir}}"
    return {"journal": base, "journal-all": f"{base} --capabilities {JOURNAL_ALL}"}


def expectations(shim_dir: Path) -> dict[str, str]:
    from conformance.session import load_expectations

    return load_expectations(shim_dir / "expectations.yaml")


def finding_files(shim_dir: Path) -> list[Path]:
    return sorted((shim_dir / "findings").glob("*.yaml"))


@dataclass
class Certification:
    """One `conformance certify` of a shim, running in a subprocess."""

    name: str
    command: str
    expectations: Path
    out: Path
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0
    duration: float = 0.0
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "import sys; from conformance.cli import main; "
                "sys.exit(main())", "certify", "--impl", self.command,
                "--expectations", str(self.expectations), "--seed", str(SEED),
                "--explore", "0", "--out", str(self.out)]

    def start(self) -> Certification:
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_default_sigint)  # stop() sends SIGINT
        return self

    def result(self) -> Certification:
        """Wait for the run (once) and read its report.json."""
        if self.returncode is None:
            assert self.proc is not None, f"{self.name}: certification not started"
            try:
                self.stdout, self.stderr = self.proc.communicate(timeout=CERTIFY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.stdout, self.stderr = self.proc.communicate()
                pytest.fail(f"{self.name}: certify did not finish in {CERTIFY_TIMEOUT:.0f}s",
                            pytrace=False)
            self.returncode = self.proc.returncode
            self.duration = time.monotonic() - self.started
            print(f"{self.name}: certify exit {self.returncode} in {self.duration:.1f}s; "
                  f"report {self.out / 'report.md'}")
            path = self.out / "report.json"
            if path.is_file():
                self.report = json.loads(path.read_text())
        if not self.report:
            pytest.fail(f"{self.name}: certify (exit {self.returncode}) wrote no report:\n"
                        f"{self.stderr[-4000:]}", pytrace=False)
        return self

    def stop(self) -> None:
        """End a run still going (a session stopped early, -x): SIGINT first, so the harness
        unmounts its crash-simulating filesystems and stops its nodes; SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    # -- reading the report ---------------------------------------------------------------

    def cases(self, *statuses: str) -> list[dict[str, Any]]:
        return [c for c in self.report["cases"] if not statuses or c["status"] in statuses]

    def verdicts(self) -> dict[str, dict[str, Any]]:
        return {v["name"]: v for v in self.report["profiles"]}


def _default_sigint() -> None:
    """preexec_fn: SIGINT at its default, as a terminal delivers it. Started from a background
    job, the test command inherits SIGINT ignored, and the harness would honour that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def show(cases: list[dict[str, Any]]) -> str:
    out = []
    for c in cases:
        failure = c.get("failure") or {}
        text = failure.get("rendered") or failure.get("message") or c.get("reason") or ""
        out.append(f"{c['status'].upper()} {c['id']} ({c['location']}):\n{text}")
    return "\n\n".join(out)


def fixture_guards(path: Path) -> tuple[str, list[str]]:
    """A finding fixture's one case id and the requirements its failure must name: the
    `fixture: guards` (the first), else the case's own requirements."""
    data = yaml.safe_load(path.read_text())
    (case,) = data["cases"]
    guards = (data.get("fixture") or {}).get("guards") or []
    return case["id"], [guards[0]] if guards else list(case["requirements"])


# -- the assertions both shims share ---------------------------------------------------------

def assert_only_expected_failures(run: Certification) -> None:
    """No case failed that the expectations file does not list (and no harness error)."""
    unexpected = run.cases("failed", "error")
    assert not unexpected, (
        f"{run.name}: {len(unexpected)} unexpected failure(s) (a new library bug, a shim bug, or "
        f"a new suite case: fix it or add it to {run.expectations.relative_to(ROOT)} with a "
        f"reason that names the README finding):\n\n{show(unexpected)}")
    if not run.cases("xpassed"):  # (an unexpected pass also exits 1: its own test says so)
        assert run.returncode == 0, (f"{run.name}: certify exit {run.returncode}:\n"
                                     f"{run.stderr[-4000:]}")


def assert_every_expected_failure_failed(run: Certification, expected: dict[str, str],
                                         timing: frozenset[str] = frozenset()) -> None:
    """Strict: every listed case ran and failed; none passed (XPASS), none was renamed away
    or left not applicable. `timing`: listed cases whose outcome depends on the library's
    own background timing (a flusher thread), which may pass on a loaded machine."""
    status = {c["id"]: c["status"] for c in run.cases()}
    xpassed = [c for c in run.cases("xpassed") if c["id"] not in timing]
    assert not xpassed, (f"{run.name}: expected failures that PASSED (drop them from "
                         f"{run.expectations.relative_to(ROOT)}, and say why in the README):\n"
                         + "\n".join(f"  {c['id']}: {c['reason']}" for c in xpassed))
    stale = {case: status.get(case, "no such case") for case in expected
             if status.get(case) != "xfailed"
             and not (case in timing and status.get(case) == "xpassed")}
    assert not stale, (f"{run.name}: listed in {run.expectations.relative_to(ROOT)} but did not "
                       f"fail: {stale}")


def assert_verdicts(run: Certification, findings: frozenset[str],
                    missing_capabilities: dict[str, frozenset[str]]) -> None:
    """Every profile is NOT certified, and its reasons include the README's: each requirement
    the findings and limits fail (as failed, or as left without a case run to completion by a
    case a finding stopped first) in every profile it binds (the profile's MUST requirements,
    as the catalog has them), and the capabilities the shim cannot claim."""
    verdicts = run.verdicts()
    assert set(verdicts) == set(missing_capabilities), f"profiles: {sorted(verdicts)}"
    certified = [name for name, v in verdicts.items() if v["certified"]]
    assert not certified, f"{run.name}: certified for {certified}, the README says none"
    unbound = findings - {req for v in verdicts.values() for req in v["must"]}
    assert not unbound, f"{run.name}: {sorted(unbound)} bind no profile (catalog changed?)"
    problems = []
    for name, caps in missing_capabilities.items():
        reasons = verdicts[name]["reasons"]
        for req in sorted(findings & set(verdicts[name]["must"])):
            if not any(re.match(rf"requirement {req} (failed|had no case run to completion)", r)
                       for r in reasons):
                problems.append(f"{name}: no reason says requirement {req} failed")
        for cap in sorted(caps):
            if f"missing capability {cap}" not in reasons:
                problems.append(f"{name}: no reason says capability {cap} is missing")
    assert not problems, (f"{run.name}: verdicts differ from the README:\n  "
                          + "\n  ".join(problems) + "\n\nreasons:\n"
                          + "\n".join(f"  {n}: {v['reasons']}" for n, v in verdicts.items()))
    # every fault was there: a power-loss case not applicable would hide a finding
    assert not run.report["info"].get("unavailable_faults"), run.report["info"]


def replay(path: Path, command: str) -> tuple[str, list[str], str]:
    """Run a finding fixture's one case on `command`: (status, violated requirements, why)."""
    from conformance.impls import resolve
    from conformance.loader import load_suite
    from conformance.runner import run_case

    (case,) = load_suite(path).cases
    result = run_case(case, resolve(command, seed=SEED).factory, SEED)
    why = result.failure.render() if result.failure else (result.reason or "")
    return result.status, list(result.violations), why


def assert_red_on_library(path: Path, command: str) -> None:
    case_id, guards = fixture_guards(path)
    status, violations, why = replay(path, command)
    assert status == "failed", f"{path.name} ({case_id}) {status} on the library, not red: {why}"
    assert set(guards) & set(violations), (
        f"{path.name}: red, but names {violations or 'no requirement'}, not {guards}:\n{why}")


def assert_green_on_correct_nodes(path: Path) -> None:
    """Green (passed; not applicable only where a node lacks a capability) on the in-process
    reference and on the second correct node, and actually run by at least one journal node."""
    results = {"reference": replay(path, "reference")}
    results |= {name: replay(path, cmd) for name, cmd in journal_commands().items()}
    bad = {name: f"{st}: {why}" for name, (st, _, why) in results.items()
           if st not in ("passed", "not_applicable")}
    assert not bad, f"{path.name} fails on a correct node:\n" + "\n".join(
        f"{n}: {w}" for n, w in bad.items())
    assert results["reference"][0] == "passed", results["reference"]
    assert any(results[n][0] == "passed" for n in journal_commands()), results
