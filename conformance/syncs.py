"""Sync accounting: how many syncs each kind of request cost the node.

A layer under the node counts its syncs (fsync, fdatasync and directory fsync: the
crash-simulating filesystem for an external node, the simulated disk in process); the
runner reads the counters around the requests below and keeps the differences here. The
report sums them over the run ("syncs per apply, per snapshot persist"), and the
`no_extra_sync` invariant compares an indexed data apply with a direct write of the same
kind (ST-006: recording the meta key adds no sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATA_KINDS = frozenset({"raw", "txn", "delete_prefix", "prepare", "commit", "abort"})

# Report order and wording of the categories.
CATEGORIES = (
    "apply, synced mode", "apply, unsynced mode", "direct write (index 0)",
    "apply of a non-data entry", "snapshot persist", "pin (set_durable_applied_index)",
    "snapshot install",
)


def category(op: str, fields: dict[str, Any], durability: str) -> str | None:
    """The category a request's syncs are counted under, None for a request not counted."""
    if op == "apply":
        entry = fields.get("entry")
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in DATA_KINDS:
            return "apply of a non-data entry"
        if fields.get("index") == 0:
            return "direct write (index 0)"
        return f"apply, {durability} mode"
    return {"snapshot_persist": "snapshot persist",
            "set_durable_applied_index": "pin (set_durable_applied_index)",
            "install_snapshot": "snapshot install"}.get(op)


@dataclass
class SyncLedger:
    """Per category: requests counted, syncs they cost, and the cost of the latest one."""

    requests: dict[str, int] = field(default_factory=dict)
    syncs: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)

    def record(self, cat: str, syncs: int) -> None:
        self.requests[cat] = self.requests.get(cat, 0) + 1
        self.syncs[cat] = self.syncs.get(cat, 0) + syncs
        self.last[cat] = syncs

    def as_dict(self) -> dict[str, list[int]]:
        """category -> [requests, syncs], in report order."""
        return {c: [self.requests[c], self.syncs[c]] for c in CATEGORIES if c in self.requests}


def total(per_case: list[dict[str, list[int]]]) -> dict[str, dict[str, float]]:
    """Sum the cases' ledgers: category -> requests, syncs, syncs per request."""
    acc: dict[str, list[int]] = {}
    for ledger in per_case:
        for cat, (n, s) in ledger.items():
            a = acc.setdefault(cat, [0, 0])
            a[0] += n
            a[1] += s
    return {c: {"requests": acc[c][0], "syncs": acc[c][1],
                "per_request": round(acc[c][1] / acc[c][0], 3)}
            for c in CATEGORIES if c in acc}
