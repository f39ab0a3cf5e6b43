"""`conformance mutants`: prove the suites catch known-bad implementations.

Every mutant of the catalog (reference_impl/mutants.py) is one deliberate deviation
from the reference, tied to the requirement it violates. This module runs the suites
(and the regression fixtures) against every mutant and against the reference, and
builds the mutation matrix: for each mutant, the cases that kill it, the requirement
each failure names, and whether the killing case cites the mutant's requirement.

A mutant counts as **killed** only when a *suite* case that cites the mutant's
requirement fails against it (the issue: "every kill comes from a case that cites the
violated requirement"); a harness error (status `error`) is listed as a kill but never
counts. Kills by the regression fixtures are listed too, but do not count either: they
are the fallback record, not the suite's power. The run passes when

- the reference passes every case (suites and fixtures; not-applicable is allowed),
- every mutant within the adapter's reach is killed, and
- every regression fixture fails against the mutant it catches (red) and names a
  requirement.

A mutant that needs a fault the adapter cannot inject (power loss through the local
process adapter) is *out of reach*: reported, not run, never counted as a survivor.

A case "kills" a mutant when it fails against the mutant (or errors) while it passed
against the reference; a case the reference fails cannot kill anything.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from reference_impl.mutants import MUTANTS, Mutant

from .adapters.inprocess import InProcessAdapter
from .adapters.process import ProcessAdapter
from .cases import Case, CaseResult, Suite
from .catalog import Catalog
from .impls import Implementation, resolve
from .resources import REGRESSION_FIXTURES_DIR
from .session import run_all

AdapterKind = Literal["inprocess", "process"]
Verdict = Literal["killed", "killed_uncited", "survived", "out_of_reach"]

FIXTURES_DIR = REGRESSION_FIXTURES_DIR  # fixtures/regressions (conformance/resources.py)


def _adapter_faults(adapter: AdapterKind) -> frozenset[str]:
    """The faults an adapter of this kind can inject on this machine (power loss through
    the local-process adapter needs the crash-simulating filesystem, hence FUSE)."""
    if adapter == "inprocess":
        return InProcessAdapter.fault_capabilities
    from .faults.crashfs import available

    extra = {"power_loss", "crash_points"} if available() is None else set()
    return ProcessAdapter.fault_capabilities | extra


_KILLING = frozenset({"failed", "error"})


@dataclass(frozen=True)
class CaseRef:
    """One case of the run, and where it comes from."""

    id: str
    suite: str
    location: str
    requirements: tuple[str, ...]
    source: Literal["suite", "fixture"]
    catches: tuple[str, ...] = ()  # for a fixture: the mutants it is the regression for


@dataclass
class Kill:
    case: str
    suite: str
    source: str  # suite | fixture
    status: str  # failed | error
    violated: str | None  # the requirement the failure names
    cites_requirement: bool  # the case cites the mutant's requirement
    cites_violated: bool  # the case cites the requirement its failure names
    message: str  # first line of the failure


@dataclass
class MutantRun:
    name: str
    requirement: str
    bug_class: str
    needs: list[str]
    reach: bool
    kills: list[Kill] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # case id -> status
    fixture_cases: list[str] = field(default_factory=list)
    fixture_red: bool | None = None  # its own fixture failed against it, naming a requirement
    duration_s: float = 0.0

    @property
    def suite_kills(self) -> list[Kill]:
        return [k for k in self.kills if k.source == "suite"]

    @property
    def verdict(self) -> Verdict:
        if not self.reach:
            return "out_of_reach"
        if any(k.cites_requirement and k.status == "failed" for k in self.suite_kills):
            return "killed"
        return "killed_uncited" if self.suite_kills else "survived"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        return out


@dataclass
class MutationReport:
    adapter: str
    seed: int
    started: str
    duration_s: float
    cases: list[CaseRef]
    reference: dict[str, str]  # case id -> status against the reference
    reference_failures: dict[str, str]  # case id -> failure message
    mutants: list[MutantRun]
    reference_results: list[CaseResult] = field(default_factory=list, repr=False)

    @property
    def reference_green(self) -> bool:
        return not self.reference_failures

    @property
    def ok(self) -> bool:
        reached = [m for m in self.mutants if m.reach]
        return (self.reference_green and all(m.verdict == "killed" for m in reached)
                and all(m.fixture_red for m in reached))

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in ("killed", "killed_uncited", "survived", "out_of_reach")}
        for m in self.mutants:
            out[m.verdict] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "applied-index-conformance-mutants",
            "format_version": 1,
            "adapter": self.adapter,
            "seed": self.seed,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "summary": {
                "mutants": len(self.mutants),
                **self.counts(),
                "cases": len(self.cases),
                "suite_cases": sum(1 for c in self.cases if c.source == "suite"),
                "fixture_cases": sum(1 for c in self.cases if c.source == "fixture"),
                "reference_failures": len(self.reference_failures),
                "fixtures_red": sum(1 for m in self.mutants if m.fixture_red),
            },
            "reference": {"statuses": self.reference, "failures": self.reference_failures},
            "mutants": [m.to_dict() for m in self.mutants],
            "cases": [asdict(c) for c in self.cases],
        }


# --------------------------------------------------------------------------- running


def _implementation(target: str, adapter: AdapterKind, seed: int, timeout: float) -> Implementation:
    if target == "reference":
        spec = "reference" if adapter == "inprocess" else "reference-process"
    else:
        spec = f"mutant:{target}" if adapter == "inprocess" else f"mutant-process:{target}"
    return resolve(spec, seed=seed, timeout=timeout)


def _run_target(target: str, cases: Sequence[Case], adapter: AdapterKind, seed: int,
                timeout: float) -> tuple[list[CaseResult], float]:
    """Run every case against one target (a mutant name or 'reference')."""
    t0 = time.monotonic()
    results = run_all(cases, _implementation(target, adapter, seed, timeout), seed)
    return results, time.monotonic() - t0


def _first_line(result: CaseResult) -> str:
    text = result.failure.message if result.failure is not None else (result.reason or "")
    return text.splitlines()[0] if text else result.status


def judge(mutant: Mutant, refs: Sequence[CaseRef], results: Sequence[CaseResult],
          reference: dict[str, str], duration: float, reach: bool = True) -> MutantRun:
    """Turn one mutant's case results into its row of the matrix."""
    by_id = {r.id: r for r in refs}
    run = MutantRun(mutant.name, mutant.requirement, mutant.bug_class, sorted(mutant.needs),
                    reach, duration_s=round(duration, 3))
    run.fixture_cases = [r.id for r in refs if mutant.name in r.catches]
    for res in results:
        ref = by_id[res.case.id]
        run.statuses[ref.id] = res.status
        if res.status not in _KILLING or reference.get(ref.id) != "passed":
            continue
        violated = res.failure.requirement if res.failure is not None else None
        run.kills.append(Kill(
            case=ref.id, suite=ref.suite, source=ref.source, status=res.status,
            violated=violated, cites_requirement=mutant.requirement in ref.requirements,
            cites_violated=violated is not None and violated in ref.requirements,
            message=_first_line(res)))
    if run.fixture_cases:
        own = [k for k in run.kills if k.case in run.fixture_cases]
        run.fixture_red = len(own) == len(run.fixture_cases) and all(
            k.status == "failed" and k.violated is not None for k in own)
    else:
        run.fixture_red = False
    return run


