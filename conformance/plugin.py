"""pytest plugin (entry point `pytest11`): suite YAML files become test items.

    pytest suites/                                  # the in-process reference
    pytest suites/ --impl "python my_node.py --data-dir {data_dir}" --profile baseline

The verdict is the CLI's: each case runs through the same code as `conformance certify`
(session.run_all, expectations applied the same way), the same report files are written
by the same writer (conformance/report/) into --conformance-out (default reports/latest after
every case of the suites, as `certify`; reports/run after a part, as `run`), and the exit
status agrees: a failing, erroring or xpassed case fails the session, an expected failure does
not, and with --profile the session fails unless the report certifies that profile.

A case the implementation cannot support is skipped with its reason (and reported
as not applicable); an expectations file turns known failures into strict xfails;
a failure shows the step, the request, the reply, what the oracle allowed, and
the case's YAML location. Like Tavern, a file is schema-checked when its items
are collected, and one bad file does not stop the others.

Under pytest-xdist (`pytest -p xdist -n N suites ...`) the workers collect and run the
cases and the controller alone writes the report: each case's whole CaseResult travels to
it on the case's test report (`pytest_report_to_serializable` / `_from_serializable`,
encoded by `encode_result`), and it puts them back in case order. What a serial session
does once happens once on the controller (the hello that names the node, the profile
claim, the report); the rule that gives up on a node that never starts is decided on each
worker from the first three cases in case order, as in a serial run (`_given_up`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import __version__
from .cases import Case, CaseResult, Failure, Location, Step
from .catalog import Catalog, load_catalog
from .impls import Implementation, ImplementationUnavailable, resolve
from .loader import SuiteError, load_suite
from .session import (
    START_GIVE_UP,
    SUITES_DIR,
    ExpectationsError,
    load_expectations,
    never_started,
    not_run,
    run_all,
)
from .trace import TracePoint

# where the report goes unless --conformance-out says: as `conformance certify` for a run of
# every case, as `conformance run` for a part, which never replaces the certification report
DEFAULT_OUT = Path("reports/latest")
PARTIAL_OUT = Path("reports/run")


@dataclass
class _Run:
    """What the session has gathered: set up at configure, filled as cases run.

    In a serial session one process does everything. Under pytest-xdist, a worker fills
    `cases` and `ran` (what it ran itself, for the give-up rule); the controller fills
    `results` from the test reports the workers send, and writes the report."""

    expected: dict[str, str]
    started_wall: str
    started: float
    # the case items in the session's order (the order of a serial run), once collected
    cases: list[CaseItem] = field(default_factory=list)
    # the results this process ran, by case index, for the give-up rule
    ran: dict[int, CaseResult] = field(default_factory=dict)
    # the first cases an xdist worker ran to decide that rule though it was not given them,
    # until it is (work stealing): then that result is the case's
    probed: dict[int, CaseResult] = field(default_factory=dict)
    # the give-up rule's verdict, once decided: why the node never starts, or "" when it did
    stuck: str | None = None
    # the results of the report, by case index, from the cases' test reports
    results: dict[int, CaseResult] = field(default_factory=dict)
    # the cases whose test report came without a result (a worker crashed in them)
    lost: list[str] = field(default_factory=list)
    # files that could not be collected (on an xdist controller: the workers' reports), and
    # whether a suite file is among them
    collect_errors: int = 0
    suite_collect_error: bool = False
    impl: Implementation | None = None
    # set at the end of the session: where the report is, the profile lines, and why the
    # claimed profile failed the session (None when it did not)
    report_line: str | None = None
    profile_lines: tuple[str, ...] = ()
    not_certified: str | None = None


_RUN = pytest.StashKey[_Run]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance", "applied-index conformance suites")
    g.addoption("--impl", default="reference",
                help="reference | reference-process | a command line with {data_dir} | "
                     "image:NAME[:TAG] (a container image)")
    g.addoption("--profile", default=None,
                help="the profile the implementation claims; the session fails unless the "
                     "report certifies it")
    g.addoption("--seed", type=int, default=0, help="seed for generators and power loss")
    g.addoption("--conformance-timeout", type=float, default=10.0, help="seconds per request")
    g.addoption("--expectations", default=None, help="YAML of known failures (strict xfail)")
    g.addoption("--differential", action="store_true", default=False,
                help="also run each case on the in-process reference (same capabilities) and "
                     "fail at the first reply that differs")
    g.addoption("--conformance-out", default=None, metavar="DIR",
                help="report directory (report.json, .md, .html, junit.xml), relative to the "
                     f"directory pytest was started in; default {DEFAULT_OUT} when every case "
                     f"of the suites ran, else {PARTIAL_OUT}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "capability(name): the case needs this capability")
    config.addinivalue_line("markers", "requirement(id): the case checks this requirement")
    profile = config.getoption("--profile", None)
    if profile is not None:
        try:
            load_catalog().profile_capabilities(profile)
        except KeyError as exc:
            raise pytest.UsageError(f"--profile: {exc.args[0]}") from None
    path = config.getoption("--expectations", None)
    try:
        expected = load_expectations(Path(path)) if path else {}
    except ExpectationsError as exc:
        raise pytest.UsageError(f"--expectations: {exc}") from None
    run = _Run(expected=expected, started=time.monotonic(),
               started_wall=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    config.stash[_RUN] = run
    config.pluginmanager.register(_Gather(config, run), "conformance-results")


def _is_xdist_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker: it runs cases and sends their reports to the controller, and
    never writes the report."""
    return hasattr(config, "workerinput")


