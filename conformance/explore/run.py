"""A run: a time or example budget spent as a series of campaigns, serially or in workers.

`explore(spec, time_budget=60, seed=0)` is what `conformance explore` calls. One call is a
**run**; a run is a series of **campaigns** (campaign.py), each one Hypothesis run with
its own seed derived from the run's (`campaign_seed`), so the same `--seed` replays the
same run. Why not one long Hypothesis run:

- **memory**: Hypothesis keeps every sequence of a run in memory (~0.1 MB each); at most
  `MAX_CAMPAIGN` sequences per campaign keeps a long run's memory flat;
- **parallel workers** (`jobs`): campaigns are independent, so `jobs` worker processes
  (workers.py) run them side by side, each with its own nodes and data directories, and
  the run merges their outcomes in campaign order;
- **more bugs**: each campaign reports the failures it found (`report_multiple_bugs`),
  shrunk; the next one starts afresh and may reach other requirements.

**The budget.** An example budget (`max_examples`) is cut into campaigns of
`COUNT_CAMPAIGN` sequences, whatever `jobs` is. A time budget's campaigns are sized as
they go: the first is small (50 sequences in process, 5 through a process or container
adapter) and measures the rate; each next one is sized to 90% of what fits in the time
left. No sequence starts after the deadline (engine.generation_deadline): a run ends
within its budget plus one sequence, plus the shrinking of what it found and the saving
and verifying of its fixtures, which the report gives apart (`generation_s`, `shrink_s`,
`save_s`).

**Reproducible**: with an example budget and no example database, the same seed gives
the same findings and byte-identical fixtures, on any machine and with any `jobs`: the
campaigns, their sizes and their seeds follow from the budget and the seed alone;
Hypothesis' engine decides on a clock of each campaign's steps (engine.StepClock), not
of the wall; and the outcomes are merged in campaign order. A time budget is not
reproducible: the campaigns are sized from the rate measured, so a faster or slower run
explores different sequences (`ExploreReport.reproducible`).

**Merging** keeps one `Finding` per violated requirement and run: a later campaign that
shrinks the same requirement to a strictly shorter sequence replaces the fixture saved
first. Each fixture is saved and replayed at once (fixtures.keep_fixture): red on the
implementation, green on the correct nodes. The example database (a directory, or a Redis
server shared by many machines: database.py, docs/scale-out.md) makes the first campaign
of the next run try the last failures first.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import hypothesis

from .campaign import CampaignOptions, CampaignOutcome, CampaignPlan, campaign_seed, run_campaign
from .database import open_database
from .driver import Target, probe
from .findings import Finding
from .fixtures import keep_fixture, print_finding

DEFAULT_OUT = Path("fixtures/found")
DEFAULT_DATABASE = Path(".hypothesis/conformance")
MAX_CAMPAIGN = 2000
# An example budget's campaigns: small enough that a certificate's 200 sequences give
# four campaigns to share among workers, large enough that a campaign's fixed costs (a
# Hypothesis run's setup) stay small against its sequences.
COUNT_CAMPAIGN = 50
# The rate Hypothesis' engine is told the steps run at when the budget is a count
# (engine.StepClock), so its clock-based bounds (10 s of looking for more failures after
# the first, 5 minutes of shrinking, or `shrink_time`) are fixed numbers of steps. A
# nominal rate: about an idle machine's before the cheaper draws of issue 15, which run in
# process at 2-3 times it (docs/exploration.md, "Throughput"), so in process these bounds
# now pass in a third to a half of their seconds.
NOMINAL_STEPS_PER_S = {True: 1000.0, False: 50.0}  # in process; through a process or image


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
    jobs: int = 1
    time_budget_s: float | None = None
    # where the time went (module doc, "The budget"): until the last sequence was
    # generated; shrinking (summed over campaigns, which run side by side with jobs > 1);
    # saving and replaying fixtures
    generation_s: float = 0.0
    shrink_s: float = 0.0
    save_s: float = 0.0

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps_per_s"] = round(self.steps_per_s, 1)
        for name in ("duration_s", "generation_s", "shrink_s", "save_s"):
            out[name] = round(out[name], 3)
        out["findings"] = [{"requirement": f.requirement, "message": f.message,
                            "steps": len(f.steps), "path": str(f.path) if f.path else None,
                            "duplicate": f.duplicate, "seen": f.seen,
                            "replay_red": f.replay_red,
                            "reference_green": f.reference_green,
                            "second_green": f.second_green,
                            "rejected": f.rejected,
                            "rejected_why": f.rejected_why} for f in self.findings]
        return out

    def timing(self) -> str:
        """Where the time went, for the command's summary."""
        budget = "" if self.time_budget_s is None else f" (budget {self.time_budget_s:g}s)"
        return (f"last sequence generated after {self.generation_s:.1f}s{budget}; "
                f"shrinking {self.shrink_s:.1f}s"
                + (" (summed over workers)" if self.jobs > 1 else "")
                + f"; saving and replaying fixtures {self.save_s:.1f}s")


