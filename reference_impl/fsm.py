"""The reference FSM: turns one committed entry into at most one atomic store batch.

Data entries go through the store's two index-aware leaves (`apply_mutations`
and `delete_prefix`), which bundle the meta key. Non-data entries (HLC lease,
control, no-op) write nothing and never touch the meta key; they only move
in-memory state that the snapshot header carries (HLC ceiling, cutover).

Results of a data entry:
  ok              the writes landed
  conflict        OCC write conflict: nothing written, meta key untouched (S7)
  already_landed  a re-delivered transaction whose writes are all there already:
                  nothing rewritten, the stale meta key is advanced (S7)
  txn_not_found   commit of a transaction with no prepared intent: nothing written
  aborted         prepare of a transaction already rolled back: nothing written
  type_error      integer add on a value that is not a decimal signed 64-bit integer
                  (the empty string included), or whose result overflows: nothing written
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .entries import INT64_MAX, INT64_MIN, Entry, Op
from .store import Batch, Store


@dataclass(frozen=True)
class ApplyOutcome:
    result: str
    wrote: bool


def state_digest(pairs: list[tuple[str, str]]) -> str:
    """Digest of the user-visible state, as docs/protocol.md defines it."""
    import hashlib  # here: its OpenSSL load is ~5 ms of a server start that may never digest

    canon = json.dumps(sorted([k, v] for k, v in pairs), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class _TypeError(Exception):
    pass


def _int64(text: str) -> int:
    """A stored value as an integer add operand: a decimal signed 64-bit integer."""
    if not text or len(text) > 20:
        raise _TypeError
    try:
        value = int(text)
    except ValueError as exc:
        raise _TypeError from exc
    if not INT64_MIN <= value <= INT64_MAX:
        raise _TypeError
    return value


class FSM:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.hlc_ceiling = 0
        self.cutover = 0

    # -- header state -------------------------------------------------------------------

    def apply_header(self, ceiling: int, cutover: int) -> None:
        # max, never assignment: the ceiling must not go backwards (a lease replayed
        # earlier in this process may already be above the snapshot's ceiling).
        self.hlc_ceiling = max(self.hlc_ceiling, ceiling)
        self.cutover = max(self.cutover, cutover)

    # -- apply --------------------------------------------------------------------------

    def apply(self, entry: Entry, index: int) -> ApplyOutcome:
        kind = entry.kind
        if kind == "hlc_lease":
            self.hlc_ceiling = max(self.hlc_ceiling, entry.ceiling)
            return ApplyOutcome("ok", wrote=False)
        if kind == "control":
            if entry.opcode == "cutover":
                self.cutover = max(self.cutover, entry.value)
            return ApplyOutcome("ok", wrote=False)
        if kind == "noop":
            return ApplyOutcome("ok", wrote=False)
        if kind == "delete_prefix":
            self.store.delete_prefix(entry.prefix, entry.exclude, entry.ts, index)
            return ApplyOutcome("ok", wrote=True)
        try:
            if kind == "raw":
                return self._write(self._mutations(entry.ops, entry.ts), index)
            if kind == "txn":
                return self._txn(entry, index)
            if kind == "prepare":
                return self._prepare(entry, index)
            if kind == "commit":
                return self._commit(entry, index)
        except _TypeError:
            return ApplyOutcome("type_error", wrote=False)
        return self._abort(entry, index)

    def _write(self, batch: Batch, index: int) -> ApplyOutcome:
        self.store.apply_mutations(batch, index)
        return ApplyOutcome("ok", wrote=True)

    def _mutations(self, ops: tuple[Op, ...] | list[Op], ts: int) -> Batch:
        """Ops apply in order; an add sees earlier ops of the same batch."""
        pending: dict[str, str | None] = {}
        for op in ops:
            if op.op == "put":
                pending[op.key] = op.value
            elif op.op == "del":
                pending[op.key] = None
            else:
                base = pending[op.key] if op.key in pending else self.store.get(op.key)
                current = 0 if base is None else _int64(base)
                total = current + op.delta
                if not INT64_MIN <= total <= INT64_MAX:
                    raise _TypeError
                pending[op.key] = str(total)
        return Batch(versions=[(k, ts, v) for k, v in pending.items()])

    def _locked(self, keys: set[str], own_txn: str = "") -> bool:
        for txn, intent in self.store.intents().items():
            if txn != own_txn and keys & {o["key"] for o in intent["ops"]}:
                return True
        return False

    def _newer(self, keys: set[str], start_ts: int) -> set[int]:
        return {ts for k in keys for ts, _ in self.store.versions(k) if ts > start_ts}

    def _txn(self, entry: Entry, index: int) -> ApplyOutcome:
        written = {o.key for o in entry.ops}
        checked = written | set(entry.reads)
        newer = self._newer(checked, entry.start_ts)
        if not newer and not self._locked(checked):
            return self._write(self._mutations(entry.ops, entry.commit_ts), index)
        # The already-landed fast path: every mutation key carries a version at exactly
        # this commit_ts and nothing else is newer than start_ts. Anything else is a real
        # conflict, which must not be hidden and must not advance the meta key.
        every_key_landed = all(
            any(ts == entry.commit_ts for ts, _ in self.store.versions(k)) for k in written
        )
        if every_key_landed and newer == {entry.commit_ts} and not self._locked(checked):
            self.store.apply_mutations(Batch(), index)
            return ApplyOutcome("already_landed", wrote=index > 0)
        return ApplyOutcome("conflict", wrote=False)

    def _prepare(self, entry: Entry, index: int) -> ApplyOutcome:
        if self.store.has_rollback(entry.txn):
            return ApplyOutcome("aborted", wrote=False)
        keys = {o.key for o in entry.ops}
        if self._newer(keys, entry.start_ts) or self._locked(keys, entry.txn):
            return ApplyOutcome("conflict", wrote=False)
        intent: dict[str, Any] = {
            "start_ts": entry.start_ts, "ops": [o.to_json() for o in entry.ops],
        }
        return self._write(Batch(intents={entry.txn: intent}), index)

    def _commit(self, entry: Entry, index: int) -> ApplyOutcome:
        intent = self.store.intent(entry.txn)
        if intent is None:
            return ApplyOutcome("txn_not_found", wrote=False)
        ops = [Op(o["op"], o["key"], value=o.get("value"), delta=o.get("delta", 0))
               for o in intent["ops"]]
        batch = self._mutations(ops, entry.commit_ts)
        batch.intents[entry.txn] = None
        return self._write(batch, index)

    def _abort(self, entry: Entry, index: int) -> ApplyOutcome:
        # The rollback marker is written even without an intent: an abort that races
        # ahead of its prepare must still block that prepare's effects.
        return self._write(Batch(intents={entry.txn: None}, rollbacks=[entry.txn]), index)