def _is_suite_file(path: Path) -> bool:
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return False
    return "\nsuite:" in "\n" + head and "\ncases:" in "\n" + head


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_suite_file(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def _implementation(config: pytest.Config) -> Implementation:
    run = config.stash[_RUN]
    if run.impl is None:
        profile = config.getoption("--profile")
        caps = load_catalog().profile_capabilities(profile) if profile else None
        run.impl = resolve(config.getoption("--impl"), seed=config.getoption("--seed"),
                           timeout=config.getoption("--conformance-timeout"),
                           profile_capabilities=caps)
    return run.impl


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            suite = load_suite(self.path)
        except SuiteError as exc:
            raise self.CollectError(str(exc)) from exc
        try:
            _implementation(self.config)
        except ImplementationUnavailable as exc:
            raise self.CollectError(f"--impl: {exc}") from exc
        expected = self.config.stash[_RUN].expected
        for case in suite.cases:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            for cap in case.capabilities:
                item.add_marker(pytest.mark.capability(cap))
            for rid in case.requirements:
                item.add_marker(pytest.mark.requirement(rid))
            if case.id in expected:
                # only a failure is expected: a harness error still fails the session, as
                # it fails `conformance certify` (session.apply_expectations keeps it)
                item.add_marker(pytest.mark.xfail(strict=True, raises=CaseFailed,
                                                  reason=expected[case.id]))
            yield item


class CaseFailed(Exception):
    """The node failed the case (an expectation may excuse it)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class CaseError(Exception):
    """The harness could not run the case; never an expected failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.index = -1  # the case's place in the session (pytest_collection_finish)
        self.result: CaseResult | None = None

    def runtest(self) -> None:
        run = self.config.stash[_RUN]
        result = run.probed.pop(self.index, None)
        if result is None:
            stuck = _given_up(self.config, run) if self.index >= START_GIVE_UP else None
            result = not_run(self.case, stuck) if stuck else _run_case(self.config, self.case)
            run.ran[self.index] = result
        self.result = result
        failure = result.failure or Failure(result.reason or result.status)
        if result.status == "not_applicable":
            pytest.skip(f"not applicable: {result.reason}")
        if result.status == "error":
            raise CaseError(failure)
        if result.status in ("failed", "xfailed"):
            raise CaseFailed(failure)
        # passed, or xpassed: the strict xfail marker turns the latter into a failure

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed | CaseError):
            what = "failed" if isinstance(excinfo.value, CaseFailed) else "could not run"
            return (f"case {self.case.id} ({self.case.location}) {what}:\n"
                    + excinfo.value.failure.render())
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.location.line - 1, f"case: {self.case.id}"


def _run_case(config: pytest.Config, case: Case) -> CaseResult:
    [result] = run_all([case], _implementation(config), config.getoption("--seed"),
                       config.stash[_RUN].expected,
                       differential=config.getoption("--differential"))
    return result


