"""report.md: the verdict first, then requirements by area, failures and skipped cases."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from conformance.cases import CaseResult
from conformance.catalog import AREAS, Catalog, Requirement

from .json_report import LOG_TAIL_LINES, _log_tail, build_report
from .model import (
    CASE_STATUSES,
    REQUIREMENT_STATUSES,
    RequirementStatus,
    RunInfo,
    _failure_message,
    _na_reason,
    _order,
    profile_verdicts,
    requirement_status,
)

_RENDERED_LOG_LINES = 20  # what Failure.render() shows



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


def _faults_line(faults: Mapping[str, str]) -> str:
    if not faults:
        return "none"
    return "; ".join(f"{_code(f)} ({_cell(why)})" for f, why in faults.items()) + (
        "; the cases that need them were not applicable, and the verdict names the profiles"
        " this leaves untested")


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
        "not_exercised": "passed, not exercised",
        "interrupted": "**not checked** (its cases stopped at another failure)",
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
        "- **Harness faults not available**: " + _faults_line(data["info"]["unavailable_faults"]),
        "- **Exploration**: " + (_cell(info.exploration["summary"]) if info.exploration
                                 else "none (`--explore 0`, or not a certify run)"),
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
        if v.caveats:
            out += ["", f"What the {_code(v.name)} verdict did not test:", ""]
            out += [f"- {_cell(caveat)}" for caveat in v.caveats]
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

    out += _syncs_section(data["syncs"])

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


def _syncs_section(syncs: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Syncs per kind of request, as the layer under the node counted them."""
    out = ["", "## Syncs", ""]
    if not syncs:
        return out + ["No layer under the node counted its syncs in this run (they are counted"
                      " by the simulated disk in process, and by the crash-simulating filesystem"
                      " in the cases that run on it)."]
    out += ["Counted by the layer under the node (fsync, fdatasync and directory fsync), in"
            " the cases that ran on it; a request that failed or died is not counted.", "",
            "| Request | Counted | Syncs | Syncs per request |", "|---|---|---|---|"]
    for cat, row in syncs.items():
        out.append(f"| {cat} | {int(row['requests'])} | {int(row['syncs'])} | "
                   f"{row['per_request']:.2f} |")
    return out
