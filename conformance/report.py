"""The certification report: what ran, what it proves, and which profiles it certifies.

From a run's case results and the requirement catalog this module derives

- a status per requirement (:func:`requirement_status`): ``passed``, ``failed``,
  ``not_applicable`` or ``untested``;
- a verdict per profile (:func:`profile_verdicts`), following the conformance statement of
  docs/protocol.md: a profile is certified only when the node advertises every capability of
  the profile and every MUST requirement of the profile passed, with none failed, none skipped
  as not applicable and none left without a case;

and writes three files (:func:`write_report`): ``report.json`` for machines, ``report.md`` for
people and ``junit.xml`` for CI systems. Output is deterministic: cases are ordered by suite
then case id, requirements by id, profiles in catalog order.

How case statuses count for a requirement: ``passed`` and ``xpassed`` are passes (an xpassed
case shows the behaviour holds; its expectation is stale), ``failed``, ``error`` and
``xfailed`` are failures (an xfailed case is a *known* failure: it still fails the
requirement, an expectation never certifies anything), ``not_applicable`` did not run. A
requirement that a failing case names as violated (``Failure.requirement`` or
``CaseResult.violations``) fails too, even when the case does not cite it.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from conformance.cases import Case, CaseResult, Failure, Location, Step
from conformance.catalog import AREAS, LEVELS, Catalog, Requirement

__all__ = [
    "CASE_STATUSES",
    "REQUIREMENT_STATUSES",
    "ProfileVerdict",
    "ReportPaths",
    "RequirementState",
    "RequirementStatus",
    "RunInfo",
    "build_report",
    "profile_verdicts",
    "render_junit",
    "render_markdown",
    "requirement_status",
    "write_report",
]

FORMAT_VERSION = 1
LOG_TAIL_LINES = 50
_RENDERED_LOG_LINES = 20  # what Failure.render() shows

RequirementState = Literal["passed", "failed", "not_applicable", "untested"]
REQUIREMENT_STATUSES: tuple[RequirementState, ...] = (
    "passed", "failed", "not_applicable", "untested",
)
CASE_STATUSES = ("passed", "failed", "error", "not_applicable", "xfailed", "xpassed")
_PASSING = frozenset({"passed", "xpassed"})
_FAILING = frozenset({"failed", "error", "xfailed"})


# --------------------------------------------------------------------------- data


@dataclass
class RunInfo:
    """Who was tested, how, and when."""

    implementation: dict[str, Any]  # from hello: name, version
    adapter: str  # e.g. "in-process reference"
    protocol_version: int
    capabilities: list[str]  # advertised in hello
    profile: str | None  # the profile the implementation claims
    seed: int
    started: str  # ISO 8601, UTC
    duration_s: float
    command: str
    harness_version: str

    def identity(self) -> str:
        name = str(self.implementation.get("name", "unknown implementation"))
        version = self.implementation.get("version")
        return f"{name} {version}" if version not in (None, "") else name


@dataclass
class RequirementStatus:
    """What the cases of one run say about one requirement."""

    id: str
    status: RequirementState
    # case status -> ids of the cases with that status (citing or naming the requirement)
    cases: dict[str, list[str]] = field(default_factory=dict)
    # case id -> failure message, for the cases that failed, errored or xfailed
    failures: dict[str, str] = field(default_factory=dict)
    # case id -> why it did not apply (the missing capability)
    not_applicable: dict[str, str] = field(default_factory=dict)
    # True when the requirement failed and every failing case was an expected failure
    known_failure: bool = False

    @property
    def case_ids(self) -> list[str]:
        return [cid for ids in self.cases.values() for cid in ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "known_failure": self.known_failure,
            "cases": self.cases,
            "failures": self.failures,
            "not_applicable": self.not_applicable,
        }


@dataclass
class ProfileVerdict:
    """Whether the run certifies one profile, and if not, why not."""

    name: str
    description: str
    capabilities: tuple[str, ...]  # cumulative, in catalog order
    certified: bool
    missing_capabilities: tuple[str, ...]
    must: tuple[str, ...]  # IDs of the profile's MUST requirements
    must_passed: int
    failed: tuple[str, ...]  # MUST requirement IDs that failed
    not_applicable: tuple[str, ...]  # MUST requirement IDs whose every case was skipped
    untested: tuple[str, ...]  # MUST requirement IDs no case cites
    # IDs of the profile's requirements for nodes lacking a capability this node advertises
    excluded: tuple[str, ...]
    reasons: tuple[str, ...]  # why not certified, in words; empty when certified
    # level (SHOULD, MAY) -> requirement status -> count; informational, never blocking
    optional: dict[str, dict[str, int]]

    @property
    def profile(self) -> str:
        """The profile's name (alias of ``name``)."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    json: Path
    markdown: Path
    junit: Path


