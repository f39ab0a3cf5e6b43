"""The node's log for the report: the container's own log (every lifetime) with the adapter's
markers (start, crash, exit, close) merged in by time."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

LOG_LINES = 2000  # container log lines kept for the report


def now() -> str:
    """The current time as the engine stamps log lines (RFC 3339, UTC)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts_key(ts: str) -> str:
    """An RFC 3339 UTC timestamp with its fraction padded to 9 digits, for sorting."""
    head, _, frac = ts.rstrip("Z").partition(".")
    return f"{head}.{frac:0<9}"


def merge(log: str, notes: Iterable[tuple[str, str]]) -> str:
    """`log` (lines "<timestamp> <text>", as `docker logs --timestamps` gives them) and the
    (timestamp, text) `notes`, in time order, each line shown with its time of day."""
    entries: list[tuple[str, str]] = []
    for line in log.splitlines():
        ts, _, text = line.partition(" ")
        entries.append((_ts_key(ts), f"{ts[11:23]} {text}"))
    entries += [(_ts_key(ts), f"{ts[11:23]} --- {text} ---") for ts, text in notes]
    entries.sort(key=lambda e: e[0])  # stable: equal stamps keep their order
    return "\n".join(text for _, text in entries) + ("\n" if entries else "")
