"""Run many cases against one implementation: selection, expectations, progress.

An expectations file records the known failures of one implementation (like
test262's expectation trees): a listed case that fails is `xfailed`; a listed
case that passes is `xpassed`, which counts as a failure (strict), so the file
cannot silently go stale.

    implementation: minimal_node
    expected_failures:
      sp-pin-before-save-local: "pins after the save; tracked in issue 12"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from . import resources
from .cases import Case, CaseResult
from .differential import run_differential
from .impls import Implementation
from .runner import run_case

SUITES_DIR = resources.SUITES_DIR


class ExpectationsError(ValueError):
    pass


def load_expectations(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
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


@dataclass
class Progress:
    out: TextIO = sys.stderr
    verbose: bool = False
    _suite: str = ""

    SYMBOL = {"passed": ".", "failed": "F", "not_applicable": "s", "error": "E",
              "xfailed": "x", "xpassed": "X"}

    def __call__(self, result: CaseResult) -> None:
        if self.verbose:
            print(f"{result.case.suite}::{result.case.id} {result.status.upper()}"
                  f" ({result.duration:.2f}s)", file=self.out, flush=True)
            return
        if result.case.suite != self._suite:
            if self._suite:
                print(file=self.out)
            self._suite = result.case.suite
            print(f"{self._suite:<24}", end=" ", file=self.out)
        print(self.SYMBOL.get(result.status, "?"), end="", file=self.out, flush=True)

    def done(self) -> None:
        if self._suite and not self.verbose:
            print(file=self.out, flush=True)


def run_all(cases: Sequence[Case], impl: Implementation, seed: int,
            expected: dict[str, str] | None = None,
            on_result: Callable[[CaseResult], None] | None = None,
            differential: bool = False) -> list[CaseResult]:
    results = []
    for case in cases:
        started = time.monotonic()
        try:
            if differential:
                result = run_differential(case, impl.factory, seed)
            else:
                result = run_case(case, impl.factory, seed)
        except Exception as exc:  # noqa: BLE001 - one broken case must not stop the run
            from .cases import Failure

            result = CaseResult(case, "error", time.monotonic() - started,
                                failure=Failure(f"harness error: {type(exc).__name__}: {exc}"))
        result = apply_expectations(result, expected or {})
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
