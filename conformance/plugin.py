"""pytest plugin (entry point `pytest11`): suite YAML files become test items.

    pytest suites/                                  # the in-process reference
    pytest suites/ --impl "python my_node.py --data-dir {data_dir}" --profile baseline

A case the implementation cannot support is skipped with its reason (and reported
as not applicable); an expectations file turns known failures into strict xfails;
a failure shows the step, the request, the reply, what the oracle allowed, and
the case's YAML location. Like Tavern, a file is schema-checked when its items
are collected, and one bad file does not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cases import Case, CaseResult, Failure
from .catalog import load_catalog
from .impls import Implementation, resolve
from .loader import SuiteError, load_suite
from .runner import run_case
from .session import load_expectations

_RESULTS = pytest.StashKey[list[CaseResult]]()
_IMPL = pytest.StashKey[Implementation]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("conformance", "applied-index conformance suites")
    g.addoption("--impl", default="reference",
                help="reference | reference-process | a command line with {data_dir} | "
                     "image:NAME[:TAG] (a container image)")
    g.addoption("--profile", default=None, help="the profile the implementation claims")
    g.addoption("--seed", type=int, default=0, help="seed for generators and power loss")
    g.addoption("--conformance-timeout", type=float, default=10.0, help="seconds per request")
    g.addoption("--expectations", default=None, help="YAML of known failures (strict xfail)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "capability(name): the case needs this capability")
    config.addinivalue_line("markers", "requirement(id): the case checks this requirement")
    config.stash[_RESULTS] = []


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
    if _IMPL not in config.stash:
        profile = config.getoption("--profile")
        caps = load_catalog().profile_capabilities(profile) if profile else None
        config.stash[_IMPL] = resolve(config.getoption("--impl"),
                                      seed=config.getoption("--seed"),
                                      timeout=config.getoption("--conformance-timeout"),
                                      profile_capabilities=caps)
    return config.stash[_IMPL]


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            suite = load_suite(self.path)
        except SuiteError as exc:
            raise self.CollectError(str(exc)) from exc
        expectations_path = self.config.getoption("--expectations")
        expected = load_expectations(Path(expectations_path)) if expectations_path else {}
        for case in suite.cases:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            for cap in case.capabilities:
                item.add_marker(pytest.mark.capability(cap))
            for rid in case.requirements:
                item.add_marker(pytest.mark.requirement(rid))
            if case.id in expected:
                item.add_marker(pytest.mark.xfail(strict=True, reason=expected[case.id]))
            yield item


class CaseFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        impl = _implementation(self.config)
        result = run_case(self.case, impl.factory, self.config.getoption("--seed"))
        self.config.stash[_RESULTS].append(result)
        if result.status == "not_applicable":
            pytest.skip(f"not applicable: {result.reason}")
        if result.status != "passed":
            raise CaseFailed(result.failure or Failure(result.reason or result.status))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return (f"case {self.case.id} ({self.case.location}) failed:\n"
                    + excinfo.value.failure.render())
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.location.line - 1, f"case: {self.case.id}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    from .report import profile_verdicts

    impl = config.stash[_IMPL]
    advertised: set[str] = set()
    adapter = impl.factory(results[0].case)
    try:
        hello = adapter.start("synced")
        advertised = set(hello.capabilities) | (set(adapter.fault_capabilities)
                                                 - set(adapter.unavailable_faults()))
    finally:
        adapter.close()
    terminalreporter.section("conformance profiles")
    for v in profile_verdicts(results, load_catalog(), advertised):
        terminalreporter.write_line(f"{v.profile:<22} {v.summary()}")
