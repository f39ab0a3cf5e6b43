"""The timeline of a failing case as an inline SVG: the picture a person draws on a
whiteboard to explain it.

Steps run left to right, one column each (the last column is the final check when the
case got there). Four step lines show, over time, what the node reported: its applied
index, the durable applied index (the meta key), the snapshot pointer and the effective
index of its last cold start. A value is drawn solid in the step that reported it and
dashed while it is carried forward; after a crash or a power loss every line stops until
the node reports again, since nothing is known then (values are never made up). Behind
them, in grey, what the oracle's model holds: the committed log and the floor the durable
applied index must not fall below. Crashes and power losses are marked on their step; the
failing step is highlighted, with the values the case expected there as rings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from conformance.trace import TracePoint

# series: (key in TracePoint, label, colour, vertical offset in px so equal values stay
# visible side by side)
SERIES: tuple[tuple[str, str, str, float], ...] = (
    ("applied", "applied index", "#1f5fbf", -4.5),
    ("meta", "durable meta", "#1a8a3a", -1.5),
    ("pointer", "snapshot pointer", "#d9730d", 1.5),
    ("effective", "effective (open)", "#8e44ad", 4.5),
)
# which reply field of the failing step's `expect:` is drawn on which series
EXPECT_SERIES = {("open", "effective"): "effective", ("open", "snap"): "pointer",
                 ("open", "have"): "meta", ("open", "last_applied"): "applied",
                 ("last_applied_index", "index"): "meta", ("snapshot", "index"): "pointer",
                 ("snapshot_persist", "index"): "pointer"}

COL = 66  # px per step
LEFT, RIGHT, TOP, PLOT_H, BOTTOM = 54, 18, 84, 210, 84


@dataclass(frozen=True)
class _Value:
    value: int | None
    reported: bool  # reported in this step (else carried forward)
    absent: bool = False  # the node said the meta key is absent


def _is_crash(p: TracePoint) -> bool:
    return p.event is not None


def series_values(points: Sequence[TracePoint], key: str) -> list[_Value]:
    """Per step, the value of one series to draw: reported, carried forward, or unknown
    (None) after a crash until the node reports it again."""
    out: list[_Value] = []
    last: _Value = _Value(None, False)
    for p in points:
        value = getattr(p, key)
        absent = key == "meta" and p.meta_absent
        if value is not None or absent:
            last = _Value(value if value is not None else 0, True, absent)
        elif _is_crash(p) or (key == "applied" and p.applied is None):
            last = _Value(None, False)  # in memory: gone; durable: unknown until reported
        else:
            last = _Value(last.value, False, last.absent)
        out.append(last)
        if _is_crash(p):
            last = _Value(None, False)
    return out


def _ticks(top: int) -> list[int]:
    step = max(1, math.ceil(top / 5))
    return list(range(0, top + 1, step))


def _expected(failing: TracePoint | None, expect: Mapping[str, Any] | None) -> dict[str, int]:
    """series -> the plain integer the failing step's `expect:` asked for."""
    if failing is None or not expect:
        return {}
    out = {}
    for field, want in expect.items():
        series = EXPECT_SERIES.get((failing.kind, str(field)))
        if series and isinstance(want, int) and not isinstance(want, bool):
            out[series] = want
    return out