def _case_refs(suites: Sequence[Suite], fixtures_dir: Path | None) -> list[CaseRef]:
    root = fixtures_dir.resolve() if fixtures_dir is not None else None
    out: list[CaseRef] = []
    for suite in suites:
        path = Path(suite.path).resolve()
        is_fixture = root is not None and (path == root or root in path.parents)
        catches = tuple(str(c) for c in ((suite.fixture or {}).get("catches") or ()))
        for case in suite.cases:
            out.append(CaseRef(case.id, suite.name, str(case.location), case.requirements,
                               "fixture" if is_fixture else "suite",
                               catches if is_fixture else ()))
    return out


def _worker(args: tuple[str, list[Case], AdapterKind, int, float]) -> tuple[str, list[CaseResult],
                                                                             float]:
    target, cases, adapter, seed, timeout = args
    results, duration = _run_target(target, cases, adapter, seed, timeout)
    for r in results:  # keep what crosses the process boundary small
        if r.failure is not None:
            r.failure.logs = r.failure.logs[-2000:]
    return target, results, duration


def run_mutation(suites: Sequence[Suite], *, fixtures_dir: Path | None, adapter: AdapterKind,
                 only: Iterable[str] = (), seed: int = 0, timeout: float = 10.0,
                 jobs: int = 1,
                 on_progress: Callable[[str], None] | None = None) -> MutationReport:
    say = on_progress or (lambda _line: None)
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    cases = [c for s in suites for c in s.cases]
    refs = _case_refs(suites, fixtures_dir)
    selected = [MUTANTS[n] for n in (sorted(set(only)) if only else sorted(MUTANTS))]
    faults = _adapter_faults(adapter)
    reachable = [m for m in selected if m.needs <= faults]
    targets = ["reference"] + [m.name for m in reachable]
    say(f"{len(cases)} cases ({sum(r.source == 'fixture' for r in refs)} regression fixtures) "
        f"x {len(targets)} targets (the reference and {len(reachable)} mutants), "
        f"{adapter} adapter, {jobs} job(s)")

    outputs: dict[str, tuple[list[CaseResult], float]] = {}

    def record(target: str, results: list[CaseResult], duration: float) -> None:
        outputs[target] = (results, duration)
        bad = sum(1 for r in results if r.status in _KILLING)
        what = "reference" if target == "reference" else f"mutant {target}"
        say(f"  {what:<48} {bad:>4} failing of {len(results)}  ({duration:.2f}s)")

    work = [(t, cases, adapter, seed, timeout) for t in targets]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for target, results, duration in pool.map(_worker, work):
                record(target, results, duration)
    else:
        for item in work:
            record(*_worker(item))

    ref_results, _ = outputs["reference"]
    reference: dict[str, str] = {r.case.id: str(r.status) for r in ref_results}
    reference_failures = {r.case.id: _first_line(r) for r in ref_results
                          if r.status in ("failed", "error", "xpassed")}
    runs: list[MutantRun] = []
    for m in selected:
        if m.name in outputs:
            results, duration = outputs[m.name]
            runs.append(judge(m, refs, results, reference, duration))
        else:
            run = MutantRun(m.name, m.requirement, m.bug_class, sorted(m.needs), False)
            run.fixture_cases = [r.id for r in refs if m.name in r.catches]
            runs.append(run)
    return MutationReport(adapter=adapter, seed=seed, started=started,
                          duration_s=time.monotonic() - t0, cases=refs, reference=reference,
                          reference_failures=reference_failures, mutants=runs,
                          reference_results=ref_results)


