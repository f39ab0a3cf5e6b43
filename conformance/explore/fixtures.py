"""Fixtures: a shrunk failing sequence written as a suite file, deduplicated and replayed.

A finding becomes a YAML file in the suite format (docs/suites.md) that `conformance
replay FILE --impl ...` runs again, with a `fixture:` block for its provenance:

    suite: sp-003-846e85b5d1
    description: "Found by conformance explore on ...: it violates SP-003."
    fixture:
      catches: ["pin-error-ignored"]       # the mutant, or the implementation's identity
      guards: [SP-003]                     # the violated requirement
      seed: 0
      implementation: "reference_impl 0.1.0 (in-process mutant pin-error-ignored)"
      hypothesis_version: "6.170.17"
      notes: "4 steps; the failure: ...; reproduce with: conformance replay ..."
    cases:
      - id: explore-sp-003-846e85b5d1
        requirements: [SP-003]
        capabilities: [failpoints, writer]
        steps:
          - open: {}
          - failpoint: {name: pin, action: error, skip: 0}
          ...

- Every step is one line of YAML flow style (`flow`), which the loader reads back as the
  same JSON value: the arguments are exactly those the machine ran.
- The case declares the capabilities its steps need (`fixture_capabilities`: a failpoint
  step needs `failpoints`, a power loss `power_loss`, ...) plus those the generated
  expectations assume; a node without them replays it as *not applicable*.
- The file name is the requirement and `fixture_key` (a hash of the requirement, the
  steps and the configuration): `save_fixture` never writes the same finding twice.
- Nothing in it depends on the run beyond the seed: not the directory it is written to
  (the notes name the file only), not a node's pid or temporary paths in the failure
  message (`_stable`); so two runs with the same seed write the same bytes.
- `verify_fixture` replays a saved fixture on the implementation (it must fail again,
  at the same step, naming the same requirement) and on two correct nodes, the in-process
  reference and the independent `examples/journal_node` (each must pass: a fixture that
  fails a correct node is a generator's or the oracle's mistake, not a finding).
  `keep_fixture` saves and replays, and moves a fixture that is not all of that out of the
  way, to `not-green/`, saying why.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import hypothesis

from ..cases import Case, Step
from ..impls import resolve
from ..resources import JOURNAL_NODE
from .findings import Finding

if TYPE_CHECKING:
    from .driver import Target

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "conformance" / "schema" / "suite.schema.json"
REJECTED = "not-green"  # the subdirectory of the fixtures that failed on the reference

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_/.-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def flow(value: Any) -> str:
    """A JSON value as one line of YAML flow style (what the loader reads back as is)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if _PLAIN.match(value) and value.lower() not in _RESERVED else (
            json.dumps(value, ensure_ascii=False))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {value!r}")


def step_line(step: Step) -> str:
    if step.kind == "check":
        return f"- check: {flow(step.args['invariants'])}"
    return f"- {step.kind}: {flow(step.args)}"


def fixture_capabilities(case: Case, steps: Sequence[Step]) -> list[str]:
    caps = set(case.capabilities)
    needs = {"failpoint": "failpoints", "crash_point": "crash_points", "tamper": "tamper_hooks",
             "install_snapshot": "install_snapshot", "last_applied_index": "reader"}
    for s in steps:
        if s.kind in needs:
            caps.add(needs[s.kind])
        if s.kind == "crash" and s.args.get("mode") == "power":
            caps.add("power_loss")
    if case.durability == "unsynced":
        caps.add("unsynced_mode")
    return sorted(caps)


_PID = re.compile(r"\bpid \d+")
_TMP = re.compile(re.escape(tempfile.gettempdir().rstrip(os.sep)) + r"/[^\s'\"]*")


def _stable(message: str) -> str:
    """A failure message as a fixture keeps it: without what differs from run to run (a
    node process's pid, the temporary directories of its data), so that two runs with the
    same seed write the same bytes."""
    return _TMP.sub("<tmp>", _PID.sub("pid N", message))


def fixture_text(finding: Finding, stem: str, *, seed: int | None, identity: str,
                 spec: str, out_dir: Path, shrunk_from: int | None = None) -> str:
    case = finding.case
    schema = os.path.relpath(SCHEMA, out_dir.resolve())
    message = _stable(finding.message.splitlines()[0]) if finding.message \
        else finding.requirement
    if len(message) > 160:
        message = message[:157] + "..."
    notes = (f"{len(finding.steps)} steps"
             + (f", shrunk by Hypothesis from {shrunk_from}" if shrunk_from else "")
             + (f", {finding.minimized} more removed by the last shrinking pass"
                if finding.minimized else "")
             # the file name, not where it was written: a fixture is moved (to
             # fixtures/regressions/), and two runs into two directories write the same bytes
             + f"; the failure: {message}; reproduce with: conformance replay {stem}.yaml "
             f"--impl {spec!r} (in this file's directory)")
    catches = spec.split(":", 1)[1] if spec.startswith(("mutant:", "mutant-process:")) else identity
    lines = [
        f"# yaml-language-server: $schema={schema}",
        f"suite: {stem}",
        "description: " + json.dumps(f"Found by conformance explore on {identity}: it violates "
                                     f"{finding.requirement}.", ensure_ascii=False),
        "fixture:",
        f"  catches: [{json.dumps(catches, ensure_ascii=False)}]",
        f"  guards: [{finding.requirement}]",
    ]
    if seed is not None:
        lines.append(f"  seed: {seed}")
    lines += [
        f"  implementation: {json.dumps(identity, ensure_ascii=False)}",
        f"  hypothesis_version: {json.dumps(hypothesis.__version__)}",
        f"  notes: {json.dumps(notes, ensure_ascii=False)}",
        "cases:",
        f"  - id: explore-{stem}",
        "    description: " + json.dumps(f"A generated sequence that violated "
                                         f"{finding.requirement}: {message}", ensure_ascii=False),
        f"    requirements: [{finding.requirement}]",
    ]
    caps = fixture_capabilities(case, finding.steps)
    if caps:
        lines.append(f"    capabilities: [{', '.join(caps)}]")
    if case.without:
        lines.append(f"    without: [{', '.join(case.without)}]")
    if case.durability != "synced":
        lines.append(f"    durability: {case.durability}")
    lines += ["    tags: [explore]", "    steps:"]
    lines += ["      " + step_line(s) for s in finding.steps]
    return "\n".join(lines) + "\n"