class _Merge:
    """The run's findings, merged campaign by campaign in campaign order (module doc)."""

    def __init__(self, target: Target, spec: str, seed: int, out: Path | None, verify: bool,
                 log: TextIO | None) -> None:
        self.target, self.spec, self.seed, self.out = target, spec, seed, out
        self.verify, self.log = verify, log
        self.findings: dict[str, Finding] = {}
        self.nondeterministic: list[str] = []
        self.save_s = 0.0

    def add(self, outcome: CampaignOutcome, number: int) -> None:
        """Merge campaign `number` (1-based, as the log says it)."""
        if outcome.nondeterministic is not None:
            self.nondeterministic.append(f"campaign {number}: {outcome.nondeterministic}")
            if self.log is not None:
                print(f"NOT DETERMINISTIC (campaign {number}): the node answered a sequence "
                      f"differently when it ran again; Hypothesis: {outcome.nondeterministic}",
                      file=self.log, flush=True)
        for finding in outcome.findings:
            # One fixture per violated requirement and run: a later campaign (another
            # seed) usually shrinks the same bug to a different minimal sequence. Only
            # a strictly shorter one replaces the fixture saved first.
            earlier = self.findings.get(finding.requirement)
            if earlier is not None and len(finding.steps) >= len(earlier.steps):
                earlier.seen += 1
                continue
            if earlier is not None:
                finding.seen = earlier.seen + 1
                if earlier.path is not None and not earlier.duplicate:
                    earlier.path.unlink(missing_ok=True)
            self.findings[finding.requirement] = finding
            started = time.monotonic()
            if self.out is not None and finding.steps:  # (none: the node never said hello)
                keep_fixture(finding, self.out, self.target, seed=self.seed, spec=self.spec,
                             verify=self.verify)
            self.save_s += time.monotonic() - started
            if self.log is not None:
                print_finding(finding, self.log)


class _Planner:
    """The campaigns of a run, one at a time (module doc, "The budget")."""

    def __init__(self, seed: int, max_examples: int | None, deadline: float | None,
                 first_batch: int, clock_rate: float, shrink_time: float | None) -> None:
        self.seed, self.max_examples, self.deadline = seed, max_examples, deadline
        self.first_batch, self.clock_rate, self.shrink_time = first_batch, clock_rate, shrink_time
        self.planned = 0
        self.rate = 0.0  # sequences a second in one campaign, the last one measured
        self.exhausted = False  # a campaign generated nothing: the next ones would not either

    def total(self) -> int | None:
        """How many campaigns an example budget makes (None: a time budget)."""
        if self.max_examples is None:
            return None
        return math.ceil(self.max_examples / COUNT_CAMPAIGN)

    def next(self) -> CampaignPlan | None:
        i = self.planned
        if self.exhausted:
            return None
        total = self.total()
        if total is not None:
            if i >= total:
                return None
            assert self.max_examples is not None
            n = min(COUNT_CAMPAIGN, self.max_examples - i * COUNT_CAMPAIGN)
            plan = CampaignPlan(i, campaign_seed(self.seed, i), n, reuse=i == 0,
                                shrink_seconds=self.shrink_time, clock_rate=self.clock_rate)
        else:
            assert self.deadline is not None
            left = self.deadline - time.monotonic()
            if left <= 0 and i:
                return None
            n = (self.first_batch if self.rate <= 0 else
                 min(MAX_CAMPAIGN, max(1, int(self.rate * left * 0.9))))
            plan = CampaignPlan(i, campaign_seed(self.seed, i), n, reuse=i == 0,
                                deadline=self.deadline, shrink_seconds=max(0.0, left))
        self.planned += 1
        return plan

    def done(self, outcome: CampaignOutcome) -> None:
        if outcome.examples == 0:
            self.exhausted = True
        else:
            self.rate = outcome.rate