# --------------------------------------------------------------------------- analysis


def _order(results: Iterable[CaseResult]) -> list[CaseResult]:
    return sorted(results, key=lambda r: (r.case.suite, r.case.id))


def _failure_message(result: CaseResult) -> str:
    if result.failure is not None:
        return result.failure.message
    if result.reason:
        return result.reason
    return f"case {result.status} without a recorded failure"


def _na_reason(result: CaseResult) -> str:
    if result.reason:
        return result.reason
    if result.case.capabilities:
        return "needs capability " + ", ".join(result.case.capabilities)
    return "not applicable"


def _named_violations(result: CaseResult) -> list[str]:
    """Requirement IDs a failing case reports as violated."""
    if result.status not in _FAILING:
        return []
    named = list(result.violations)
    if result.failure is not None and result.failure.requirement:
        named.append(result.failure.requirement)
    return named


def requirement_status(
    results: Sequence[CaseResult], catalog: Catalog
) -> dict[str, RequirementStatus]:
    """Requirement ID -> its status in this run, for every catalog requirement, sorted by ID.

    ``passed``: at least one case citing it ran and every one that ran passed.
    ``failed``: some case citing it (or naming it as violated) failed, errored or xfailed.
    ``not_applicable``: every citing case was not applicable.
    ``untested``: no case cites it.
    """
    evidence: dict[str, list[CaseResult]] = {r.id: [] for r in catalog.requirements}
    for result in _order(results):
        ids = list(result.case.requirements)
        ids += [rid for rid in _named_violations(result) if rid not in ids]
        for rid in ids:
            if rid in evidence:
                evidence[rid].append(result)
    out: dict[str, RequirementStatus] = {}
    for rid in sorted(evidence):
        cited = evidence[rid]
        cases: dict[str, list[str]] = {}
        for res in cited:
            cases.setdefault(res.status, []).append(res.case.id)
        failing = [r for r in cited if r.status in _FAILING]
        ran = [r for r in cited if r.status != "not_applicable"]
        state: RequirementState
        if failing:
            state = "failed"
        elif ran:
            state = "passed"
        elif cited:
            state = "not_applicable"
        else:
            state = "untested"
        out[rid] = RequirementStatus(
            id=rid,
            status=state,
            cases={s: cases[s] for s in CASE_STATUSES if s in cases},
            failures={r.case.id: _failure_message(r) for r in failing},
            not_applicable={
                r.case.id: _na_reason(r) for r in cited if r.status == "not_applicable"
            },
            known_failure=bool(failing) and all(r.status == "xfailed" for r in failing),
        )
    return out


def _no_case_reason(rid: str, st: RequirementStatus) -> str:
    if st.status == "untested":
        return f"requirement {rid} had no case run (no case cites it)"
    reasons = sorted(set(st.not_applicable.values()))
    return f"requirement {rid} had no case run (not applicable: {'; '.join(reasons)})"


