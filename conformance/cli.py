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
is certified); 1 on any failure; 2 on a usage or suite-format error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__, explore, mutation
from .cases import Case, CaseResult
from .catalog import Catalog, CatalogError, load_catalog
from .explore.budget import DEFAULT_SEQUENCES, explore_for_certificate
from .impls import Implementation, ImplementationUnavailable, resolve
from .loader import SuiteError, load_suites, validate_paths
from .report import ReportPaths, RunInfo, profile_verdicts, write_report
from .session import (
    SUITES_DIR,
    ExpectationsError,
    Progress,
    load_expectations,
    run_all,
    select,
)

PROTOCOL_VERSION = 1


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
    p.add_argument("--seed", type=int, default=0, help="seed for generators and power loss")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="conformance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"conformance {__version__}")
    sub = ap.add_subparsers(dest="command")
    certify = sub.add_parser("certify", help="run every suite and write the certification report")
    _add_run_options(certify)
    certify.add_argument(
        "--explore", type=int, default=DEFAULT_SEQUENCES, metavar="N",
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
    return ap


# where each command writes its report unless --out says otherwise: a run of a few cases or
# a replayed fixture never replaces the certification report
DEFAULT_OUT = {"certify": Path("reports/latest"), "run": Path("reports/run"),
               "replay": Path("reports/replay")}


def _load_cases(paths: Sequence[Path] | None, catalog: Catalog) -> list[Case]:
    suites = load_suites(list(paths) if paths else [SUITES_DIR], catalog)
    return [case for suite in suites for case in suite.cases]


def _execute(args: argparse.Namespace, cases: list[Case], catalog: Catalog, command: str) -> int:
    profile_caps = None
    if args.profile is not None:
        try:
            profile_caps = catalog.profile_capabilities(args.profile)
        except KeyError as exc:
            print(f"conformance: {exc.args[0]}", file=sys.stderr)
            return 2
    expected = load_expectations(args.expectations) if args.expectations else {}
    if args.image is not None:
        if args.impl != "reference":
            print("conformance: give --impl or --image, not both", file=sys.stderr)
            return 2
        args.impl = f"image:{args.image}"
    try:
        impl: Implementation = resolve(args.impl, seed=args.seed, timeout=args.timeout,
                                       profile_capabilities=profile_caps)
    except ImplementationUnavailable as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    cases = select(cases, args.pattern)
    if not cases:
        print("conformance: no case selected", file=sys.stderr)
        return 2
    print(f"conformance {__version__}: {len(cases)} cases against {impl.name}"
          f" (seed {args.seed})", file=sys.stderr)
    started_wall = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    progress = Progress(verbose=args.verbose)
    results = run_all(cases, impl, args.seed, expected, progress, args.differential)
    progress.done()
    exploration = None
    if getattr(args, "explore", 0) > 0:
        print(f"conformance: exploring {args.explore} generated sequences (seed {args.seed}; "
              "--explore 0 skips it)", file=sys.stderr)
        done, found = explore_for_certificate(args.impl, impl, sequences=args.explore,
                                              seed=args.seed, out=args.out / "explore",
                                              timeout=args.timeout, log=sys.stderr)
        results += found
        exploration = {**done.to_dict(), "summary": done.summary()}
        print(f"conformance: exploration: {done.summary()}", file=sys.stderr)
    duration = time.monotonic() - t0
    identity, advertised, unavailable = _identity(results, impl)
    info = RunInfo(implementation=identity, adapter=impl.name,
                   protocol_version=PROTOCOL_VERSION, capabilities=sorted(advertised),
                   profile=args.profile, seed=args.seed, started=started_wall,
                   duration_s=round(duration, 3), command=command, harness_version=__version__,
                   unavailable_faults=unavailable, exploration=exploration)
    paths = write_report(results, catalog, info, args.out)
    return _summarize(results, catalog, advertised, args.profile, duration, paths)


def _identity(results: list[CaseResult], impl: Implementation
              ) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """The implementation's identity and capabilities, as it announced them in hello (with the
    harness faults the adapter can inject), and the faults it cannot, with its reasons."""
    probe_case = results[0].case if results else None
    if probe_case is None:
        return {"name": impl.name}, set(), {}
    adapter = impl.factory(probe_case)
    try:
        hello = adapter.start("synced")
        unavailable = adapter.unavailable_faults()
        return ({str(k): str(v) for k, v in hello.implementation.items()},
                set(hello.capabilities) | (set(adapter.fault_capabilities) - set(unavailable)),
                unavailable)
    finally:
        adapter.close()


def _summarize(results: list[CaseResult], catalog: Catalog, advertised: set[str],
               profile: str | None, duration: float, paths: ReportPaths) -> int:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    for r in results:
        if r.status in ("failed", "error", "xpassed"):
            print(f"\n{r.status.upper()} {r.case.suite}::{r.case.id} ({r.case.location})")
            if r.failure is not None:
                print(r.failure.render())
            elif r.reason:
                print(f"  {r.reason}")
    verdicts = profile_verdicts(results, catalog, advertised)
    print("\nProfiles:")
    for v in verdicts:
        print(f"  {v.profile:<22} {v.summary()}")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"\n{summary} in {duration:.2f}s; report: {paths.markdown} (also report.json, "
          "junit.xml)")
    bad = any(r.status in ("failed", "error", "xpassed") for r in results)
    if profile is not None:
        claimed = next((v for v in verdicts if v.profile == profile), None)
        if claimed is None or not claimed.certified:
            print(f"profile {profile!r} is NOT certified", file=sys.stderr)
            return 1
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "conformance " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.command is None:
        args = build_parser().parse_args(["certify", *(argv or [])])
    if args.command in DEFAULT_OUT and args.out is None:
        args.out = DEFAULT_OUT[args.command]
    try:
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
            return _execute(args, _load_cases(args.suites, catalog), catalog, command)
        if args.command == "run":
            return _execute(args, _load_cases(args.paths, catalog), catalog, command)
        if args.command == "replay":
            return _execute(args, _load_cases([args.file], catalog), catalog, command)
        if args.command == "mutants":
            return mutation.command(args, catalog, command)
        if args.command == "explore":
            return explore.command(args)
    except (SuiteError, CatalogError, ExpectationsError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conformance: interrupted; every node was stopped", file=sys.stderr)
        return 130
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


if __name__ == "__main__":
    sys.exit(main())
