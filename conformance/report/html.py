"""report.html: the report as one self-contained page, with a timeline of each failing case.

One file, readable offline: inline CSS and SVG, no script, no font, image or link to fetch.
Same order as report.md (verdict first), plus the picture of each failing case
(timeline.py) and its numbers in a table under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from conformance.cases import CaseResult
from conformance.catalog import Catalog
from conformance.trace import TracePoint

from .blame import blame, failing_expectations
from .groups import na_groups, root_causes
from .json_report import build_report
from .model import (
    REQUIREMENT_STATUSES,
    ProfileVerdict,
    RunInfo,
    _failure_message,
    _order,
    profile_verdicts,
)
from .text import exploration_words, failure_text, scrub
from .timeline import render_timeline

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;margin:0;
  background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:30px 0 10px;
  border-bottom:1px solid #e3e5e8;padding-bottom:4px}h3{font-size:15px;margin:22px 0 6px}
.verdict{padding:12px 16px;border-radius:6px;font-size:16px;font-weight:600}
.verdict.ok{background:#e3f5e8;color:#14622f}.verdict.bad{background:#fde2e1;color:#8e1b1b}
.verdict ul{margin:6px 0 0;font-weight:400;font-size:14px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #dde0e4;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cert{color:#14622f;font-weight:600}.nocert{color:#8e1b1b;font-weight:600}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f7f9;border:1px solid #e3e5e8;padding:8px;overflow-x:auto;
  white-space:pre-wrap;word-break:break-word}
figure{margin:8px 0;overflow-x:auto}figcaption{font-size:13px;color:#8e1b1b;margin:4px 0}
.case{border-left:4px solid #d62728;padding-left:12px;margin:18px 0}
.muted{color:#666}details{margin:6px 0}summary{cursor:pointer;color:#333}
tr.fail td{background:#fde2e1}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def render_html(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The page: verdict, profiles, root causes, each failing case with its timeline, not
    applicable, requirements, run."""
    data = build_report(results, catalog, info, mutants)
    ordered = _order(results)
    verdicts = profile_verdicts(ordered, catalog, info.capabilities, info.selection)
    body: list[str] = [f"<h1>Conformance report: {_e(info.identity())}</h1>"]
    body += _verdict(info, verdicts)
    if info.selection is not None:
        body.append(f'<p class="verdict bad">Not all cases ran ({_e(info.selection)}): no'
                    " profile is certified by this run; <code>conformance certify</code> runs"
                    " them all.</p>")
    body += _profiles(info, verdicts)
    body += _roots(ordered, catalog)
    body += _failures(ordered)
    body += _not_applicable(ordered, info)
    body += _requirements(data)
    body += _run(info, data)
    if mutants is not None:
        body += _mutants(data["mutants"])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Conformance report: {_e(info.identity())}</title>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style>{_CSS}</style></head>\n<body><main>\n" + "\n".join(body)
            + "\n</main></body></html>\n")


def _verdict(info: RunInfo, verdicts: Sequence[ProfileVerdict]) -> list[str]:
    claimed = next((v for v in verdicts if v.name == info.profile), None)
    if info.profile is None:
        names = [v.name for v in verdicts if v.certified]
        text = ("No profile claimed; certified for " + (", ".join(names) or "no profile"))
        return [f'<div class="verdict {"ok" if names else "bad"}">{_e(text)}</div>']
    if claimed is None:
        return [f'<div class="verdict bad">NOT CERTIFIED: the claimed profile '
                f'<code>{_e(info.profile)}</code> is not in the catalog</div>']
    if claimed.certified:
        return [f'<div class="verdict ok">CERTIFIED for the claimed profile '
                f'<code>{_e(info.profile)}</code></div>']
    items = "".join(f"<li>{_e(w)}</li>" for w in claimed.why_not())
    return [f'<div class="verdict bad">NOT CERTIFIED for the claimed profile '
            f'<code>{_e(info.profile)}</code><ul>{items}</ul></div>']


