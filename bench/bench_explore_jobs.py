#!/usr/bin/env python3
"""`explore --jobs N` and `--time S` (issue 15, items 1 and 5); figures in docs/performance.md.

    python bench/bench_explore_jobs.py [--quick] [--examples N] [--steps N] [--jobs N]
                                       [--time S] [--impl SPEC ...] [--json PATH]

One run measures, for each implementation (default: the in-process reference and
`reference-process`):

1. **Throughput with workers**: the same example budget (so the same campaigns, seeds and
   sequences) with `--jobs 1` and with `--jobs N`, interleaved in that order: wall time,
   steps, steps/s and the speed-up; and whether the two runs found the same failures and
   counted the same sequences and steps (they must: run.py, "Reproducible").
2. **The time budget kept**: `--time S` with `--jobs 1` and `--jobs N`: when the last
   sequence was generated (against S), the shrinking and the saving apart, and the total.

Ratios within one run only: the machine is shared and noisy. Exit status 0 whatever the
figures; 1 when a measurement could not be made or the two runs of part 1 disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from conformance.explore import explore
from conformance.explore.run import ExploreReport


def _findings(report: ExploreReport) -> list[tuple[str, int]]:
    return [(f.requirement, len(f.steps)) for f in report.findings]


def _throughput(spec: str, examples: int, steps: int, jobs: int, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    report = explore(spec, max_examples=examples, seed=0, out=out, database=None,
                     step_count=steps, jobs=jobs)
    wall = time.perf_counter() - started
    return {"jobs": report.jobs, "wall_s": round(wall, 3), "campaigns": report.campaigns,
            "sequences": report.examples, "steps": report.steps,
            "steps_per_s": round(report.steps / wall, 1), "findings": _findings(report)}


def _budget(spec: str, seconds: float, steps: int, jobs: int, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    report = explore(spec, time_budget=seconds, seed=0, out=out, database=None,
                     step_count=steps, jobs=jobs)
    wall = time.perf_counter() - started
    return {"jobs": report.jobs, "budget_s": seconds, "wall_s": round(wall, 3),
            "generation_s": round(report.generation_s, 3),
            "shrink_s": round(report.shrink_s, 3), "save_s": round(report.save_s, 3),
            "overrun_s": round(report.generation_s - seconds, 3),
            "sequences": report.examples, "steps": report.steps,
            "findings": _findings(report)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", action="append", default=[], metavar="SPEC")
    ap.add_argument("--examples", type=int, default=200, help="part 1's example budget")
    ap.add_argument("--steps", type=int, default=40, help="steps per sequence")
    ap.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 1))
    ap.add_argument("--time", type=float, default=30.0, help="part 2's budget, seconds")
    ap.add_argument("--quick", action="store_true",
                    help="a small budget: every figure measured once, quickly")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    impls = args.impl or ["reference", "reference-process"]
    if args.quick:
        args.examples, args.steps, args.time = min(args.examples, 100), min(args.steps, 3), \
            min(args.time, 2.0)
    figures: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_before": os.getloadavg()[0]},
        "examples": args.examples, "steps": args.steps, "jobs": args.jobs,
        "throughput": {}, "budget": {}, "errors": []}
    with tempfile.TemporaryDirectory(prefix="bench-explore-jobs-") as tmp:
        for spec in impls:
            rows = [_throughput(spec, args.examples, args.steps, jobs, Path(tmp) / f"t{jobs}")
                    for jobs in (1, args.jobs)]
            serial, parallel = rows
            same = all(serial[k] == parallel[k] for k in ("findings", "sequences", "steps"))
            if not same:
                figures["errors"].append(f"{spec}: --jobs {args.jobs} differs from --jobs 1")
            figures["throughput"][spec] = {
                "rows": rows, "same_results": same,
                "speedup": round(parallel["steps_per_s"] / max(1e-9, serial["steps_per_s"]), 2)}
            figures["budget"][spec] = [
                _budget(spec, args.time, args.steps, jobs, Path(tmp) / f"b{jobs}")
                for jobs in (1, args.jobs)]
    figures["machine"]["load_after"] = os.getloadavg()[0]
    for spec in impls:
        t = figures["throughput"][spec]
        print(f"{spec}: " + "; ".join(
            f"--jobs {r['jobs']}: {r['steps']} steps in {r['wall_s']:.1f}s "
            f"({r['steps_per_s']:.0f} steps/s)" for r in t["rows"])
            + f"; speed-up {t['speedup']:.2f}x; same results: {t['same_results']}")
        for b in figures["budget"][spec]:
            print(f"  --time {b['budget_s']:g} --jobs {b['jobs']}: last sequence at "
                  f"{b['generation_s']:.1f}s (overrun {b['overrun_s']:+.1f}s), shrinking "
                  f"{b['shrink_s']:.1f}s, saving {b['save_s']:.1f}s, total {b['wall_s']:.1f}s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
