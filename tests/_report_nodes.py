"""A broken node for the report's tests: the reference with one off-by-one bug.

No mutant of the catalog (reference_impl/mutants.py) reports ``effective`` = snap + 1 after
a restore, the bug of issue 14 that was reported under five requirements; this is it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from conformance.cases import Case, CaseResult
from conformance.catalog import Catalog
from conformance.impls import Implementation, resolve
from conformance.loader import load_suites
from conformance.session import SUITES_DIR, run_all
from reference_impl.disk import SimDisk
from reference_impl.node import Node, NodeConfig, OpenResult


class EffectivePlusOneAfterRestore(Node):
    """After a full restore (executed or fallback) from a snapshot at snap, answers and
    keeps effective = snap + 1: entry snap + 1 is never delivered."""

    def _off(self, result: OpenResult) -> OpenResult:
        if result.outcome == "skipped" or result.snap == 0:
            return result
        return dataclasses.replace(result, effective=result.snap + 1,
                                   last_applied=result.snap + 1)

    def _cold_succeeded(self, result: OpenResult) -> None:
        result = self._off(result)
        self.applied = result.effective
        super()._cold_succeeded(result)

    def open(self) -> OpenResult:
        return self._off(super().open())


def plus_one_node(disk: SimDisk, config: NodeConfig) -> Node:
    return EffectivePlusOneAfterRestore(disk, config)


def plus_one() -> Implementation:
    return resolve("reference", node_factory=plus_one_node, label="effective-plus-one")


def all_cases(catalog: Catalog) -> list[Case]:
    return [c for s in load_suites([SUITES_DIR], catalog) for c in s.cases]


def run(cases: Sequence[Case], impl: Implementation, seed: int = 0) -> list[CaseResult]:
    return run_all(list(cases), impl, seed)
