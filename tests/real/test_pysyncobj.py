"""examples/real/pysyncobj: PySyncObj 0.3.17 (PyPI), a real published library, through its
Python shim and the local-process adapter (pysyncobj installed in this interpreter).

1. Each finding fixture (examples/real/pysyncobj/findings/) is red on the library, naming
   its requirement, and green on the in-process reference and on examples/journal_node.
2. One `conformance certify` over every suite, with expectations.yaml (strict xfail): no
   unexpected failure, no unexpected pass, and every profile's verdict is the README's: not
   certified; for F1 (and M1 from complete on), the higher ones also for missing capabilities.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _shims import (
    PSO_DIR,
    Certification,
    assert_every_expected_failure_failed,
    assert_green_on_correct_nodes,
    assert_only_expected_failures,
    assert_red_on_library,
    assert_verdicts,
    expectations,
    finding_files,
)

pytestmark = pytest.mark.real

FIXTURES = finding_files(PSO_DIR)
# README "Profile" and "Findings": the requirements the verdict must name, in every profile the
# catalog binds them to. F1, the dump is not durable: SP-007 (the catalog's requirement for it,
# docs/real-world.md); M1, build and save are one step: the pointer bound CO-001. (The README's
# XR-001 and XR-003 were charged only because the failing cases cite them, which the verdict no
# longer does: S1.)
FINDINGS = frozenset({"SP-007", "CO-001"})
SKIP_CAPS = frozenset({"reader", "writer", "header_applier"})
COMPLETE_CAPS = SKIP_CAPS | {"unsynced_mode", "failpoints", "tamper_hooks", "install_snapshot"}
MISSING_CAPABILITIES = {
    "baseline": frozenset(),
    "pinned": frozenset({"writer"}),
    "skip": SKIP_CAPS,
    "complete": COMPLETE_CAPS,
    "complete-restore-pin": COMPLETE_CAPS | {"pin_after_restore"},
}


def test_there_are_finding_fixtures() -> None:
    assert FIXTURES, f"no fixture under {PSO_DIR / 'findings'}"


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_finding_is_red_on_the_library(fixture: Path, pysyncobj: str,
                                       pysyncobj_started: Certification) -> None:
    assert_red_on_library(fixture, pysyncobj)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_finding_is_green_on_correct_nodes(fixture: Path, crashfs: None) -> None:
    assert_green_on_correct_nodes(fixture)


def test_certify_has_no_unexpected_failure(pysyncobj_certified: Certification) -> None:
    assert_only_expected_failures(pysyncobj_certified)


def test_certify_has_no_unexpected_pass(pysyncobj_certified: Certification) -> None:
    assert_every_expected_failure_failed(pysyncobj_certified, expectations(PSO_DIR))


def test_certify_verdicts_are_the_readmes(pysyncobj_certified: Certification) -> None:
    assert_verdicts(pysyncobj_certified, FINDINGS, MISSING_CAPABILITIES)
    caps = set(pysyncobj_certified.report["info"]["capabilities"])
    assert not caps & (COMPLETE_CAPS | {"pin_after_restore"}), caps  # it claims none
