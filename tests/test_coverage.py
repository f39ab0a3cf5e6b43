"""Every profile is certifiable by a correct node through every adapter (issue 11).

For each profile, a node that advertises exactly the profile's (cumulative) capabilities,
and each adapter with the harness faults it gives such a node (in process: the simulated
disk; local process and container: the crash-simulating filesystem where FUSE works), every
MUST requirement the profile binds must be cited by at least one case that node runs: its
capabilities and faults cover the case's, and it has none of those the case runs without.
A requirement with no such case leaves a correct node "not certified" through no fault of
its own (CS-002 was one: its only cases needed a node without the writer, or without the
restore pin, or a power loss).

The check is static (no node runs): the suites, the catalog and the adapters' fault sets.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from conformance.adapters.inprocess import InProcessAdapter
from conformance.adapters.layer import LAYER_FAULTS
from conformance.cases import Case
from conformance.catalog import Catalog, load_catalog
from conformance.loader import load_suites

SUITES = Path(__file__).resolve().parents[1] / "suites"
# the harness faults each adapter gives any node (the local process and the container get
# the layer's faults where FUSE works; without it the verdict says what could not be tested)
ADAPTER_FAULTS = {
    "in process": InProcessAdapter.fault_capabilities,
    "local process": frozenset({"process_kill"}) | LAYER_FAULTS,
    "container": frozenset({"process_kill"}) | LAYER_FAULTS,
}


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return [c for s in load_suites([SUITES]) for c in s.cases]


def runs(case: Case, caps: frozenset[str], faults: frozenset[str]) -> bool:
    """Whether a node advertising exactly `caps` runs `case` through an adapter with
    `faults` (runner.missing_capabilities, for a node that cannot switch capabilities off)."""
    needs = set(case.capabilities) | ({"unsynced_mode"} if case.durability == "unsynced"
                                      else set())
    return needs <= caps | faults and not caps.intersection(case.without)


def gaps(catalog: Catalog, cases: list[Case], adapter: str,
         caps: frozenset[str] | None = None) -> list[str]:
    """`profile / requirement / adapter` for every MUST requirement a node advertising
    `caps` (default: exactly each profile's) must pass for a profile it has, and that no
    case it runs cites."""
    out = []
    for profile in catalog.profiles:
        needs = catalog.profile_capabilities(profile.name)
        node = needs if caps is None else caps
        if not needs <= node:
            continue
        for req in catalog.for_profile(profile.name):
            if req.level != "MUST" or node.intersection(req.without):
                continue
            if not any(req.id in c.requirements and runs(c, node, ADAPTER_FAULTS[adapter])
                       for c in cases):
                out.append(f"{profile.name} / {req.id} / {adapter}")
    return out


def test_the_adapters_fault_sets_are_what_the_adapters_say() -> None:
    assert {"power_loss", "crash_points", "sync_accounting"} == LAYER_FAULTS
    assert ADAPTER_FAULTS["in process"] >= LAYER_FAULTS


@pytest.mark.parametrize("adapter", sorted(ADAPTER_FAULTS))
def test_every_requirement_of_every_profile_has_a_case_a_node_of_that_profile_runs(
        cases: list[Case], adapter: str) -> None:
    assert gaps(load_catalog(), cases, adapter) == []


def test_every_capability_set_can_certify_every_profile_it_has(cases: list[Case]) -> None:
    """Not only the profiles' own capability sets: a node may advertise any subset of the
    node capabilities (a reader without the header applier, say, as a real library did),
    and still must be able to pass every requirement of each profile it has."""
    catalog = load_catalog()
    node_caps = [c for c in catalog.capabilities if c not in LAYER_FAULTS]
    found: dict[str, list[str]] = {}
    for n in range(len(node_caps) + 1):
        for subset in itertools.combinations(node_caps, n):
            for gap in gaps(catalog, cases, "local process", frozenset(subset)):
                found.setdefault(gap, list(subset))
    assert found == {}


def test_the_check_sees_a_gap() -> None:
    """Without the case that reaches have < snap with the writer and the restore pin, CS-002
    has no case a complete-restore-pin node runs: the gap of issue 11."""
    all_cases = [c for s in load_suites([SUITES]) for c in s.cases]
    without = [c for c in all_cases if c.id != "xr-crash-mid-restore-install"]
    assert gaps(load_catalog(), without, "local process") == [
        "complete-restore-pin / CS-002 / local process"]
