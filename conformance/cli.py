"""`conformance`: certify a node implementation against the suites.

    conformance certify                       all suites, in-process reference (the default)
    conformance certify --impl "CMD {data_dir}" --profile baseline
    conformance certify --image NAME[:TAG]    a container image (the same as --impl image:NAME)
    conformance run suites/cold_start.yaml -k skip
    conformance replay fixtures/regressions/some-fixture.yaml
    conformance list cases | suites | requirements | profiles
    conformance mutants [--adapter process] [--only NAME]   the mutation score
    conformance explore --impl ... [--time S | --examples N] [--seed K] [--out DIR]
    conformance explore --exhaustive [--depth 4]             bounded exhaustive (B3)
    conformance validate [PATHS...]

Exit status: 0 when every case that ran passed (and, with --profile, the profile
is certified); 1 on any failure (a node that never starts included: the report says
why); 2 on a usage or suite-format error, found before any case runs; 128 + the
signal's number when SIGINT (130), SIGTERM (143) or SIGHUP (129) stopped the run,
after stopping every node and removing every temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__, explore, interrupts, mutation
from .cases import Case, CaseResult
from .catalog import Catalog, CatalogError, load_catalog
from .explore import collect
from .explore.budget import DEFAULT_SEQUENCES, Exploration, explore_for_certificate
from .impls import Implementation, ImplementationUnavailable, identify, resolve
from .leftovers import sweep_once
from .loader import SuiteError, load_suites, validate_paths
from .report import (
    ReportPaths,
    RunInfo,
    console_summary,
    profile_verdicts,
    selection_of,
    write_report,
)
from .session import (
    SUITES_DIR,
    ExpectationsError,
    Progress,
    is_not_run,
    load_expectations,
    never_started,
    run_all,
    select,
)

PROTOCOL_VERSION = 1
# --impl values that name a node the harness knows how to start (no {data_dir} needed)
KNOWN_IMPLS = ("reference", "reference-process")
KNOWN_PREFIXES = ("mutant:", "mutant-process:", "image:")
PLACEHOLDER = "{data_dir}"
LOG_LINES = 10  # lines of the node's log printed when it never started


class UsageError(Exception):
    """A command-line problem, found before any case runs (exit status 2)."""


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, e.g. 10; got "
                                         f"{text!r}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}")
    return value


def jobs_count(text: str) -> int:
    """argparse type: a number of parallel jobs >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of jobs >= 1; got {text!r}")
    return value


