#!/usr/bin/env python3
"""Measured power of exploration (conformance/explore/); figures in docs/exploration.md.

    python bench/bench_explore.py [--seeds 5] [--budget 60] [-j 2] [--json PATH]
                                  [--markdown PATH] [--only NAME ...] [--quick]
                                  [--no-shrink-check] [--no-exhaustive] [--no-process]
                                  [--hide CAP ...]
    python bench/bench_explore.py --render PATH.json     # the table of an earlier run

1. Throughput: exploration of the reference in process (and through the local-process
   adapter) for a fixed time, as executed steps/s and generated sequences/s.
2. Kill table: for every mutant of reference_impl.mutants.MUTANTS, exploration in process
   with NO handwritten case, once per seed (seeds 0..N-1), stopping at the first failure
   (no shrinking, no example database): whether it kills the mutant within the budget,
   and the median time, steps and sequences to the first kill, with the requirements the
   failures name. Target: >= 90% of the catalog killed, each within 60 s.
3. Shrink check (seed 0): the same with shrinking and fixture saving: the shrunk length,
   and whether the saved fixture replays red on the mutant and green on the reference.
4. Bounded exhaustive mode: the state count and time at depth 4 on the reference, and per
   mutant whether depth 4 (stopping at the first violation) kills it.

`--hide failpoints` explores every mutant as a node without failpoints (crash points,
power loss, kills and tampering only: the table under "Crash points" in
docs/exploration.md); the table then also counts the killing sequences with a crash point.

The exit status is 0 whatever the figures (measurements, not tests), 1 only when a
measurement could not be made.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hypothesis

from conformance.explore import exhaustive, explore
from reference_impl.mutants import MUTANTS


@dataclass
class Attempt:
    mutant: str
    seed: int
    killed: bool
    time_s: float | None
    steps: int | None
    sequences: int | None
    requirement: str | None
    message: str | None
    total_s: float
    with_crash_point: bool | None = None  # the failing sequence holds a crash_point step


@dataclass
class ShrinkCheck:
    mutant: str
    killed: bool
    requirement: str | None = None
    shrunk_steps: int | None = None
    replay_red: bool | None = None
    reference_green: bool | None = None
    total_s: float = 0.0


@dataclass
class ExhaustiveKill:
    mutant: str
    killed: bool
    requirement: str | None
    time_s: float | None
    states: int | None
    fixture_steps: int | None
    total_s: float


@dataclass
class Row:
    mutant: str
    requirement: str
    needs: list[str]
    attempts: list[Attempt] = field(default_factory=list)
    shrink: ShrinkCheck | None = None
    exhaustive: ExhaustiveKill | None = None

    @property
    def kills(self) -> list[Attempt]:
        return [a for a in self.attempts if a.killed]

    def median(self, attr: str) -> float | None:
        """The median over every seed, a survivor counting as infinitely slow: None when
        at least half of the seeds survived (shown as "> budget")."""
        values = [getattr(a, attr) if a.killed else float("inf") for a in self.attempts]
        m = statistics.median(values) if values else float("inf")
        return None if m == float("inf") else m


def _attempt(args: tuple[str, int, float, tuple[str, ...]]) -> Attempt:
    name, seed, budget, hide = args
    t0 = time.monotonic()
    r = explore(f"mutant:{name}", time_budget=budget, seed=seed, out=None, database=None,
                shrink=False, stop_at_first=True, hide=hide)
    f = r.findings[0] if r.findings else None
    killed = f is not None and r.first_failure_s is not None and r.first_failure_s <= budget
    return Attempt(name, seed, killed, r.first_failure_s, r.first_failure_steps,
                   r.first_failure_examples, f.requirement if f else None,
                   f.message.splitlines()[0] if f else None, time.monotonic() - t0,
                   any(s.kind == "crash_point" for s in f.steps) if f else None)


def _shrink_check(args: tuple[str, float, tuple[str, ...]]) -> ShrinkCheck:
    name, budget, hide = args
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        r = explore(f"mutant:{name}", time_budget=budget, seed=0, out=Path(tmp), database=None,
                    shrink=True, stop_at_first=True, hide=hide)
    if not r.findings:
        return ShrinkCheck(name, False, total_s=time.monotonic() - t0)
    f = r.findings[0]
    return ShrinkCheck(name, True, f.requirement, len(f.steps), f.replay_red,
                       f.reference_green, time.monotonic() - t0)


def _exhaustive_kill(args: tuple[str, int]) -> ExhaustiveKill:
    name, depth = args
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        # crash_nth=0: the failpoint-only state space the published table was measured on
        r = exhaustive(f"mutant:{name}", depth=depth, out=Path(tmp), first=True, crash_nth=0)
    f = r.findings[0] if r.findings else None
    return ExhaustiveKill(name, f is not None, f.requirement if f else None, r.first_failure_s,
                          r.first_failure_states, len(f.steps) if f else None,
                          time.monotonic() - t0)


def _throughput(spec: str, seconds: float) -> dict[str, Any]:
    r = explore(spec, time_budget=seconds, seed=0, out=None, database=None)
    return {"impl": spec, "seconds": round(r.duration_s, 1), "sequences": r.examples,
            "steps": r.steps, "steps_per_s": round(r.steps_per_s, 1),
            "sequences_per_s": round(r.examples / r.duration_s, 1),
            "failures": len(r.findings)}


def _row(d: dict[str, Any]) -> Row:
    """A Row from its JSON form (asdict)."""
    return Row(d["mutant"], d["requirement"], d["needs"],
               [Attempt(**a) for a in d["attempts"]],
               ShrinkCheck(**d["shrink"]) if d.get("shrink") else None,
               ExhaustiveKill(**d["exhaustive"]) if d.get("exhaustive") else None)


def _fmt(v: float | None, unit: str = "", digits: int = 1, none: str = "—") -> str:
    return none if v is None else f"{v:.{digits}f}{unit}"


def render_markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    seeds, budget = meta["seeds"], meta["budget_s"]
    hidden = meta.get("hide") or []
    killed = [r for r in rows if r.kills]
    all_seeds = [r for r in rows if len(r.kills) == len(r.attempts)]
    within = [r for r in all_seeds if max(a.time_s or 0 for a in r.kills) <= budget]
    # the optional columns: only what this run measured
    shrunk = any(r.shrink is not None for r in rows)
    exhausted = any(r.exhaustive is not None for r in rows)
    header = ["Mutant", "Requirement", "Killed (seeds)", "Median time to kill", "Median steps",
              "Median sequences", "Slowest kill", "Requirements named"]
    header += ["Shrunk fixture (seed 0)"] if shrunk else []
    header += [f"Exhaustive d={meta.get('depth', '?')}"] if exhausted else []
    header += ["Killing sequences with a crash point"] if hidden else []
    out = [
        f"Exploration in process, no handwritten case, {len(seeds)} seeds ({seeds[0]}.."
        f"{seeds[-1]}), stop at the first failure, no shrinking, no example database, "
        f"budget {budget:.0f} s per run"
        + "".join(f", --hide {c}" for c in hidden)
        + f"; Hypothesis {meta['hypothesis']}, Python {meta['python']}, {meta['machine']}.",
        "",
        f"**Killed: {len(killed)}/{len(rows)} mutants by at least one seed; "
        f"{len(within)}/{len(rows)} ({100 * len(within) / len(rows):.0f}%) by every seed, each "
        f"within {budget:.0f} s.**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lengths = sorted(r.shrink.shrunk_steps for r in rows
                     if r.shrink is not None and r.shrink.shrunk_steps is not None)
    if lengths:
        out[2:2] = [f"Saved fixtures (seed 0, after Hypothesis' shrinking and the last pass "
                    f"that drops every removable step): median {statistics.median(lengths):g} "
                    f"steps, longest {lengths[-1]}, over {len(lengths)} fixtures.", ""]
    for r in rows:
        reqs = sorted({a.requirement for a in r.kills if a.requirement})
        # the slowest seed: a survivor is slower than the budget
        slow = None if len(r.kills) < len(r.attempts) else max(
            (a.time_s or 0 for a in r.kills), default=None)
        none = f"> {budget:.0f} s" if r.attempts else "—"
        cells = [f"`{r.mutant}`", r.requirement, f"{len(r.kills)}/{len(r.attempts)}",
                 _fmt(r.median("time_s"), " s", 2, none), _fmt(r.median("steps"), "", 0),
                 _fmt(r.median("sequences"), "", 0), _fmt(slow, " s", 2, none),
                 ", ".join(reqs) or "—"]
        if shrunk:
            sh = r.shrink
            cells.append("—" if sh is None else (
                "not found" if not sh.killed else
                f"{sh.shrunk_steps} steps, {'red' if sh.replay_red else 'NOT RED'}/"
                f"{'green' if sh.reference_green else 'NOT GREEN'}"))
        if exhausted:
            ex = r.exhaustive
            cells.append("—" if ex is None else (
                f"{ex.requirement} after {ex.states} states ({_fmt(ex.time_s, ' s')})"
                if ex.killed else "survives"))
        if hidden:
            cells.append(f"{sum(bool(a.with_crash_point) for a in r.kills)}/{len(r.kills)}"
                         if r.kills else "—")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per run")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--only", action="append", default=[], help="one mutant (repeatable)")
    ap.add_argument("--throughput-s", type=float, default=30.0)
    ap.add_argument("--depth", type=int, default=4, help="exhaustive depth")
    ap.add_argument("--quick", action="store_true",
                    help="2 seeds, 20 s budget, 10 s throughput, depth 3")
    ap.add_argument("--no-shrink-check", action="store_true")
    ap.add_argument("--no-exhaustive", action="store_true")
    ap.add_argument("--no-process", action="store_true",
                    help="skip the local-process throughput")
    ap.add_argument("--hide", action="append", default=[], metavar="CAP",
                    help="explore the mutants as if they lacked CAP (e.g. failpoints)")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only print the Markdown table of an earlier run's --json file")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"bench_explore: ignoring {' '.join(unknown)}", file=sys.stderr)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        print(render_markdown([_row(r) for r in saved["mutants"]], saved["meta"]), end="")
        return 0
    if args.quick:
        args.seeds, args.budget, args.throughput_s, args.depth = 2, 20.0, 10.0, 3
    names = args.only or sorted(MUTANTS)
    seeds = list(range(args.seeds))
    meta: dict[str, Any] = {
        "seeds": seeds, "budget_s": args.budget, "depth": args.depth, "hide": args.hide,
        "hypothesis": hypothesis.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}, {args.jobs} worker(s)",
    }
    t_start = time.monotonic()

    print("1. throughput", flush=True)
    throughput = [_throughput("reference", args.throughput_s)]
    if not args.no_process:
        throughput.append(_throughput("reference-process", args.throughput_s))
    for t in throughput:
        print(f"   {t['impl']:<18} {t['steps_per_s']:>8} steps/s  {t['sequences_per_s']:>6} "
              f"sequences/s  ({t['steps']} steps, {t['sequences']} sequences in "
              f"{t['seconds']} s, {t['failures']} failures)", flush=True)

    rows = {n: Row(n, MUTANTS[n].requirement, sorted(MUTANTS[n].needs)) for n in names}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        print("2. kill table", flush=True)
        hide = tuple(args.hide)
        jobs = [(n, s, args.budget, hide) for n in names for s in seeds]
        for a in pool.map(_attempt, jobs):
            rows[a.mutant].attempts.append(a)
            print(f"   {a.mutant:<36} seed {a.seed}: "
                  f"{'KILLED' if a.killed else 'survived'} {_fmt(a.time_s, ' s', 2):>9} "
                  f"{a.steps or '':>7} steps  {a.requirement or ''} {a.message or ''}"[:160],
                  flush=True)
        if not args.no_shrink_check:
            print("3. shrink check (seed 0)", flush=True)
            for sc in pool.map(_shrink_check, [(n, args.budget, hide) for n in names]):
                rows[sc.mutant].shrink = sc
                print(f"   {sc.mutant:<36} {sc.requirement or 'not found'} "
                      f"{sc.shrunk_steps or ''} steps, replay red {sc.replay_red}, reference "
                      f"green {sc.reference_green} ({sc.total_s:.1f} s)", flush=True)
        exhaustive_ref: dict[str, Any] | None = None
        if not args.no_exhaustive:
            print(f"4. exhaustive depth {args.depth}", flush=True)
            ref = exhaustive("reference", depth=args.depth, out=None, crash_nth=0)
            exhaustive_ref = {"depth": ref.depth, "sequences": ref.sequences,
                              "states": ref.states, "steps": ref.steps,
                              "seconds": round(ref.duration_s, 1),
                              "steps_per_s": round(ref.steps_per_s, 1),
                              "violations": len(ref.findings)}
            print(f"   reference: {exhaustive_ref}", flush=True)
            for ek in pool.map(_exhaustive_kill, [(n, args.depth) for n in names]):
                rows[ek.mutant].exhaustive = ek
                what = (f"KILLED {ek.requirement} after {ek.states} states, "
                        f"{_fmt(ek.time_s, ' s')}" if ek.killed else "survives")
                print(f"   {ek.mutant:<36} {what} ({ek.total_s:.1f} s)", flush=True)

    ordered = [rows[n] for n in names]
    md = render_markdown(ordered, meta)
    print("\n" + md)
    killed_all = sum(1 for r in ordered if r.kills and len(r.kills) == len(r.attempts))
    print(f"killed by every seed: {killed_all}/{len(ordered)}; "
          f"total {time.monotonic() - t_start:.0f} s")
    for path in (args.markdown, args.json):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.write_text(json.dumps({
            "meta": meta, "throughput": throughput, "exhaustive_reference": exhaustive_ref,
            "mutants": [asdict(r) for r in ordered],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