# --------------------------------------------------------------------------- output

_VERDICT_WORDS = {
    "killed": "killed",
    "killed_uncited": "KILLED, NOT BY A CITING CASE",
    "survived": "SURVIVED",
    "out_of_reach": "out of reach",
}


def _fixture_word(m: MutantRun) -> str:
    if not m.fixture_cases:
        return "none"
    if not m.reach:
        return "not run"
    return "red" if m.fixture_red else "NOT RED"


def render_text(report: MutationReport, paths: Sequence[Path] = ()) -> str:
    out = ["", "Mutation matrix (mutant x killing suite cases; * = the case cites the mutant's "
           "requirement)", ""]
    width = max((len(m.name) for m in report.mutants), default=10)
    for m in report.mutants:
        kills = sorted(m.suite_kills, key=lambda k: not (k.cites_requirement
                                                          and k.status == "failed"))
        shown = ", ".join(f"{k.case}{'*' if k.cites_requirement else ''}[{k.violated or '-'}]"
                          for k in kills[:4])
        more = f" +{len(kills) - 4} more" if len(kills) > 4 else ""
        fixture = _fixture_word(m)
        out.append(f"  {m.name:<{width}} {m.requirement:<7} {_VERDICT_WORDS[m.verdict]:<12}"
                   f" fixture {fixture:<7} {len(kills):>3} kill(s) {shown}{more}")
    c = report.counts()
    reached = sum(1 for m in report.mutants if m.reach)
    score = 100.0 * c["killed"] / reached if reached else 100.0
    out += ["", f"mutation score {c['killed']}/{reached} ({score:.0f}%) on the {report.adapter} "
            f"adapter: {c['killed']} killed, {c['killed_uncited']} killed only by cases not "
            f"citing the requirement, {c['survived']} survived, {c['out_of_reach']} out of reach"]
    ref_total = len(report.reference)
    na = sum(1 for s in report.reference.values() if s == "not_applicable")
    out.append(f"reference: {ref_total - len(report.reference_failures) - na} passed, "
               f"{na} not applicable, {len(report.reference_failures)} failed")
    for cid, msg in sorted(report.reference_failures.items()):
        out.append(f"  REFERENCE FAILS {cid}: {msg}")
    for m in report.mutants:
        if m.verdict in ("survived", "killed_uncited"):
            fx = ", ".join(m.fixture_cases) or "none"
            out.append(f"  GAP {m.name} ({m.requirement}): no suite case citing {m.requirement} "
                       f"kills it; the regression fixture ({fx}) shows a sequence that does")
        if m.reach and not m.fixture_red:
            out.append(f"  FIXTURE {m.name}: its regression fixture is not red against it")
    out.append(f"{'PASS' if report.ok else 'FAIL'} in {report.duration_s:.1f}s"
               + (f"; written: {', '.join(str(p) for p in paths)}" if paths else ""))
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: MutationReport) -> str:
    c = report.counts()
    reached = sum(1 for m in report.mutants if m.reach)
    out = [
        "# Mutation report",
        "",
        f"- Adapter: {report.adapter}; seed {report.seed}; started {report.started}; "
        f"{report.duration_s:.1f} s",
        f"- Cases: {sum(1 for r in report.cases if r.source == 'suite')} suite cases, "
        f"{sum(1 for r in report.cases if r.source == 'fixture')} regression fixtures",
        f"- Mutation score: **{c['killed']}/{reached}** mutants within reach killed by a case "
        f"citing their requirement ({c['killed_uncited']} killed only by non-citing cases, "
        f"{c['survived']} survived, {c['out_of_reach']} out of reach of this adapter)",
        f"- Reference: {len(report.reference_failures)} failing case(s)",
        f"- Verdict: **{'PASS' if report.ok else 'FAIL'}**",
        "",
        "## Matrix",
        "",
        "A kill is a case that passes on the reference and fails on the mutant. *Violated* is "
        "the requirement the failure names (or the status, when it names none). *Other "
        "killing cases* counts the kills by cases not citing the mutant's requirement and by "
        "the regression fixtures; every kill is listed under [Mutants](#mutants).",
        "",
        "| Mutant | Requirement | Verdict | Fixture | Killing suite cases citing it (violated) "
        "| Other killing cases |",
        "|---|---|---|---|---|---|",
    ]
    for m in report.mutants:
        citing = [k for k in m.suite_kills if k.cites_requirement]
        kills = "<br>".join(f"`{k.case}` ({k.violated or k.status})" for k in citing) or "—"
        others = len(m.kills) - len(citing)
        out.append(f"| `{m.name}` | {m.requirement} | {_VERDICT_WORDS[m.verdict]} | "
                   f"{_fixture_word(m)} | {kills} | {others} |")
    gaps = [m for m in report.mutants if m.verdict in ("survived", "killed_uncited")]
    out += ["", "## Gaps in the suites", ""]
    if not gaps:
        out.append("None: every mutant within reach is killed by a suite case citing its "
                   "requirement.")
    for m in gaps:
        fx = ", ".join(f"`{f}`" for f in m.fixture_cases) or "none"
        out.append(f"- `{m.name}` ({m.requirement}): {_md(m.bug_class)}. No suite case citing "
                   f"{m.requirement} kills it; its regression fixture {fx} "
                   f"(fixtures/regressions/{m.name}.yaml) is a sequence that does.")
    if report.reference_failures:
        out += ["", "## Reference failures", ""]
        for cid, msg in sorted(report.reference_failures.items()):
            out.append(f"- `{cid}`: {_md(msg)}")
    out += ["", "## Mutants", ""]
    for m in report.mutants:
        out += [f"### {m.name}", "", f"- Violates {m.requirement}: {_md(m.bug_class)}"]
        if m.needs:
            out.append(f"- Needs: {', '.join(m.needs)}")
        if not m.reach:
            out.append("- Not run: the adapter cannot inject the fault it needs.")
            out.append("")
            continue
        out.append(f"- Regression fixture: {', '.join(m.fixture_cases) or 'none'} "
                   f"({_fixture_word(m)})")
        out.append(f"- {len(m.kills)} killing case(s), {m.duration_s:.2f} s")
        for k in m.kills:
            out.append(f"  - `{k.case}` [{k.source}] violated {k.violated or '—'}"
                       f"{', cites ' + m.requirement if k.cites_requirement else ''}: "
                       f"{_md(k.message)}")
        out.append("")
    return "\n".join(out) + "\n"


