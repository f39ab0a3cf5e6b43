"""Shared pieces of the crash/replay property tests (test_property_simdisk, _oskill).

* `EntryGen` makes committed entries of every kind over a tiny key space, so that OCC
  conflicts, locks, deletes and the non-idempotent integer add all matter.
* `Model` is the committed Raft log plus the oracle: a crash-free reference node
  (synced, full profile, fresh SimDisk) that receives every committed item exactly once.
  It shares the FSM semantics with the node under test on purpose: the property is
  about crash and replay (C6), not about the FSM.
* `read_durable` reads what a crash left on a data directory (meta key, pointer,
  compaction mark, the pointer's snapshot) without the node.
* `PointerOracle` knows where the durable pointer may be and whether the meta key must
  cover it (P5), and checks that after every crash.
* `expected_open` is the cold-start gate (C1, C2, C4) computed from the durable state.

Generation goes through `Draw`, so the same code serves Hypothesis (`HypothesisDraw`,
shrinkable) and a seeded `random.Random` (`RandomDraw`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from reference_impl.disk import Disk, SimDisk
from reference_impl.node import COMPACTED, POINTER, SNAP_DIR, Node, NodeConfig
from reference_impl.snapshot import Header, Token, encode_body, parse_header, verify_file
from reference_impl.store import Store

T = TypeVar("T")

KEYS = ("a/1", "a/2", "b/1", "b/2")
PREFIXES = ("a/", "b/")
ENTRY_KINDS = (
    "raw", "txn", "delete_prefix", "prepare", "commit", "abort", "hlc_lease", "control", "noop",
)


# -- drawing ------------------------------------------------------------------------------


class Draw(Protocol):
    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, lo: int, hi: int) -> int: ...


class RandomDraw:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


class HypothesisDraw:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


# -- entries ----------------------------------------------------------------------------


@dataclass
class EntryGen:
    """Entries as the leader would commit them: timestamps from one increasing clock."""

    ts: int = 0
    txns: int = 0
    prepared: list[str] = field(default_factory=list)

    def _next_ts(self) -> int:
        self.ts += 1
        return self.ts

    def _op(self, d: Draw) -> dict[str, Any]:
        op = d.choice(("add", "add", "put", "del"))
        key = d.choice(KEYS)
        if op == "add":  # the oracle device: any double or lost application shows
            return {"op": "add", "key": key, "delta": d.choice((1, 2, 5, -3))}
        if op == "put":  # "x" is not an integer: a later add answers type_error
            return {"op": "put", "key": key, "value": d.choice(("0", "7", "40", "x"))}
        return {"op": "del", "key": key}

    def _ops(self, d: Draw, most: int = 3) -> list[dict[str, Any]]:
        return [self._op(d) for _ in range(d.integer(1, most))]

    def entry(self, d: Draw, kind: str) -> dict[str, Any]:
        if kind == "raw":
            return {"kind": "raw", "ts": self._next_ts(), "ops": self._ops(d)}
        if kind == "txn":
            commit_ts = self._next_ts()
            # start_ts just below commit_ts sees everything: no conflict unless locked.
            # An older start_ts conflicts when a key it touches was written since.
            start_ts = max(0, commit_ts - d.choice((1, 1, 2, 4)))
            reads = [d.choice(KEYS) for _ in range(d.integer(0, 1))]
            entry = {"kind": "txn", "start_ts": start_ts, "commit_ts": commit_ts,
                     "ops": self._ops(d, 2)}
            if reads:
                entry["reads"] = reads
            return entry
        if kind == "delete_prefix":
            return {"kind": "delete_prefix", "prefix": d.choice(("", *PREFIXES)),
                    "exclude": d.choice((None, None, *PREFIXES, "a/1", "b/2")),
                    "ts": self._next_ts()}
        if kind == "prepare":
            if self.prepared and d.integer(0, 4) == 0:
                txn = d.choice(self.prepared)  # re-prepare, or prepare after abort
            else:
                self.txns += 1
                txn = f"t{self.txns}"
                self.prepared.append(txn)
            return {"kind": "prepare", "txn": txn, "start_ts": max(0, self.ts - d.integer(0, 2)),
                    "ops": self._ops(d, 2)}
        if kind in ("commit", "abort"):
            txn = d.choice((*self.prepared, "t-never")) if self.prepared else "t-never"
            if kind == "abort":
                return {"kind": "abort", "txn": txn}
            return {"kind": "commit", "txn": txn, "commit_ts": self._next_ts()}
        if kind == "hlc_lease":  # goes up and down: the ceiling must keep the maximum
            return {"kind": "hlc_lease", "ceiling": d.integer(0, 2000)}
        if kind == "control":
            return {"kind": "control", "opcode": d.choice(("cutover", "rotate_key")),
                    "value": d.integer(0, 20)}
        assert kind == "noop", kind
        return {"kind": "noop"}

    def install(self, d: Draw) -> tuple[int, int, int, list[list[Any]]]:
        """(gap, ceiling, cutover, rows) of a snapshot sent by the leader."""
        rows: list[list[Any]] = []
        for key in KEYS:
            if d.integer(0, 2):
                rows.append([key, str(d.integer(0, 50)), self._next_ts()])
        return d.integer(1, 3), d.integer(0, 2000), d.integer(0, 20), rows


def describe_config(config: NodeConfig) -> str:
    """A short name for a node configuration, for failure messages."""
    caps = [name for name in ("reader", "writer", "header_applier", "pin_after_restore")
            if getattr(config, name)]
    mode = "synced" if config.sync else "unsynced"
    return f"{mode} {'+'.join(caps) or 'baseline'} v{config.header_version}"


# -- the committed log and the model -------------------------------------------------------


@dataclass(frozen=True)
class Install:
    index: int
    ceiling: int
    cutover: int
    rows: list[list[Any]]


@dataclass(frozen=True)
class Item:
    """One committed log position: an entry, or a snapshot the leader installs."""

    index: int
    entry: dict[str, Any] | None = None
    install: Install | None = None

    def describe(self) -> str:
        if self.install is not None:
            return f"install@{self.index}"
        assert self.entry is not None
        return f"{self.entry['kind']}@{self.index}"


@dataclass(frozen=True)
class Point:
    """The model at one index: the snapshot body a node must produce there, and the header
    state bounds (a node's ceiling can never exceed what the log carried up to there)."""

    body: bytes
    ceiling: int
    cutover: int


class Model:
    """The committed log, and a crash-free node that applied each item exactly once."""

    def __init__(self) -> None:
        self.node = Node(SimDisk(), NodeConfig(sync=True))
        self.node.open()
        self.log: list[Item] = []
        self.results: dict[int, str] = {}  # the apply result of each entry
        self.wrote: dict[int, bool] = {}  # whether it committed a batch (and so the meta key)
        self.points: dict[int, Point] = {0: self._point()}

    def _point(self) -> Point:
        assert self.node.store is not None
        ceiling, cutover = self.node.hlc()
        return Point(encode_body(self.node.store.export_state()), ceiling, cutover)

    @property
    def last_index(self) -> int:
        return self.log[-1].index if self.log else 0

    def commit_entry(self, entry: dict[str, Any]) -> Item:
        item = Item(self.last_index + 1, entry=entry)
        outcome = self.node.apply(item.index, entry)
        self.results[item.index], self.wrote[item.index] = outcome.result, outcome.wrote
        self.log.append(item)
        self.points[item.index] = self._point()
        return item

    def commit_install(self, gap: int, ceiling: int, cutover: int,
                       rows: list[list[Any]]) -> Item:
        spec = Install(self.last_index + gap, ceiling, cutover, rows)
        self.node.install_snapshot(spec.index, ceiling, cutover, rows)
        item = Item(spec.index, install=spec)
        self.log.append(item)
        self.points[item.index] = self._point()
        return item

    def replay_from(self, effective: int) -> list[Item]:
        """What the leader delivers to a node at `effective`: the newest install above it
        (the entries that install covers are compacted on the leader), then every later
        entry, in order."""
        later = [item for item in self.log if item.index > effective]
        installs = [i for i, item in enumerate(later) if item.install is not None]
        return later[installs[-1]:] if installs else later

    def scan(self) -> list[tuple[str, str]]:
        return self.node.scan("")

    def digest(self) -> str:
        return self.node.digest()


# -- the durable state a crash leaves ---------------------------------------------------------


@dataclass(frozen=True)
class DurableView:
    meta: int | None  # the durable applied index; None when absent or torn
    pointer: Token | None
    compacted: int
    header: Header | None  # the pointer's snapshot header, verified against the token
    body: bytes | None

    @property
    def snap(self) -> int:
        return self.pointer.index if self.pointer is not None else 0

    def describe(self) -> str:
        pointer = "none" if self.pointer is None else self.pointer.index
        return f"meta={self.meta} pointer={pointer} compacted={self.compacted}"


def read_durable(disk: Disk) -> DurableView:
    """Read the data directory as a cold start would, without a node. Store recovery may
    cut a torn tail off the store file; the next open would do the same."""
    index, present = Store(disk, sync=True).last_applied_index()
    token = Token.decode(disk.read(POINTER)) if disk.exists(POINTER) else None
    header = body = None
    if token is not None:
        # The file is fsynced before the pointer names it: it must verify (P4).
        payload = verify_file(disk.read(f"{SNAP_DIR}/{token.file}"), token)
        header, _, header_len = parse_header(payload)
        body = payload[header_len:]
    compacted = int(json.loads(disk.read(COMPACTED))["index"]) if disk.exists(COMPACTED) else 0
    return DurableView(index if present else None, token, compacted, header, body)


class PointerOracle:
    """Where the durable pointer may be after a crash, and what the meta key must cover.

    `guarded` is the index of the current pointer when a pinned persist saved it (and no
    restore has cleared the meta key since): then meta >= guarded after any crash (P5).
    A pointer saved by an install, or a store restored without pin-after-restore, leaves
    meta lower (the C7 gap), and a node without the writer never pins (P3): no claim.
    `pin_floor` is the highest pin known durable since the last restore (S6, M2).
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.restore_pins = config.pin_after_restore and config.writer
        self.pointer: int | None = None
        self.compacted = 0
        self.guarded: int | None = None
        self.pin_floor: int | None = None
        self.in_flight: tuple[str, int] | None = None

    def start(self, what: str, index: int) -> None:
        """An operation that may move the pointer or restore the store is about to run."""
        self.in_flight = (what, index)

    def abandon(self) -> None:
        """The in-flight operation is known to have changed nothing durable."""
        self.in_flight = None

    def pinned(self, index: int) -> None:
        self.pin_floor = max(self.pin_floor or 0, index)

    def persisted(self, index: int, pinned: bool) -> None:
        self.in_flight = None
        self.pointer = self.compacted = index
        self.guarded = index if pinned else None
        if pinned:
            self.pinned(index)

    def installed(self, index: int) -> None:
        self.in_flight = None
        self.pointer = self.compacted = index
        self._restored(index)

    def opened(self, outcome: str, snap: int) -> None:
        self.in_flight = None
        if outcome != "skipped":
            self._restored(snap)

    def _restored(self, snap: int) -> None:
        # The restore clears the meta key, unless it pins it to the snapshot index.
        pin = self.restore_pins and self.pointer is not None
        self.guarded = snap if pin else None
        self.pin_floor = snap if pin else None

    def after_crash(self, view: DurableView, where: str) -> None:
        """Settle the operation the crash interrupted from the disk, then check P5."""
        if self.in_flight is not None:
            what, index = self.in_flight
            self.in_flight = None
            assert view.pointer is None or view.pointer.index in (self.pointer, index), (
                f"{where}: pointer {view.pointer.index} after a crash in {what}@{index}; "
                f"expected the previous pointer {self.pointer} or {index}")
            assert view.compacted in (self.compacted, index), (
                f"{where}: compacted={view.compacted} after a crash in {what}@{index}; "
                f"expected {self.compacted} or {index}")
            moved = view.pointer is not None and view.pointer.index == index != self.pointer
            if moved and what == "persist":
                self.pointer = index  # saved after its pin (P1) when there is a writer
                self.guarded = index if self.config.writer else None
            elif moved:
                self.pointer = index  # install: its restore may or may not have run
            if what in ("install", "open"):  # a restore may have cleared the meta key
                self.guarded = self.pin_floor = None
            self.compacted = view.compacted
        self.check(view, where)

    def check(self, view: DurableView, where: str) -> None:
        pointer = None if view.pointer is None else view.pointer.index
        assert pointer == self.pointer, (
            f"{where}: the durable pointer is {pointer}, but the last saved one is "
            f"{self.pointer} (the pointer save is synced and atomic)")
        assert view.compacted == self.compacted, (
            f"{where}: compacted={view.compacted}, expected {self.compacted}")
        assert view.compacted <= (pointer or 0), (
            f"{where}: compacted {view.compacted} beyond the pointer {pointer} (CO-004)")
        if self.guarded is not None:
            assert view.meta is not None and view.meta >= self.guarded, (
                f"{where}: P5 violated: pointer {self.guarded} was saved by a pinned persist "
                f"but the durable meta key is {view.meta} (never pointer = X with meta < X)")
        if self.pin_floor is not None:
            assert view.meta is not None and view.meta >= self.pin_floor, (
                f"{where}: the pin to {self.pin_floor} did not survive: durable meta is "
                f"{view.meta} (the pin is synced unconditionally, S6/M2)")


# -- the cold-start gate -------------------------------------------------------------------


def expected_open(view: DurableView, config: NodeConfig, reader_error: bool) -> dict[str, Any]:
    """The open result C1, C2 and C4 prescribe for this durable state."""
    have = None
    if not config.reader:
        reason: str | None = "not_reader"
    elif reader_error:
        reason = "read_err"
    elif view.meta is None:
        reason = "missing_meta"
    else:
        have = view.meta
        reason = None if config.header_applier else "not_header_applier"
    snap = view.snap
    if reason is None and have is not None and have >= snap:
        outcome, effective = "skipped", have
    else:
        outcome, effective = ("executed" if reason is None else "fallback"), snap
    return {"outcome": outcome, "reason": reason, "have": have, "snap": snap,
            "effective": effective, "gap": None if have is None else have - snap,
            "compacted": view.compacted, "last_applied": effective}


def check_open(result: dict[str, Any], view: DurableView, config: NodeConfig,
               reader_error: bool, committed: int, where: str) -> None:
    want = expected_open(view, config, reader_error)
    got = {key: result.get(key) for key in want}
    assert got == want, (
        f"{where}: open reported {result}, but the durable state ({view.describe()}) "
        f"calls for {want}")
    assert result["compacted"] <= result["effective"] <= committed, (
        f"{where}: effective {result['effective']} must lie in [compacted "
        f"{result['compacted']}, committed {committed}]")
