"""The reference store: an append-only log of atomic batches with an MVCC view.

On disk the store is one file of framed records, one record per batch:

    frame = length:u32 || crc32c(payload):u32 || payload      (little-endian)
    payload = canonical JSON of the batch

Recovery replays records from the start and stops at the first frame that is
short or fails its CRC, then truncates the file there. So a batch is visible
after a crash whole or not at all (S2): the meta key written in the same batch
as the data cannot survive without it, nor the reverse.

The meta key `_meta_applied_index` lives in a namespace of its own, outside the
user key space (S5): user reads, scans, delete-prefix and the snapshot body
never see it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .disk import Disk
from .errors import InjectedError, NodeError, StoreReadError
from .failpoints import Failpoints
from .snapshot import crc32c

STORE_DIR = "store"
STORE_FILE = f"{STORE_DIR}/store.log"
META_APPLIED_INDEX = "_meta_applied_index"
_FRAME = struct.Struct("<II")

Version = tuple[int, str | None]  # (commit_ts, value); None is a tombstone


@dataclass
class Batch:
    """Writes that commit atomically: user versions, meta values, intents, rollback markers."""

    versions: list[tuple[str, int, str | None]] = field(default_factory=list)
    meta: dict[str, bytes] = field(default_factory=dict)
    intents: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    rollbacks: list[str] = field(default_factory=list)
    reset: dict[str, Any] | None = None  # restore: replace all user state with this snapshot state

    def is_empty(self) -> bool:
        return not (self.versions or self.meta or self.intents or self.rollbacks
                    or self.reset is not None)

    def encode(self) -> bytes:
        obj: dict[str, Any] = {}
        if self.reset is not None:
            obj["reset"] = self.reset
        if self.versions:
            obj["v"] = [list(v) for v in self.versions]
        if self.meta:
            obj["m"] = {k: v.hex() for k, v in self.meta.items()}
        if self.intents:
            obj["i"] = self.intents
        if self.rollbacks:
            obj["r"] = self.rollbacks
        payload = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        return _FRAME.pack(len(payload), crc32c(payload)) + payload

    @staticmethod
    def decode(payload: bytes) -> Batch:
        obj = json.loads(payload)
        return Batch(
            versions=[(k, int(ts), v) for k, ts, v in obj.get("v", [])],
            meta={k: bytes.fromhex(v) for k, v in obj.get("m", {}).items()},
            intents=obj.get("i", {}),
            rollbacks=list(obj.get("r", [])),
            reset=obj.get("reset"),
        )


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (end offset, payload) for each intact frame; stop at the first bad one."""
    off = 0
    while off + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, off)
        start = off + _FRAME.size
        end = start + length
        if end > len(data) or crc32c(data[start:end]) != crc:
            return
        yield end, data[start:end]
        off = end


@dataclass(frozen=True)
class RecoveryInfo:
    records: int
    truncated_bytes: int


def encode_index(index: int) -> bytes:
    return struct.pack(">Q", index)


