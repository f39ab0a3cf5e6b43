"""The last shrinking pass: no saved fixture has a step that can be removed.

Hypothesis shrinks a failing sequence through its own choices (fewer rule calls, smaller
draws), and stops where a shorter choice sequence no longer reaches the same failure
through the machine's preconditions. What it leaves can still hold steps the failure does
not need (a snapshot begun and never persisted, a read in the middle). This pass replays
the saved steps themselves, as a fixture would run them, and drops one step at a time
(delta debugging with single-step granularity, repeated until nothing more goes), keeping
a removal only when

- the shorter sequence still fails on the implementation the same way: failed, naming the
  same requirement, at the same step (the one that failed, renumbered), and
- it still passes on the in-process reference: a removal that turns a generated
  expectation false (say, an expected applied index that counted the removed entry) makes
  the reference fail too, and is undone.

Each trial is one case run on each node; a fixture of n steps costs O(n^2) runs at worst,
which for the lengths Hypothesis leaves (under 20 steps) is a few seconds in process;
`MAX_TRIALS` bounds it for slow adapters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..cases import Case, Step
from .driver import make_step
from .findings import Finding
from .replay import differs, passes_on_reference

if TYPE_CHECKING:
    from .driver import Target


def _case(finding: Finding, steps: list[Step]) -> Case:
    return replace(finding.case, requirements=(finding.requirement,), steps=tuple(steps))


def _renumber(steps: list[Step]) -> list[Step]:
    return [make_step(s.kind, s.args, i) for i, s in enumerate(steps)]


def _fails_the_same(finding: Finding, steps: list[Step], failed_at: int | None,
                    target: Target) -> bool:
    case = _case(finding, steps)
    return (not differs(case, target.impl.factory, target.seed, finding.requirement, failed_at)
            and passes_on_reference(case, target.seed))


# At most this many trial runs per finding: a node behind a slow adapter (a container) pays
# a start per trial, and a fixture of 20 steps needs 20 trials per pass.
MAX_TRIALS = 80


def minimize(finding: Finding, target: Target, max_trials: int = MAX_TRIALS) -> int:
    """Drop every step of `finding` whose removal keeps the same failure (module doc);
    update the finding in place and return how many steps went. Stops after `max_trials`
    trials (the fixture is then shorter, if not yet minimal)."""
    steps = list(finding.steps)
    failed_at = finding.failed_step
    removed = trials = 0
    progress = True
    while progress and trials < max_trials:
        progress = False
        # from the end: later steps depend on earlier ones, so they go first
        for i in range(len(steps) - 1, -1, -1):
            if trials >= max_trials:
                break
            if failed_at is not None and i == failed_at:
                continue  # the failing step stays
            trials += 1
            shorter = _renumber(steps[:i] + steps[i + 1:])
            shifted = failed_at - 1 if failed_at is not None and i < failed_at else failed_at
            if _fails_the_same(finding, shorter, shifted, target):
                steps, failed_at = shorter, shifted
                removed += 1
                progress = True
    if removed:
        finding.steps, finding.failed_step = steps, failed_at
    return removed