def render_timeline(points: Sequence[TracePoint], failing_step: int | None, *,
                    title: str = "", headline: str = "", allowed: str = "",
                    expect: Mapping[str, Any] | None = None, key: str = "") -> str:
    """The SVG of one case's trace. ``failing_step``: the 0-based index of the step that
    failed, -1 for the final check, None when no step is to be highlighted. ``expect``:
    reply field -> the value the failing step should have answered (drawn as rings);
    ``key``: makes the element ids unique in a page of several timelines."""
    if not points:
        return ""
    n = len(points)
    width = max(LEFT + n * COL + RIGHT, 640)
    height = TOP + PLOT_H + BOTTOM
    failing = next((p for p in points if p.step == failing_step), None)
    wanted = _expected(failing, expect)
    values = {key: series_values(points, key) for key, *_ in SERIES}
    everything = [v.value for vs in values.values() for v in vs if v.value is not None]
    everything += [p.log_end for p in points if p.log_end is not None]
    everything += [p.meta_floor for p in points if p.meta_floor is not None]
    everything += list(wanted.values())
    top = max([1, *everything])
    ticks = _ticks(top)
    ymax = max(ticks[-1], top)

    def y(v: float) -> float:
        return TOP + PLOT_H - (v / ymax) * (PLOT_H - 12)

    def x0(i: int) -> float:
        return LEFT + i * COL

    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title or "timeline")}" font-family="system-ui, sans-serif">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    if title:
        svg.append(f'<text x="{LEFT}" y="18" font-size="14" font-weight="600" '
                   f'fill="#222">{escape(title)}</text>')
    svg += _legend(LEFT, 36)
    # grid and y axis
    for t in ticks:
        svg.append(f'<line x1="{LEFT}" x2="{LEFT + n * COL}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   'stroke="#e6e6e6"/>')
        svg.append(f'<text x="{LEFT - 8}" y="{y(t) + 4:.1f}" font-size="11" '
                   f'text-anchor="end" fill="#555">{t}</text>')
    svg.append(f'<text x="14" y="{TOP + PLOT_H / 2:.1f}" font-size="11" fill="#555" '
               f'transform="rotate(-90 14 {TOP + PLOT_H / 2:.1f})" text-anchor="middle">'
               'log index</text>')
    svg += _model(points, y, x0)
    # the failing step, over the model's area and under the node's lines
    for i, p in enumerate(points):
        if p.step == failing_step:
            svg.append(
                f'<g id="failing-step{escape(key)}" class="failing-step" '
                f'data-step="{escape(p.label)}">'
                f'<rect x="{x0(i) + 1:.1f}" y="{TOP - 6}" width="{COL - 2}" '
                f'height="{PLOT_H + 6}" fill="#f8b4b0" fill-opacity="0.45" stroke="#d62728" stroke-width="2" '
                f'rx="4"/>'
                f'<text x="{min(max(x0(i) + COL / 2, 70), width - 70):.1f}" y="{TOP - 12}" '
                f'font-size="12" font-weight="700" text-anchor="middle" fill="#b21f1f">'
                f'{escape(p.label)} failed</text></g>')
    for key, label, colour, offset in SERIES:
        svg += _series(values[key], key, label, colour, offset, y, x0)
    svg += _events(points, x0)
    svg += _expected_marks(points, failing_step, wanted, y, x0)
    svg += _x_labels(points, failing_step, x0)
    if headline:
        svg.insert(2, f'<title>{escape(headline)}'
                   + (f' (allowed: {escape(allowed)})' if allowed else "") + '</title>')
    svg.append("</svg>")
    return "\n".join(svg)


def _legend(left: float, y: float) -> list[str]:
    """Two rows: the node's four lines, then the model and the marks."""
    out = []
    x = left
    for _, label, colour, _ in SERIES:
        out.append(f'<line x1="{x:.0f}" x2="{x + 18:.0f}" y1="{y}" y2="{y}" stroke="{colour}" '
                   'stroke-width="3"/>')
        out.append(f'<text x="{x + 22:.0f}" y="{y + 4}" font-size="11" fill="#333">'
                   f'{escape(label)}</text>')
        x += 34 + 6.3 * len(label)
    x, y = left, y + 18
    out.append(f'<rect x="{x:.0f}" y="{y - 6}" width="18" height="12" fill="#eceff3"/>')
    out.append(f'<text x="{x + 22:.0f}" y="{y + 4}" font-size="11" fill="#333">'
               'committed log (model)</text>')
    x += 34 + 6.3 * 21
    out.append(f'<line x1="{x:.0f}" x2="{x + 18:.0f}" y1="{y}" y2="{y}" stroke="#777" '
               'stroke-dasharray="2 3" stroke-width="2"/>')
    out.append(f'<text x="{x + 22:.0f}" y="{y + 4}" font-size="11" fill="#333">'
               'must stay durable (model)</text>')
    x += 34 + 6.3 * 25
    out.append(f'<text x="{x:.0f}" y="{y + 5}" font-size="13" fill="#c0392b">\u2715</text>'
               f'<text x="{x + 14:.0f}" y="{y + 4}" font-size="11" fill="#333">crash</text>'
               f'<text x="{x + 54:.0f}" y="{y + 5}" font-size="13" fill="#c0392b">\u26a1</text>'
               f'<text x="{x + 68:.0f}" y="{y + 4}" font-size="11" fill="#333">power loss'
               '</text>')
    return out


def _model(points: Sequence[TracePoint], y: Any, x0: Any) -> list[str]:
    """The model's committed log (a grey area) and durable floor (a dotted step line)."""
    out = []
    for i, p in enumerate(points):
        if p.log_end:
            out.append(f'<rect x="{x0(i):.1f}" y="{y(p.log_end):.1f}" width="{COL}" '
                       f'height="{y(0) - y(p.log_end):.1f}" fill="#eceff3"/>')
    floor = [(i, p.meta_floor) for i, p in enumerate(points) if p.meta_floor is not None]
    if floor:
        d = _step_path([(i, float(v)) for i, v in floor], y, x0, 0.0)
        out.append(f'<path d="{d}" fill="none" stroke="#777" stroke-width="1.5" '
                   'stroke-dasharray="2 3"/>')
    return out


def _step_path(run: Sequence[tuple[int, float]], y: Any, x0: Any, offset: float) -> str:
    """A step line through consecutive columns: flat across each, vertical in between."""
    parts = []
    for k, (i, v) in enumerate(run):
        yy = y(v) + offset
        parts.append(f"{'M' if k == 0 else 'L'}{x0(i):.1f},{yy:.1f}")
        parts.append(f"L{x0(i) + COL:.1f},{yy:.1f}")
    return " ".join(parts)


def _series(vals: Sequence[_Value], key: str, label: str, colour: str, offset: float,
            y: Any, x0: Any) -> list[str]:
    out = [f'<g class="series series-{key}"><title>{escape(label)}</title>']
    # consecutive known columns form one line; reported columns solid, carried dashed
    run: list[tuple[int, float]] = []
    for i, v in enumerate([*vals, _Value(None, False)]):
        if v.value is not None:
            run.append((i, float(v.value)))
            continue
        if run:
            out.append(f'<path d="{_step_path(run, y, x0, offset)}" fill="none" '
                       f'stroke="{colour}" stroke-width="1.2" stroke-dasharray="4 3" '
                       'opacity="0.55"/>')
            for j, val in run:
                if vals[j].reported:
                    yy = y(val) + offset
                    out.append(f'<line x1="{x0(j):.1f}" x2="{x0(j) + COL:.1f}" y1="{yy:.1f}" '
                               f'y2="{yy:.1f}" stroke="{colour}" stroke-width="3"/>')
            run = []
    previous: int | None = None
    for i, v in enumerate(vals):
        if v.reported and v.value is not None:
            cx, cy = x0(i) + COL / 2, y(v.value) + offset
            fill = "#fff" if v.absent else colour
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" '
                       f'stroke="{colour}" stroke-width="1.5"/>')
            if (v.value != previous and v.value != 0) or (v.absent and previous is None):
                text = "absent" if v.absent else str(v.value)
                # above the line for the first two series, below for the others; left for
                # the first of each pair, right for the second, so equal values stay legible
                dy = -7 if offset < 0 else 15
                left = offset in (-4.5, 1.5)
                out.append(f'<text x="{cx + (-6 if left else 6):.1f}" y="{cy + dy:.1f}" '
                           f'font-size="10" font-weight="600" fill="{colour}" '
                           f'text-anchor="{"end" if left else "start"}">{text}</text>')
        previous = v.value
    out.append("</g>")
    return out


