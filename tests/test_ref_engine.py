"""Unit tests of the reference node's snapshot persist (P1-P6) at both sites.

The two sites are the steady-state local snapshot ("local", elastickv's
persistLocalSnapshotPayload) and the configuration snapshot ("config",
persistCreatedSnapshot). Order is checked three ways: node.trace, a spy on the
store's pin, and the disk operations themselves (the pin's fsync of the store must
come before the rename that makes the pointer durable).
"""

from __future__ import annotations

import errno
import json
import struct
from typing import Any

import crc32c as crc32c_lib
import pytest
from _entries import NOOP, add, cutover, lease, opened, put

from reference_impl.disk import PowerLossMode, SimDisk
from reference_impl.errors import NotOpenError, PinError, SimulatedCrash, StaleSnapshotError
from reference_impl.node import COMPACTED, POINTER, SNAP_DIR, Node, NodeConfig
from reference_impl.snapshot import Header, Token, parse_header
from reference_impl.store import STORE_FILE, Store

SITES = ["local", "config"]
SITE_REQ = {"local": "SP-001", "config": "SP-002"}


def sites(*extra: str) -> list[Any]:
    return [pytest.param(s, marks=pytest.mark.req(SITE_REQ[s], *extra), id=s) for s in SITES]


# -- plumbing -------------------------------------------------------------------------------