def profile_verdicts(
    results: Sequence[CaseResult],
    catalog: Catalog,
    advertised_capabilities: Iterable[str],
) -> list[ProfileVerdict]:
    """One verdict per catalog profile, in catalog order.

    Certified iff every (cumulative) capability of the profile is advertised and every MUST
    requirement of the profile (``catalog.for_profile``) passed. Requirements that apply only
    to nodes without a capability the node advertises (``Requirement.without``) are left out
    and listed in ``excluded``. SHOULD and MAY results are summarised in ``optional`` and never
    block certification.
    """
    statuses = requirement_status(results, catalog)
    advertised = set(advertised_capabilities)
    verdicts: list[ProfileVerdict] = []
    for prof in catalog.profiles:
        cumulative = catalog.profile_capabilities(prof.name)
        caps = tuple(c for c in catalog.capabilities if c in cumulative)
        caps += tuple(sorted(cumulative - set(caps)))
        missing = tuple(c for c in caps if c not in advertised)
        # A requirement for nodes without some capability (Requirement.without) cannot be
        # checked on a node that advertises it, and does not bind such a node.
        reqs = sorted(
            (r for r in catalog.for_profile(prof.name) if not advertised.intersection(r.without)),
            key=lambda r: r.id,
        )
        excluded = tuple(
            sorted(r.id for r in catalog.for_profile(prof.name)
                   if advertised.intersection(r.without))
        )
        must = [r for r in reqs if r.level == "MUST"]
        failed = [r.id for r in must if statuses[r.id].status == "failed"]
        skipped = [r.id for r in must if statuses[r.id].status == "not_applicable"]
        untested = [r.id for r in must if statuses[r.id].status == "untested"]
        reasons = [f"missing capability {c}" for c in missing]
        for r in must:
            st = statuses[r.id]
            if st.status == "failed":
                known = " (known failure)" if st.known_failure else ""
                reasons.append(
                    f"requirement {r.id} failed by case {', '.join(st.failures)}{known}"
                )
            elif st.status in ("not_applicable", "untested"):
                reasons.append(_no_case_reason(r.id, st))
        optional: dict[str, dict[str, int]] = {}
        for level in LEVELS:
            if level == "MUST":
                continue
            counts: dict[str, int] = dict.fromkeys(REQUIREMENT_STATUSES, 0)
            for r in reqs:
                if r.level == level:
                    counts[statuses[r.id].status] += 1
            optional[level] = counts
        verdicts.append(
            ProfileVerdict(
                name=prof.name,
                description=prof.description,
                capabilities=caps,
                certified=not reasons,
                missing_capabilities=missing,
                must=tuple(r.id for r in must),
                must_passed=sum(1 for r in must if statuses[r.id].status == "passed"),
                failed=tuple(failed),
                not_applicable=tuple(skipped),
                untested=tuple(untested),
                excluded=excluded,
                reasons=tuple(reasons),
                optional=optional,
            )
        )
    return verdicts


# --------------------------------------------------------------------------- report.json


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


def _failure_dict(failure: Failure, include_logs: bool) -> dict[str, Any]:
    return {
        "message": failure.message,
        "rendered": failure.render(),
        "step": _step(failure.step) if failure.step is not None else None,
        "request": failure.request,
        "reply": failure.reply,
        "allowed": failure.allowed,
        "requirement": failure.requirement,
        "logs_tail": _log_tail(failure.logs) if include_logs else "",
    }


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
        "reason": result.reason,
        "violations": list(result.violations),
        "failure": (
            _failure_dict(result.failure, include_logs=failing)
            if result.failure is not None
            else None
        ),
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