def save_fixture(finding: Finding, out_dir: Path, *, seed: int | None, identity: str, spec: str,
                 shrunk_from: int | None = None) -> Path:
    """Write the finding as a fixture unless the same (requirement, steps) is saved already."""
    stem = f"{finding.requirement.lower()}-{finding.key()}"
    path = out_dir / f"{stem}.yaml"
    finding.path = path
    if path.exists():
        finding.duplicate = True
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(fixture_text(finding, stem, seed=seed, identity=identity, spec=spec,
                                 out_dir=out_dir, shrunk_from=shrunk_from))
    return path


SECOND_NODE = JOURNAL_NODE  # examples/journal_node (conformance/resources.py)


@dataclass
class Verification:
    """A saved fixture replayed at once (`verify_fixture`)."""

    red: bool  # fails on the implementation, at the same step, naming the same requirement
    red_why: str  # when not red: what the replay did instead
    reference_green: bool  # passes (or does not apply) on the in-process reference
    # passes (or does not apply) on the second correct node; None when it is the target or
    # is not there
    second_green: bool | None

    def rejection(self) -> str:
        """Why the fixture is not one ("" when it is)."""
        if not self.reference_green:
            return "it fails on the in-process reference too"
        if self.second_green is False:
            return "it fails on the second correct node (examples/journal_node) too"
        if not self.red:
            return f"its replay does not fail the same way on the implementation: {self.red_why}"
        return ""


def verify_fixture(path: Path, target: Target, failed_step: int | None = None,
                   check_step: bool = False) -> Verification:
    """Replay a saved fixture on the implementation (it must fail again, naming its
    requirement, and with `check_step` at `failed_step`), on the in-process reference and
    on the second correct node (both must pass, or find it not applicable): a fixture that
    fails a correct node is the generator's or the oracle's mistake, not a finding."""
    from ..loader import load_suite
    from .replay import differs, passes, passes_on_reference

    suite = load_suite(path)
    case = suite.cases[0]
    guards = (suite.fixture or {}).get("guards", [])
    red_why = differs(case, target.impl.factory, target.seed, guards[0] if guards else None,
                      failed_step, check_step=check_step)
    second: bool | None = None
    if SECOND_NODE.is_file() and str(SECOND_NODE.relative_to(ROOT)) not in target.spec:
        command = f"{sys.executable} {SECOND_NODE} --data-dir {{data_dir}}"
        second = passes(case, resolve(command, seed=target.seed).factory, target.seed)
    return Verification(not red_why, red_why, passes_on_reference(case, target.seed), second)


def keep_fixture(finding: Finding, out_dir: Path, target: Target, *, seed: int | None,
                 spec: str, verify: bool = True) -> None:
    """Save `finding` under `out_dir` and, with `verify`, first drop the steps it does not
    need (`minimize.minimize`), then replay it at once (`verify_fixture`).

    A fixture must fail the implementation the way it was found and pass on the correct
    nodes to be one: otherwise it is moved to `out_dir/not-green/` (`finding.rejected`,
    with `rejected_why`), where nothing that runs `out_dir/*.yaml` picks it up; it is a
    problem of the generator, of the oracle or of the node's determinism, kept so that it
    can be reported."""
    if verify:
        from .minimize import minimize

        finding.minimized = minimize(finding, target)
    save_fixture(finding, out_dir, seed=seed, identity=target.identity, spec=spec)
    if not verify or finding.duplicate:
        return
    assert finding.path is not None
    v = verify_fixture(finding.path, target, finding.failed_step, check_step=True)
    finding.replay_red, finding.reference_green, finding.second_green = (
        v.red, v.reference_green, v.second_green)
    why = v.rejection()
    if why:
        finding.path.unlink()
        save_fixture(finding, out_dir / REJECTED, seed=seed, identity=target.identity,
                     spec=spec)
        finding.duplicate, finding.rejected, finding.rejected_why = False, True, why


def print_finding(f: Finding, out: TextIO) -> None:
    """One finding as the command prints it: the failure, the fixture, the replay verdicts,
    then the minimal sequence, one step a line."""
    where = f" -> {f.path}{' (duplicate)' if f.duplicate else ''}" if f.path else ""
    if f.rejected:
        where += f" (NOT a fixture: {f.rejected_why}; please report it)"
    if f.seen > 1:
        where += " (shorter than the earlier one for this requirement: replaces it)"
    verdict = ""
    if f.replay_red is not None:
        verdict = (f"; replay {'red' if f.replay_red else 'NOT RED'}, reference "
                   f"{'green' if f.reference_green else 'NOT GREEN'}")
        if f.second_green is not None:
            verdict += f", second node {'green' if f.second_green else 'NOT GREEN'}"
    print(f"FOUND {f.message.splitlines()[0]} ({len(f.steps)} steps){where}"
          f"{verdict}", file=out, flush=True)
    for s in f.steps:
        print(f"    {step_line(s)}", file=out)