def _events(points: Sequence[TracePoint], x0: Any) -> list[str]:
    out = []
    for i, p in enumerate(points):
        if p.event is None:
            continue
        power = p.event.startswith("power")
        colour = "#c0392b"
        cx = x0(i) + COL / 2
        out.append(f'<g class="event"><title>{escape(p.event)}</title>'
                   f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{TOP - 4}" y2="{TOP + PLOT_H}" '
                   f'stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/>')
        mark = "\u26a1" if power else "\u2715"
        out.append(f'<text x="{cx:.1f}" y="{TOP + PLOT_H - 6}" font-size="16" '
                   f'text-anchor="middle" fill="{colour}">{mark}</text>')
        # two short lines, staggered so that neighbouring events stay legible
        words = (["power", "loss"] if power else ["crash"] if p.event == "crash"
                 else ["died in", p.event.removeprefix("died in ")])
        ty = TOP + (14 if i % 2 == 0 else 42)
        for k, word in enumerate(words):
            out.append(f'<text x="{cx + 4:.1f}" y="{ty + 12 * k}" font-size="10" '
                       f'fill="{colour}" font-weight="600">{escape(word)}</text>')
        out.append("</g>")
    return out


def _expected_marks(points: Sequence[TracePoint], failing_step: int | None,
                    wanted: Mapping[str, int], y: Any, x0: Any) -> list[str]:
    out = []
    for i, p in enumerate(points):
        if p.step != failing_step:
            continue
        for key, label, colour, offset in SERIES:
            if key in wanted and getattr(p, key) != wanted[key]:
                cx, cy = x0(i) + COL / 2, y(wanted[key]) + offset
                out.append(f'<g class="expected"><title>expected {escape(label)} '
                           f'{wanted[key]}</title><circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" '
                           f'fill="none" stroke="{colour}" stroke-width="2" '
                           'stroke-dasharray="3 2"/>'
                           f'<text x="{cx - 9:.1f}" y="{cy + 4:.1f}" font-size="10" '
                           f'text-anchor="end" fill="{colour}">expected {wanted[key]}</text>')
                got = getattr(p, key)
                if isinstance(got, int) and abs(y(got) - y(wanted[key])) > 12:
                    # an arrow from what the node answered to what it should have
                    ax, y1, y2 = cx + 14, y(got) + offset, cy
                    tip = 5 if y2 > y1 else -5
                    out.append(f'<line x1="{ax:.1f}" x2="{ax:.1f}" y1="{y1:.1f}" '
                               f'y2="{y2 - tip:.1f}" stroke="#b21f1f" stroke-width="1.5"/>'
                               f'<polygon points="{ax - 4:.1f},{y2 - tip:.1f} '
                               f'{ax + 4:.1f},{y2 - tip:.1f} {ax:.1f},{y2:.1f}" '
                               'fill="#b21f1f"/>')
                out.append("</g>")
    return out


