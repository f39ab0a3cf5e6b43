"""The reference node: apply, snapshot persist at both sites, cold start, install.

Data directory layout (all paths relative to the disk root):

    store/store.log              the store (see store.py)
    snapshots/snap-<index>.snap  snapshot files: payload + CRC32C footer
    snapshots/pointer            the token: {index, crc, file}, written atomically
    raft/compacted               index through which the local log is compacted

The protocol, step by step, is in the method docstrings; the requirement IDs
they implement are in conformance/requirements.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from .disk import Disk, atomic_write
from .entries import MAX_KEY_BYTES, MAX_VALUE_BYTES, parse_entry
from .errors import (
    AlreadyOpenError,
    BadRequestError,
    CapabilityError,
    IndexOrderError,
    NodeError,
    NotOpenError,
    PinError,
    SimulatedCrash,
    SnapshotError,
    SnapshotVerifyError,
    StaleSnapshotError,
    StoreReadError,
    UnknownSnapshotError,
)
from .failpoints import Failpoints
from .fsm import FSM, ApplyOutcome, state_digest
from .snapshot import (
    Header,
    Token,
    build_file,
    decode_body,
    encode_body,
    parse_header,
    snapshot_file_name,
    verify_file,
)
from .store import Store

SNAP_DIR = "snapshots"
POINTER = f"{SNAP_DIR}/pointer"
RAFT_DIR = "raft"
COMPACTED = f"{RAFT_DIR}/compacted"

Site = Literal["local", "config"]
TAMPER_KINDS = ("torn_meta", "truncate_snapshot", "flip_body_byte", "wrong_token_crc",
                "unknown_header_version")


@dataclass(frozen=True)
class NodeConfig:
    """Mode and capability switches. Turning a capability off gives a lower profile."""

    sync: bool = True              # M1 synced applies; False = M2 unsynced applies
    reader: bool = True            # the applied-index reader (skip gate input)
    writer: bool = True            # the pin (set_durable_applied_index)
    header_applier: bool = True    # can apply header state without restoring the body
    pin_after_restore: bool = False  # C7 stronger behaviour
    header_version: int = 2
    # Choices docs/protocol.md leaves to the node ("Choices the protocol leaves open"); the
    # tests run the suites on each, so no case or oracle rule pins one of them.
    install_store_first: bool = False  # install: swap the store, then save the pointer
    restore_keeps_meta: bool = False   # restore without the pin: keep a meta value <= snap

    def capabilities(self) -> list[str]:
        caps = ["unsynced_mode", "failpoints", "tamper_hooks", "install_snapshot"]
        caps += [name for name, on in (("reader", self.reader), ("writer", self.writer),
                                       ("header_applier", self.header_applier),
                                       ("pin_after_restore", self.pin_after_restore)) if on]
        return sorted(caps)


@dataclass(frozen=True)
class OpenResult:
    outcome: str            # skipped | executed | fallback
    reason: str | None      # for fallback: not_reader | missing_meta | read_err | not_header_applier
    have: int | None        # durable applied index read at cold start (None when unknown)
    snap: int               # pointer index, 0 when there is no snapshot
    effective: int          # entries <= effective are never delivered again
    gap: int | None         # have - snap, when have is known
    compacted: int          # the local log holds no entry <= compacted
    last_applied: int       # in-memory applied index after the cold start (== effective)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PersistResult:
    index: int
    site: str
    pinned: bool
    compacted: int


@dataclass
class _Pending:
    id: int
    index: int
    header: Header
    body: bytes


@dataclass
class Node:
    disk: Disk
    config: NodeConfig = field(default_factory=NodeConfig)
    failpoints: Failpoints = field(default_factory=Failpoints)
    on_event: Callable[[dict[str, Any]], None] | None = None

    # The store and FSM classes the node builds at open (a mutant may swap one).
    store_class: ClassVar[type[Store]] = Store
    fsm_class: ClassVar[type[FSM]] = FSM

    def __post_init__(self) -> None:
        self.store: Store | None = None
        self.fsm: FSM | None = None
        self.applied = 0
        self.dead = False
        self.events: list[dict[str, Any]] = []
        self.trace: list[tuple[str, int]] = []  # ("pin" | "save" | "compact" | "restore", index)
        self._pending: dict[int, _Pending] = {}
        self._next_snapshot_id = 1

    # -- plumbing --------------------------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _require_open(self) -> tuple[Store, FSM]:
        if self.dead:
            raise NotOpenError("the node crashed; restart it (a new Node on the same disk)")
        if self.store is None or self.fsm is None:
            raise NotOpenError("the node is not open: call open (cold start) first")
        return self.store, self.fsm

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SimulatedCrash:
            self.dead = True
            self.store = None
            self.fsm = None
            raise

    def _read_pointer(self) -> Token | None:
        if not self.disk.exists(POINTER):
            return None
        return Token.decode(self.disk.read(POINTER))

    def _read_compacted(self) -> int:
        if not self.disk.exists(COMPACTED):
            return 0
        return int(json.loads(self.disk.read(COMPACTED))["index"])

    def _load_snapshot(self, token: Token | None) -> tuple[Header, bytes]:
        """Verify (C3) and split the current snapshot; no side effect on failure."""
        if token is None:
            return Header(), encode_body({})
        path = f"{SNAP_DIR}/{token.file}"
        if not self.disk.exists(path):  # removed too early (CO-004): never with this node
            raise SnapshotVerifyError("missing", f"the pointer names {token.file}, which does "
                                                 "not exist")
        payload = verify_file(self.disk.read(path), token)
        header, _, header_len = parse_header(payload)
        return header, payload[header_len:]

    # -- cold start (C1-C5) ------------------------------------------------------------------

    def open(self) -> OpenResult:
        return self._guard(self._open)  # type: ignore[no-any-return]

    def _open(self) -> OpenResult:
        """The skip gate, as a sequence of named steps (each a method below, so a mutant
        of the catalog can change exactly one of them)."""
        if self.dead:
            raise NotOpenError("the node crashed; restart it (a new Node on the same disk)")
        if self.store is not None:
            raise AlreadyOpenError("the node is already open")
        for d in (SNAP_DIR, RAFT_DIR):
            self.disk.makedirs(d)
        store = self.store_class(self.disk, sync=self.config.sync, failpoints=self.failpoints)
        fsm = self.fsm_class(store)
        token = self._read_pointer()
        snap = token.index if token else 0
        have, reason = self._cold_read_have(store)
        if reason is None and not self.config.header_applier:
            reason = "not_header_applier"
        skip = reason is None and have is not None and self._cold_fresh_enough(have, snap)
        if skip:
            assert have is not None
            outcome, effective = "skipped", self._cold_effective_on_skip(have, snap)
        else:
            outcome, effective = ("executed" if reason is None else "fallback"), snap
        result = OpenResult(
            outcome=outcome, reason=reason, have=have, snap=snap, effective=effective,
            gap=None if have is None else have - snap, compacted=self._read_compacted(),
            last_applied=effective,
        )
        self._cold_decided(result)
        if skip:
            # Skip the body restore; the header state still applies, after the same
            # verification the restore path does (C3).
            self._cold_header_on_skip(fsm, self._cold_skip_header(token))
        else:
            header, body = self._load_snapshot(token)
            pin = snap if (self.config.pin_after_restore and self.config.writer
                           and token is not None) else None
            store.restore(decode_body(body), pin, keep_meta_at_most=self._kept_meta(snap))
            self.trace.append(("restore", snap))
            self._cold_header_on_restore(fsm, header)
        self.store, self.fsm, self.applied = store, fsm, effective
        self._cold_succeeded(result)
        return result

    def _kept_meta(self, snap: int) -> int | None:
        return snap if self.config.restore_keeps_meta else None

    # The steps of the cold start.

    def _cold_read_have(self, store: Store) -> tuple[int | None, str | None]:
        """C2: (have, fallback reason). No reader, a missing meta key or a read error
        all fall back to the full restore; a read error never aborts the cold start."""
        if not self.config.reader:
            return None, "not_reader"
        try:
            index, present = store.last_applied_index()
        except StoreReadError as exc:
            return self._cold_read_error(exc)
        return (index, None) if present else (None, "missing_meta")

    def _cold_read_error(self, exc: StoreReadError) -> tuple[int | None, str | None]:
        return None, "read_err"  # over-restore is always safe; under-restore never is

    def _cold_fresh_enough(self, have: int, snap: int) -> bool:
        return have >= snap  # C1

    def _cold_effective_on_skip(self, have: int, snap: int) -> int:
        return have  # C4: entries up to have are never delivered again

    def _cold_skip_header(self, token: Token | None) -> Header:
        return self._load_snapshot(token)[0]  # C3: verified exactly like the restore path

    def _cold_header_on_skip(self, fsm: FSM, header: Header) -> None:
        fsm.apply_header(header.ceiling, header.cutover)

    def _cold_header_on_restore(self, fsm: FSM, header: Header) -> None:
        fsm.apply_header(header.ceiling, header.cutover)

    def _cold_decided(self, result: OpenResult) -> None:
        """The outcome is known; nothing is verified or restored yet: report nothing."""

    def _cold_succeeded(self, result: OpenResult) -> None:
        # C5: the outcome is reported only now, after the skip or restore succeeded.
        self._emit({"event": "cold_start", **result.to_json()})

    # -- apply -------------------------------------------------------------------------------

    def apply(self, index: int, raw_entry: object) -> ApplyOutcome:
        return self._guard(lambda: self._apply(index, raw_entry))  # type: ignore[no-any-return]

    def _apply(self, index: int, raw_entry: object) -> ApplyOutcome:
        store, fsm = self._require_open()
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise IndexOrderError(f"index must be a non-negative integer, got {index!r}")
        entry = parse_entry(raw_entry)  # rejects before any state changes
        if index > 0 and index != self.applied + 1:
            what = "goes backwards" if index <= self.applied else "skips ahead"
            raise IndexOrderError(
                f"index {index} {what}: the last applied index is {self.applied}, "
                f"so the next entry must be {self.applied + 1} (or 0 for a direct write)"
            )
        outcome = fsm.apply(entry, index)
        if index > 0:
            self.applied = index
        return outcome

    # -- snapshot persist (P1-P6) ----------------------------------------------------------------

    def snapshot_begin(self) -> tuple[int, int]:
        """Capture the state at the current applied index; return (snapshot id, index)."""
        store, fsm = self._require_open()
        snap = _Pending(
            id=self._next_snapshot_id, index=self.applied,
            header=Header(ceiling=fsm.hlc_ceiling, cutover=fsm.cutover),
            body=encode_body(store.export_state()),
        )
        self._next_snapshot_id += 1
        self._pending[snap.id] = snap
        return snap.id, snap.index

    def snapshot_persist(self, snapshot_id: int, site: Site = "local") -> PersistResult:
        return self._guard(  # type: ignore[no-any-return]
            lambda: self._snapshot_persist(snapshot_id, site))

    def _snapshot_persist(self, snapshot_id: int, site: str) -> PersistResult:
        self._require_open()
        if site not in ("local", "config"):
            raise BadRequestError(f"unknown snapshot site {site!r}; expected 'local' or 'config'")
        snap = self._pending.get(snapshot_id)
        if snap is None:
            raise UnknownSnapshotError(f"no snapshot begun with id {snapshot_id}")
        token = self._read_pointer()
        if token is not None and snap.index <= token.index:
            del self._pending[snapshot_id]
            raise StaleSnapshotError(
                f"snapshot at {snap.index} is not newer than the saved pointer at {token.index}"
            )
        del self._pending[snapshot_id]
        if site == "local":
            return self._persist_local_snapshot(snap)
        return self._persist_config_snapshot(snap)

    def _persist_local_snapshot(self, snap: _Pending) -> PersistResult:
        """Site 1, the steady-state snapshot: pin, then save, then compact."""
        pinned = self._pin(snap.index)
        self._save(snap.index, snap.header, snap.body)
        self._compact(snap.index)
        return PersistResult(snap.index, "local", pinned, snap.index)

    def _persist_config_snapshot(self, snap: _Pending) -> PersistResult:
        """Site 2, the configuration (membership) snapshot: the same order, its own path."""
        pinned = self._pin(snap.index)
        self._save(snap.index, snap.header, snap.body)
        self._compact(snap.index)
        return PersistResult(snap.index, "config", pinned, snap.index)

    def _pin(self, index: int) -> bool:
        """P1: a synced, monotonic pin of the meta key to the snapshot index (S6).

        P3: without the writer capability there is no pin, and the save still happens.
        P2: a failed pin raises PinError, so neither the save nor compaction runs.
        """
        if not self.config.writer:
            return False
        store, _ = self._require_open()
        self.failpoints.hit("before_pin")
        try:
            store.set_durable_applied_index(index)
        except (NodeError, OSError) as exc:
            raise PinError(f"pinning the applied index to {index} failed: {exc}") from exc
        self.trace.append(("pin", index))
        self.failpoints.hit("after_pin")
        return True

    def _save(self, index: int, header: Header, body: bytes) -> None:
        """P4: write the snapshot file (payload + CRC32C footer), then the pointer, atomically."""
        data, crc = build_file(header, body, self.config.header_version)
        name = snapshot_file_name(index)
        path = f"{SNAP_DIR}/{name}"
        self.disk.write(path, data)
        self.disk.fsync(path)
        self.disk.fsync_dir(SNAP_DIR)
        atomic_write(self.disk, POINTER, Token(index=index, crc=crc, file=name).encode())
        self.trace.append(("save", index))
        self.failpoints.hit("after_save")

    def _compact(self, index: int) -> None:
        """Only after the pointer is durable: drop the log through index and older files."""
        atomic_write(self.disk, COMPACTED, json.dumps({"index": index}).encode())
        keep = snapshot_file_name(index)
        for name in self.disk.listdir(SNAP_DIR):
            if name.startswith("snap-") and name.endswith(".snap") and name != keep:
                self.disk.remove(f"{SNAP_DIR}/{name}")
        self.disk.fsync_dir(SNAP_DIR)
        self.trace.append(("compact", index))

    # -- install a snapshot from another node (C7) ------------------------------------------------

    def install_snapshot(self, index: int, ceiling: int, cutover: int,
                         rows: Iterable[object]) -> int:
        return self._guard(  # type: ignore[no-any-return]
            lambda: self._install_snapshot(index, ceiling, cutover, rows))

    def _install_snapshot(self, index: int, ceiling: int, cutover: int,
                          rows: Iterable[object]) -> int:
        """Pointer first, then the atomic store restore: a crash in between leaves
        pointer > meta, which the next cold start resolves by restoring again."""
        store, fsm = self._require_open()
        if isinstance(index, bool) or not isinstance(index, int) or index <= self.applied:
            raise StaleSnapshotError(
                f"installed snapshot index {index!r} must be > the applied index {self.applied}"
            )
        for name, v in (("ceiling", ceiling), ("cutover", cutover)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise SnapshotError(f"install_snapshot.{name} must be an unsigned 64-bit integer")
        state = {"versions": _rows_to_versions(rows), "intents": {}, "rollbacks": []}
        header = Header(ceiling=ceiling, cutover=cutover)
        body = encode_body(state)
        pin = index if (self.config.pin_after_restore and self.config.writer) else None
        if self.config.install_store_first:
            store.restore(state, pin, keep_meta_at_most=self._kept_meta(index))
            self.trace.append(("restore", index))
            self._save(index, header, body)
        else:
            self._save(index, header, body)
            store.restore(state, pin, keep_meta_at_most=self._kept_meta(index))
            self.trace.append(("restore", index))
        self._compact(index)
        fsm.apply_header(ceiling, cutover)
        self.applied = index
        self._pending.clear()
        return index

    # -- the applied-index seam as direct operations ----------------------------------------------

    def last_applied_index(self) -> tuple[int, bool]:
        store, _ = self._require_open()
        if not self.config.reader:
            raise CapabilityError("this node runs without the applied-index reader")
        return store.last_applied_index()

    def set_durable_applied_index(self, index: int) -> bool:
        store, _ = self._require_open()
        if not self.config.writer:
            raise CapabilityError("this node runs without the applied-index writer")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**64:
            raise BadRequestError(f"index must be an unsigned 64-bit integer, got {index!r}")
        return self._guard(lambda: store.set_durable_applied_index(index))  # type: ignore[no-any-return]

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        store, _ = self._require_open()
        return store.get(key)

    def scan(self, prefix: str = "") -> list[tuple[str, str]]:
        store, _ = self._require_open()
        return store.scan(prefix)

    def digest(self) -> str:
        return state_digest(self.scan(""))

    def hlc(self) -> tuple[int, int]:
        _, fsm = self._require_open()
        return fsm.hlc_ceiling, fsm.cutover

    # -- tamper hooks (offline: before open) ------------------------------------------------------

    def tamper(self, kind: str) -> None:
        if self.store is not None:
            raise AlreadyOpenError("tamper works on a closed node: restart, tamper, then open")
        if kind == "torn_meta":
            Store(self.disk, sync=True).write_meta_raw(b"\x00\x2a")
            return
        if kind not in TAMPER_KINDS:
            raise BadRequestError(f"unknown tamper kind {kind!r}; known: {', '.join(TAMPER_KINDS)}")
        token = self._read_pointer()
        if token is None:
            raise SnapshotError(f"tamper {kind}: there is no saved snapshot to tamper with")
        path = f"{SNAP_DIR}/{token.file}"
        if not self.disk.exists(path):
            raise SnapshotError(f"tamper {kind}: the pointer names {token.file}, which does "
                                "not exist")
        data = bytearray(self.disk.read(path))
        if kind == "truncate_snapshot":
            self.disk.truncate(path, 2)
        elif kind == "flip_body_byte":
            data[-5] ^= 0xFF  # the last payload byte: inside the body, before the footer
            self.disk.write(path, bytes(data))
        elif kind == "wrong_token_crc":
            bad = Token(index=token.index, crc=token.crc ^ 0xFFFFFFFF, file=token.file)
            atomic_write(self.disk, POINTER, bad.encode())
            return
        else:  # unknown_header_version: a well-formed file from a "future" writer
            payload = bytearray(data[:-4])
            payload[3] = 99
            new, crc = _reframe(bytes(payload))
            self.disk.write(path, new)
            atomic_write(self.disk, POINTER, Token(token.index, crc, token.file).encode())
        self.disk.fsync(path)

    def close(self) -> None:
        self.store = None
        self.fsm = None
        self.disk.close()


def _reframe(payload: bytes) -> tuple[bytes, int]:
    from .snapshot import crc32c

    crc = crc32c(payload)
    return payload + crc.to_bytes(4, "little"), crc


def _utf8_within(text: object, limit: int) -> bool:
    """A string that is valid UTF-8 (no lone surrogate) of at most `limit` bytes."""
    if not isinstance(text, str):
        return False
    try:
        return len(text.encode("utf-8")) <= limit
    except UnicodeEncodeError:
        return False


def _rows_to_versions(rows: Iterable[object]) -> dict[str, list[list[Any]]]:
    """Validate install_snapshot rows: [key, value, commit_ts]. Malformed: SnapshotError."""
    if isinstance(rows, str | bytes) or not isinstance(rows, Iterable):
        raise SnapshotError("install_snapshot.rows must be a list of [key, value, commit_ts]")
    versions: dict[str, list[list[Any]]] = {}
    for i, row in enumerate(rows):
        if not (isinstance(row, list | tuple) and len(row) == 3):
            raise SnapshotError(f"install_snapshot.rows[{i}] must be [key, value, commit_ts]")
        key, value, ts = row
        if not _utf8_within(key, MAX_KEY_BYTES):
            raise SnapshotError(f"install_snapshot.rows[{i}]: bad key")
        if not _utf8_within(value, MAX_VALUE_BYTES):
            raise SnapshotError(f"install_snapshot.rows[{i}]: bad value")
        if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 2**64:
            raise SnapshotError(f"install_snapshot.rows[{i}]: bad commit_ts")
        if key in versions:
            raise SnapshotError(f"install_snapshot.rows[{i}]: duplicate key {key!r}")
        versions[key] = [[ts, value]]
    return versions
