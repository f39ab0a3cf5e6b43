"""Raft log entries: parsing and validation of the JSON form used everywhere.

The same dict form travels over the wire protocol, lives in YAML suites and is
applied by the reference FSM, so there is one parser and it rejects anything it
does not understand (unknown kinds fail closed, never as a silent no-op).

Data entries change the store and bump the durable applied index; non-data
entries (HLC lease, control, no-op) write nothing to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import EntryError, LimitError

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # the range of integer add values and deltas

DATA_KINDS = frozenset({"raw", "txn", "delete_prefix", "prepare", "commit", "abort"})
NON_DATA_KINDS = frozenset({"hlc_lease", "control", "noop"})
ALL_KINDS = DATA_KINDS | NON_DATA_KINDS

OpName = Literal["put", "del", "add"]


@dataclass(frozen=True)
class Op:
    """One mutation. `add` is the non-idempotent integer add: value := int(value or 0) + delta."""

    op: OpName
    key: str
    value: str | None = None
    delta: int = 0

    def to_json(self) -> dict[str, Any]:
        if self.op == "put":
            return {"op": "put", "key": self.key, "value": self.value}
        if self.op == "add":
            return {"op": "add", "key": self.key, "delta": self.delta}
        return {"op": "del", "key": self.key}


@dataclass(frozen=True)
class Entry:
    """A validated entry. Fields not used by a kind keep their defaults."""

    kind: str
    ops: tuple[Op, ...] = ()
    reads: tuple[str, ...] = ()
    ts: int = 0
    start_ts: int = 0
    commit_ts: int = 0
    prefix: str = ""
    exclude: str | None = None
    txn: str = ""
    ceiling: int = 0
    opcode: str = ""
    value: int = 0

    @property
    def is_data(self) -> bool:
        return self.kind in DATA_KINDS

    def to_json(self) -> dict[str, Any]:
        k = self.kind
        ops = [o.to_json() for o in self.ops]
        if k == "raw":
            return {"kind": k, "ts": self.ts, "ops": ops}
        if k == "txn":
            out: dict[str, Any] = {
                "kind": k, "start_ts": self.start_ts, "commit_ts": self.commit_ts, "ops": ops,
            }
            if self.reads:
                out["reads"] = list(self.reads)
            return out
        if k == "delete_prefix":
            return {"kind": k, "prefix": self.prefix, "exclude": self.exclude, "ts": self.ts}
        if k == "prepare":
            return {"kind": k, "txn": self.txn, "start_ts": self.start_ts, "ops": ops}
        if k == "commit":
            return {"kind": k, "txn": self.txn, "commit_ts": self.commit_ts}
        if k == "abort":
            return {"kind": k, "txn": self.txn}
        if k == "hlc_lease":
            return {"kind": k, "ceiling": self.ceiling}
        if k == "control":
            return {"kind": k, "opcode": self.opcode, "value": self.value}
        return {"kind": "noop"}


_FIELDS: dict[str, frozenset[str]] = {
    "raw": frozenset({"ts", "ops"}),
    "txn": frozenset({"start_ts", "commit_ts", "ops", "reads"}),
    "delete_prefix": frozenset({"prefix", "exclude", "ts"}),
    "prepare": frozenset({"txn", "start_ts", "ops"}),
    "commit": frozenset({"txn", "commit_ts"}),
    "abort": frozenset({"txn"}),
    "hlc_lease": frozenset({"ceiling"}),
    "control": frozenset({"opcode", "value"}),
    "noop": frozenset(),
}


def _utf8_len(raw: str, where: str) -> int:
    try:
        return len(raw.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise EntryError(f"{where}: not valid UTF-8 text ({exc.reason})") from exc


def _key(raw: object, where: str) -> str:
    if not isinstance(raw, str):
        raise EntryError(f"{where}: key must be a string, got {type(raw).__name__}")
    n = _utf8_len(raw, where)
    if n > MAX_KEY_BYTES:
        raise LimitError(f"{where}: key is {n} bytes, the limit is {MAX_KEY_BYTES}")
    return raw


def _uint(raw: object, where: str, *, positive: bool = False) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0 or raw >= 2**64:
        raise EntryError(f"{where}: must be an unsigned 64-bit integer, got {raw!r}")
    if positive and raw == 0:
        raise EntryError(f"{where}: must be > 0")
    return raw


def _op(raw: object, where: str) -> Op:
    if not isinstance(raw, Mapping):
        raise EntryError(f"{where}: an op must be an object, got {type(raw).__name__}")
    name = raw.get("op")
    key = _key(raw.get("key"), f"{where}.key")
    if name == "put":
        value = raw.get("value")
        if not isinstance(value, str):
            raise EntryError(f"{where}.value: put needs a string value")
        n = _utf8_len(value, f"{where}.value")
        if n > MAX_VALUE_BYTES:
            raise LimitError(f"{where}.value: value is {n} bytes, the limit is {MAX_VALUE_BYTES}")
        return Op("put", key, value=value)
    if name == "del":
        return Op("del", key)
    if name == "add":
        delta = raw.get("delta")
        if isinstance(delta, bool) or not isinstance(delta, int) or not INT64_MIN <= delta <= INT64_MAX:
            raise EntryError(f"{where}.delta: add needs a signed 64-bit integer delta")
        return Op("add", key, delta=delta)
    raise EntryError(f"{where}.op: unknown op {name!r} (expected put, del or add)")


def _ops(raw: object, where: str) -> tuple[Op, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise EntryError(f"{where}: ops must be a list")
    if not raw:
        raise EntryError(f"{where}: ops must not be empty")
    return tuple(_op(o, f"{where}[{i}]") for i, o in enumerate(raw))


def parse_entry(raw: object) -> Entry:
    """Validate the JSON form of an entry; raise EntryError/LimitError naming the field."""
    if not isinstance(raw, Mapping):
        raise EntryError(f"entry must be an object, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in ALL_KINDS:
        raise EntryError(f"unknown entry kind {kind!r}; known kinds: {', '.join(sorted(ALL_KINDS))}")
    assert isinstance(kind, str)
    extra = set(raw) - _FIELDS[kind] - {"kind"}
    if extra:
        raise EntryError(f"{kind}: unexpected field(s) {sorted(extra)}")
    if kind == "raw":
        return Entry(kind, ops=_ops(raw.get("ops"), "raw.ops"), ts=_uint(raw.get("ts"), "raw.ts"))
    if kind == "txn":
        start = _uint(raw.get("start_ts"), "txn.start_ts")
        commit = _uint(raw.get("commit_ts"), "txn.commit_ts", positive=True)
        if start >= commit:
            raise EntryError(f"txn: start_ts ({start}) must be < commit_ts ({commit})")
        reads_raw = raw.get("reads", [])
        if not isinstance(reads_raw, list):
            raise EntryError("txn.reads: must be a list of keys")
        reads = tuple(_key(k, f"txn.reads[{i}]") for i, k in enumerate(reads_raw))
        return Entry(kind, ops=_ops(raw.get("ops"), "txn.ops"), reads=reads,
                     start_ts=start, commit_ts=commit)
    if kind == "delete_prefix":
        prefix = _key(raw.get("prefix"), "delete_prefix.prefix")
        exclude = raw.get("exclude")
        if exclude is not None:
            exclude = _key(exclude, "delete_prefix.exclude")
        return Entry(kind, prefix=prefix, exclude=exclude, ts=_uint(raw.get("ts"), "delete_prefix.ts"))
    if kind in ("prepare", "commit", "abort"):
        txn = raw.get("txn")
        if not isinstance(txn, str) or not txn:
            raise EntryError(f"{kind}.txn: must be a non-empty string")
        if kind == "prepare":
            return Entry(kind, txn=txn, ops=_ops(raw.get("ops"), "prepare.ops"),
                         start_ts=_uint(raw.get("start_ts"), "prepare.start_ts"))
        if kind == "commit":
            return Entry(kind, txn=txn,
                         commit_ts=_uint(raw.get("commit_ts"), "commit.commit_ts", positive=True))
        return Entry(kind, txn=txn)
    if kind == "hlc_lease":
        return Entry(kind, ceiling=_uint(raw.get("ceiling"), "hlc_lease.ceiling"))
    if kind == "control":
        opcode = raw.get("opcode")
        if not isinstance(opcode, str) or not opcode:
            raise EntryError("control.opcode: must be a non-empty string")
        return Entry(kind, opcode=opcode, value=_uint(raw.get("value", 0), "control.value"))
    return Entry("noop")