def explore(spec: str = "reference", *, time_budget: float | None = None,
            max_examples: int | None = None, seed: int = 0, out: Path | None = DEFAULT_OUT,
            database: Path | str | None = DEFAULT_DATABASE, shrink: bool = True,
            stop_at_first: bool = False, step_count: int = 40, batch: int | None = None,
            timeout: float = 10.0, verify: bool = True, target: Target | None = None,
            log: TextIO | None = None, hide: Iterable[str] = (),
            shrink_time: float | None = None, jobs: int = 1,
            profile_capabilities: frozenset[str] | None = None) -> ExploreReport:
    """Explore `spec` until the time or example budget is spent (or, with stop_at_first,
    until the first failure), in `jobs` worker processes (1: in this one). Failures are
    shrunk (unless shrink=False; for at most `shrink_time` seconds per campaign when there
    is no time budget: seconds of the step clock, see the module doc), saved under `out`
    (deduplicated) and replayed (verify). `database`: a directory or a Redis URL
    (database.py); None: none. With `max_examples` and no database, the run is
    reproducible (module doc). With jobs > 1 each worker resolves `spec` itself (with
    `hide`, `timeout`, `seed`, `profile_capabilities`); `target`, when given, serves this
    process (its verifying replays) and, with jobs == 1, the campaigns."""
    if time_budget is None and max_examples is None:
        time_budget = 60.0
    target = target or probe(spec, timeout=timeout, hide=hide, seed=seed)
    started = time.monotonic()
    deadline = None if time_budget is None else started + time_budget
    in_process = target.impl.in_process
    planner = _Planner(seed, max_examples, deadline, batch or (50 if in_process else 5),
                       NOMINAL_STEPS_PER_S[in_process], shrink_time)
    # the example database key: one per implementation (and the machine's code)
    key = spec + "".join(f" --hide {c}" for c in sorted(target.hidden))
    options = CampaignOptions(step_count, shrink, stop_at_first, key)
    db_spec = None if database is None else str(database)
    merge = _Merge(target, spec, seed, out, verify, log)
    outcomes: list[CampaignOutcome] = []
    total = planner.total()
    jobs = max(1, min(jobs, total if total is not None else jobs))
    if jobs == 1:
        db = open_database(db_spec)
        campaigns: Iterator[CampaignOutcome] = _serial(planner, target, options, db)
    else:
        from .workers import Recipe, in_workers

        recipe = Recipe(spec, seed, timeout, frozenset(target.hidden), profile_capabilities,
                        options, db_spec)
        campaigns = in_workers(recipe, planner, jobs)
    try:
        for outcome in campaigns:
            outcomes.append(outcome)
            merge.add(outcome, len(outcomes))
            if stop_at_first and outcome.findings:
                break
    finally:
        close = getattr(campaigns, "close", None)
        if close is not None:
            close()  # stops the workers still running (workers.in_workers)
    return _report(spec, target, seed, started, outcomes, merge, jobs, time_budget,
                   reproducible=deadline is None and database is None)


def _serial(planner: _Planner, target: Target, options: CampaignOptions,
            db: Any) -> Iterator[CampaignOutcome]:
    while (plan := planner.next()) is not None:
        outcome = run_campaign(target, plan, options, db)
        planner.done(outcome)
        yield outcome


def _report(spec: str, target: Target, seed: int, started: float,
            outcomes: list[CampaignOutcome], merge: _Merge, jobs: int,
            time_budget: float | None, *, reproducible: bool) -> ExploreReport:
    examples = steps = 0
    first_s: float | None = None
    first_steps = first_examples = None
    for o in outcomes:  # in campaign order: the first failure is the first campaign's
        if first_s is None and o.first_failure_at is not None:
            first_s = o.first_failure_at - started
            first_steps = steps + (o.first_failure_steps or 0)
            first_examples = examples + (o.first_failure_examples or 0)
        examples, steps = examples + o.examples, steps + o.steps
    # (a campaign that generated nothing, one a worker began after the deadline, ends
    # no generation)
    generation = max((o.generation_end for o in outcomes if o.examples),
                     default=started) - started
    return ExploreReport(
        spec, target.identity, seed, time.monotonic() - started, examples, steps,
        len(outcomes), list(merge.findings.values()), first_s, first_steps, first_examples,
        nondeterministic=merge.nondeterministic, reproducible=reproducible, jobs=jobs,
        time_budget_s=time_budget, generation_s=generation,
        shrink_s=sum(o.shrink_s for o in outcomes), save_s=merge.save_s)
