"""The campaign driver: a time (or example) budget spent as a series of Hypothesis runs.

`explore(spec, time_budget=60, seed=0)` is what `conformance explore` calls. One call is a
**run**; a run is a series of **campaigns**, each one `run_state_machine_as_test` call
with its own seed derived from the run's (`campaign_seed`), so the same `--seed` replays
the same run. Why not one long Hypothesis run:

- **memory**: Hypothesis keeps every sequence of a run in memory (~0.1 MB each); at most
  `MAX_CAMPAIGN` sequences per campaign keeps a long run's memory flat;
- **the budget**: Hypothesis budgets examples, not seconds. The first campaign is small
  (50 sequences in process, 5 through a process or container adapter) and measures the
  rate; each next one is sized to 90% of what fits in the time left;
- **more bugs**: each campaign reports the failures it found (`report_multiple_bugs`),
  shrunk; the next one starts afresh and may reach other requirements.

Shrinking runs inside the campaign that found the failure and is bounded by the time
left (at least 5 s, `_shrink_budget`); the example database (`database`, a directory;
None turns it off) makes the first campaign of the next run try the last failures first.

**Reproducible**: with an example budget (`max_examples`) and no example database, the
same seed gives the same findings and byte-identical fixtures, on any machine. Campaign
sizes then follow the budget only, and Hypothesis' engine, which makes two decisions on
its clock (it stops looking for more failures 10 s after the first one, and stops
shrinking after `MAX_SHRINKING_SECONDS`), runs on a clock of the run's steps instead
(`_StepClock`: `NOMINAL_STEPS_PER_S`, a fixed nominal rate), so both decisions fall
at the same step whatever the machine's speed. A time budget is not reproducible: the
campaigns are sized from the rate measured, and shrinking is bounded by the time left, so
a faster or slower run explores different sequences (`ExploreReport.reproducible`).

Each failure is one `Finding` per violated requirement and run: a later campaign that
shrinks the same requirement to a strictly shorter sequence replaces the fixture saved
first. Each saved fixture is replayed at once (`verify`): red on the implementation,
green on the in-process reference. The result is an `ExploreReport` (its `to_dict` is
the summary JSON the command writes with `--json`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from .driver import Target, probe
from .findings import Finding, Stats, collect_found, failed_step
from .fixtures import keep_fixture, print_finding
from .machine import ExploreMachine

DEFAULT_OUT = Path("fixtures/found")
DEFAULT_DATABASE = Path(".hypothesis/conformance")


@dataclass
class ExploreReport:
    target: str
    identity: str
    seed: int
    duration_s: float
    examples: int
    steps: int
    campaigns: int
    findings: list[Finding]
    first_failure_s: float | None
    first_failure_steps: int | None
    first_failure_examples: int | None
    hypothesis_version: str = hypothesis.__version__
    # campaigns Hypothesis gave up on because the node answered the same sequence
    # differently when it was run again (its message): a nondeterministic node, reported
    # instead of a traceback; no fixture can be saved from them
    nondeterministic: list[str] = dataclasses.field(default_factory=list)
    # the same seed gives the same findings and fixtures: an example budget (module doc);
    # False with a time budget, whose result depends on the machine's speed
    reproducible: bool = False

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps_per_s"] = round(self.steps_per_s, 1)
        out["findings"] = [{"requirement": f.requirement, "message": f.message,
                            "steps": len(f.steps), "path": str(f.path) if f.path else None,
                            "duplicate": f.duplicate, "seen": f.seen,
                            "replay_red": f.replay_red,
                            "reference_green": f.reference_green,
                            "second_green": f.second_green,
                            "rejected": f.rejected,
                            "rejected_why": f.rejected_why} for f in self.findings]
        return out


MAX_CAMPAIGN = 2000
# The rate Hypothesis' engine is told the steps run at when the budget is a count
# (`_StepClock`), so its clock-based bounds (10 s of looking for more failures after the
# first, 5 minutes of shrinking, or `shrink_time`) are fixed numbers of steps. A nominal
# rate: about an idle machine's before the cheaper draws of issue 15, which run in
# process at 2-3 times it (docs/exploration.md, "Throughput"), so in process these bounds
# now pass in a third to a half of their seconds.
NOMINAL_STEPS_PER_S = {True: 1000.0, False: 50.0}  # in process; through a process or image


def campaign_seed(seed: int, i: int) -> int:
    """The Hypothesis seed of campaign `i` of a run with `seed` (the same run, the same seeds)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big")