def _x_labels(points: Sequence[TracePoint], failing_step: int | None, x0: Any) -> list[str]:
    base = TOP + PLOT_H
    out = [f'<line x1="{LEFT}" x2="{x0(len(points)):.1f}" y1="{base}" y2="{base}" '
           'stroke="#999"/>']
    for i, p in enumerate(points):
        cx = x0(i) + COL / 2
        bad = p.step == failing_step
        colour, weight = ("#b21f1f", "700") if bad else ("#333", "400")
        number = "end" if p.step < 0 else str(p.step + 1)
        out.append(f'<text class="step-label" x="{cx:.1f}" y="{base + 16}" font-size="12" '
                   f'text-anchor="middle" fill="{colour}" font-weight="{weight}">{number}'
                   f'<title>{escape(p.label)}</title></text>')
        kind = p.kind if p.step >= 0 else "final check"
        out.append(f'<text x="{cx:.1f}" y="{base + 30}" font-size="11" text-anchor="end" '
                   f'fill="{colour}" font-weight="{weight}" '
                   f'transform="rotate(-35 {cx:.1f} {base + 30})">{escape(kind)}</text>')
    out.append(f'<text x="{LEFT - 8}" y="{base + 16}" font-size="11" text-anchor="end" '
               'fill="#555">step</text>')
    return out