def _given_up(config: pytest.Config, run: _Run) -> str | None:
    """The rule of session.run_all: when the first START_GIVE_UP cases (in the session's
    order) all failed to start the node for the same reason, the others are not run; asked
    before a later case runs, decided once. A serial session has run those cases by then; an
    xdist worker may not have (another worker has them): it runs the ones it lacks itself,
    one at a time and only while the rule can still hold (not after a case that started),
    so that its cases run, or not, as in a serial run (their results are reported by the
    worker that was given them)."""
    if run.stuck is None:
        reason = ""
        for index, item in enumerate(run.cases[:START_GIVE_UP]):
            result = run.ran.get(index)
            if result is None:
                result = run.ran[index] = run.probed[index] = _run_case(config, item.case)
            if not result.start_failure or reason not in ("", result.start_failure):
                reason = ""
                break
            reason = result.start_failure
        run.stuck = reason if len(run.cases) > START_GIVE_UP else ""
    return run.stuck or None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Number the cases in the session's order: a serial run's order, the report's, and
    (pytest-xdist collects the same items on every worker) the same number on each worker."""
    run = session.config.stash.get(_RUN, None)
    if run is None:
        return
    run.cases = [item for item in session.items if isinstance(item, CaseItem)]
    for index, item in enumerate(run.cases):
        item.index = index


@dataclass(frozen=True)
class _Outcome:
    """What a case's test report carries to whoever writes the report: the case's place in
    the session and its whole result (`report.conformance_case`)."""

    index: int
    result: CaseResult


_OUTCOME = "conformance_case"  # the attribute of the test report, and its key when serialized


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The case's result goes on its test report (see _Gather). A case that does not apply
    is reported at its suite file, not at this plugin's skip. Without a line, pytest's
    summary folds the skips of one file with one reason into one line ("SKIPPED [12]
    suites/store.yaml: not applicable: needs reader; ..."), as pytest itself does for
    module-level skips."""
    report = yield
    if isinstance(item, CaseItem) and call.when == "call" and item.result is not None:
        setattr(report, _OUTCOME, _Outcome(item.index, item.result))
    if isinstance(item, CaseItem) and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.path), None, report.longrepr[2])  # type: ignore[assignment]
    return report


# -- the result on the wire: a worker's test report to the controller ----------------------


def encode_result(result: CaseResult) -> dict[str, Any]:
    """A CaseResult as plain data (dicts, lists, strings, numbers), for a test report that
    pytest-xdist (execnet) carries from a worker to the controller; `decode_result` makes
    the same CaseResult of it."""
    data = _plain(dataclasses.asdict(result))
    data["trace"] = [point.to_dict() for point in result.trace]
    return dict(data)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _location(data: Mapping[str, Any]) -> Location:
    return Location(**data)


def _step(data: Mapping[str, Any]) -> Step:
    return Step(**{**data, "location": _location(data["location"])})


def decode_result(data: Mapping[str, Any]) -> CaseResult:
    case: Mapping[str, Any] = data["case"]
    failure: Mapping[str, Any] | None = data["failure"]
    return CaseResult(**{
        **data,
        "case": Case(**{**case, "location": _location(case["location"]),
                        "steps": tuple(_step(s) for s in case["steps"]),
                        **{k: tuple(case[k]) for k in ("requirements", "capabilities",
                                                       "tags", "without")}}),
        "failure": None if failure is None else Failure(**{
            **failure, "step": None if failure["step"] is None else _step(failure["step"])}),
        "trace": [TracePoint.from_dict(point) for point in data["trace"]],
    })