def explore(spec: str = "reference", *, time_budget: float | None = None,
            max_examples: int | None = None, seed: int = 0, out: Path | None = DEFAULT_OUT,
            database: Path | None = DEFAULT_DATABASE, shrink: bool = True,
            stop_at_first: bool = False, step_count: int = 40, batch: int | None = None,
            timeout: float = 10.0, verify: bool = True, target: Target | None = None,
            log: TextIO | None = None, hide: Iterable[str] = (),
            shrink_time: float | None = None) -> ExploreReport:
    """Explore `spec` until the time or example budget is spent (or, with stop_at_first,
    until the first failure). Each campaign is one Hypothesis run with its own seed,
    derived from `seed`; failures are shrunk (unless shrink=False; for at most
    `shrink_time` seconds per campaign when there is no time budget: seconds of the step
    clock, see the module doc), saved under `out` (deduplicated) and replayed (verify).
    With `max_examples` and no database, the run is reproducible (module doc)."""
    if time_budget is None and max_examples is None:
        time_budget = 60.0
    target = target or probe(spec, timeout=timeout, hide=hide)
    stats = target.stats = Stats()
    deadline = None if time_budget is None else stats.started + time_budget
    # a count budget: Hypothesis' clock-based decisions on the step count (module doc)
    clock = (_StepClock(stats, NOMINAL_STEPS_PER_S[target.impl.in_process])
             if deadline is None else None)
    db = DirectoryBasedExampleDatabase(str(database)) if database is not None else None
    # Campaign sizes: a first small one measures the rate, the next ones fit the time left.
    # One campaign holds every sequence it tried in memory (~0.1 MB each): at most
    # MAX_CAMPAIGN per campaign keeps a long run's memory flat.
    first_batch = batch or (50 if target.impl.in_process else 5)
    rate = 0.0  # sequences per second in the last campaign
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    findings: dict[str, Finding] = {}
    nondeterministic: list[str] = []
    campaigns = 0

    def factory() -> ExploreMachine:
        return ExploreMachine(target)

    # the example database key: one per implementation (and the machine's code)
    key = spec + "".join(f" --hide {c}" for c in sorted(target.hidden))
    factory._hypothesis_internal_add_digest = key.encode()  # type: ignore[attr-defined]
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline and campaigns:
            break
        if max_examples is not None and stats.examples >= max_examples:
            break
        if max_examples is not None:
            n = min(MAX_CAMPAIGN, max_examples - stats.examples)
        elif campaigns == 0 or deadline is None or rate <= 0:
            n = first_batch
        else:
            n = min(MAX_CAMPAIGN, max(1, int(rate * (deadline - now) * 0.9)))
        conf = settings(
            max_examples=n, stateful_step_count=step_count, deadline=None, database=db,
            phases=phases if campaigns == 0 else [p for p in phases if p != Phase.reuse],
            verbosity=Verbosity.quiet, report_multiple_bugs=not stop_at_first,
            suppress_health_check=list(HealthCheck), print_blob=False,
        )
        hypothesis.seed(campaign_seed(seed, campaigns))(factory)
        examples_before, started = stats.examples, time.monotonic()
        campaigns += 1
        try:
            with _gc_frozen(), _engine_clock(clock), _shrink_budget(shrink_time if deadline is None
                                                      else deadline - time.monotonic()):
                # (it takes any callable that returns a machine)
                run_state_machine_as_test(cast("type[RuleBasedStateMachine]", factory),
                                          settings=conf)
        except Unsatisfiable:
            pass  # the budget ran out before this campaign generated a sequence
        except BaseException as exc:  # noqa: BLE001 - Found, or a group of them
            found = collect_found(exc)
            if not found and isinstance(exc, Flaky):
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                nondeterministic.append(f"campaign {campaigns}: {first}")
                if log is not None:
                    print(f"NOT DETERMINISTIC (campaign {campaigns}): the node answered a "
                          f"sequence differently when it ran again; Hypothesis: {first}",
                          file=log, flush=True)
            elif not found:
                raise
            for f in found:
                finding = Finding(f.requirement, f.failure.message, f.steps, f.case,
                                  failed_step=failed_step(f))
                # One fixture per violated requirement and run: a later campaign (another
                # seed) usually shrinks the same bug to a different minimal sequence. Only
                # a strictly shorter one replaces the fixture saved first.
                earlier = findings.get(finding.requirement)
                if earlier is not None and len(finding.steps) >= len(earlier.steps):
                    earlier.seen += 1
                    continue
                if earlier is not None:
                    finding.seen = earlier.seen + 1
                    if earlier.path is not None and not earlier.duplicate:
                        earlier.path.unlink(missing_ok=True)
                findings[finding.requirement] = finding
                if out is not None and finding.steps:  # (none: the node never said hello)
                    keep_fixture(finding, out, target, seed=seed, spec=spec, verify=verify)
                if log is not None:
                    print_finding(finding, log)
            if stop_at_first:
                break
        if stats.examples == examples_before:
            break
        rate = (stats.examples - examples_before) / max(1e-3, time.monotonic() - started)
    return ExploreReport(spec, target.identity, seed, time.monotonic() - stats.started,
                         stats.examples, stats.steps, campaigns, list(findings.values()),
                         stats.first_failure_s, stats.first_failure_steps,
                         stats.first_failure_examples, nondeterministic=nondeterministic,
                         reproducible=deadline is None and database is None)


class _StepClock:
    """A clock that reads the run's steps (`Stats.steps`) at `rate` steps a second: what
    Hypothesis' engine tells time by during a count-budgeted campaign (`_engine_clock`).
    It stands still between steps, so every decision the engine makes on it falls at the
    same step of the same run, on any machine."""

    def __init__(self, stats: Stats, rate: float) -> None:
        self.stats, self.rate = stats, rate

    def monotonic(self) -> float:
        return self.stats.steps / self.rate

    perf_counter = monotonic

    def __getattr__(self, name: str) -> Any:  # anything else the engine takes from `time`
        return getattr(time, name)


@contextlib.contextmanager
def _engine_clock(clock: _StepClock | None) -> Iterator[None]:
    """Run Hypothesis' engine on `clock` (None: the real one). The engine reads the module
    `time` it imported (`time.monotonic()`, `time.perf_counter()`) for two decisions: to
    stop generating 10 s after the first failure and to stop shrinking at
    MAX_SHRINKING_SECONDS; the rest of its reads are statistics."""
    from hypothesis.internal.conjecture import engine

    saved = getattr(engine, "time", None)
    if clock is None or saved is None:
        yield
        return
    engine.time = clock  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        engine.time = saved  # type: ignore[attr-defined]


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
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
def _shrink_budget(seconds: float | None) -> Iterator[None]:
    """Bound Hypothesis' shrinking by the time left (its own bound is 5 minutes); when it
    runs out, the smallest sequence found so far is reported."""
    from hypothesis.internal.conjecture import engine

    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if seconds is None or saved is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = max(5, int(seconds))
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved
