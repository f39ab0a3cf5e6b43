"""What a campaign changes in Hypothesis' engine while it runs, and why.

Hypothesis budgets examples, not seconds, and makes three decisions on its own clock: it
stops generating 10 s after the first failure, stops shrinking after
`MAX_SHRINKING_SECONDS` (5 minutes), and never stops generating for a wall-clock deadline.
A campaign (campaign.py) needs each of them on its own terms:

- `engine_clock(StepClock(...))`: with a count budget, the engine tells time by the
  campaign's steps at a fixed nominal rate, so both of its clock decisions fall at the
  same step on any machine (the run is reproducible);
- `shrink_budget(seconds)`: shrinking bounded by what the run allows (the time left, or
  a certificate's fixed bound);
- `generation_deadline(deadline)`: with a time budget, no new sequence starts after the
  run's deadline: the generation phase ends there and the failures found are shrunk, so a
  `--time S` run ends within S plus one sequence plus the shrinking, which
  `PhaseTimes` measures apart;
- `no_local_constants()`: Hypothesis mixes into its draws constants it finds in the
  source of every "local" module imported so far (not the standard library nor
  site-packages); for the harness that is its own modules, so the same seed drew other
  sequences depending on what the process had imported (a worker, a script, the CLI) and
  on whether the package was installed or a checkout. Campaigns draw without them;
- `gc_frozen()`: objects made before a campaign stay out of its full collections.

Each one patches a module attribute or method of `hypothesis.internal.conjecture.engine`
for the duration and restores it after; each degrades to a no-op if a Hypothesis release
no longer has what it patches (the run then keeps Hypothesis' own behaviour).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .findings import Stats


class StepClock:
    """A clock that reads a campaign's steps (`Stats.steps`) at `rate` steps a second: what
    Hypothesis' engine tells time by during a count-budgeted campaign (`engine_clock`).
    It stands still between steps, so every decision the engine makes on it falls at the
    same step of the same campaign, on any machine."""

    def __init__(self, stats: Stats, rate: float) -> None:
        self.stats, self.rate = stats, rate

    def monotonic(self) -> float:
        return self.stats.steps / self.rate

    perf_counter = monotonic

    def __getattr__(self, name: str) -> Any:  # anything else the engine takes from `time`
        return getattr(time, name)


def _engine() -> Any:
    from hypothesis.internal.conjecture import engine

    return engine


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """`owner.<name>` set to `value` for the duration, then restored; left alone when
    `value` is None (nothing to change) or `owner` has no such attribute (a Hypothesis
    release without it: its own behaviour then)."""
    saved = getattr(owner, name, None)
    if value is None or saved is None:
        yield
        return
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


@contextlib.contextmanager
def engine_clock(clock: StepClock | None) -> Iterator[None]:
    """Run Hypothesis' engine on `clock` (None: the real one). The engine reads the module
    `time` it imported (`time.monotonic()`, `time.perf_counter()`) for two decisions: to
    stop generating 10 s after the first failure and to stop shrinking at
    MAX_SHRINKING_SECONDS; both compare two readings, so a clock that starts at 0 with each
    campaign decides as one that counts the whole run's steps. The rest of its reads are
    statistics."""
    with _patched(_engine(), "time", clock):
        yield


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Keep the objects that exist before a campaign (modules, the target, earlier
    findings) out of the garbage collector's full collections during it. A campaign
    allocates a lot (Hypothesis keeps every sequence's choices), so full collections
    come often, and each scanned everything: in process, collections took 15% of a
    campaign's time, 11% with this. Left alone when someone else froze objects already."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def shrink_budget(seconds: float | None) -> Iterator[None]:
    """Bound Hypothesis' shrinking to `seconds` (its own bound is 5 minutes; the engine
    takes whole seconds, at least 5 here); when they run out, the smallest sequence found
    so far is reported."""
    with _patched(_engine(), "MAX_SHRINKING_SECONDS",
                  None if seconds is None else max(5, int(seconds))):
        yield


@contextlib.contextmanager
def no_local_constants() -> Iterator[None]:
    """Draw without the constants of the process's "local" modules (module doc), so that
    the same seed draws the same sequences in any process, installed or not."""
    from hypothesis.internal.conjecture import providers

    constants = getattr(providers, "Constants", None)
    nothing = None if constants is None else constants()
    with _patched(providers, "_get_local_constants",
                  None if nothing is None else (lambda: nothing)):
        yield


@dataclass
class PhaseTimes:
    """Where a campaign's wall time went, on the real clock (`time.monotonic`, which every
    process of the machine shares, so a worker's readings compare with the run's start):
    `generation_end` is when its last sequence was generated (the shrinking's start, or the
    campaign's end when nothing was shrunk); `shrink_s` the seconds spent shrinking."""

    generation_end: float = 0.0
    shrink_s: float = 0.0


@contextlib.contextmanager
def generation_deadline(deadline: float | None, times: PhaseTimes) -> Iterator[None]:
    """End the generation phase at `deadline` (`time.monotonic()`; None: no deadline) and
    record in `times` when generation ended and how long shrinking took. Hypothesis asks
    `should_generate_more()` before each new sequence; past the deadline it is told no,
    and goes on to shrink what it found (or ends, having found nothing)."""
    runner_cls = getattr(_engine(), "ConjectureRunner", None)
    more: Callable[[Any], bool] | None = getattr(runner_cls, "should_generate_more", None)
    shrink: Callable[[Any], None] | None = getattr(runner_cls, "shrink_interesting_test_cases",
                                                   None)
    generate: Callable[[Any], None] | None = getattr(runner_cls, "generate_new_test_cases",
                                                     None)
    if runner_cls is None or more is None or shrink is None or generate is None:
        yield
        times.generation_end = time.monotonic()
        return
    shrank = False  # generation_end recorded

    def should_generate_more(self: Any) -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return more(self)

    def generate_new_test_cases(self: Any) -> None:
        # (it asserts that there is something to generate: not when the campaign began
        # after the deadline, a worker that started late)
        if deadline is None or time.monotonic() < deadline:
            generate(self)

    def shrink_interesting_test_cases(self: Any) -> None:
        nonlocal shrank  # (called whatever was found: generation is over either way)
        shrank = True
        times.generation_end = started = time.monotonic()
        try:
            shrink(self)
        finally:
            if getattr(self, "interesting_test_cases", True):
                times.shrink_s += time.monotonic() - started

    runner_cls.should_generate_more = should_generate_more
    runner_cls.generate_new_test_cases = generate_new_test_cases
    runner_cls.shrink_interesting_test_cases = shrink_interesting_test_cases
    try:
        yield
    finally:
        runner_cls.should_generate_more = more
        runner_cls.generate_new_test_cases = generate
        runner_cls.shrink_interesting_test_cases = shrink
        if not shrank:
            times.generation_end = time.monotonic()
