"""The reference is correct in every configuration a node may legally have.

A correct node that lacks a capability must never fail a case: each case it runs must
need only what the node has. The reference can switch its reader, writer, header applier
and restore pin off (`impls.reference_config`); every legal combination runs every suite
in process, and no case may fail. A case that assumes a capability it does not declare
(a failpoint that only fires in the writer's pin, a read after a cold start that only a
skipping node answers without a replay) fails here, for the configuration that lacks it:
such a case would reject a correct node and blame a requirement it never broke.
"""

from __future__ import annotations

import itertools

import pytest

from conformance.cases import Case
from conformance.impls import resolve
from conformance.loader import load_suites
from conformance.session import SUITES_DIR, run_all

SWITCHES = ("reader", "writer", "header_applier")


def _configs() -> list[frozenset[str]]:
    out = []
    for n in range(len(SWITCHES) + 1):
        for caps in itertools.combinations(SWITCHES, n):
            out.append(frozenset(caps))
            if "writer" in caps:  # the reference pins after a restore only with its writer
                out.append(frozenset(caps) | {"pin_after_restore"})
    return out


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return [c for s in load_suites([SUITES_DIR]) for c in s.cases]


@pytest.mark.parametrize("caps", _configs(), ids=lambda c: "+".join(sorted(c)) or "none")
def test_the_reference_fails_no_case_in_any_legal_configuration(
        caps: frozenset[str], cases: list[Case]) -> None:
    impl = resolve("reference", profile_capabilities=caps)
    results = run_all(cases, impl, seed=0)
    ran = [r for r in results if r.status != "not_applicable"]
    failed = [f"{r.case.id}: {r.failure.render() if r.failure else r.reason}"
              for r in results if r.status not in ("passed", "not_applicable")]
    assert not failed, "\n\n".join(failed)
    assert ran, "no case ran: the configuration is not exercised at all"
