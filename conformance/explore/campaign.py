"""One campaign: one Hypothesis run of the state machine, planned by the run (run.py).

A run (`explore`) is a series of **campaigns**, each one `run_state_machine_as_test` call
with its own Hypothesis seed derived from the run's (`campaign_seed`). A `CampaignPlan`
says which campaign and how big; `run_campaign` runs it on a target and returns a
`CampaignOutcome`: what it generated, the failures it found (one `Finding` per violated
requirement, shrunk), and where its time went. Nothing in a campaign depends on another
one, so the run can give them to worker processes (workers.py) and merge their outcomes
in campaign order, as a serial run would.

What a campaign changes in Hypothesis' engine while it runs (a step clock for a count
budget, the run's deadline, a bound on shrinking) is in engine.py.
"""

from __future__ import annotations

import hashlib
import time
import unittest
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from .engine import (
    PhaseTimes,
    StepClock,
    engine_clock,
    gc_frozen,
    generation_deadline,
    no_local_constants,
    shrink_budget,
)
from .findings import Finding, Stats, collect_found, failed_step
from .machine import ExploreMachine

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

    from .driver import Target


def campaign_seed(run_seed: int, i: int) -> int:
    """The Hypothesis seed of campaign `i` of a run with `run_seed` (the same run, the same
    seeds)."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{i}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class CampaignOptions:
    """What every campaign of a run shares."""

    step_count: int = 40  # steps per generated sequence
    shrink: bool = True
    stop_at_first: bool = False  # report one failure, do not look for more
    # the example database key: one per implementation (and `--hide`)
    key: str = "reference"


@dataclass(frozen=True)
class CampaignPlan:
    """Campaign `index` of a run: `examples` sequences with Hypothesis seed `seed`."""

    index: int
    seed: int
    examples: int
    # try the example database's earlier failures first (the run's first campaign only)
    reuse: bool = False
    deadline: float | None = None  # time.monotonic(): no new sequence after it
    shrink_seconds: float | None = None  # bound on shrinking (None: Hypothesis' own)
    # a count budget: the engine's clock reads the campaign's steps at this nominal rate
    # (steps a second), so its decisions are the same on any machine (engine.StepClock)
    clock_rate: float | None = None


@dataclass
class CampaignOutcome:
    """What one campaign did. Times are `time.monotonic()` readings, which every process
    of the machine shares."""

    index: int
    examples: int = 0  # sequences run (generated, and replayed while shrinking)
    steps: int = 0
    started: float = 0.0
    ended: float = 0.0
    generation_end: float = 0.0  # its last sequence generated
    shrink_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    # Hypothesis gave up: the node answered the same sequence differently when it ran
    # again (its message); no fixture can be saved from it
    nondeterministic: str | None = None
    first_failure_at: float | None = None
    first_failure_steps: int | None = None
    first_failure_examples: int | None = None

    @property
    def rate(self) -> float:
        """Sequences a second."""
        return self.examples / max(1e-3, self.ended - self.started)


def run_campaign(target: Target, plan: CampaignPlan, options: CampaignOptions,
                 database: ExampleDatabase | None) -> CampaignOutcome:
    """Run `plan` on `target`: one Hypothesis run, its failures shrunk (unless
    `options.shrink` is off) and returned as findings, one per violated requirement."""
    stats = target.stats = Stats()
    outcome = CampaignOutcome(plan.index, started=stats.started)
    phases = [Phase.explicit] + ([Phase.reuse] if plan.reuse else []) + [Phase.generate]
    phases += [Phase.shrink] if options.shrink else []
    conf = settings(
        max_examples=plan.examples, stateful_step_count=options.step_count, deadline=None,
        database=database, phases=phases, verbosity=Verbosity.quiet,
        report_multiple_bugs=not options.stop_at_first,
        suppress_health_check=list(HealthCheck), print_blob=False,
    )

    def factory() -> ExploreMachine:
        return ExploreMachine(target)

    factory._hypothesis_internal_add_digest = options.key.encode()  # type: ignore[attr-defined]
    hypothesis_seed(plan.seed)(factory)
    clock = StepClock(stats, plan.clock_rate) if plan.clock_rate else None
    times = PhaseTimes()
    try:
        with gc_frozen(), engine_clock(clock), shrink_budget(plan.shrink_seconds), \
                generation_deadline(plan.deadline, times), no_local_constants():
            # (it takes any callable that returns a machine)
            run_state_machine_as_test(cast("type[RuleBasedStateMachine]", factory),
                                      settings=conf)
    except (Unsatisfiable, unittest.SkipTest):
        pass  # the campaign generated no sequence (it began after the run's deadline)
    except BaseException as exc:  # noqa: BLE001 - Found, or a group of them
        found = collect_found(exc)
        if not found and isinstance(exc, Flaky):
            outcome.nondeterministic = (str(exc).splitlines()[0] if str(exc)
                                        else type(exc).__name__)
        elif not found:
            raise
        outcome.findings = [Finding(f.requirement, f.failure.message, f.steps, f.case,
                                    failed_step=failed_step(f)) for f in found]
    outcome.ended = time.monotonic()
    outcome.generation_end = times.generation_end or outcome.ended
    outcome.shrink_s = times.shrink_s
    outcome.examples, outcome.steps = stats.examples, stats.steps
    if stats.first_failure_s is not None:
        outcome.first_failure_at = stats.started + stats.first_failure_s
        outcome.first_failure_steps = stats.first_failure_steps
        outcome.first_failure_examples = stats.first_failure_examples
    return outcome