def effective_jobs(jobs: int | None, impl: Implementation) -> int:
    """--jobs, or by default the machine's cores; the in-process reference runs serially
    (the GIL: threads would only take turns)."""
    if jobs is not None:
        return jobs
    return 1 if impl.in_process else max(1, os.cpu_count() or 1)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", default="reference",
                   help="reference (in process, default) | reference-process | a command line "
                        "with {data_dir}, e.g. \"python examples/minimal_node.py --data-dir "
                        "{data_dir}\" | image:NAME[:TAG] (a container image)")
    p.add_argument("--image", metavar="NAME[:TAG]", default=None,
                   help="a Docker image serving the protocol over TCP 7070 with its data on a "
                        "/data volume; the same as --impl image:NAME[:TAG]")
    p.add_argument("--profile", default=None,
                   help="the profile the implementation claims; certification fails unless "
                        "every MUST requirement of it passed")
    p.add_argument("--allow-no-data-dir", action="store_true",
                   help="run an --impl command line that has no {data_dir} (by default an "
                        "error: without it every case would share, or lose, the node's data)")
    p.add_argument("--seed", type=int, default=0, help="seed for generators and power loss")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds per request (> 0)")
    p.add_argument("--out", type=Path, default=None,
                   help="report directory (report.json, report.md, junit.xml); default "
                        "reports/latest for certify, reports/run and reports/replay for the "
                        "others, so that neither overwrites the certification report")
    p.add_argument("--expectations", type=Path, default=None,
                   help="YAML of known failures of this implementation (strict xfail)")
    p.add_argument("-k", dest="pattern", default=None, help="only cases whose id contains this")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    p.add_argument("--differential", action="store_true",
                   help="also run each case on the in-process reference (same capabilities) "
                        "and fail at the first reply that differs")
    p.add_argument("--jobs", "-j", type=jobs_count, default=None, metavar="N",
                   help="cases run at once, each with its own node and data directory; the "
                        "same results as one at a time (default: the machine's cores, 1 for "
                        "the in-process reference, which the GIL serializes)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"conformance {__version__}")
    sub = ap.add_subparsers(dest="command")
    certify = sub.add_parser("certify", help="run every suite and write the certification report")
    _add_run_options(certify)
    certify.add_argument(
        "--explore", type=count, default=DEFAULT_SEQUENCES, metavar="N",
        help="after the suites, explore N generated sequences with --seed (reproducible); "
             "every verified finding fails the certificate like a failing case, its fixture "
             f"under OUT/explore/ (default {DEFAULT_SEQUENCES}; 0 skips it)")
    certify.add_argument("--suites", type=Path, nargs="*", default=None,
                         help="suite files or directories (default: the suites/ folder)")
    run = sub.add_parser("run", help="run selected suite files or cases")
    run.add_argument("paths", type=Path, nargs="*", help="suite files or directories")
    _add_run_options(run)
    replay = sub.add_parser("replay", help="replay a fixture (a suite file) and show the result")
    replay.add_argument("file", type=Path)
    _add_run_options(replay)
    lst = sub.add_parser("list", help="list suites, cases, requirements or profiles")
    lst.add_argument("what", choices=["suites", "cases", "requirements", "profiles"],
                     nargs="?", default="cases")
    lst.add_argument("--suites", type=Path, nargs="*", default=None)
    val = sub.add_parser("validate", help="schema-check suite files")
    val.add_argument("paths", type=Path, nargs="*")
    mutation.add_parser(sub)
    explore.add_parser(sub)
    collect.add_parser(sub)
    return ap


# where each command writes its report unless --out says otherwise: a run of a few cases or
# a replayed fixture never replaces the certification report
DEFAULT_OUT = {"certify": Path("reports/latest"), "run": Path("reports/run"),
               "replay": Path("reports/replay")}


def _load_cases(paths: Sequence[Path] | None, catalog: Catalog) -> list[Case]:
    suites = load_suites(list(paths) if paths else [SUITES_DIR], catalog)
    return [case for suite in suites for case in suite.cases]


def check_impl(impl: str, allow_no_data_dir: bool = False) -> None:
    """UsageError for an --impl value that cannot name a node: empty, unsplittable, or a
    command line without {data_dir} (unless `allow_no_data_dir`)."""
    if not impl.strip():
        raise UsageError("--impl is empty: give reference, reference-process, mutant:NAME, "
                         "image:NAME[:TAG] or your node's command line with {data_dir}")
    if impl in KNOWN_IMPLS or impl.startswith(KNOWN_PREFIXES):
        return
    try:
        argv = shlex.split(impl)
    except ValueError as exc:
        raise UsageError(f"--impl {impl!r}: cannot split it into arguments ({exc})") from None
    if not argv:
        raise UsageError(f"--impl {impl!r} holds no command")
    if allow_no_data_dir or any(PLACEHOLDER in a for a in argv):
        return
    near = sorted(set(re.findall(r"\{[^{}]*\}", impl)))
    if near:  # a misspelt placeholder: show it spelled right
        seen = f" (it has {', '.join(near)}: the placeholder is spelled {PLACEHOLDER})"
        fixed = impl.replace(near[0], PLACEHOLDER)
    else:
        seen, fixed = "", f"{impl} --data-dir {PLACEHOLDER}"
    raise UsageError(
        f"--impl {impl!r} has no {PLACEHOLDER}{seen}: the harness gives each case a fresh "
        f"data directory there, and without it every case would share (or lose) the node's "
        f"data. Put it where your node takes its directory, e.g. --impl {shlex.quote(fixed)}; "
        f"if the node really takes none, add --allow-no-data-dir")


def check_out(out: Path) -> None:
    """UsageError unless `out` is (or can be made) a directory the report can be written to;
    made now, so that a run never ends with nowhere to write its report."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".conformance-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {out}: the report cannot be written there "
                         f"({exc.strerror or exc})") from None


def check_common(args: argparse.Namespace) -> None:
    """What every command that starts nodes shares: --impl and --timeout."""
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout {timeout!r}: expected a number of seconds > 0, e.g. 10")
    impl = getattr(args, "impl", None)
    if isinstance(impl, str):
        # explore takes any command line; certify, run and replay insist on {data_dir}
        check_impl(impl, getattr(args, "allow_no_data_dir", True))


def _check_run(args: argparse.Namespace, catalog: Catalog) -> tuple[frozenset[str] | None,
                                                                      dict[str, str]]:
    """certify, run and replay: every option checked before any case runs. Returns the
    claimed profile's capabilities and the expected failures."""
    if args.image is not None:
        if args.impl != "reference":
            raise UsageError("give --impl or --image, not both")
        if not args.image.strip():
            raise UsageError("--image is empty: give NAME[:TAG]")
        args.impl = f"image:{args.image}"
    check_common(args)
    profile_caps = None
    if args.profile is not None:
        try:
            profile_caps = catalog.profile_capabilities(args.profile)
        except KeyError:
            known = ", ".join(p.name for p in catalog.profiles)
            raise UsageError(f"--profile {args.profile!r} is not a profile of the catalog; "
                             f"one of: {known}") from None
    expected = load_expectations(args.expectations) if args.expectations else {}
    check_out(args.out)
    return profile_caps, expected


def _execute(args: argparse.Namespace, suites: Sequence[Path] | None, catalog: Catalog,
             command: str) -> int:
    profile_caps, expected = _check_run(args, catalog)  # before the suites load: seconds
    cases = _load_cases(suites, catalog)
    try:
        impl: Implementation = resolve(args.impl, seed=args.seed, timeout=args.timeout,
                                       profile_capabilities=profile_caps)
    except (ImplementationUnavailable, ValueError) as exc:
        raise UsageError(str(exc)) from None
    cases = select(cases, args.pattern)
    if not cases:
        raise UsageError(f"no case selected (-k {args.pattern!r})")
    print(f"conformance {__version__}: {len(cases)} cases against {impl.name}"
          f" (seed {args.seed})", file=sys.stderr)
    started_wall = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    progress = Progress(verbose=args.verbose, total=len(cases))
    try:
        results = run_all(cases, impl, args.seed, expected, progress, args.differential,
                          jobs=effective_jobs(args.jobs, impl))
    finally:
        progress.done()
    stuck = never_started(results)
    if stuck is not None:
        _say_never_started(stuck, results)
    exploration = None
    if getattr(args, "explore", 0) > 0 and stuck is not None:
        done = Exploration(args.explore, args.seed, not_run=f"the node never started: {stuck}")
        exploration = {**done.to_dict(), "summary": done.summary()}
    elif getattr(args, "explore", 0) > 0:
        print(f"conformance: exploring {args.explore} generated sequences (seed {args.seed}; "
              "--explore 0 skips it)", file=sys.stderr)
        done, found = explore_for_certificate(args.impl, impl, sequences=args.explore,
                                              seed=args.seed, out=args.out / "explore",
                                              timeout=args.timeout, log=sys.stderr,
                                              jobs=effective_jobs(args.jobs, impl),
                                              profile_capabilities=profile_caps)
        results += found
        exploration = {**done.to_dict(), "summary": done.summary()}
        print(f"conformance: exploration: {done.summary()}", file=sys.stderr)
    duration = time.monotonic() - t0
    identity, advertised, unavailable = identify(results, impl, stuck)
    info = RunInfo(implementation=identity, adapter=impl.name,
                   protocol_version=PROTOCOL_VERSION, capabilities=sorted(advertised),
                   profile=args.profile, seed=args.seed, started=started_wall,
                   duration_s=round(duration, 3), command=command, harness_version=__version__,
                   unavailable_faults=unavailable, exploration=exploration,
                   selection=selection_of(args.command, args.pattern, _selected_paths(args)))
    try:
        with interrupts.critical():  # the three files of one run, never a mix with an older one
            paths = write_report(results, catalog, info, args.out)
    except OSError as exc:  # checked writable before the run; a full disk, say, since
        print(f"conformance: the report could not be written to {args.out}: {exc}",
              file=sys.stderr)
        return 1
    return _summarize(results, catalog, advertised, args.profile, duration, paths, stuck,
                      selection=info.selection)


def _say_never_started(reason: str, results: list[CaseResult]) -> None:
    ran = [r for r in results if r.start_failure]
    skipped = len(results) - len(ran)
    print(f"conformance: the node never started: {reason}"
          + (f"; the other {skipped} case(s) were not run" if skipped else ""), file=sys.stderr)
    logs = ran[-1].failure.logs if ran and ran[-1].failure is not None else ""
    if logs.strip():
        print("conformance: its log ends with:", file=sys.stderr)
        for line in logs.strip().splitlines()[-LOG_LINES:]:
            print(f"  {line}", file=sys.stderr)


def _selected_paths(args: argparse.Namespace) -> list[Path]:
    """The suite files a run or replay named (certify runs its suite directory whole)."""
    return [args.file] if args.command == "replay" else list(getattr(args, "paths", None) or [])


def _summarize(results: list[CaseResult], catalog: Catalog, advertised: set[str],
               profile: str | None, duration: float, paths: ReportPaths,
               stuck: str | None = None,
               selection: str | None = None) -> int:
    counts: dict[str, int] = {}
    for r in results:
        status = "not run (the node never started)" if is_not_run(r) else r.status
        counts[status] = counts.get(status, 0) + 1
    verdicts = profile_verdicts(results, catalog, advertised, selection)
    if stuck is not None:
        print(f"\nThe node never started ({stuck}): no profile can be certified.")
    print("\n".join(console_summary(results, catalog, advertised, selection)))
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"\n{summary} in {duration:.2f}s; report: {paths.markdown} (also report.html, "
          "report.json, junit.xml)")
    bad = any(r.status in ("failed", "error", "xpassed") for r in results)
    if profile is not None:
        claimed = next((v for v in verdicts if v.profile == profile), None)
        if claimed is None or not claimed.certified:
            print(f"profile {profile!r} is NOT certified", file=sys.stderr)
            return 1
    return 1 if bad else 0


