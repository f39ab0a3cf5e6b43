"""The mutant catalog: deliberately broken variants of the reference node.

A conformance suite is worth exactly the bugs it catches. Each mutant here is the
reference node with ONE deviation that a real implementation could ship, tied to
the catalog requirement it violates (conformance/requirements.yaml) and to the
real-world bug class it stands for. `conformance mutants` runs the suites against
every mutant and fails unless each one is killed by a case citing its requirement;
fixtures/regressions/<name>.yaml holds the smallest sequence that kills each one.

Select a mutant through any adapter:

    conformance run suites --impl mutant:NAME              # in process (simulated disk)
    conformance run suites --impl mutant-process:NAME      # local process, wire protocol
    python -m reference_impl.server --data-dir D --mutant NAME

Mutants are small subclasses of the reference `Store`, `FSM` and `Node`: the node
builds its store and FSM from `Node.store_class` / `Node.fsm_class`, and runs its
cold start as named `_cold_*` steps, so each mutant overrides exactly one of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .disk import Disk
from .entries import Entry
from .errors import NodeError, StoreReadError
from .fsm import FSM, ApplyOutcome
from .node import SNAP_DIR, Node, NodeConfig, OpenResult, PersistResult, _Pending
from .snapshot import Header, Token, parse_header
from .store import META_APPLIED_INDEX, STORE_FILE, Batch, Store, encode_index

META = META_APPLIED_INDEX
NodeMaker = Callable[[Disk, NodeConfig], Node]


@dataclass(frozen=True)
class Mutant:
    name: str  # kebab-case, the fixture's file stem
    requirement: str  # the catalog requirement ID the deviation violates
    bug_class: str  # one line: the real-world bug it stands for
    make_node: NodeMaker
    # Harness faults needed to observe the deviation at all (an adapter without them,
    # e.g. the local-process adapter without power loss, cannot kill it).
    needs: frozenset[str] = frozenset()


# ------------------------------------------------------------------ the seamed node


def _node(node_class: type[Node]) -> NodeMaker:
    def make(disk: Disk, config: NodeConfig) -> Node:
        return node_class(disk, config)
    make.__name__ = f"make_{node_class.__name__}"
    return make


def _with_store(store_class: type[Store]) -> NodeMaker:
    node_class = type(f"{store_class.__name__}Node", (Node,), {"store_class": store_class})
    return _node(node_class)


def _with_fsm(fsm_class: type[FSM]) -> NodeMaker:
    node_class = type(f"{fsm_class.__name__}Node", (Node,), {"fsm_class": fsm_class})
    return _node(node_class)


# ------------------------------------------------------------------ store mutants


class PinUnsyncedStore(Store):
    """The pin's write uses the store's own sync flag: unsynced in unsynced mode."""

    def set_durable_applied_index(self, index: int) -> bool:
        self.failpoints.hit("pin")
        current, present = self._read_index()
        if present and current >= index:
            self.disk.fsync(STORE_FILE)
            return False
        self._append(Batch(meta={META: encode_index(index)}), self.sync)  # DEVIATION: sync=True
        return True


class PinNoopSkipsFsyncStore(Store):
    """A pin at or below the stored value returns without syncing anything."""

    def set_durable_applied_index(self, index: int) -> bool:
        self.failpoints.hit("pin")
        current, present = self._read_index()
        if present and current >= index:
            return False  # DEVIATION: the unsynced batches that carry `current` stay unsynced
        self._write_meta(encode_index(index))
        return True


class RewindingPinStore(Store):
    """The pin writes its value unconditionally: a late pin of an older snapshot rewinds."""

    def set_durable_applied_index(self, index: int) -> bool:
        self.failpoints.hit("pin")
        self._write_meta(encode_index(index))  # DEVIATION: no max
        return True


class NoSyncApplyStore(Store):
    """Data batches are committed without sync even in synced mode."""

    def apply_mutations(self, batch: Batch, applied_index: int) -> None:
        if applied_index > 0:
            batch.meta[META] = encode_index(applied_index)
        self.commit(batch, sync=False)  # DEVIATION: ignores the synced mode


class DeletePrefixNoMetaStore(Store):
    """Delete-prefix builds its own batch and forgets the meta key."""

    def delete_prefix(self, prefix: str, exclude: str | None, ts: int, applied_index: int) -> int:
        batch = self.range_tombstones(prefix, exclude, ts)
        self.commit(batch)  # DEVIATION: no batch.meta[META] = applied_index
        return len(batch.versions)


class IndexFirstStore(Store):
    """The meta key and the data go in two batches, the index first."""

    def apply_mutations(self, batch: Batch, applied_index: int) -> None:
        if applied_index > 0:
            self.commit(Batch(meta={META: encode_index(applied_index)}))  # DEVIATION
        self.commit(batch)


class DataFirstStore(Store):
    """The meta key and the data go in two batches, the data first."""

    def apply_mutations(self, batch: Batch, applied_index: int) -> None:
        self.commit(batch)
        if applied_index > 0:
            self.commit(Batch(meta={META: encode_index(applied_index)}))  # DEVIATION


class IndexZeroBumpsStore(Store):
    """The `applied_index > 0` guard is missing: a direct write stores meta = 0."""

    def apply_mutations(self, batch: Batch, applied_index: int) -> None:
        batch.meta[META] = encode_index(applied_index)  # DEVIATION: also for index 0
        self.commit(batch)


class MetaInScanStore(Store):
    """The meta key lives in the user key space and the scan iterator does not skip it."""

    def scan(self, prefix: str = "") -> list[tuple[str, str]]:
        items = super().scan(prefix)
        index, present = self._read_index()
        if present and META.startswith(prefix):  # DEVIATION
            items = sorted([*items, (META, str(index))])
        return items


class DeletePrefixRemovesMetaStore(Store):
    """The delete-prefix range covers internal keys: its tombstone shadows the meta key."""

    def delete_prefix(self, prefix: str, exclude: str | None, ts: int, applied_index: int) -> int:
        batch = self.range_tombstones(prefix, exclude, ts)
        if applied_index > 0:
            batch.meta[META] = encode_index(applied_index)
        if META.startswith(prefix) and not (exclude is not None and META.startswith(exclude)):
            batch.meta[META] = b""  # DEVIATION: the meta key is deleted with the range
        self.commit(batch)
        return len(batch.versions)


class MetaInBodyStore(Store):
    """The snapshot body iterates the whole key space, the meta key included."""

    def export_state(self) -> dict[str, Any]:
        state = super().export_state()
        raw = self.meta_raw()
        if raw is not None:  # DEVIATION: the meta key travels as a key of the body
            state["versions"][META] = [[0, str(int.from_bytes(raw, "big"))]]
        return state


class TornMetaErrorStore(Store):
    """A meta value that is not 8 bytes is reported as a read error."""

    def _read_index(self) -> tuple[int, bool]:
        raw = self._meta.get(META)
        if raw is not None and len(raw) != 8:  # DEVIATION: should read as absent
            raise StoreReadError(f"{META} holds {len(raw)} bytes, expected 8")
        return super()._read_index()


class TornMetaValueStore(Store):
    """A meta value of any length is decoded as an integer (no length check)."""

    def _read_index(self) -> tuple[int, bool]:
        raw = self._meta.get(META)
        if raw is None:
            return 0, False
        return int.from_bytes(raw, "big"), True  # DEVIATION: a torn 2-byte value reads as 42


class InPlaceRestoreStore(Store):
    """Restore wipes the user key space in place, then ingests the snapshot: two commits.

    The wipe is a range delete over the user keys, so the meta key (outside them)
    survives it; a crash between the two commits leaves an empty store claiming meta.
    """

    def restore(self, state: dict[str, Any], pin: int | None,
                keep_meta_at_most: int | None = None) -> None:
        empty: dict[str, Any] = {"versions": {}, "intents": {}, "rollbacks": []}
        self._commit_synced(Batch(reset=empty, meta=dict(self._meta)))  # DEVIATION
        self.failpoints.hit("mid_restore")
        batch = Batch(reset=state)
        if pin is not None:
            batch.meta[META] = encode_index(pin)
        self._commit_synced(batch)

    def _commit_synced(self, batch: Batch) -> None:
        self._append(batch, True)


# ------------------------------------------------------------------ FSM mutants


class LeaseBumpsMetaFSM(FSM):
    """An HLC lease is applied like a data entry and records its index."""

    def apply(self, entry: Entry, index: int) -> ApplyOutcome:
        outcome = super().apply(entry, index)
        if entry.kind == "hlc_lease":
            self.store.apply_mutations(Batch(), index)  # DEVIATION
        return outcome


class LeaseAssignsCeilingFSM(FSM):
    """An HLC lease assigns the ceiling instead of raising it."""

    def apply(self, entry: Entry, index: int) -> ApplyOutcome:
        if entry.kind == "hlc_lease":
            self.hlc_ceiling = entry.ceiling  # DEVIATION: max(current, ceiling)
            return ApplyOutcome("ok", wrote=False)
        return super().apply(entry, index)


class _FastPathFSM(FSM):
    """The reference `FSM._txn`, with the already-landed test as a method."""

    def _txn(self, entry: Entry, index: int) -> ApplyOutcome:
        written = {o.key for o in entry.ops}
        checked = written | set(entry.reads)
        newer = self._newer(checked, entry.start_ts)
        if not newer and not self._locked(checked):
            return self._write(self._mutations(entry.ops, entry.commit_ts), index)
        if self._landed(entry, written, newer) and not self._locked(checked):
            self.store.apply_mutations(Batch(), index)
            return ApplyOutcome("already_landed", wrote=index > 0)
        return ApplyOutcome("conflict", wrote=False)

    def _landed(self, entry: Entry, written: set[str], newer: set[int]) -> bool:
        every_key_landed = all(
            any(ts == entry.commit_ts for ts, _ in self.store.versions(k)) for k in written
        )
        return every_key_landed and newer == {entry.commit_ts}


class HiddenConflictFSM(_FastPathFSM):
    """The fast path checks that the transaction's own versions are there, not that
    nothing newer is: a newer write by someone else is hidden as already landed."""

    def _landed(self, entry: Entry, written: set[str], newer: set[int]) -> bool:
        return all(  # DEVIATION: no `newer == {commit_ts}`
            any(ts == entry.commit_ts for ts, _ in self.store.versions(k)) for k in written
        )


class OneKeyLandedFSM(_FastPathFSM):
    """The fast path is satisfied by any one key at commit_ts, not every mutation key."""

    def _landed(self, entry: Entry, written: set[str], newer: set[int]) -> bool:
        any_key_landed = any(  # DEVIATION: any() instead of all()
            any(ts == entry.commit_ts for ts, _ in self.store.versions(k)) for k in written
        )
        return any_key_landed and newer == {entry.commit_ts}


# ------------------------------------------------------------------ persist mutants


class PinAfterSaveNode(Node):
    def _persist_local_snapshot(self, snap: _Pending) -> PersistResult:
        self._save(snap.index, snap.header, snap.body)  # DEVIATION: save, then pin
        pinned = self._pin(snap.index)
        self._compact(snap.index)
        return PersistResult(snap.index, "local", pinned, snap.index)


class PinErrorIgnoredNode(Node):
    def _pin(self, index: int) -> bool:
        if not self.config.writer:
            return False
        store, _ = self._require_open()
        self.failpoints.hit("before_pin")
        # DEVIATION: "best effort": the pin's error is dropped and the save goes on
        with contextlib.suppress(NodeError, OSError):
            store.set_durable_applied_index(index)
        self.trace.append(("pin", index))
        self.failpoints.hit("after_pin")
        return True


class CompactFirstNode(Node):
    def _persist_local_snapshot(self, snap: _Pending) -> PersistResult:
        self._compact(snap.index)  # DEVIATION: the log is truncated before the pin and save
        pinned = self._pin(snap.index)
        self._save(snap.index, snap.header, snap.body)
        return PersistResult(snap.index, "local", pinned, snap.index)


class ConfigSiteNoPinNode(Node):
    def _persist_config_snapshot(self, snap: _Pending) -> PersistResult:
        self._save(snap.index, snap.header, snap.body)  # DEVIATION: no self._pin(snap.index)
        self._compact(snap.index)
        return PersistResult(snap.index, "config", self.config.writer, snap.index)


# ------------------------------------------------------------------ cold-start mutants


class ReaderErrorAbortsNode(Node):
    def _cold_read_error(self, exc: StoreReadError) -> tuple[int | None, str | None]:
        raise exc  # DEVIATION: the read error fails the cold start


class SkipOffByOneNode(Node):
    def _cold_fresh_enough(self, have: int, snap: int) -> bool:
        return have >= snap - 1  # DEVIATION


class RestoreAtEqualNode(Node):
    def _cold_fresh_enough(self, have: int, snap: int) -> bool:
        return have > snap  # DEVIATION


class EffectiveSnapOnSkipNode(Node):
    def _cold_effective_on_skip(self, have: int, snap: int) -> int:
        return snap  # DEVIATION: entries snap+1..have are delivered again


class NoHeaderOnSkipNode(Node):
    def _cold_header_on_skip(self, fsm: FSM, header: Header) -> None:
        pass  # DEVIATION: only the restore path applies the header


class UnverifiedSkipNode(Node):
    def _cold_skip_header(self, token: Token | None) -> Header:
        if token is None:
            return Header()
        data = self.disk.read(f"{SNAP_DIR}/{token.file}")
        return parse_header(data[:-4])[0]  # DEVIATION: no size / token CRC / body CRC check


class EarlyOutcomeNode(Node):
    def _cold_decided(self, result: OpenResult) -> None:
        self._emit({"event": "cold_start", **result.to_json()})  # DEVIATION: before success

    def _cold_succeeded(self, result: OpenResult) -> None:
        pass


class CeilingLostOnRestoreNode(Node):
    def _cold_header_on_restore(self, fsm: FSM, header: Header) -> None:
        fsm.apply_header(0, header.cutover)  # DEVIATION: the ceiling restarts from the leases


# ------------------------------------------------------------------ the registry

_P = frozenset({"power_loss"})

_CATALOG: tuple[Mutant, ...] = (
    # snapshot persist (P1-P6)
    Mutant("pin-unsynced-in-unsynced-mode", "DM-004",
           "the pin is written with the store's write options, NoSync in unsynced mode "
           "(PR #915's UsesPebbleSync test)", _with_store(PinUnsyncedStore), _P),
    Mutant("pin-noop-skips-fsync", "DM-005",
           "a pin at or below the stored value returns early, so the unsynced batches holding "
           "that value are never synced before the pointer", _with_store(PinNoopSkipsFsyncStore),
           _P),
    Mutant("pin-after-pointer-save", "SP-001",
           "the pin runs after the pointer save (order inverted in the persist path)",
           _node(PinAfterSaveNode)),
    Mutant("non-monotonic-pin", "ST-012",
           "the pin is a blind Set, so a late persist of an older snapshot rewinds the index",
           _with_store(RewindingPinStore)),
    Mutant("pin-error-ignored", "SP-003",
           "the pin's error is dropped (`_ = bump()` / logged) and the pointer is saved anyway",
           _node(PinErrorIgnoredNode)),
    Mutant("compaction-before-pointer-durable", "CO-004",
           "the Raft log is compacted when the snapshot is created, before the pin and save",
           _node(CompactFirstNode)),
    Mutant("config-site-without-pin", "SP-002",
           "the pin is plumbed through the local snapshot site only, not the configuration "
           "snapshot site", _node(ConfigSiteNoPinNode)),
    # store (S1-S7)
    Mutant("delete-prefix-not-bundling-meta", "ST-008",
           "delete-prefix builds its own batch and forgets the meta key (the original bug class)",
           _with_store(DeletePrefixNoMetaStore)),
    Mutant("two-batches-index-first", "ST-005",
           "the applied index is written in its own batch before the data batch (the etcd "
           "3.5.0-3.5.2 inconsistency: the index persisted ahead of its data)",
           _with_store(IndexFirstStore)),
    Mutant("two-batches-data-first", "ST-005",
           "the applied index is written in its own batch after the data batch, so a crash "
           "in between applies the entry twice", _with_store(DataFirstStore)),
    Mutant("index-zero-bumps-meta", "ST-007",
           "the `applied_index > 0` guard is missing, so direct writes store meta = 0",
           _with_store(IndexZeroBumpsStore)),
    Mutant("hlc-lease-bumps-meta", "EN-006",
           "non-data entries go through the data apply path and record their index",
           _with_fsm(LeaseBumpsMetaFSM)),
    Mutant("meta-key-visible-to-scans", "ST-009",
           "the meta key shares the user key space and iterators do not skip it",
           _with_store(MetaInScanStore)),
    Mutant("meta-key-removed-by-delete-prefix", "ST-010",
           "a delete-prefix range tombstone covers internal keys too",
           _with_store(DeletePrefixRemovesMetaStore)),
    Mutant("meta-key-in-snapshot-body", "ST-011",
           "the snapshot iterates the whole key space, internal keys included",
           _with_store(MetaInBodyStore)),
    Mutant("torn-meta-as-error", "ST-002",
           "a short meta value is treated as corruption and reported as a read error",
           _with_store(TornMetaErrorStore)),
    Mutant("torn-meta-as-value", "ST-002",
           "the meta value is decoded without a length check (a torn value becomes an index)",
           _with_store(TornMetaValueStore)),
    Mutant("synced-mode-without-fsync", "DM-001",
           "data batches are written with NoSync whatever the configured durability",
           _with_store(NoSyncApplyStore), _P),
    Mutant("restore-not-atomic", "CO-003",
           "restore deletes the user key range in place, then ingests the snapshot",
           _with_store(InPlaceRestoreStore)),
    # entries
    Mutant("conflict-hidden-by-already-landed", "ST-015",
           "the already-landed fast path checks the transaction's own versions, not newer ones",
           _with_fsm(HiddenConflictFSM)),
    Mutant("already-landed-one-key", "ST-015",
           "the already-landed fast path checks one mutation key instead of every key",
           _with_fsm(OneKeyLandedFSM)),
    Mutant("lease-assigns-ceiling", "EN-007",
           "an HLC lease assigns the ceiling instead of taking the maximum",
           _with_fsm(LeaseAssignsCeilingFSM)),
    # cold start (C1-C5)
    Mutant("reader-error-aborts-cold-start", "CS-005",
           "the applied-index read error is returned from the cold start instead of "
           "falling back to a restore", _node(ReaderErrorAbortsNode)),
    Mutant("skip-when-have-is-snap-minus-one", "CS-002",
           "off-by-one in the skip gate (have >= snap - 1)", _node(SkipOffByOneNode)),
    Mutant("restore-when-have-equals-snap", "CS-001",
           "off-by-one in the skip gate (have > snap): the 46 s restore comes back at equality",
           _node(RestoreAtEqualNode)),
    Mutant("effective-snap-on-skip", "CS-006",
           "the skip reports the snapshot index as applied, so entries are delivered again",
           _node(EffectiveSnapOnSkipNode)),
    Mutant("header-not-applied-on-skip", "HV-001",
           "the skip path returns early and never applies the header's HLC ceiling and cutover",
           _node(NoHeaderOnSkipNode)),
    Mutant("skip-without-crc-verification", "HV-004",
           "the skip path reads only the header bytes and never checks the file's CRCs",
           _node(UnverifiedSkipNode)),
    Mutant("outcome-reported-before-success", "CS-009",
           "the gate's decision is logged/emitted before the verification and restore ran",
           _node(EarlyOutcomeNode)),
    Mutant("hlc-ceiling-backwards-after-restart", "HV-006",
           "the restore ignores the header's HLC ceiling, so after a restart the clock "
           "restarts below timestamps already issued", _node(CeilingLostOnRestoreNode)),
)

MUTANTS: dict[str, Mutant] = {m.name: m for m in _CATALOG}


def get(name: str) -> Mutant:
    """The mutant called `name`; KeyError with the known names otherwise."""
    try:
        return MUTANTS[name]
    except KeyError:
        raise KeyError(f"unknown mutant {name!r}; known: {', '.join(sorted(MUTANTS))}") from None


__all__ = ["MUTANTS", "Mutant", "get"]
