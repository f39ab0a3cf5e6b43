"""A failing case in words, the same in every output (console, report.md, junit.xml, HTML),
and the normalisation that keeps a run's temp paths and pids out of the reports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conformance.cases import CaseResult

from .blame import Blame, blame

LOG_LINES = 20  # node log lines shown with a failure (report.json keeps more)

# What differs between two runs of the same seed in a node's stderr and in the harness's
# own markers: the data directories the adapters make (tempfile.mkdtemp, "conformance-"
# and 8 random characters) and process ids. They are replaced in every report field
# (docs/report.md, "Deterministic reports").
_TEMP_PATH = re.compile(r"(?:/[\w.@+-]+)*/conformance-[a-z0-9_]{8}(?![\w])")
_PID = re.compile(r"\b(pid)([ =:]+)\d+", re.IGNORECASE)


# the elapsed time inside the exploration's one-line summary (explore/budget.py
# Exploration.summary: "...; 374 steps in 44.4 s): ..."); its duration_s keeps it
_ELAPSED = re.compile(r" in \d+(?:\.\d+)? s\)")


def exploration_words(exploration: dict[str, Any] | None) -> str | None:
    """The exploration's summary without its elapsed time (a timing field apart)."""
    if not exploration:
        return None
    return _ELAPSED.sub(")", str(exploration.get("summary", "")))


def scrub(text: str) -> str:
    """``text`` with temp directory paths and process ids replaced by placeholders, and the
    adapter's note that a process was started ahead of need (a scheduling detail: whether it
    was depends on what ran beside it, e.g. --jobs) dropped."""
    text = text.replace(", started ahead of need ---", " ---")
    return _PID.sub(r"\1\2<pid>", _TEMP_PATH.sub("<tmp>/conformance-*", text))


@dataclass(frozen=True)
class FailureText:
    """One failing case's failure, named once."""

    headline: str  # "CS-007: executed, but effective = 4" (the root cause's wording)
    lines: tuple[str, ...]  # where, what was allowed, the exchange, the consequences
    log: str  # the node log's tail, scrubbed ("" when none)


def failure_text(result: CaseResult, log_lines: int = LOG_LINES) -> FailureText | None:
    """The failure of a failed, errored or xfailed case; None for the other statuses."""
    b = blame(result)
    if b is None:
        return None
    failure = result.failure
    lines: list[str] = []
    if failure is not None:
        if failure.step is not None:
            lines.append(f"at {failure.step.describe()}")
        elif result.start_failure:  # the node never got through hello: no step ran
            lines.append("at the start (the node did not get through hello)")
        else:
            lines.append("at the final check (replay to the log end, compare with the model)")
    if b.allowed:
        lines.append(f"allowed: {b.allowed}")
    if failure is not None and failure.request is not None:
        lines.append(f"request: {failure.request}")
    if failure is not None and failure.reply is not None:
        lines.append(f"reply:   {failure.reply}")
    lines += consequence_lines(b)
    log = ""
    if failure is not None and failure.logs:
        log = "\n".join(failure.logs.splitlines()[-log_lines:])
    return FailureText(scrub(b.message), tuple(scrub(ln) for ln in lines), scrub(log))


def consequence_lines(b: Blame) -> list[str]:
    """What else the failure stopped, in words (empty when nothing)."""
    rest = list(dict.fromkeys([*([b.superseded] if b.superseded else []), *b.consequences]))
    if not rest or not b.root:
        return []
    why = (f" (the step's expect, written for {b.superseded}, failed on the same reply)"
           if b.superseded else "")
    return [f"not checked, the case stopped here: {', '.join(rest)}{why}"]


def render(result: CaseResult, log_lines: int = LOG_LINES) -> str:
    """The failure as indented plain text (console, junit.xml)."""
    text = failure_text(result, log_lines)
    if text is None:
        return scrub(result.reason)
    out = [text.headline, *("  " + ln for ln in text.lines)]
    if text.log:
        out.append("  node log (tail):")
        out += ["    " + ln for ln in text.log.splitlines()]
    return "\n".join(out)