class _Gather:
    """Gathers each case's result from its test report, in the process that writes the
    report: the serial session, or pytest-xdist's controller, to which the workers send
    their reports (this plugin encodes the result onto the serialized report and decodes it
    back). Results are kept by case index, so the report lists them in the session's order
    whatever order the workers finish in."""

    def __init__(self, config: pytest.Config, run: _Run) -> None:
        self.config = config
        self.run = run

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(self, report: pytest.CollectReport | pytest.TestReport
                                      ) -> Generator[None, dict[str, Any] | None,
                                                     dict[str, Any] | None]:
        data = yield
        outcome = getattr(report, _OUTCOME, None)
        if data is not None and isinstance(outcome, _Outcome):
            data[_OUTCOME] = {"index": outcome.index, "result": encode_result(outcome.result)}
        return data

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(self, data: dict[str, Any]) -> Generator[
            None, pytest.CollectReport | pytest.TestReport | None,
            pytest.CollectReport | pytest.TestReport | None]:
        report = yield
        raw = getattr(report, _OUTCOME, None)
        if report is not None and isinstance(raw, Mapping):
            setattr(report, _OUTCOME, _Outcome(raw["index"], decode_result(raw["result"])))
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.run.collect_errors += 1
            self.run.suite_collect_error |= self._in_suite_file(report.nodeid)

    def _in_suite_file(self, nodeid: str) -> bool:
        return _is_suite_file(self.config.rootpath / nodeid.split("::")[0])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = getattr(report, _OUTCOME, None)
        if isinstance(outcome, _Outcome):
            self.run.results[outcome.index] = outcome.result
        elif report.failed and report.when not in ("setup", "teardown") and (
                self._in_suite_file(report.nodeid)):
            # a case item's report without a result: the worker running it died (xdist
            # reports it as failed), or the plugin broke in it
            self.run.lost.append(report.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the report and decide on the claimed profile, before the terminal summary."""
    config = session.config
    run = config.stash.get(_RUN, None)
    # an interrupted or broken session writes no report, as `conformance certify` does not;
    # under pytest-xdist only the controller writes it
    if run is None or _is_xdist_worker(config) or exitstatus not in (
            pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    if (run.collect_errors and (run.results or run.suite_collect_error)
            and not config.getoption("continue_on_collection_errors")):
        # a serial session stops at a collection error (an invalid suite file, an --impl
        # that cannot be reached): no case runs, no report, exit status 2, as the CLI's usage
        # error; pytest-xdist runs the other files' cases, but the verdict stays a serial one
        run.report_line = (f"no report: {run.collect_errors} error(s) during collection "
                           "(a serial run stops there)")
        session.exitstatus = pytest.ExitCode.INTERRUPTED
        return
    if not run.results:
        return
    if run.lost:
        run.report_line = (f"no report: the result of {len(run.lost)} case(s) never came back "
                           f"(a worker crashed?), first {run.lost[0]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    try:  # a controller of pytest-xdist has collected nothing: it asks for the node here
        impl = _implementation(config)
    except ImplementationUnavailable:
        return
    results = [run.results[index] for index in sorted(run.results)]
    # the CLI's own helpers: the identity and capabilities asked in hello, the protocol
    # version (imported here: the CLI pulls in the explorer, which a plain run never needs)
    from .cli import PROTOCOL_VERSION
    from .impls import identify
    from .report import RunInfo, profile_verdicts, write_report

    catalog = load_catalog()
    profile = config.getoption("--profile")
    identity, advertised, unavailable = identify(results, impl, never_started(results))
    args = " ".join(shlex.quote(str(a)) for a in config.invocation_params.args)
    info = RunInfo(implementation=identity, adapter=impl.name,
                   protocol_version=PROTOCOL_VERSION, capabilities=sorted(advertised),
                   profile=profile, seed=config.getoption("--seed"), started=run.started_wall,
                   duration_s=round(time.monotonic() - run.started, 3),
                   command=f"pytest {args}".rstrip(), harness_version=__version__,
                   unavailable_faults=unavailable, exploration=None,
                   selection=_selection(config, results, catalog))
    given = config.getoption("--conformance-out")
    out = config.invocation_params.dir / (Path(given) if given else
                                          DEFAULT_OUT if info.selection is None else PARTIAL_OUT)
    paths = write_report(results, catalog, info, out)
    run.report_line = (f"report: {paths.markdown} (also {paths.json.name}, {paths.junit.name}, "
                       f"{paths.html.name})")
    verdicts = profile_verdicts(results, catalog, advertised, info.selection)
    run.profile_lines = tuple(f"{v.profile:<22} {v.summary()}" for v in verdicts)
    if profile is not None:
        claimed = next((v for v in verdicts if v.profile == profile), None)
        if claimed is None or not claimed.certified:
            run.not_certified = f"profile {profile!r} is NOT certified"
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _selection(config: pytest.Config, results: list[CaseResult],
               catalog: Catalog) -> str | None:
    """``RunInfo.selection``: None when every case of the suites ran (whatever else did, such
    as regression fixtures), as in `conformance certify`; else what the command line selected,
    in the words of `conformance run` (a part of the suites certifies nothing)."""
    from .loader import load_suites
    from .report import selection_of

    ran = {(r.case.suite, r.case.id) for r in results}
    every = {(s.name, c.id) for s in load_suites([SUITES_DIR], catalog) for c in s.cases}
    if every <= ran:
        return None
    pattern = config.getoption("keyword") or None
    return selection_of("run", pattern, config.args)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    run = config.stash.get(_RUN, None)
    if run is None or run.report_line is None:
        return
    terminalreporter.section("conformance profiles")
    for line in run.profile_lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(run.report_line)
    if run.not_certified:
        terminalreporter.write_line(run.not_certified, red=True, bold=True)
