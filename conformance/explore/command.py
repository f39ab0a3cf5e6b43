"""`conformance explore` on the command line: its options, and what it prints.

    conformance explore --impl mutant:pin-error-ignored --time 30
    conformance explore --impl reference --examples 500 --seed 7 --out /tmp/found
    conformance explore --exhaustive --depth 4 --json reports/exhaustive.json

`add_parser` adds the subcommand to conformance/cli.py's parser; `command` runs it:
exploration (`campaign.explore`) or, with `--exhaustive`, the bounded exhaustive mode
(`exhaustive.exhaustive`). Each finding is printed as it is found (`FOUND ...` with its
fixture's path, the replay verdicts and the minimal sequence), then a one-paragraph
summary and where the time went; `--json` writes the report as JSON. Exit status: 0 when
nothing failed, 1 when a failure was found, 2 on a usage error (an unknown `--impl`, an
unreachable `--database`) or when a worker failed (`--jobs`: it says which and why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..adapters.base import AdapterError
from ..impls import ImplementationUnavailable
from .database import DatabaseUnavailable, describe, open_database
from .driver import probe
from .exhaustive import CRASH_NTH, exhaustive
from .findings import Finding
from .run import DEFAULT_DATABASE, DEFAULT_OUT, explore
from .workers import WorkerError


def add_parser(sub: Any) -> None:
    """Add `explore` to the subcommands of `conformance` (conformance/cli.py)."""
    from ..cli import jobs_count  # (cli imports this module)

    p: argparse.ArgumentParser = sub.add_parser(
        "explore", help="generate step sequences with Hypothesis; shrink and save failures",
        description=sys.modules[__package__].__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", default="reference",
                   help="reference | reference-process | mutant:NAME | mutant-process:NAME | "
                        "a command line with {data_dir} | image:NAME[:TAG]")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--time", type=float, default=None, metavar="S",
                        help="explore for S seconds (default 60); how far a run gets, and "
                             "so what it finds, depends on the machine's speed")
    budget.add_argument("--examples", type=int, default=None, metavar="N",
                        help="explore N generated sequences; with --no-database, the same "
                             "seed gives the same findings and fixtures")
    p.add_argument("--seed", type=int, default=0, help="the Hypothesis seed (reproducible)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"where failing sequences are saved as fixtures (default {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=40, help="steps per generated sequence")
    p.add_argument("--first", action="store_true", help="stop at the first failure")
    p.add_argument("--no-shrink", action="store_true", help="save failures unshrunk (faster)")
    p.add_argument("--database", default=str(DEFAULT_DATABASE), metavar="DIR|redis://HOST",
                   help="Hypothesis' example database: a directory (default "
                        f"{DEFAULT_DATABASE}) or a Redis server shared by many machines, "
                        "redis://host[:port][/db] (docs/scale-out.md)")
    p.add_argument("--no-database", action="store_true",
                   help="do not use Hypothesis' example database")
    p.add_argument("--jobs", "-j", type=jobs_count, default=None, metavar="N",
                   help="campaigns run in N worker processes, each with its own nodes "
                        "(default: the machine's cores; an --examples budget of one "
                        "campaign runs in this process); the same findings as --jobs 1")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--exhaustive", action="store_true",
                   help="bounded exhaustive mode: every sequence up to --depth operations x "
                        "every crash point x every power-loss mode")
    p.add_argument("--depth", type=int, default=4, help="--exhaustive: the sequence length")
    p.add_argument("--crash-nth", type=int, default=CRASH_NTH, metavar="N",
                   help="--exhaustive: crash points at each operation kind's 1st..Nth "
                        f"occurrence in a step (default {CRASH_NTH}; 0: none)")
    p.add_argument("--hide", action="append", default=[], metavar="CAP",
                   help="explore as if the node (or the adapter) lacked capability CAP, e.g. "
                        "--hide failpoints: what a node without failpoints gets (repeatable)")
    p.add_argument("--profiles", action="store_true",
                   help="--exhaustive: also every lower capability profile (a node that "
                        "honours `without`: the reference and its mutants)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")


def command(args: argparse.Namespace) -> int:
    """Exit status: 0 when nothing failed, 1 when a failure was found, 2 on a usage error."""
    database = None if args.no_database else args.database
    try:
        hide = {c.strip() for h in args.hide for c in h.split(",") if c.strip()}
        if not args.exhaustive:
            open_database(database)  # a database that cannot be used: before any node starts
        target = probe(args.impl, timeout=args.timeout, hide=hide)
    except (ImplementationUnavailable, AdapterError, DatabaseUnavailable, ValueError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    print(f"conformance {__version__} explore: {target.identity}; capabilities "
          f"{', '.join(sorted(target.capabilities))}"
          + (f" (hidden: {', '.join(sorted(target.hidden))})" if target.hidden else ""),
          file=sys.stderr)
    if args.exhaustive:
        ex = exhaustive(args.impl, depth=args.depth, out=args.out, target=target,
                        profiles=args.profiles, first=args.first, log=sys.stdout,
                        crash_nth=args.crash_nth)
        points = (f" ({ex.crash_point_states} with a crash point, nth <= {ex.crash_nth})"
                  if ex.crash_nth else "")
        print(f"\nexhaustive depth {ex.depth} over {{{', '.join(ex.alphabet)}}}: {ex.sequences} "
              f"sequences, {ex.states} crash states{points}, {ex.steps} steps in "
              f"{ex.duration_s:.1f}s "
              f"({ex.steps_per_s:.0f} steps/s); {len(ex.findings)} distinct violation(s)"
              + _rejected(ex.findings)
              + "".join(f"\n  {req}: {n} failing state(s)"
                        for req, n in sorted(ex.by_requirement.items())))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(ex.to_dict(), indent=2, default=str) + "\n")
        return 1 if ex.findings else 0
    jobs = args.jobs if args.jobs is not None else max(1, os.cpu_count() or 1)
    print(f"{describe(database)}; up to {jobs} worker process(es)", file=sys.stderr)
    try:
        report = explore(args.impl, time_budget=args.time, max_examples=args.examples,
                         seed=args.seed, out=args.out, database=database,
                         shrink=not args.no_shrink, stop_at_first=args.first,
                         step_count=args.steps, timeout=args.timeout, target=target,
                         log=sys.stdout, jobs=jobs)
    except WorkerError as exc:  # its campaigns' findings so far are saved under --out
        print(f"conformance: the exploration stopped: {exc}", file=sys.stderr)
        return 2
    first = ("" if report.first_failure_s is None else
             f"; first failure after {report.first_failure_s:.2f}s, {report.first_failure_steps}"
             f" steps, {report.first_failure_examples} sequences")
    print(f"\n{report.examples} sequences, {report.steps} steps in {report.duration_s:.1f}s "
          f"({report.steps_per_s:.0f} steps/s), {report.campaigns} campaign(s), seed "
          f"{report.seed}: {len(report.findings)} distinct failure(s)"
          f"{_rejected(report.findings)}{first}"
          + (f"; {report.jobs} workers" if report.jobs > 1 else "")
          + f"\ntime: {report.timing()}")
    if not report.reproducible:
        why = ("a time budget: how far a run gets depends on the machine's speed"
               if args.examples is None else
               "the example database makes a run try earlier runs' failures first")
        print(f"(not reproducible: {why}; --examples N --no-database gives the same findings "
              "and fixtures for the same seed)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 1 if report.findings else 0


def _rejected(findings: list[Finding]) -> str:
    n = sum(1 for f in findings if f.rejected)
    return f" ({n} of them also on the reference: not fixtures, see not-green/)" if n else ""