def write(report: MutationReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "mutants.json", out_dir / "mutants.md"]
    paths[0].write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    return paths


def report_mapping(report: MutationReport) -> dict[str, dict[str, Any]]:
    """The `mutants=` argument of conformance.report.write_report (its matrix section)."""
    return {m.name: {"requirement": m.requirement, "killed": m.verdict == "killed",
                     "killed_by": [k.case for k in m.suite_kills
                                   if k.cites_requirement and k.status == "failed"]}
            for m in report.mutants if m.reach}


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def print_progress(out: TextIO = sys.stderr) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)
    return say


# --------------------------------------------------------------------------- the sub-command


def add_parser(sub: Any) -> None:
    """Register `conformance mutants` on the CLI's sub-parsers."""
    p = sub.add_parser(
        "mutants", help="run the suites against every mutant of the reference (mutation score)",
        description="Run the suites and the regression fixtures against every mutant of "
                    "reference_impl/mutants.py and against the reference; print and write the "
                    "mutation matrix. Exit 0 only if the reference passes everything, every "
                    "mutant within reach is killed by a suite case citing its requirement, and "
                    "every regression fixture is red against its mutant.")
    p.add_argument("--suites", type=Path, nargs="*", default=None,
                   help="suite files or directories (default: the suites/ folder)")
    p.add_argument("--fixtures", type=Path, default=FIXTURES_DIR,
                   help="regression fixtures directory (default: fixtures/regressions)")
    p.add_argument("--no-fixtures", action="store_true", help="run the suites only")
    p.add_argument("--adapter", choices=["inprocess", "process"], default="inprocess",
                   help="in process on the simulated disk (default), or as local processes "
                        "(reference_impl.server --mutant NAME)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="only this mutant (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                   help=f"parallel worker processes (default {default_jobs()})")
    p.add_argument("--out", type=Path, default=Path("reports/mutants"),
                   help="report directory: mutants.json, mutants.md, and the reference's "
                        "report.json / report.md / junit.xml with the matrix")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def command(args: argparse.Namespace, catalog: Catalog, command_line: str) -> int:
    from . import __version__
    from .loader import load_suites
    from .report import RunInfo, write_report
    from .session import SUITES_DIR

    unknown = sorted(set(args.only or ()) - set(MUTANTS))
    if unknown:
        print(f"conformance mutants: unknown mutant(s) {', '.join(unknown)}; known: "
              f"{', '.join(sorted(MUTANTS))}", file=sys.stderr)
        return 2
    paths = list(args.suites) if args.suites else [SUITES_DIR]
    fixtures = None if args.no_fixtures else args.fixtures
    if fixtures is not None and fixtures.exists():
        paths.append(fixtures)
    suites = load_suites(paths, catalog)
    if not any(s.cases for s in suites):
        print("conformance mutants: no case to run", file=sys.stderr)
        return 2
    report = run_mutation(suites, fixtures_dir=fixtures, adapter=args.adapter,
                          only=args.only or (), seed=args.seed, timeout=args.timeout,
                          jobs=max(1, args.jobs),
                          on_progress=None if args.quiet else print_progress())
    written = write(report, args.out)
    info = RunInfo(implementation={"name": "reference_impl", "version": "0.1.0"},
                   adapter=f"{args.adapter} reference (mutation run)", protocol_version=1,
                   capabilities=[], profile=None, seed=args.seed, started=report.started,
                   duration_s=round(report.duration_s, 3), command=command_line,
                   harness_version=__version__)
    ref_paths = write_report(report.reference_results, catalog, info, args.out,
                             mutants=report_mapping(report))
    print(render_text(report, [*written, ref_paths.markdown]))
    return 0 if report.ok else 1
