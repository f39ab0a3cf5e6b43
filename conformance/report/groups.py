"""The groupings a person reads: failing cases by root cause, not-applicable cases by why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conformance.cases import CaseResult

from .blame import blame
from .model import _na_reason, _order


@dataclass(frozen=True)
class RootCause:
    """The failing cases one root cause accounts for (blame.py), and what they stopped."""

    requirement: str | None  # None: failures that name no requirement
    cases: tuple[CaseResult, ...]
    consequences: tuple[str, ...]  # requirement IDs those cases cite and did not check


def root_causes(results: Iterable[CaseResult]) -> list[RootCause]:
    """The failed and errored cases grouped by root cause, the most cases first."""
    groups: dict[str | None, list[CaseResult]] = {}
    for res in _order(results):
        if res.status in ("failed", "error"):
            b = blame(res)
            groups.setdefault(b.root if b else None, []).append(res)
    out = []
    for root, cases in groups.items():
        stopped: set[str] = set()
        for res in cases:
            b = blame(res)
            if b is not None:
                stopped.update(b.consequences)
                stopped.update([b.superseded] if b.superseded else [])
        stopped.discard(root or "")
        out.append(RootCause(root, tuple(cases), tuple(sorted(stopped))))
    return sorted(out, key=lambda g: (-len(g.cases), g.requirement or "~"))


def na_groups(results: Iterable[CaseResult], advertised: Iterable[str]
              ) -> list[tuple[str, list[CaseResult]]]:
    """The not-applicable cases grouped by why, in words, the biggest group first: the node
    capabilities they need and the node lacks (or must not have), or the harness fault the
    adapter could not inject (with its reason)."""
    have = set(advertised)
    groups: dict[str, list[CaseResult]] = {}
    for res in _order(results):
        if res.status != "not_applicable":
            continue
        if res.unavailable_faults:
            why = "; ".join(f"needs {f}, which the harness could not inject here: {r}"
                            for f, r in sorted(res.unavailable_faults.items()))
        else:
            needs = set(res.case.capabilities)
            if res.case.durability == "unsynced":
                needs.add("unsynced_mode")
            lacks = sorted(needs - have)
            extra = sorted(set(res.case.without) & have)
            parts = [f"needs {', '.join(lacks)}"] if lacks else []
            parts += [f"is for nodes without {', '.join(extra)}"] if extra else []
            why = "; ".join(parts) or _na_reason(res)
        groups.setdefault(why, []).append(res)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