def build_report(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content of report.json, as plain JSON-ready data."""
    ordered = _order(results)
    statuses = requirement_status(ordered, catalog)
    verdicts = profile_verdicts(ordered, catalog, info.capabilities)
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
        "info": asdict(info),
        "summary": {
            "cases": {"total": len(ordered), **case_counts},
            "requirements": {"total": len(catalog.requirements), **req_counts},
            "requirements_by_level": by_level,
            "claimed_profile": claimed,
            "certified_profiles": [v.name for v in verdicts if v.certified],
        },
        "profiles": [v.to_dict() for v in verdicts],
        "requirements": requirements,
        "unknown_requirement_ids": _unknown_ids(ordered, catalog),
        "cases": [_case_dict(r) for r in ordered],
    }
    if mutants is not None:
        report["mutants"] = _mutants_dict(mutants)
    return report


# --------------------------------------------------------------------------- report.md


def _cell(text: object) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _code(text: object) -> str:
    """Inline code that survives backticks in the text."""
    s = " ".join(str(text).split())
    runs = [len(m) for m in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}".replace("|", "\\|")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _block(text: str) -> list[str]:
    """A fenced code block longer than any backtick run inside ``text``.

    Control characters (terminal colour codes in node logs) become visible escapes.
    """
    text = _CONTROL.sub(lambda m: f"\\x{{{ord(m.group()):x}}}", text)
    runs = [len(m) for m in re.findall(r"`{3,}", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return [fence + "text", text, fence]


def _area_heading(req: Requirement) -> tuple[int, str]:
    prefixes = list(AREAS)
    if req.prefix in AREAS:
        return prefixes.index(req.prefix), f"{req.prefix}: {AREAS[req.prefix][1]}"
    return len(prefixes), req.area


def _case_refs(st: RequirementStatus) -> str:
    refs = []
    for status, ids in st.cases.items():
        for cid in ids:
            refs.append(_code(cid) if status == "passed" else f"{_code(cid)} ({status})")
    return ", ".join(refs) if refs else "—"


def _status_word(st: RequirementStatus) -> str:
    words = {
        "passed": "passed",
        "failed": "**FAILED**",
        "not_applicable": "not applicable",
        "untested": "untested",
    }
    word = words[st.status]
    return word + " (known)" if st.known_failure else word


def render_markdown(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """report.md: the verdict first, then requirements by area, failures, skipped cases."""
    data = build_report(results, catalog, info, mutants)
    ordered = _order(results)
    statuses = requirement_status(ordered, catalog)
    verdicts = profile_verdicts(ordered, catalog, info.capabilities)
    out: list[str] = [
        f"# Conformance report: {info.identity()}",
        "",
        f"- **Implementation**: {_cell(info.identity())}",
        f"- **Adapter**: {_cell(info.adapter)}",
        f"- **Protocol version**: {info.protocol_version}",
        "- **Advertised capabilities**: "
        + (", ".join(_code(c) for c in sorted(info.capabilities)) or "none"),
        f"- **Claimed profile**: {_code(info.profile) if info.profile else 'none'}",
        f"- **Seed**: {info.seed}",
        f"- **Started**: {info.started}",
        f"- **Duration**: {info.duration_s:.2f} s",
        f"- **Command**: {_code(info.command)}",
        f"- **Harness**: {_cell(info.harness_version)}",
        "",
        "## Verdict",
        "",
    ]
    claimed = data["summary"]["claimed_profile"]
    if claimed is None:
        out.append("No profile claimed; the verdict for every profile follows.")
    elif not claimed["known"]:
        out.append(f"**NOT CERTIFIED**: the claimed profile {_code(info.profile)} is not in the"
                   " catalog.")
    elif claimed["certified"]:
        out.append(f"**CERTIFIED** for the claimed profile {_code(info.profile)}.")
    else:
        out.append(f"**NOT CERTIFIED** for the claimed profile {_code(info.profile)}.")
    out += [
        "",
        "| Profile | Verdict | MUST passed | SHOULD passed/failed | MAY passed/failed |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        mark = " (claimed)" if v.name == info.profile else ""
        verdict = "certified" if v.certified else "**not certified**"
        opt = {
            lvl: f"{c.get('passed', 0)}/{c.get('failed', 0)}" for lvl, c in v.optional.items()
        }
        out.append(
            f"| {_code(v.name)}{mark} | {verdict} | {v.must_passed}/{len(v.must)}"
            f" | {opt.get('SHOULD', '—')} | {opt.get('MAY', '—')} |"
        )
    for v in verdicts:
        if v.excluded:
            out += [
                "",
                f"Not binding in {_code(v.name)} for this node (they apply only to nodes without"
                " a capability it advertises): " + ", ".join(v.excluded) + ".",
            ]
        if v.certified:
            continue
        out += ["", f"Why {_code(v.name)} is not certified:", ""]
        out += [f"- {_cell(reason)}" for reason in v.reasons]

    summary = data["summary"]
    out += ["", "## Summary", "", "| Cases | " + " | ".join(CASE_STATUSES) + " |"]
    out.append("|---" * (len(CASE_STATUSES) + 1) + "|")
    out.append(
        f"| {summary['cases']['total']} | "
        + " | ".join(str(summary["cases"][s]) for s in CASE_STATUSES)
        + " |"
    )
    out += ["", "| Requirements | " + " | ".join(REQUIREMENT_STATUSES) + " |"]
    out.append("|---" * (len(REQUIREMENT_STATUSES) + 1) + "|")
    out.append(
        f"| {summary['requirements']['total']} | "
        + " | ".join(str(summary["requirements"][s]) for s in REQUIREMENT_STATUSES)
        + " |"
    )
    if data["unknown_requirement_ids"]:
        out += [
            "",
            "Cases cite requirement IDs that are not in the catalog: "
            + ", ".join(_code(i) for i in data["unknown_requirement_ids"])
            + ".",
        ]

    out += ["", "## Requirements"]
    areas: dict[tuple[int, str], list[Requirement]] = {}
    for req in catalog.requirements:
        areas.setdefault(_area_heading(req), []).append(req)
    for key in sorted(areas):
        out += ["", f"### {key[1]}", "", "| ID | Level | Title | Status | Cases |",
                "|---|---|---|---|---|"]
        for req in sorted(areas[key], key=lambda r: r.id):
            st = statuses[req.id]
            out.append(
                f"| {req.id} | {req.level} | {_cell(req.title)} | {_status_word(st)}"
                f" | {_case_refs(st)} |"
            )

    failing = [r for r in ordered if r.status in ("failed", "error")]
    out += ["", "## Failures", ""]
    if not failing:
        out.append("No case failed.")
    for i, res in enumerate(failing):
        if i:
            out.append("")
        out += _failure_section(res, catalog)

    known = [r for r in ordered if r.status == "xfailed"]
    unexpected = [r for r in ordered if r.status == "xpassed"]
    if known or unexpected:
        out += ["", "## Expected failures", ""]
        for res in known:
            out.append(
                f"- {_code(res.case.id)} ({_cell(res.case.suite)}, {res.case.location}):"
                f" xfailed, {_cell(res.reason or _failure_message(res))}"
            )
        for res in unexpected:
            out.append(
                f"- {_code(res.case.id)} ({_cell(res.case.suite)}, {res.case.location}):"
                " xpassed, the expectation is stale"
            )

    skipped = [r for r in ordered if r.status == "not_applicable"]
    out += ["", "## Not applicable", ""]
    if not skipped:
        out.append("Every case applied.")
    else:
        out += ["| Case | Suite | Requirements | Reason |", "|---|---|---|---|"]
        for res in skipped:
            reqs = ", ".join(res.case.requirements) or "—"
            out.append(
                f"| {_code(res.case.id)} | {_cell(res.case.suite)} | {reqs}"
                f" | {_cell(_na_reason(res))} |"
            )

    if mutants is not None:
        m = data["mutants"]
        out += [
            "",
            "## Mutation matrix",
            "",
            f"{m['killed']} of {m['total']} mutants killed.",
            "",
            "| Mutant | Requirement | Killed | Killed by |",
            "|---|---|---|---|",
        ]
        for row in m["matrix"]:
            by = ", ".join(_code(c) for c in row["killed_by"]) or "—"
            out.append(
                f"| {_code(row['name'])} | {_cell(row['requirement'] or '—')}"
                f" | {'yes' if row['killed'] else '**no**'} | {by} |"
            )
    out.append("")
    return "\n".join(out)


def _failure_section(res: CaseResult, catalog: Catalog) -> list[str]:
    case = res.case
    out = [
        f"### {case.suite} / {case.id}: {res.status}",
        "",
        f"- Case defined at {_code(case.location)}",
    ]
    if case.description:
        out.append(f"- Description: {_cell(case.description)}")
    out.append(f"- Cites: {', '.join(case.requirements) or '—'}")
    failure = res.failure
    if failure is not None and failure.step is not None:
        step = failure.step
        out.append(
            f"- Failing step: step {step.index + 1} ({_cell(step.kind)}) at {_code(step.location)}"
        )
    violated = list(res.violations)
    if failure is not None and failure.requirement and failure.requirement not in violated:
        violated.insert(0, failure.requirement)
    for rid in violated:
        try:
            title = f": {_cell(catalog.by_id(rid).title)}"
        except KeyError:
            title = " (not in the catalog)"
        out.append(f"- Violates {rid}{title}")
    out.append(f"- Steps run: {res.steps_run} of {len(case.steps)}; {res.duration:.3f} s")
    out.append("")
    text = failure.render() if failure is not None else _failure_message(res)
    out += _block(text)
    if failure is not None and len(failure.logs.splitlines()) > _RENDERED_LOG_LINES:
        # Failure.render() shows the last 20 lines; give more context when there is more
        out += ["", f"Node log (last {LOG_TAIL_LINES} lines):", ""]
        out += _block(_log_tail(failure.logs))
    return out


# --------------------------------------------------------------------------- junit.xml

_XML_INVALID = re.compile(
    "[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _xml(text: object) -> str:
    """Text that XML 1.0 can carry: invalid characters become visible escapes."""
    return _XML_INVALID.sub(lambda m: f"\\x{{{ord(m.group()):x}}}", str(text))


def _properties(parent: ET.Element, props: Sequence[tuple[str, str]]) -> None:
    if not props:
        return
    node = ET.SubElement(parent, "properties")
    for name, value in props:
        ET.SubElement(node, "property", name=_xml(name), value=_xml(value))


def render_junit(results: Sequence[CaseResult], info: RunInfo) -> ET.Element:
    """junit.xml: one testsuite per suite, one testcase per case."""
    ordered = _order(results)
    suites: dict[str, list[CaseResult]] = {}
    for res in ordered:
        suites.setdefault(res.case.suite, []).append(res)

    def counts(rs: Sequence[CaseResult]) -> dict[str, str]:
        return {
            "tests": str(len(rs)),
            "failures": str(sum(1 for r in rs if r.status == "failed")),
            "errors": str(sum(1 for r in rs if r.status == "error")),
            "skipped": str(sum(1 for r in rs if r.status in ("not_applicable", "xfailed"))),
            "time": f"{sum(r.duration for r in rs):.3f}",
        }

    root = ET.Element("testsuites", {"name": "applied-index-conformance", **counts(ordered)})
    run_props = [
        ("implementation", info.identity()),
        ("adapter", info.adapter),
        ("protocol_version", str(info.protocol_version)),
        ("capabilities", ",".join(sorted(info.capabilities))),
        ("profile", info.profile or ""),
        ("seed", str(info.seed)),
        ("command", info.command),
        ("harness_version", info.harness_version),
    ]
    for name in sorted(suites):
        rs = suites[name]
        suite = ET.SubElement(
            root, "testsuite", {"name": _xml(name), **counts(rs), "timestamp": _xml(info.started)}
        )
        _properties(suite, run_props)
        for res in rs:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(name),
                name=_xml(res.case.id),
                time=f"{res.duration:.3f}",
            )
            props = [("requirement", rid) for rid in res.case.requirements]
            props.append(("location", str(res.case.location)))
            props += [("violation", rid) for rid in res.violations]
            _properties(case, props)
            if res.status in ("failed", "error"):
                text = res.failure.render() if res.failure is not None else _failure_message(res)
                tag = "failure" if res.status == "failed" else "error"
                el = ET.SubElement(
                    case, tag, message=_xml(_failure_message(res)), type=res.status
                )
                el.text = _xml(text)
            elif res.status == "not_applicable":
                ET.SubElement(case, "skipped", message=_xml(_na_reason(res)))
            elif res.status == "xfailed":
                el = ET.SubElement(
                    case,
                    "skipped",
                    message=_xml("expected failure: " + (res.reason or _failure_message(res))),
                    type="xfail",
                )
                if res.failure is not None:
                    el.text = _xml(res.failure.render())
            if res.failure is not None and res.failure.logs and res.status in _FAILING:
                ET.SubElement(case, "system-err").text = _xml(_log_tail(res.failure.logs))
    ET.indent(root)
    return root


# --------------------------------------------------------------------------- writing


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    out_dir: Path,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportPaths:
    """Write report.json, report.md and junit.xml into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        out_dir=out_dir,
        json=out_dir / "report.json",
        markdown=out_dir / "report.md",
        junit=out_dir / "junit.xml",
    )
    data = build_report(results, catalog, info, mutants)
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    _write_atomic(paths.json, text.encode("utf-8", "backslashreplace"))
    md = render_markdown(results, catalog, info, mutants)
    _write_atomic(paths.markdown, md.encode("utf-8", "backslashreplace"))
    xml = ET.tostring(render_junit(results, info), encoding="utf-8", xml_declaration=True)
    _write_atomic(paths.junit, xml + b"\n")
    return paths