def _profiles(info: RunInfo, verdicts: Sequence[ProfileVerdict]) -> list[str]:
    out = ["<h2>Profiles</h2>", "<table><tr><th>Profile</th><th>Verdict</th>"
           "<th>MUST passed</th><th>Why not</th></tr>"]
    for v in verdicts:
        mark = " (claimed)" if v.name == info.profile else ""
        verdict = ('<span class="cert">certified</span>' if v.certified
                   else '<span class="nocert">not certified</span>')
        why = "; ".join(v.why_not()) or "—"
        out.append(f"<tr><td><code>{_e(v.name)}</code>{mark}</td><td>{verdict}</td>"
                   f'<td class="num">{v.must_passed}/{len(v.must)}</td><td>{_e(why)}</td></tr>')
    out.append("</table>")
    return out


def _roots(ordered: Sequence[CaseResult], catalog: Catalog) -> list[str]:
    roots = root_causes(ordered)
    if not roots:
        return []
    out = ["<h2>Root causes</h2>",
           '<p class="muted">Each failure is named once, by the requirement its failing check'
           " guards; the requirements its cases did not reach are its consequences.</p>",
           "<table><tr><th>Root cause</th><th>Cases</th><th>First failure</th>"
           "<th>Consequences (not checked)</th></tr>"]
    for root in roots:
        title = ""
        if root.requirement:
            try:
                title = ": " + catalog.by_id(root.requirement).title
            except KeyError:
                title = " (not in the catalog)"
        first = root.cases[0]
        out.append(f"<tr><td><b>{_e(root.requirement or '(none named)')}</b>{_e(title)}</td>"
                   f'<td class="num">{len(root.cases)}</td>'
                   f'<td>{_e(scrub(_failure_message(first)))} (<a href="#case-{_e(first.case.id)}">'
                   f"<code>{_e(first.case.id)}</code></a>)</td>"
                   f"<td>{_e(', '.join(root.consequences) or '—')}</td></tr>")
    out.append("</table>")
    return out


def _failures(ordered: Sequence[CaseResult]) -> list[str]:
    failing = [r for r in ordered if r.status in ("failed", "error")]
    out = ["<h2>Failures</h2>"]
    if not failing:
        return out + ["<p>No case failed.</p>"]
    for res in failing:
        out += _case(res)
    return out


def _case(res: CaseResult) -> list[str]:
    case, failure = res.case, res.failure
    text = failure_text(res)
    b = blame(res)
    headline = text.headline if text is not None else scrub(_failure_message(res))
    out = [f'<section class="case" id="case-{_e(case.id)}">',
           f"<h3>{_e(case.suite)} / {_e(case.id)}: {_e(res.status)}</h3>",
           f'<p>Root cause: <b>{_e(headline)}</b><br><span class="muted">Case at '
           f"<code>{_e(case.location)}</code>; cites {_e(', '.join(case.requirements) or '—')}"
           "</span></p>"]
    if case.description:
        out.append(f'<p class="muted">{_e(case.description)}</p>')
    if res.trace:
        failing_step = (failure.step.index if failure is not None and failure.step is not None
                        else -1)
        svg = render_timeline(res.trace, failing_step, title=case.id, headline=headline,
                              allowed=(b.allowed or "") if b else "",
                              expect=failing_expectations(res), key=f"-{case.id}")
        caption = headline + (f" (allowed: {b.allowed})" if b and b.allowed else "")
        out += ["<figure>", svg, f"<figcaption>{_e(caption)}</figcaption>", "</figure>"]
        out += _trace_table(res.trace, failing_step)
    else:
        out.append('<p class="muted">No per-step trace was recorded for this case.</p>')
    if text is not None:
        out.append(f"<pre>{_e(chr(10).join([text.headline, *text.lines]))}</pre>")
        if text.log:
            out.append(f"<details><summary>Node log (tail)</summary><pre>{_e(text.log)}</pre>"
                       "</details>")
    out.append("</section>")
    return out


