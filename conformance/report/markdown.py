"""report.md: what a person reads in a minute, verdict first.

Order: the verdict for the claimed profile and why not; one compact table of every
profile; the root causes of the failures (one failure, one name: blame.py) and each
failing case; the cases that did not apply, grouped by why; the requirements by status;
syncs; the run's details last. The timelines of the failing cases are in report.html.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from conformance.cases import CaseResult
from conformance.catalog import Catalog

from .groups import na_groups, root_causes
from .json_report import LOG_TAIL_LINES, _log_tail, build_report
from .model import (
    REQUIREMENT_STATUSES,
    ProfileVerdict,
    RunInfo,
    _failure_message,
    _order,
    profile_verdicts,
)
from .text import LOG_LINES, exploration_words, failure_text, scrub


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


def _ids(ids: Sequence[str], shown: int = 12) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(_code(i) for i in ids[:shown]) + more


def _headline(info: RunInfo, claimed: Mapping[str, Any] | None,
              verdicts: Sequence[ProfileVerdict]) -> list[str]:
    if claimed is None:
        certified = [v.name for v in verdicts if v.certified]
        return ["No profile claimed; certified for "
                + (", ".join(_code(n) for n in certified) if certified else "no profile") + "."]
    if not claimed["known"]:
        return [f"**NOT CERTIFIED**: the claimed profile {_code(info.profile)} is not in the"
                " catalog."]
    v = next(v for v in verdicts if v.name == info.profile)
    if v.certified and v.caveats:
        return [f"**CERTIFIED** for the claimed profile {_code(info.profile)}; what it did not"
                " test for this node:", "", *(f"- {_cell(c)}" for c in v.caveats)]
    if v.certified:
        return [f"**CERTIFIED** for the claimed profile {_code(info.profile)}."]
    return [f"**NOT CERTIFIED** for the claimed profile {_code(info.profile)}:", "",
            *(f"- {_cell(why)}" for why in v.why_not())]


def _profile_table(info: RunInfo, verdicts: Sequence[ProfileVerdict]) -> list[str]:
    out = ["| Profile | Verdict | MUST passed | Others passed | Why not |",
           "|---|---|---|---|---|"]
    for v in verdicts:
        mark = " (claimed)" if v.name == info.profile else ""
        verdict = "certified" if v.certified else "**not certified**"
        optional = ", ".join(f"{level} {c.get('passed', 0)}/{sum(c.values())}"
                             for level, c in v.optional.items())
        why = "; ".join(v.why_not()) or "—"
        out.append(f"| {_code(v.name)}{mark} | {verdict} | {v.must_passed}/{len(v.must)}"
                   f" | {optional or '—'} | {_cell(why)} |")
    # the same note for several profiles is said once, naming them
    notes: dict[str, list[str]] = {}
    for v in verdicts:
        if v.excluded:
            notes.setdefault("not binding for this node (they apply only to nodes without a"
                             " capability it advertises): " + ", ".join(v.excluded), []
                             ).append(v.name)
        for caveat in v.caveats:
            notes.setdefault(caveat, []).append(v.name)
    lines = [f"- {', '.join(_code(n) for n in names)}: {_cell(note)}"
             for note, names in notes.items()]
    return out + (["", *lines] if lines else [])


def render_markdown(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """report.md: verdict, profiles, root causes and failures, not applicable, the rest."""
    data = build_report(results, catalog, info, mutants)
    ordered = _order(results)
    verdicts = profile_verdicts(ordered, catalog, info.capabilities, info.selection)
    out: list[str] = [f"# Conformance report: {_cell(info.identity())}", ""]
    out += _headline(info, data["summary"]["claimed_profile"], verdicts)
    if info.selection is not None:
        out += ["", f"Not all cases ran ({_cell(info.selection)}): no profile is certified by"
                    " this run; `conformance certify` runs them all."]
    out += ["", "## Profiles", "", *_profile_table(info, verdicts)]
    out += _root_cause_section(ordered, catalog)
    out += _failures_section(ordered, catalog)
    out += _expected_section(ordered)
    out += _na_section(ordered, info)
    out += _requirements_section(data, catalog)
    if data["unknown_requirement_ids"]:
        out += ["", "Cases cite requirement IDs that are not in the catalog: "
                + ", ".join(_code(i) for i in data["unknown_requirement_ids"]) + "."]
    out += _syncs_section(data["syncs"])
    out += _run_section(info, data)
    if mutants is not None:
        out += _mutants_section(data["mutants"])
    out.append("")
    return "\n".join(out)


def _root_cause_section(ordered: Sequence[CaseResult], catalog: Catalog) -> list[str]:
    roots = root_causes(ordered)
    if not roots:
        return []
    out = ["", "## Root causes", "",
           "Each failure is named once, by the requirement its failing check guards"
           " (docs/report.md, \"One failure, one name\"); the requirements its cases did not"
           " reach are its consequences.", "",
           "| Root cause | Cases | First failure | Consequences (not checked) |",
           "|---|---|---|---|"]
    for root in roots:
        title = _title(catalog, root.requirement)
        first = root.cases[0]
        out.append(f"| {root.requirement or '(none named)'}{title} | {len(root.cases)}"
                   f" | {_cell(scrub(_failure_message(first)))} ({_code(first.case.id)})"
                   f" | {', '.join(root.consequences) or '—'} |")
    return out


def _title(catalog: Catalog, rid: str | None) -> str:
    if not rid:
        return ""
    try:
        return f": {_cell(catalog.by_id(rid).title)}"
    except KeyError:
        return " (not in the catalog)"


def _failures_section(ordered: Sequence[CaseResult], catalog: Catalog) -> list[str]:
    failing = [r for r in ordered if r.status in ("failed", "error")]
    out = ["", "## Failures", ""]
    if not failing:
        return out + ["No case failed."]
    out += ["The timeline of each failing case is drawn in report.html.", ""]
    for i, res in enumerate(failing):
        if i:
            out.append("")
        out += _failure_section(res, catalog)
    return out


def _failure_section(res: CaseResult, catalog: Catalog) -> list[str]:
    case = res.case
    text = failure_text(res)
    out = [f"### {case.suite} / {case.id}: {res.status}", "",
           f"- Case defined at {_code(case.location)}; cites "
           f"{', '.join(case.requirements) or '—'}"]
    if case.description:
        out.append(f"- Description: {_cell(case.description)}")
    if text is not None:
        out.append(f"- Root cause: {_cell(text.headline)}")
    out += ["", *_block("\n".join([text.headline, *text.lines] if text is not None
                                  else [scrub(_failure_message(res))]))]
    if text is not None and text.log:
        logs = res.failure.logs if res.failure is not None else ""
        more = len(logs.splitlines()) > LOG_LINES
        shown = scrub(_log_tail(logs)) if more else text.log
        count = LOG_TAIL_LINES if more else LOG_LINES
        out += ["", f"Node log (last {count} lines):", "", *_block(shown)]
    return out


def _expected_section(ordered: Sequence[CaseResult]) -> list[str]:
    known = [r for r in ordered if r.status == "xfailed"]
    unexpected = [r for r in ordered if r.status == "xpassed"]
    if not known and not unexpected:
        return []
    out = ["", "## Expected failures", ""]
    out += [f"- {_code(r.case.id)} ({_cell(r.case.suite)}, {r.case.location}): xfailed,"
            f" {_cell(scrub(r.reason or _failure_message(r)))}" for r in known]
    out += [f"- {_code(r.case.id)} ({_cell(r.case.suite)}, {r.case.location}): xpassed, the"
            " expectation is stale" for r in unexpected]
    return out


def _na_section(ordered: Sequence[CaseResult], info: RunInfo) -> list[str]:
    groups = na_groups(ordered, info.capabilities)
    out = ["", "## Not applicable", ""]
    if not groups:
        return out + ["Every case applied."]
    total = sum(len(cases) for _, cases in groups)
    out += [f"{total} cases did not apply to {_cell(info.identity())}, grouped by why:", "",
            "| Why | Cases |", "|---|---|"]
    for why, cases in groups:
        out.append(f"| {_cell(why)} | {len(cases)}: {_ids([r.case.id for r in cases], 6)} |")
    return out


_STATUS_WORDS = {
    "passed": "passed",
    "not_exercised": "passed, not exercised (the state they guard never arose)",
    "failed": "**failed**",
    "interrupted": "**not checked** (their cases stopped at another failure)",
    "not_applicable": "not applicable",
    "untested": "untested (no case ran)",
}


def _requirements_section(data: Mapping[str, Any], catalog: Catalog) -> list[str]:
    by_status: dict[str, list[str]] = {}
    for row in data["requirements"]:
        by_status.setdefault(row["status"], []).append(row["id"])
    out = ["", "## Requirements", "", "| Status | Count | Requirements |", "|---|---|---|"]
    for status in REQUIREMENT_STATUSES:
        ids = by_status.get(status, [])
        if ids:
            out.append(f"| {_STATUS_WORDS[status]} | {len(ids)} | {', '.join(ids)} |")
    out += ["", "Titles and texts: docs/requirements.md; per requirement, its cases and"
                " results: report.json (`requirements`)."]
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


def _faults_line(faults: Mapping[str, str]) -> str:
    if not faults:
        return "none"
    return "; ".join(f"{_code(f)} ({_cell(why)})" for f, why in faults.items())


def _run_section(info: RunInfo, data: Mapping[str, Any]) -> list[str]:
    counts = data["summary"]["cases"]
    ran = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "total" and n)
    return [
        "", "## Run", "",
        f"- **Implementation**: {_cell(info.identity())}",
        f"- **Adapter**: {_cell(info.adapter)}",
        f"- **Protocol version**: {info.protocol_version}",
        "- **Advertised capabilities**: "
        + (", ".join(_code(c) for c in sorted(info.capabilities)) or "none"),
        f"- **Claimed profile**: {_code(info.profile) if info.profile else 'none'}",
        "- **Harness faults not available**: "
        + _faults_line(data["info"]["unavailable_faults"]),
        "- **Exploration**: " + _cell(exploration_words(info.exploration)
                                      or "none (`--explore 0`, or not a certify run)"),
        f"- **Cases**: {counts['total']} ({ran or 'none'})",
        f"- **Seed**: {info.seed}",
        # the two timing fields of report.md (docs/report.md, "Deterministic reports")
        f"- **Started**: {info.started}",
        f"- **Duration**: {info.duration_s:.2f} s",
        f"- **Command**: {_code(info.command)}",
        f"- **Harness**: {_cell(info.harness_version)}",
    ]


def _mutants_section(m: Mapping[str, Any]) -> list[str]:
    out = ["", "## Mutation matrix", "", f"{m['killed']} of {m['total']} mutants killed.", "",
           "| Mutant | Requirement | Killed | Killed by |", "|---|---|---|---|"]
    for row in m["matrix"]:
        by = ", ".join(_code(c) for c in row["killed_by"]) or "—"
        out.append(f"| {_code(row['name'])} | {_cell(row['requirement'] or '—')}"
                   f" | {'yes' if row['killed'] else '**no**'} | {by} |")
    return out