class RecordingDisk(SimDisk):
    """A SimDisk that logs the durability-relevant operations, in order."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.ops: list[tuple[str, str]] = []

    def fsync(self, path: str) -> None:
        super().fsync(path)
        self.ops.append(("fsync", path))

    def fsync_dir(self, path: str) -> None:
        super().fsync_dir(path)
        self.ops.append(("fsync_dir", path))

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        self.ops.append(("rename", dst))


def apply_all(node: Node, entries: list[dict[str, Any]], start: int | None = None) -> None:
    first = node.applied + 1 if start is None else start
    for i, entry in enumerate(entries, first):
        node.apply(i, entry)


def pointer(disk: SimDisk) -> Token | None:
    return Token.decode(disk.read(POINTER)) if disk.exists(POINTER) else None


def durable_meta(disk: SimDisk) -> tuple[int, bool]:
    """The meta key as a restarted store would read it (on a clone: no side effects)."""
    return Store(disk.clone(), sync=True).last_applied_index()


def snapshot_files(disk: SimDisk) -> dict[str, bytes]:
    return {n: disk.read(f"{SNAP_DIR}/{n}") for n in disk.listdir(SNAP_DIR)}


class PinSpy:
    def __init__(self, node: Node) -> None:
        assert node.store is not None
        self.calls: list[int] = []
        real = node.store.set_durable_applied_index

        def spy(index: int) -> bool:
            self.calls.append(index)
            return real(index)

        node.store.set_durable_applied_index = spy  # type: ignore[method-assign]


# data at 1..3 (meta 3), then two non-data entries: a persist at 5 must bump meta 3 -> 5
PRELUDE = [add("c", 1, 1), put("a", "x", 2), add("c", 1, 3), lease(500), cutover(7)]


# -- P1: pin, then save, then compact, once each ---------------------------------------------


@pytest.mark.parametrize("site", sites("SP-005"))
def test_persist_bumps_applied_index_pin_save_compact_in_exact_order(site: str) -> None:
    disk = RecordingDisk()
    node = opened(disk)
    apply_all(node, PRELUDE)
    assert node.last_applied_index() == (3, True)
    spy = PinSpy(node)
    sid, index = node.snapshot_begin()
    assert index == 5
    node.trace.clear()
    node.failpoints.trace.clear()
    disk.ops.clear()

    res = node.snapshot_persist(sid, site)  # type: ignore[arg-type]

    assert (res.index, res.site, res.pinned, res.compacted) == (5, site, True, 5)
    assert node.trace == [("pin", 5), ("save", 5), ("compact", 5)]
    assert spy.calls == [5]
    protocol_points = [p for p in node.failpoints.trace if p != "after_batch_commit"]
    assert protocol_points == ["before_pin", "pin", "after_pin", "after_save"]
    assert node.last_applied_index() == (5, True)
    assert durable_meta(disk) == (5, True)
    token = pointer(disk)
    assert token is not None and token.index == 5
    assert json.loads(disk.read(COMPACTED)) == {"index": 5}
    # On the disk: the pin's store fsync, then the snapshot file, then the pointer rename.
    pin_sync = disk.ops.index(("fsync", STORE_FILE))
    snap_sync = disk.ops.index(("fsync", f"{SNAP_DIR}/{token.file}"))
    pointer_renames = [i for i, op in enumerate(disk.ops) if op == ("rename", POINTER)]
    assert len(pointer_renames) == 1
    assert pin_sync < snap_sync < pointer_renames[0]
    assert disk.ops.count(("fsync", STORE_FILE)) == 1
    compact_write = [i for i, op in enumerate(disk.ops) if op == ("rename", COMPACTED)]
    assert len(compact_write) == 1 and compact_write[0] > pointer_renames[0]


@pytest.mark.parametrize("site", sites())
def test_persist_when_meta_already_at_index_still_pins_once_as_no_op(site: str) -> None:
    node = opened(SimDisk())
    apply_all(node, [add("c", 1, 1), add("c", 1, 2)])
    spy = PinSpy(node)
    sid, _ = node.snapshot_begin()
    node.trace.clear()
    res = node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    assert res.pinned is True
    assert spy.calls == [2]
    assert node.trace == [("pin", 2), ("save", 2), ("compact", 2)]
    assert node.last_applied_index() == (2, True)


@pytest.mark.req("SP-004")
@pytest.mark.parametrize("site", SITES)
def test_persist_nil_fsm_no_op_writerless_node_saves_without_pin(site: str) -> None:
    disk = RecordingDisk()
    node = opened(disk, NodeConfig(writer=False))
    apply_all(node, PRELUDE)
    sid, index = node.snapshot_begin()
    node.trace.clear()
    node.failpoints.trace.clear()
    disk.ops.clear()

    res = node.snapshot_persist(sid, site)  # type: ignore[arg-type]

    assert (res.index, res.pinned, res.compacted) == (5, False, 5)
    assert node.trace == [("save", 5), ("compact", 5)]
    assert "pin" not in node.failpoints.trace and "before_pin" not in node.failpoints.trace
    assert ("fsync", STORE_FILE) not in disk.ops
    assert node.last_applied_index() == (3, True)  # not bumped: there is no pin
    token = pointer(disk)
    assert token is not None and token.index == 5


# -- P2: a failed pin aborts -------------------------------------------------------------------


def _pin_failpoint(node: Node, disk: SimDisk) -> None:
    node.failpoints.arm("pin", "error")


def _pin_append_fails(node: Node, disk: SimDisk) -> None:
    disk.fail_next("append", STORE_FILE, OSError(errno.EIO, "injected EIO"))


@pytest.mark.req("CO-004", "BI-007")
@pytest.mark.parametrize("site", sites("SP-003"))
@pytest.mark.parametrize("inject", [_pin_failpoint, _pin_append_fails],
                         ids=["failpoint", "disk-eio-on-append"])
def test_persist_bump_error_aborts_no_save_no_compaction(site: str, inject: Any) -> None:
    disk = SimDisk()
    node = opened(disk)
    apply_all(node, [add("c", 1, 1), add("c", 1, 2)])
    sid, _ = node.snapshot_begin()
    node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    apply_all(node, [add("c", 1, 3), lease(9), NOOP])
    before_files, before_pointer = snapshot_files(disk), disk.read(POINTER)
    before_compacted = disk.read(COMPACTED)
    sid, index = node.snapshot_begin()
    assert index == 5
    node.trace.clear()
    inject(node, disk)

    with pytest.raises(PinError) as info:
        node.snapshot_persist(sid, site)  # type: ignore[arg-type]

    assert type(info.value) is PinError and info.value.code == "pin_failed"
    assert "5" in info.value.message
    assert node.trace == []
    assert snapshot_files(disk) == before_files
    assert disk.read(POINTER) == before_pointer
    assert disk.read(COMPACTED) == before_compacted
    assert durable_meta(disk) == (3, True)
    # Still usable: the next entry applies, and the next snapshot persists.
    assert not node.dead
    assert node.apply(6, add("c", 1, 6)).result == "ok"
    sid, index = node.snapshot_begin()
    res = node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    assert (res.index, res.pinned) == (6, True)
    assert node.trace == [("pin", 6), ("save", 6), ("compact", 6)]
    assert node.get("c") == "4"


# -- P6: late and stale persists -----------------------------------------------------------------


@pytest.mark.parametrize("site", sites("SP-005", "SP-006"))
def test_late_persist_does_not_rewind_meta_and_saves_state_at_begin(site: str) -> None:
    disk = SimDisk()
    node = opened(disk)
    apply_all(node, [add("c", 1, 1), put("a", "old", 2), add("c", 1, 3)])
    digest_at_3 = node.digest()
    sid, index = node.snapshot_begin()
    assert index == 3
    apply_all(node, [put("a", "new", 4), add("c", 10, 5), add("c", 10, 6)])
    node.trace.clear()

    res = node.snapshot_persist(sid, site)  # type: ignore[arg-type]

    assert (res.index, res.pinned) == (3, True)
    assert node.trace == [("pin", 3), ("save", 3), ("compact", 3)]
    assert node.last_applied_index() == (6, True)
    assert durable_meta(disk) == (6, True)
    token = pointer(disk)
    assert token is not None and token.index == 3
    # The snapshot holds the state at 3: a full restore (no reader) shows exactly that.
    restored = opened(disk.clone(), NodeConfig(reader=False))
    assert restored.digest() == digest_at_3
    assert (restored.get("a"), restored.get("c")) == ("old", "2")
    # And a skip keeps everything up to 6.
    skipped = Node(disk.clone())
    result = skipped.open()
    assert (result.outcome, result.have, result.snap, result.effective) == ("skipped", 6, 3, 6)
    assert skipped.get("c") == "22"


@pytest.mark.req("SP-005", "BI-007")
@pytest.mark.parametrize("site", SITES)
def test_stale_persist_raises_and_keeps_pointer(site: str) -> None:
    disk = SimDisk()
    node = opened(disk)
    apply_all(node, [add("c", 1, 1), add("c", 1, 2)])
    old, _ = node.snapshot_begin()
    same, _ = node.snapshot_begin()
    apply_all(node, [add("c", 1, 3)])
    new, _ = node.snapshot_begin()
    node.snapshot_persist(new, site)  # type: ignore[arg-type]
    before = disk.read(POINTER)
    node.trace.clear()
    for sid in (old, same):
        with pytest.raises(StaleSnapshotError) as info:
            node.snapshot_persist(sid, site)  # type: ignore[arg-type]
        assert info.value.code == "snapshot_out_of_date"
        assert "pointer at 3" in info.value.message
    assert node.trace == []
    assert disk.read(POINTER) == before
    assert node.last_applied_index() == (3, True)
    apply_all(node, [add("c", 1, 4)])
    sid, _ = node.snapshot_begin()
    assert node.snapshot_persist(sid, site).index == 4  # type: ignore[arg-type]


@pytest.mark.req("SP-005")
def test_equal_index_persist_at_the_other_site_is_stale() -> None:
    node = opened(SimDisk())
    apply_all(node, [add("c", 1, 1)])
    a, _ = node.snapshot_begin()
    b, _ = node.snapshot_begin()
    node.snapshot_persist(a, "local")
    with pytest.raises(StaleSnapshotError):
        node.snapshot_persist(b, "config")


# -- P5: crash ordering --------------------------------------------------------------------------


LOG = [add("c", 1, 1), put("a", "1", 2),          # persisted at 2 (X')
       add("c", 1, 3), add("c", 5, 4), lease(77),   # persist at 5 (X) crashes
       add("c", 100, 6), put("a", "7", 7)]          # committed afterwards
X_PREV, X = 2, 5


def expected_digest() -> str:
    model = opened(SimDisk())
    apply_all(model, LOG)
    return model.digest()


@pytest.mark.req("CO-001", "XR-002", "DM-005")
@pytest.mark.parametrize("mode", [PowerLossMode.KEEP_ALL, PowerLossMode.DROP_ALL, PowerLossMode.TORN_LAST])
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "unsynced"])
@pytest.mark.parametrize("point", ["before_pin", "after_pin", "after_save"])
@pytest.mark.parametrize("site", SITES)
def test_crash_during_persist_leaves_allowed_meta_pointer_pair(
    site: str, point: str, sync: bool, mode: PowerLossMode
) -> None:
    config = NodeConfig(sync=sync)
    disk = SimDisk(seed=7)
    node = opened(disk, config)
    apply_all(node, LOG[:X_PREV])
    sid, _ = node.snapshot_begin()
    node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    apply_all(node, LOG[X_PREV:X])
    sid, index = node.snapshot_begin()
    assert index == X
    node.failpoints.arm(point, "crash")

    with pytest.raises(SimulatedCrash) as info:
        node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    assert info.value.point == point
    assert node.dead
    with pytest.raises(NotOpenError):
        node.get("a")

    disk.power_loss(mode)
    token = pointer(disk)
    meta, present = durable_meta(disk)
    assert token is not None and token.index in (X_PREV, X)
    # P5: never pointer = X with meta < X.
    if token.index == X:
        assert present and meta >= X
    # Exactly where this reference must be for each point:
    expected_pointer = X if point == "after_save" else X_PREV
    assert token.index == expected_pointer
    if point in ("after_pin", "after_save"):
        assert present and meta >= X, "the pin is synced: it survives any power loss"
    else:
        assert present and meta >= X_PREV  # the earlier persist's pin
        if sync or mode is PowerLossMode.KEEP_ALL:
            assert meta == X - 1  # the last data entry before the crash

    # Restart and replay from effective + 1: every committed entry exactly once.
    again = Node(disk, config)
    result = again.open()
    assert result.snap == token.index
    assert result.compacted <= result.effective <= len(LOG)
    assert result.outcome == "skipped" and result.have == meta
    apply_all(again, LOG[result.effective:], start=result.effective + 1)
    assert again.digest() == expected_digest()
    assert again.get("c") == "107"


# -- P4: the file and the pointer -------------------------------------------------------------


@pytest.mark.parametrize("site", sites("HV-009"))
def test_snapshot_file_is_payload_plus_crc32c_footer_and_pointer_records_index_and_crc(site: str) -> None:
    assert crc32c_lib.crc32c(b"123456789") == 0xE3069283  # Castagnoli, not IEEE CRC-32
    disk = SimDisk()
    node = opened(disk)
    apply_all(node, PRELUDE)
    assert node.store is not None
    body_state = node.store.export_state()
    sid, _ = node.snapshot_begin()
    node.snapshot_persist(sid, site)  # type: ignore[arg-type]

    raw_pointer = json.loads(disk.read(POINTER))
    assert set(raw_pointer) == {"index", "crc", "file"}
    assert raw_pointer["index"] == 5
    data = disk.read(f"{SNAP_DIR}/{raw_pointer['file']}")
    payload, footer = data[:-4], data[-4:]
    (footer_crc,) = struct.unpack("<I", footer)
    assert footer_crc == crc32c_lib.crc32c(payload) == raw_pointer["crc"]
    # payload = header (magic, version, ceiling, cutover) + body
    assert payload[:4] == b"RSH\x02"
    assert struct.unpack_from(">QQ", payload, 4) == (500, 7)
    header, version, length = parse_header(payload)
    assert (header, version, length) == (Header(ceiling=500, cutover=7), 2, 20)
    assert json.loads(payload[length:]) == body_state
    assert disk.listdir(SNAP_DIR) == ["pointer", raw_pointer["file"]]