def _trace_table(points: Sequence[TracePoint], failing_step: int) -> list[str]:
    def cell(v: int | None, absent: bool = False) -> str:
        return "absent" if absent else ("" if v is None else str(v))

    rows = ["<details><summary>The numbers (empty: not reported at that step)</summary>",
            "<table><tr><th>Step</th><th>Line</th><th>applied</th><th>durable meta</th>"
            "<th>pointer</th><th>effective</th><th>event</th><th>log (model)</th>"
            "<th>must stay durable (model)</th></tr>"]
    for p in points:
        cls = ' class="fail"' if p.step == failing_step else ""
        rows.append(
            f"<tr{cls}><td>{_e(p.label)}</td><td class=\"num\">{p.line or ''}</td>"
            f'<td class="num">{cell(p.applied)}</td>'
            f'<td class="num">{cell(p.meta, p.meta_absent)}</td>'
            f'<td class="num">{cell(p.pointer)}</td><td class="num">{cell(p.effective)}</td>'
            f"<td>{_e(p.event or '')}</td><td class=\"num\">{cell(p.log_end)}</td>"
            f'<td class="num">{cell(p.meta_floor)}</td></tr>')
    return rows + ["</table></details>"]


def _not_applicable(ordered: Sequence[CaseResult], info: RunInfo) -> list[str]:
    groups = na_groups(ordered, info.capabilities)
    out = ["<h2>Not applicable</h2>"]
    if not groups:
        return out + ["<p>Every case applied.</p>"]
    total = sum(len(c) for _, c in groups)
    out += [f"<p>{total} cases did not apply to {_e(info.identity())}, grouped by why:</p>",
            "<table><tr><th>Why</th><th>Cases</th></tr>"]
    for why, cases in groups:
        ids = ", ".join(r.case.id for r in cases)
        out.append(f'<tr><td>{_e(scrub(why))}</td><td><details><summary>{len(cases)}</summary>'
                   f"{_e(ids)}</details></td></tr>")
    return out + ["</table>"]


def _requirements(data: Mapping[str, Any]) -> list[str]:
    by_status: dict[str, list[str]] = {}
    for row in data["requirements"]:
        by_status.setdefault(row["status"], []).append(row["id"])
    out = ["<h2>Requirements</h2>", "<table><tr><th>Status</th><th>Count</th>"
           "<th>Requirements</th></tr>"]
    for status in REQUIREMENT_STATUSES:
        ids = by_status.get(status, [])
        if ids:
            out.append(f"<tr><td>{_e(status.replace('_', ' '))}</td>"
                       f'<td class="num">{len(ids)}</td><td>{_e(", ".join(ids))}</td></tr>')
    return out + ["</table>"]


def _run(info: RunInfo, data: Mapping[str, Any]) -> list[str]:
    faults = data["info"]["unavailable_faults"]
    rows = [
        ("Implementation", info.identity()),
        ("Adapter", info.adapter),
        ("Advertised capabilities", ", ".join(sorted(info.capabilities)) or "none"),
        ("Claimed profile", info.profile or "none"),
        ("Harness faults not available",
         "; ".join(f"{f} ({why})" for f, why in faults.items()) or "none"),
        ("Exploration", exploration_words(info.exploration) or "none"),
        ("Selection", info.selection or "every case of the suites"),
        ("Seed", str(info.seed)),
        ("Command", info.command),
        ("Harness", info.harness_version),
    ]
    out = ["<h2>Run</h2>", "<table>"]
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    # the timing fields of report.html (docs/report.md, "Deterministic reports")
    out.append(f'<tr class="timing"><th>Started, duration</th><td>{_e(info.started)}, '
               f"{info.duration_s:.2f} s</td></tr>")
    return out + ["</table>"]


def _mutants(m: Mapping[str, Any]) -> list[str]:
    out = ["<h2>Mutation matrix</h2>", f"<p>{m['killed']} of {m['total']} mutants killed.</p>",
           "<table><tr><th>Mutant</th><th>Requirement</th><th>Killed</th><th>Killed by</th>"
           "</tr>"]
    for row in m["matrix"]:
        out.append(f"<tr><td><code>{_e(row['name'])}</code></td>"
                   f"<td>{_e(row['requirement'] or '—')}</td>"
                   f"<td>{'yes' if row['killed'] else '<b>no</b>'}</td>"
                   f"<td>{_e(', '.join(row['killed_by']) or '—')}</td></tr>")
    return out + ["</table>"]
