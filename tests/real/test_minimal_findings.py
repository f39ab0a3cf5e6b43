"""No finding fixture of a real library has a step that can be removed (issue 12).

For each fixture under examples/real/*/findings/, each step in turn is dropped (the failing
step excepted); if the shorter sequence still fails on the library at the same step,
naming the same requirement, and still passes on the in-process reference, the step was
not needed and the fixture is not minimal. It is the criterion of the last shrinking pass
exploration runs before it saves a fixture (conformance/explore/minimize.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from _shims import PSO_DIR, SLED_DIR, finding_files, fixture_guards

from conformance.cases import Case
from conformance.explore import make_step
from conformance.explore.replay import differs, failing_step, passes_on_reference
from conformance.impls import resolve
from conformance.loader import load_suite

pytestmark = pytest.mark.real


def _without(case: Case, i: int) -> Case:
    steps = [s for j, s in enumerate(case.steps) if j != i]
    return replace(case, steps=tuple(make_step(s.kind, s.args, j) for j, s in enumerate(steps)))


# Steps that a lucky schedule can do without, kept so that the fixture is red every time:
# PySyncObj writes its dump in a forked child; the second snapshot_begin waits for the
# first's dump, and without it the kill at restart sometimes beats the rename (5 of 20).
TIMING = {"co-001-df5ef13a23": {3, 4}}


def removable_steps(fixture: Path, command: str) -> list[int]:
    case = load_suite(fixture).cases[0]
    _, guards = fixture_guards(fixture)
    factory = resolve(command).factory
    status, named, failed_at = failing_step(case, factory, 0)
    assert status == "failed" and len(named) == 1 and named[0] in guards, (
        fixture.name, status, named)
    removable = []
    for i in range(len(case.steps)):
        if i == failed_at:
            continue
        shorter = _without(case, i)
        shifted = failed_at - 1 if failed_at is not None and i < failed_at else failed_at
        if not differs(shorter, factory, 0, named[0], shifted) and passes_on_reference(shorter, 0):
            removable.append(i + 1)
    return sorted(set(removable) - TIMING.get(fixture.stem, set()))


@pytest.mark.parametrize("fixture", finding_files(SLED_DIR), ids=lambda p: p.stem)
def test_sled_finding_fixtures_are_minimal(fixture: Path, sled: str) -> None:
    assert removable_steps(fixture, sled) == []


@pytest.mark.parametrize("fixture", finding_files(PSO_DIR), ids=lambda p: p.stem)
def test_pysyncobj_finding_fixtures_are_minimal(fixture: Path, pysyncobj: str) -> None:
    assert removable_steps(fixture, pysyncobj) == []
