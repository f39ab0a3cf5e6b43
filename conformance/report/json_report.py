"""report.json: the whole run as plain JSON-ready data, for machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from conformance.cases import Case, CaseResult, Failure, Location, Step
from conformance.catalog import LEVELS, Catalog

from ..syncs import total as sync_totals
from .blame import blame
from .model import (
    _FAILING,
    CASE_STATUSES,
    REQUIREMENT_STATUSES,
    RunInfo,
    _named_violations,
    _order,
    profile_verdicts,
    requirement_status,
    unavailable_faults,
)
from .text import exploration_words, render, scrub

FORMAT_VERSION = 1
LOG_TAIL_LINES = 50



def _location(loc: Location) -> dict[str, Any]:
    return {"file": loc.file, "line": loc.line, "column": loc.column, "text": str(loc)}


def _step(step: Step) -> dict[str, Any]:
    return {
        "index": step.index,
        "kind": step.kind,
        "location": _location(step.location),
        "description": step.describe(),
    }


def _log_tail(logs: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(logs.splitlines()[-lines:])


def _failure_dict(result: CaseResult, failure: Failure, include_logs: bool) -> dict[str, Any]:
    return {
        "message": scrub(failure.message),
        "rendered": render(result) if include_logs else scrub(failure.message),
        "step": _step(failure.step) if failure.step is not None else None,
        "request": failure.request,
        "reply": failure.reply,
        "allowed": failure.allowed,
        "requirement": failure.requirement,
        "logs_tail": scrub(_log_tail(failure.logs)) if include_logs else "",
    }


def _root_cause(result: CaseResult) -> dict[str, Any] | None:
    """The failing case's root cause (blame.py): one failure, one name."""
    b = blame(result)
    if b is None:
        return None
    return {"requirement": b.root, "message": scrub(b.message), "allowed": b.allowed,
            "rule": b.rule, "consequences": list(b.consequences), "superseded": b.superseded}


def _case_dict(result: CaseResult) -> dict[str, Any]:
    case: Case = result.case
    failing = result.status in _FAILING
    return {
        "id": case.id,
        "suite": case.suite,
        "description": case.description,
        "status": result.status,
        "duration_s": result.duration,
        "steps_run": result.steps_run,
        "steps": len(case.steps),
        "requirements": list(case.requirements),
        "capabilities": list(case.capabilities),
        "durability": case.durability,
        "tags": list(case.tags),
        "location": _location(case.location),
        "reason": scrub(result.reason),
        "violations": list(result.violations),
        "syncs": result.syncs,
        "failure": (
            _failure_dict(result, result.failure, include_logs=failing)
            if result.failure is not None
            else None
        ),
        "root_cause": _root_cause(result),
        # what each step showed (trace.py), for failing cases only
        "trace": [p.to_dict() for p in result.trace] if failing else [],
    }


def _mutants_dict(mutants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    matrix: list[dict[str, Any]] = []
    for name in sorted(mutants):
        entry = mutants[name]
        matrix.append(
            {
                "name": name,
                "requirement": entry.get("requirement"),
                "killed": bool(entry.get("killed", False)),
                "killed_by": sorted(str(c) for c in entry.get("killed_by", ())),
            }
        )
    killed = sum(1 for m in matrix if m["killed"])
    return {
        "total": len(matrix),
        "killed": killed,
        "survived": [m["name"] for m in matrix if not m["killed"]],
        "matrix": matrix,
    }


def _unknown_ids(results: Sequence[CaseResult], catalog: Catalog) -> list[str]:
    known = {r.id for r in catalog.requirements}
    cited = {rid for res in results for rid in res.case.requirements}
    cited |= {rid for res in results for rid in _named_violations(res)}
    return sorted(cited - known)


def _info(info: RunInfo, ordered: Sequence[CaseResult]) -> dict[str, Any]:
    data = {**asdict(info), "unavailable_faults": unavailable_faults(ordered, info)}
    if info.exploration:  # its elapsed time only in its duration_s, a timing field
        data["exploration"] = {**info.exploration,
                               "summary": exploration_words(info.exploration)}
    return data


def build_report(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of report.json, as plain JSON-ready data."""
    ordered = _order(results)
    statuses = requirement_status(ordered, catalog)
    verdicts = profile_verdicts(ordered, catalog, info.capabilities, info.selection)
    case_counts = dict.fromkeys(CASE_STATUSES, 0)
    for res in ordered:
        case_counts[res.status] = case_counts.get(res.status, 0) + 1
    req_counts = dict.fromkeys(REQUIREMENT_STATUSES, 0)
    by_level = {level: dict.fromkeys(REQUIREMENT_STATUSES, 0) for level in LEVELS}
    for req in catalog.requirements:
        state = statuses[req.id].status
        req_counts[state] += 1
        by_level.setdefault(req.level, dict.fromkeys(REQUIREMENT_STATUSES, 0))[state] += 1
    claimed: dict[str, Any] | None = None
    if info.profile is not None:
        match = [v for v in verdicts if v.name == info.profile]
        claimed = {
            "name": info.profile,
            "known": bool(match),
            "certified": match[0].certified if match else False,
        }
    requirements = []
    for rid, st in statuses.items():
        req = catalog.by_id(rid)
        requirements.append(
            {
                "id": rid,
                "area": req.area,
                "title": req.title,
                "level": req.level,
                "capabilities": list(req.capabilities),
                **{k: v for k, v in st.to_dict().items() if k != "id"},
            }
        )
    report: dict[str, Any] = {
        "format": "applied-index-conformance-report",
        "format_version": FORMAT_VERSION,
        "info": _info(info, ordered),
        "summary": {
            "cases": {"total": len(ordered), **case_counts},
            "requirements": {"total": len(catalog.requirements), **req_counts},
            "requirements_by_level": by_level,
            "claimed_profile": claimed,
            "certified_profiles": [v.name for v in verdicts if v.certified],
        },
        "profiles": [v.to_dict() for v in verdicts],
        # category -> requests, syncs, per_request (conformance/syncs.py)
        "syncs": sync_totals([r.syncs for r in ordered if r.syncs]),
        "requirements": requirements,
        "unknown_requirement_ids": _unknown_ids(ordered, catalog),
        "cases": [_case_dict(r) for r in ordered],
    }
    if mutants is not None:
        report["mutants"] = _mutants_dict(mutants)
    return report

