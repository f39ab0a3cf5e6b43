"""The exploration a certificate includes: a seeded, fixed budget run after the suites.

The handwritten suites alone once certified a real library that exploration rejected
within seconds (docs/real-world.md). So `conformance certify` explores the implementation
for a fixed number of generated sequences (`--explore N`, default `DEFAULT_SEQUENCES`;
`--explore 0` skips it) with the run's seed and no example database: the same seed and
budget give the same sequences, findings and fixtures (run.py, "Reproducible"), so
the verdict is reproducible, and the certificate prints both.

Each finding that survives verification (it replays red on the implementation at the
step it was found at, and green on both correct nodes: fixtures.keep_fixture) becomes a
failed case result, `explore-<requirement>-<key>` from its saved fixture, so it counts
against the verdict like any failing case and the report shows its fixture. Findings that
did not survive verification are a suite problem, not the node's: they are listed apart
(`Exploration.rejected`) and never count against the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..adapters.base import AdapterError
from ..cases import CaseResult, Failure
from ..impls import Implementation
from ..loader import load_suite
from .driver import probe
from .run import explore

DEFAULT_SEQUENCES = 200
# Hypothesis shrinks each distinct failure for up to 5 minutes; a certificate bounds it
# (the verdict does not depend on it, only how short the saved fixtures are). These are
# seconds of the step clock of a count budget (campaign.NOMINAL_STEPS_PER_S), not of the
# wall clock, so the same seed saves the same fixtures on any machine.
SHRINK_SECONDS = 20.0


@dataclass
class Exploration:
    """What the certificate's exploration did, for RunInfo and the report."""

    sequences: int  # the budget
    seed: int
    ran: int = 0  # sequences generated
    steps: int = 0
    duration_s: float = 0.0
    findings: list[str] = field(default_factory=list)  # fixture paths that count
    rejected: list[str] = field(default_factory=list)  # "<path>: why", not counted
    nondeterministic: list[str] = field(default_factory=list)
    # why no sequence could run (the node did not start): the suites' failures say the rest
    not_run: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"sequences": self.sequences, "seed": self.seed, "ran": self.ran,
                "steps": self.steps, "duration_s": round(self.duration_s, 3),
                "findings": self.findings, "rejected": self.rejected,
                "nondeterministic": self.nondeterministic, "not_run": self.not_run}

    def summary(self) -> str:
        if self.not_run:
            return f"not run (budget {self.sequences}, seed {self.seed}): {self.not_run}"
        found = (f"{len(self.findings)} finding(s), each a failed case below"
                 if self.findings else "no finding")
        extra = (f"; {len(self.rejected)} sequence(s) rejected as suite problems, not counted"
                 if self.rejected else "")
        extra += (f"; {len(self.nondeterministic)} campaign(s) not deterministic"
                  if self.nondeterministic else "")
        return (f"{self.ran} generated sequences (budget {self.sequences}, seed {self.seed}; "
                f"{self.steps} steps in {self.duration_s:.1f} s): {found}{extra}")


def explore_for_certificate(spec: str, impl: Implementation, *, sequences: int, seed: int,
                            out: Path, timeout: float = 10.0,
                            log: TextIO | None = None, jobs: int = 1,
                            profile_capabilities: frozenset[str] | None = None,
                            ) -> tuple[Exploration, list[CaseResult]]:
    """Explore `impl` for `sequences` generated sequences with `seed`, in `jobs` worker
    processes (the same sequences and findings with any number: run.py), saving verified
    findings under `out`; return what it did and one failed case result per finding."""
    try:
        target = probe(spec, seed=seed, timeout=timeout, impl=impl)
    except AdapterError as exc:  # the node never said hello: nothing to explore
        return Exploration(sequences, seed, not_run=str(exc).splitlines()[0]), []
    report = explore(spec, max_examples=sequences, seed=seed, out=out, database=None,
                     timeout=timeout, target=target, log=log, shrink_time=SHRINK_SECONDS,
                     jobs=jobs, profile_capabilities=profile_capabilities)
    done = Exploration(sequences, seed, report.examples, report.steps, report.duration_s,
                       nondeterministic=list(report.nondeterministic))
    results: list[CaseResult] = []
    for f in report.findings:
        if f.path is None:
            continue
        if f.rejected:
            done.rejected.append(f"{f.path}: {f.rejected_why}")
            continue
        done.findings.append(str(f.path))
        case = load_suite(f.path).cases[0]
        step = case.steps[f.failed_step] if f.failed_step is not None else None
        failure = Failure(f"{f.requirement}: {f.message.splitlines()[0]} (found by "
                          f"exploration; fixture {f.path})", step=step,
                          requirement=f.requirement)
        results.append(CaseResult(case, "failed", 0.0, len(case.steps), failure=failure,
                                  violations=[f.requirement]))
    return done, results
