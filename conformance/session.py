"""Run many cases against one implementation: selection, expectations, progress.

A node that never starts ends the run early: when the first `START_GIVE_UP` cases all
failed at the start for the same reason, the others are not run, and each says so
(`never_started`, `not_run`), instead of every case waiting for a hello that never comes.

An expectations file records the known failures of one implementation (like
test262's expectation trees): a listed case that fails is `xfailed`; a listed
case that passes is `xpassed`, which counts as a failure (strict), so the file
cannot silently go stale.

    implementation: minimal_node
    expected_failures:
      sp-pin-before-save-local: "pins after the save; tracked in issue 12"
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from . import resources
from .adapters.base import Adapter
from .cases import Case, CaseResult, Failure
from .differential import run_differential
from .impls import Implementation
from .parallel import run_parallel
from .runner import run_case

SUITES_DIR = resources.SUITES_DIR


class ExpectationsError(ValueError):
    pass


def load_expectations(path: Path) -> dict[str, str]:
    try:
        with path.open(encoding="utf-8") as stream:  # YAML errors then name the file
            data = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ExpectationsError(f"{path}: cannot read expectations: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expected_failures", {}), dict):
        raise ExpectationsError(f"{path}: expected a mapping with 'expected_failures: "
                                "{case-id: reason}'")
    return {str(k): str(v) for k, v in (data.get("expected_failures") or {}).items()}


def apply_expectations(result: CaseResult, expected: dict[str, str]) -> CaseResult:
    reason = expected.get(result.case.id)
    if reason is None:
        return result
    if result.status == "failed":
        result.status, result.reason = "xfailed", reason
    elif result.status == "passed":
        result.status, result.reason = "xpassed", f"expected to fail ({reason}) but passed"
    return result


def select(cases: Iterable[Case], pattern: str | None) -> list[Case]:
    if not pattern:
        return list(cases)
    return [c for c in cases if pattern in c.id or pattern in c.suite]


# The first cases that all failed at the start for the same reason: the node never starts.
START_GIVE_UP = 3
FAILING = ("failed", "error", "xpassed")


def never_started(results: Sequence[CaseResult]) -> str | None:
    """Why the node never started, when every case that ran failed at the start for the same
    reason (CaseResult.start_failure); None when it started at least once, or the reasons
    differ."""
    ran = [r for r in results if not is_not_run(r)]
    reasons = {r.start_failure for r in ran}
    if ran and len(reasons) == 1 and "" not in reasons:
        return reasons.pop()
    return None


NOT_RUN = "not run: the node never started"


def not_run(case: Case, reason: str) -> CaseResult:
    """A case left out because the first cases showed that the node never starts (it did
    not run: `not_applicable` is the status of a case that did not run, with the reason)."""
    return CaseResult(case, "not_applicable", reason=f"{NOT_RUN}: {reason}")


def is_not_run(result: CaseResult) -> bool:
    return result.status == "not_applicable" and result.reason.startswith(NOT_RUN)


@dataclass
class Progress:
    """What the run prints while it goes: per suite, one symbol per case (today's compact
    output), or one line per case with `verbose`. On a terminal (`live`: None asks `out`),
    the current suite's line also shows cases done / total, the elapsed time and the
    failures so far, redrawn in place (a carriage return, no escape codes) at every result
    and every second; elsewhere (a log, a pipe) nothing is redrawn."""

    out: TextIO = sys.stderr
    verbose: bool = False
    total: int = 0
    live: bool | None = None
    _suite: str = ""
    _symbols: str = ""
    _done: int = 0
    _failed: int = 0
    _started: float = field(default_factory=time.monotonic)
    _drawn: int = 0  # characters of the live line on screen
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ticker: threading.Thread | None = None

    SYMBOL = {"passed": ".", "failed": "F", "not_applicable": "s", "error": "E",
              "xfailed": "x", "xpassed": "X"}
    TICK = 1.0  # seconds between redraws of the elapsed time

    def __post_init__(self) -> None:
        if self.live is None:
            isatty = getattr(self.out, "isatty", None)
            self.live = bool(isatty and isatty())
        if self.live and not self.verbose:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def __call__(self, result: CaseResult) -> None:
        with self._lock:
            self._done += 1
            self._failed += result.status in FAILING
            if self.verbose:
                print(f"{result.case.suite}::{result.case.id} {result.status.upper()}"
                      f" ({result.duration:.2f}s){self._counts(' ')}", file=self.out,
                      flush=True)
                return
            if result.case.suite != self._suite:
                self._end_suite()
                self._suite, self._symbols = result.case.suite, ""
                if not self.live:
                    print(f"{self._suite:<24}", end=" ", file=self.out)
            symbol = self.SYMBOL.get(result.status, "?")
            self._symbols += symbol
            if self.live:
                self._draw()
            else:
                print(symbol, end="", file=self.out, flush=True)

    def done(self) -> None:
        """End the output (idempotent): the current suite's line, without the live part."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(self.TICK * 2)
        with self._lock:
            if not self.verbose:
                self._end_suite()
            self._suite = self._symbols = ""

    # -- the live line --------------------------------------------------------------------

    def _counts(self, sep: str) -> str:
        if not self.live:
            return ""
        elapsed = time.monotonic() - self._started
        failed = f", {self._failed} failed" if self._failed else ""
        return f"{sep}[{self._done}/{self.total} cases, {elapsed:.0f} s{failed}]"

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns - 1
        head, tail = f"{self._suite:<24} ", self._counts("  ")
        room = max(width - len(head) - len(tail), 4)
        symbols = self._symbols if len(self._symbols) <= room else (
            "..." + self._symbols[-(room - 3):])
        line = (head + symbols + tail)[:width]
        print("\r" + line.ljust(self._drawn), end="", file=self.out, flush=True)
        self._drawn = len(line)

    def _end_suite(self) -> None:
        if not self._suite:
            return
        if self.live:  # the whole suite line, over the live one
            line = f"{self._suite:<24} {self._symbols}"
            print("\r" + line.ljust(self._drawn), file=self.out, flush=True)
            self._drawn = 0
        else:
            print(file=self.out, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK):
            with self._lock:
                if self._suite and not self._stop.is_set():
                    self._draw()