# the commands that start nodes: they first remove what killed runs left behind
NODE_COMMANDS = ("certify", "run", "replay", "mutants", "explore")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "conformance " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.command is None:
        args = build_parser().parse_args(["certify", *(argv or [])])
    if args.command in DEFAULT_OUT and args.out is None:
        args.out = DEFAULT_OUT[args.command]
    # SIGTERM and SIGHUP take Ctrl-C's path: every node stopped, every temp dir removed
    with interrupts.handled():
        try:
            return _main(args, command)
        except KeyboardInterrupt as exc:
            name, status = ((exc.name, exc.exit_status) if isinstance(exc, interrupts.Interrupted)
                            else ("SIGINT", 130))
            print(f"conformance: interrupted by {name}; every node was stopped", file=sys.stderr)
            return status


def _main(args: argparse.Namespace, command: str) -> int:
    try:
        if args.command in NODE_COMMANDS:
            check_common(args)
            swept = sweep_once()
            if swept is not None and swept.summary():
                print(f"conformance: {swept.summary()}", file=sys.stderr)
        catalog = load_catalog()
        if args.command == "validate":
            errors = validate_paths(args.paths or [SUITES_DIR])
            for err in errors:
                print(err, file=sys.stderr)
            print(f"{'invalid' if errors else 'ok'}: {len(errors)} file(s) with errors")
            return 2 if errors else 0
        if args.command == "list":
            return _list(args, catalog)
        if args.command == "certify":
            return _execute(args, args.suites, catalog, command)
        if args.command == "run":
            return _execute(args, args.paths, catalog, command)
        if args.command == "replay":
            return _execute(args, [args.file], catalog, command)
        if args.command == "mutants":
            return mutation.command(args, catalog, command)
        if args.command == "explore":
            return explore.command(args)
        if args.command == "collect":
            return collect.command(args)
    except (SuiteError, CatalogError, ExpectationsError, UsageError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    return 2


def _list(args: argparse.Namespace, catalog: Catalog) -> int:
    if args.what == "requirements":
        for r in catalog.requirements:
            print(f"{r.id:<8} {r.level:<6} {r.title}")
        return 0
    if args.what == "profiles":
        for p in catalog.profiles:
            caps = ", ".join(sorted(catalog.profile_capabilities(p.name))) or "-"
            print(f"{p.name:<22} {caps}")
        return 0
    suites = load_suites(args.suites or [SUITES_DIR], catalog)
    for suite in suites:
        if args.what == "suites":
            print(f"{suite.name:<24} {len(suite.cases):>3} cases  {suite.path}")
            continue
        for case in suite.cases:
            print(f"{suite.name}::{case.id:<44} {' '.join(case.requirements)}")
    return 0


def console_main() -> int:
    """The `conformance` command: `main`, then the process exits with signals ignored (a
    signal after the run is over must not turn its exit status into a signal death)."""
    status = main()
    interrupts.ignore_until_exit()
    return status


if __name__ == "__main__":
    sys.exit(console_main())