class Store:
    """MVCC key-value store over a `Disk`; every commit is one atomic framed record."""

    def __init__(self, disk: Disk, *, sync: bool, failpoints: Failpoints | None = None) -> None:
        self.disk = disk
        self.sync = sync
        self.failpoints = failpoints or Failpoints()
        self._versions: dict[str, list[Version]] = {}
        self._meta: dict[str, bytes] = {}
        self._intents: dict[str, dict[str, Any]] = {}
        self._rollbacks: set[str] = set()
        self.recovery = self._recover()

    # -- recovery -------------------------------------------------------------------------

    def _recover(self) -> RecoveryInfo:
        self.disk.makedirs(STORE_DIR)
        if not self.disk.exists(STORE_FILE):
            self.disk.write(STORE_FILE, b"")
            self.disk.fsync(STORE_FILE)
            self.disk.fsync_dir(STORE_DIR)
            return RecoveryInfo(0, 0)
        data = self.disk.read(STORE_FILE)
        good, records = 0, 0
        for end, payload in _frames(data):
            self._apply_in_memory(Batch.decode(payload))
            good, records = end, records + 1
        if good < len(data):
            # A torn tail: cut it off so later appends follow a valid record.
            self.disk.truncate(STORE_FILE, good)
            self.disk.fsync(STORE_FILE)
        # The name this store file has may not be durable yet: a restore renames its new file
        # over the old one and then fsyncs the directory, and a crash between the two keeps
        # the rename in the OS but not on the disk. Everything this node reports from here
        # (a pin, a skip) builds on this file, so make its name durable before relying on it
        # (found by exploration with file-system crash points: DM-001 after a power loss).
        self.disk.fsync_dir(STORE_DIR)
        return RecoveryInfo(records, len(data) - good)

    def _apply_in_memory(self, batch: Batch) -> None:
        if batch.reset is not None:
            self._load_state(batch.reset)
        for key, ts, value in batch.versions:
            versions = self._versions.setdefault(key, [])
            # Rewriting the same (key, ts) cell replaces it: re-applying a raw put is harmless.
            versions[:] = [v for v in versions if v[0] != ts]
            versions.append((ts, value))
            versions.sort(key=lambda v: v[0])
        self._meta.update(batch.meta)
        for txn, intent in batch.intents.items():
            if intent is None:
                self._intents.pop(txn, None)
            else:
                self._intents[txn] = intent
        self._rollbacks.update(batch.rollbacks)

    def _load_state(self, state: dict[str, Any]) -> None:
        self._versions = {
            k: [(int(ts), v) for ts, v in vs] for k, vs in state.get("versions", {}).items()
        }
        self._intents = dict(state.get("intents", {}))
        self._rollbacks = set(state.get("rollbacks", []))
        self._meta = {}

    # -- commit ---------------------------------------------------------------------------

    def commit(self, batch: Batch, *, sync: bool | None = None) -> None:
        """Append one apply's record; fsync it when synced. Exactly one fsync, or none.

        The `after_batch_commit` failpoint counts these commits only (docs/protocol.md
        "Failpoints"): an apply whose batch writes anything. A pin or a tamper write is
        not an apply's batch (`_write_meta`).
        """
        if batch.is_empty():
            return
        self._append(batch, self.sync if sync is None else sync)
        self.failpoints.hit("after_batch_commit")

    def _append(self, batch: Batch, sync: bool) -> None:
        self.disk.append(STORE_FILE, batch.encode())
        if sync:
            self.disk.fsync(STORE_FILE)
        self._apply_in_memory(batch)

    def _write_meta(self, value: bytes) -> None:
        """A synced write of the meta key alone (the pin, a tamper hook): no apply's batch."""
        self._append(Batch(meta={META_APPLIED_INDEX: value}), True)

    def apply_mutations(self, batch: Batch, applied_index: int) -> None:
        """S2/S3: bundle the meta key with the data when applied_index > 0."""
        if applied_index > 0:
            batch.meta[META_APPLIED_INDEX] = encode_index(applied_index)
        self.commit(batch)

    def range_tombstones(self, prefix: str, exclude: str | None, ts: int) -> Batch:
        """A batch of tombstones for the live user keys under `prefix`, except `exclude`'s."""
        batch = Batch()
        for key in self.user_keys(prefix):
            if exclude is not None and key.startswith(exclude):
                continue
            if self.get(key) is not None:
                batch.versions.append((key, ts, None))
        return batch

    def delete_prefix(self, prefix: str, exclude: str | None, ts: int, applied_index: int) -> int:
        """S4: delete-prefix builds its own batch, and bundles the meta key too."""
        batch = self.range_tombstones(prefix, exclude, ts)
        if applied_index > 0:
            batch.meta[META_APPLIED_INDEX] = encode_index(applied_index)
        self.commit(batch)
        return len(batch.versions)

    # -- the applied-index seam (S1, S6) ---------------------------------------------------

    def last_applied_index(self) -> tuple[int, bool]:
        """S1: (index, present). Absent or not exactly 8 bytes: (0, False). Read failure: error."""
        try:
            self.failpoints.hit("reader")
        except InjectedError as exc:
            raise StoreReadError(f"reading {META_APPLIED_INDEX} failed: {exc}") from exc
        return self._read_index()

    def _read_index(self) -> tuple[int, bool]:
        raw = self._meta.get(META_APPLIED_INDEX)
        if raw is None or len(raw) != 8:
            return 0, False
        return int(struct.unpack(">Q", raw)[0]), True

    def set_durable_applied_index(self, index: int) -> bool:
        """S6: synced unconditionally, monotonic. Return True when the value was written.

        When the stored value is already >= index nothing is written, but the store is
        still fsynced: in unsynced mode that value (and the data it covers) may exist only
        in OS buffers, and the pin is what makes it durable before the pointer is saved.
        """
        self.failpoints.hit("pin")
        current, present = self._read_index()
        if present and current >= index:
            self.disk.fsync(STORE_FILE)
            return False
        self._write_meta(encode_index(index))
        return True

    def write_meta_raw(self, value: bytes) -> None:
        """Tamper hook: store an arbitrary (e.g. torn, 2-byte) meta value, durably."""
        self._write_meta(value)

    # -- restore ---------------------------------------------------------------------------

    def restore(self, state: dict[str, Any], pin: int | None,
                keep_meta_at_most: int | None = None) -> None:
        """Replace all user state atomically (write a new file, then rename over the old).

        The meta key does not survive a restore: it is absent afterwards (the next cold
        start falls back, conservatively), unless `pin` is given (pin-after-restore), or
        `keep_meta_at_most` is and the old value is at or below it (C7's "older value":
        never above the snapshot, or a later cold start would skip past the restore).
        """
        batch = Batch(reset=state)
        old, present = self._read_index()
        if pin is not None:
            batch.meta[META_APPLIED_INDEX] = encode_index(pin)
        elif keep_meta_at_most is not None and present and old <= keep_meta_at_most:
            batch.meta[META_APPLIED_INDEX] = encode_index(old)
        tmp = STORE_FILE + ".restore"
        self.disk.write(tmp, batch.encode())
        self.disk.fsync(tmp)
        self.failpoints.hit("mid_restore")
        self.disk.rename(tmp, STORE_FILE)
        self.disk.fsync_dir(STORE_DIR)
        self._load_state(state)
        self._meta.update(batch.meta)

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        versions = self._versions.get(key)
        return versions[-1][1] if versions else None

    def versions(self, key: str) -> list[Version]:
        return list(self._versions.get(key, ()))

    def intent(self, txn: str) -> dict[str, Any] | None:
        return self._intents.get(txn)

    def intents(self) -> dict[str, dict[str, Any]]:
        return dict(self._intents)

    def has_rollback(self, txn: str) -> bool:
        return txn in self._rollbacks

    def rollbacks(self) -> list[str]:
        return sorted(self._rollbacks)

    def user_keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._versions if k.startswith(prefix))

    def scan(self, prefix: str = "") -> list[tuple[str, str]]:
        out = []
        for key in self.user_keys(prefix):
            value = self.get(key)
            if value is not None:
                out.append((key, value))
        return out

    def export_state(self) -> dict[str, Any]:
        """The snapshot body: user versions, intents and rollbacks; never meta keys (S5)."""
        return {
            "versions": {k: [list(v) for v in vs] for k, vs in sorted(self._versions.items())},
            "intents": dict(sorted(self._intents.items())),
            "rollbacks": sorted(self._rollbacks),
        }

    def meta_raw(self) -> bytes | None:
        return self._meta.get(META_APPLIED_INDEX)


__all__ = ["Batch", "Store", "NodeError", "META_APPLIED_INDEX", "STORE_FILE", "encode_index"]