def run_all(cases: Sequence[Case], impl: Implementation, seed: int,
            expected: dict[str, str] | None = None,
            on_result: Callable[[CaseResult], None] | None = None,
            differential: bool = False, give_up_after: int = START_GIVE_UP,
            jobs: int = 1) -> list[CaseResult]:
    """Run `cases` in order. When the first `give_up_after` cases all failed at the start
    for the same reason, the rest are not run: each is a `not_run` result (not passed to
    `on_result`); `never_started(results)` then gives the reason. With `jobs` > 1, that
    many cases run at once (conformance/parallel.py) with the same results, in the same
    order."""

    def run_one(case: Case, factory: Callable[[Case], Adapter]) -> CaseResult:
        started = time.monotonic()
        try:
            run = run_differential if differential else run_case
            result = run(case, factory, seed)
        except Exception as exc:  # noqa: BLE001 - one broken case must not stop the run
            result = CaseResult(case, "error", time.monotonic() - started,
                                failure=Failure(f"harness error: {type(exc).__name__}: {exc}"))
        return apply_expectations(result, expected or {})

    def give_up(results: list[CaseResult]) -> str | None:
        return never_started(results) if len(results) == give_up_after else None

    if jobs > 1 and len(cases) > 1:
        return run_parallel(cases, jobs, run_one, impl.factory, on_result or (lambda _r: None),
                            give_up, not_run)
    results: list[CaseResult] = []
    for i, case in enumerate(cases):
        results.append(run_one(case, impl.factory))
        if on_result is not None:
            on_result(results[-1])
        if (reason := give_up(results)) is not None:
            results += [not_run(rest, reason) for rest in cases[i + 1:]]
            break
    return results
