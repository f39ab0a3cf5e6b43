"""Unit tests of the reference node's cold start (the skip gate, C1-C5), header
verification and versions (C3, P4), and snapshot install (C7).

A "restart" is a new Node on the same SimDisk (a process kill: OS buffers survive).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from _entries import NOOP, add, cutover, lease, opened, put

from reference_impl.disk import PowerLossMode, SimDisk
from reference_impl.errors import (
    HeaderError,
    IndexOrderError,
    NotOpenError,
    SimulatedCrash,
    SnapshotError,
    SnapshotVerifyError,
)
from reference_impl.failpoints import Failpoints
from reference_impl.node import POINTER, SNAP_DIR, Node, NodeConfig, OpenResult
from reference_impl.snapshot import (
    Header,
    Token,
    build_file,
    encode_header,
    parse_header,
    verify_file,
)
from reference_impl.store import STORE_FILE, Store

# -- plumbing -------------------------------------------------------------------------------


def apply_from(node: Node, log: list[dict[str, Any]], start: int) -> None:
    for i in range(start, len(log) + 1):
        node.apply(i, log[i - 1])


def persist(node: Node, site: str = "local") -> int:
    sid, index = node.snapshot_begin()
    node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    return index


def restart(disk: SimDisk, config: NodeConfig | None = None, fp: Failpoints | None = None) -> Node:
    return Node(disk, config or NodeConfig(), failpoints=fp or Failpoints())


def model_digest(log: list[dict[str, Any]]) -> str:
    model = opened(SimDisk())
    apply_from(model, log, 1)
    return model.digest()


def restored(node: Node) -> bool:
    return any(step == "restore" for step, _ in node.trace)


# A log with header state before the snapshot: c counts applications (integer add).
LOG = [lease(300), add("c", 1, 1), cutover(9), put("a", "x", 2), add("c", 1, 3),  # snapshot at 5
       add("c", 1, 4), put("b", "y", 5), add("c", 1, 6)]                            # after it
SNAP = 5


def fresh_skip_disk(applied: int = len(LOG)) -> SimDisk:
    """Snapshot at SNAP (header ceiling 300, cutover 9), entries applied through `applied`."""
    disk = SimDisk()
    node = opened(disk)
    apply_from(node, LOG[:SNAP], 1)
    assert persist(node) == SNAP
    apply_from(node, LOG[:applied], SNAP + 1)
    return disk


def stale_meta_disk() -> SimDisk:
    """Meta 3, pointer 5: a writer-less node persisted past its last data entry."""
    disk = SimDisk()
    node = opened(disk, NodeConfig(writer=False))
    apply_from(node, [add("c", 1, 1), put("a", "x", 2), add("c", 1, 3), lease(40), cutover(2)], 1)
    assert persist(node) == 5
    assert node.last_applied_index() == (3, True)
    return disk


# -- C1: skip / execute -------------------------------------------------------------------------


@pytest.mark.req("CS-001", "CS-006", "CS-008", "HV-001")
def test_skips_when_fsm_fresh_enough() -> None:
    disk = fresh_skip_disk()
    node = restart(disk)
    result = node.open()
    assert result == OpenResult(outcome="skipped", reason=None, have=8, snap=5, effective=8, gap=3,
                                compacted=5, last_applied=8)
    assert not restored(node)
    assert node.hlc() == (300, 9)  # only the header carries these: no lease was replayed
    assert (node.get("b"), node.get("c")) == ("y", "4")
    assert node.digest() == model_digest(LOG)


@pytest.mark.req("CS-001", "CS-008")
def test_skips_when_fsm_at_snapshot_but_behind_commit_tail() -> None:
    # The log is committed through 8, but the node stopped right after the persist at 5.
    disk = fresh_skip_disk(applied=SNAP)
    node = restart(disk)
    result = node.open()
    assert (result.outcome, result.have, result.snap, result.gap, result.effective) == (
        "skipped", 5, 5, 0, 5)
    assert not restored(node)
    assert node.hlc() == (300, 9)
    apply_from(node, LOG, result.effective + 1)
    assert node.digest() == model_digest(LOG)


@pytest.mark.req("CS-002", "CS-007", "CS-008", "HV-006")
def test_executes_when_fsm_stale() -> None:
    disk = stale_meta_disk()
    node = restart(disk)
    result = node.open()
    # gap is have - snap (docs/protocol.md), negative when the store is behind.
    assert result == OpenResult(outcome="executed", reason=None, have=3, snap=5, effective=5, gap=-2,
                                compacted=5, last_applied=5)
    assert node.trace == [("restore", 5)]
    assert node.hlc() == (40, 2)
    assert (node.get("a"), node.get("c")) == ("x", "2")
    with pytest.raises(IndexOrderError, match="index 5 goes backwards"):
        node.apply(5, NOOP)
    assert node.apply(6, NOOP).result == "ok"


@pytest.mark.req("CS-006", "XR-004")
def test_returns_effective_applied_on_skip_and_never_reapplies_at_or_below_have() -> None:
    log = [add("c", 1, i) for i in range(1, 9)]
    disk = SimDisk()
    node = opened(disk)
    apply_from(node, log[:3], 1)
    persist(node)
    apply_from(node, log[:6], 4)
    node = restart(disk)
    result = node.open()
    assert (result.outcome, result.effective, result.last_applied) == ("skipped", 6, 6)
    for stale in (1, 3, 6):
        with pytest.raises(IndexOrderError, match="goes backwards"):
            node.apply(stale, log[stale - 1])
    apply_from(node, log, result.effective + 1)
    assert node.get("c") == "8"


# -- C5: emit only after success ------------------------------------------------------------------


@pytest.mark.req("CS-009", "CS-008")
def test_emits_cold_start_event_only_after_success() -> None:
    disk = fresh_skip_disk()
    seen: list[tuple[dict[str, Any], tuple[int, bool], tuple[int, int]]] = []
    node = restart(disk)
    # At emission time the node is already open, the header already applied.
    node.on_event = lambda ev: seen.append((ev, node.last_applied_index(), node.hlc()))
    result = node.open()
    assert node.events == [{"event": "cold_start", **result.to_json()}]
    assert seen == [(node.events[0], (8, True), (300, 9))]


@pytest.mark.req("CS-009")
@pytest.mark.parametrize("config", [NodeConfig(), NodeConfig(reader=False)], ids=["skip", "restore"])
def test_emits_nothing_when_open_raises(config: NodeConfig) -> None:
    disk = fresh_skip_disk()
    restart(disk).tamper("truncate_snapshot")
    seen: list[dict[str, Any]] = []
    node = Node(disk, config, on_event=seen.append)
    with pytest.raises(SnapshotVerifyError):
        node.open()
    assert node.events == [] and seen == []


# -- C2: fallbacks ------------------------------------------------------------------------------


def _torn_meta() -> SimDisk:
    disk = fresh_skip_disk()
    restart(disk).tamper("torn_meta")
    return disk


def _never_written() -> SimDisk:
    disk = SimDisk()
    node = opened(disk, NodeConfig(writer=False))
    apply_from(node, [lease(300), NOOP, cutover(9), NOOP, NOOP], 1)
    persist(node)
    return disk


@pytest.mark.req("CS-004", "CS-007", "CS-008", "ST-002")
@pytest.mark.parametrize("make", [_torn_meta, _never_written], ids=["torn", "absent"])
def test_fallback_missing_meta(make: Any) -> None:
    disk = make()
    node = restart(disk)
    result = node.open()
    assert (result.outcome, result.reason, result.have, result.gap, result.snap, result.effective) == (
        "fallback", "missing_meta", None, None, 5, 5)
    assert node.trace == [("restore", 5)]
    assert node.hlc() == (300, 9)


@pytest.mark.req("CS-005", "CS-007", "XR-005")
def test_fallback_read_err_does_not_abort_open() -> None:
    disk = fresh_skip_disk()
    fp = Failpoints()
    fp.arm("reader", "error")
    node = restart(disk, fp=fp)
    result = node.open()
    assert (result.outcome, result.reason, result.have, result.gap, result.effective) == (
        "fallback", "read_err", None, None, 5)
    assert node.trace == [("restore", 5)]
    assert node.hlc() == (300, 9)
    assert node.get("c") == "2" and node.get("b") is None  # the state at 5
    apply_from(node, LOG, result.effective + 1)
    assert node.digest() == model_digest(LOG)  # over-restore is safe


@pytest.mark.req("CS-003", "CS-007", "XR-005")
def test_fallback_not_reader() -> None:
    disk = fresh_skip_disk()
    node = restart(disk, NodeConfig(reader=False))
    result = node.open()
    assert (result.outcome, result.reason, result.have, result.effective) == (
        "fallback", "not_reader", None, 5)
    assert node.trace == [("restore", 5)]
    apply_from(node, LOG, result.effective + 1)
    assert node.digest() == model_digest(LOG)


@pytest.mark.req("CS-007", "XR-005")
def test_fallback_not_header_applier_restores() -> None:
    disk = fresh_skip_disk()
    node = restart(disk, NodeConfig(header_applier=False))
    result = node.open()
    assert (result.outcome, result.reason, result.have, result.effective) == (
        "fallback", "not_header_applier", 8, 5)
    assert node.hlc() == (300, 9)


# -- C3: verification, on both paths ------------------------------------------------------------


TAMPERS = [
    pytest.param("truncate_snapshot", "too_small", marks=pytest.mark.req("HV-002"), id="truncated"),
    pytest.param("wrong_token_crc", "token_crc", marks=pytest.mark.req("HV-003"), id="wrong-token-crc"),
    pytest.param("flip_body_byte", "file_crc", marks=pytest.mark.req("HV-004"), id="body-corruption"),
]


def _durable_files(disk: SimDisk) -> dict[str, bytes]:
    out = {STORE_FILE: disk.read(STORE_FILE), POINTER: disk.read(POINTER)}
    for name in disk.listdir(SNAP_DIR):
        out[f"{SNAP_DIR}/{name}"] = disk.read(f"{SNAP_DIR}/{name}")
    return out


def _assert_failed_open_had_no_side_effect(node: Node, disk: SimDisk, before: dict[str, bytes]) -> None:
    assert node.store is None and node.fsm is None
    with pytest.raises(NotOpenError):
        node.hlc()
    assert node.events == []
    assert not restored(node)
    assert _durable_files(disk) == before


@pytest.mark.req("CS-009")
@pytest.mark.parametrize(("kind", "failure"), TAMPERS)
def test_apply_header_state_on_skip_rejects_tampered_file(kind: str, failure: str) -> None:
    disk = fresh_skip_disk()
    restart(disk).tamper(kind)
    before = _durable_files(disk)
    node = restart(disk)
    with pytest.raises(SnapshotVerifyError) as info:
        node.open()
    assert (info.value.kind, info.value.code) == (failure, "snapshot_verify")
    assert info.value.message.startswith(f"{failure}: ")
    _assert_failed_open_had_no_side_effect(node, disk, before)
    # Not a one-off: a second attempt fails the same way.
    with pytest.raises(SnapshotVerifyError, match=failure):
        restart(disk).open()


@pytest.mark.req("HV-005")
@pytest.mark.parametrize(("kind", "failure"), TAMPERS)
@pytest.mark.parametrize("path", ["not-reader", "missing-meta", "stale-meta"])
def test_restore_path_runs_the_same_verification(kind: str, failure: str, path: str) -> None:
    config = NodeConfig()
    if path == "not-reader":
        disk, config = fresh_skip_disk(), NodeConfig(reader=False)
    elif path == "missing-meta":
        disk = _torn_meta()
    else:
        disk = stale_meta_disk()
    restart(disk).tamper(kind)
    before = _durable_files(disk)
    node = restart(disk, config)
    with pytest.raises(SnapshotVerifyError) as info:
        node.open()
    assert info.value.kind == failure
    _assert_failed_open_had_no_side_effect(node, disk, before)


@pytest.mark.req("HV-009")
def test_verify_file_checks_size_then_token_crc_then_payload_crc() -> None:
    data, crc = build_file(Header(5, 6), b"{}")
    token = Token(index=1, crc=crc, file="f")
    assert verify_file(data, token) == data[:-4]
    for short in (b"", b"abc"):
        with pytest.raises(SnapshotVerifyError) as info:
            verify_file(short, token)
        assert info.value.kind == "too_small"
    # Exactly the footer is big enough: an empty payload, whose CRC32C is 0.
    assert verify_file(struct.pack("<I", 0), Token(1, 0, "f")) == b""
    with pytest.raises(SnapshotVerifyError) as info:
        verify_file(data, Token(1, crc ^ 1, "f"))
    assert info.value.kind == "token_crc"
    flipped = bytearray(data)
    flipped[5] ^= 0x10
    with pytest.raises(SnapshotVerifyError) as info:
        verify_file(bytes(flipped), token)
    assert info.value.kind == "file_crc"


# -- header versions ------------------------------------------------------------------------------


@pytest.mark.req("HV-007")
@pytest.mark.parametrize("header", [Header(0, 0), Header(123, 456), Header(2**64 - 1, 2**64 - 1)],
                         ids=["zero", "small", "max"])
def test_header_round_trip_v1_and_v2(header: Header) -> None:
    v1 = encode_header(header, 1)
    assert v1 == b"RSH\x01" + struct.pack(">Q", header.ceiling)
    assert parse_header(v1 + b"body") == (Header(header.ceiling, 0), 1, 12)
    v2 = encode_header(header, 2)
    assert v2 == b"RSH\x02" + struct.pack(">QQ", header.ceiling, header.cutover)
    assert parse_header(v2 + b"body") == (header, 2, 20)
    for version in (1, 2):
        data, crc = build_file(header, b'{"x":1}', version)
        payload = verify_file(data, Token(1, crc, "f"))
        parsed, got_version, length = parse_header(payload)
        assert got_version == version and payload[length:] == b'{"x":1}'
        assert parsed == (header if version == 2 else Header(header.ceiling, 0))


@pytest.mark.req("HV-007", "HV-001", "HV-006")
@pytest.mark.parametrize("reader_config", [NodeConfig(), NodeConfig(reader=False)], ids=["skip", "restore"])
@pytest.mark.parametrize(("version", "expect"), [(1, (300, 0)), (2, (300, 9))], ids=["v1", "v2"])
def test_header_version_written_by_one_node_read_by_a_default_node(
    version: int, expect: tuple[int, int], reader_config: NodeConfig
) -> None:
    disk = SimDisk()
    writer = opened(disk, NodeConfig(header_version=version))
    apply_from(writer, LOG[:SNAP], 1)
    persist(writer)
    token = Token.decode(disk.read(POINTER))
    assert disk.read(f"{SNAP_DIR}/{token.file}")[:4] == b"RSH" + bytes([version])
    node = restart(disk, reader_config)
    result = node.open()
    assert result.outcome == ("skipped" if reader_config.reader else "fallback")
    assert node.hlc() == expect


@pytest.mark.req("HV-008")
@pytest.mark.parametrize("version", [0, 3, 99, 255])
def test_unknown_header_version_fails_closed_in_parse_header(version: int) -> None:
    payload = b"RSH" + bytes([version]) + b"\x00" * 32
    with pytest.raises(HeaderError) as info:
        parse_header(payload)
    assert info.value.code == "bad_header"
    assert f"version {version}" in info.value.message
    with pytest.raises(HeaderError):
        encode_header(Header(), version)


@pytest.mark.req("HV-008")
@pytest.mark.parametrize("payload", [b"", b"RS", b"XSH\x02" + b"\x00" * 16, b"RSH\x01\x00",
                                     b"RSH\x02" + b"\x00" * 8],
                         ids=["empty", "short", "bad-magic", "v1-truncated", "v2-truncated"])
def test_malformed_header_fails_closed(payload: bytes) -> None:
    with pytest.raises(HeaderError):
        parse_header(payload)


@pytest.mark.req("HV-008")
@pytest.mark.parametrize("config", [NodeConfig(), NodeConfig(reader=False)], ids=["skip", "restore"])
def test_unknown_header_version_tamper_fails_open_without_side_effect(config: NodeConfig) -> None:
    disk = fresh_skip_disk()
    restart(disk).tamper("unknown_header_version")
    before = _durable_files(disk)
    node = restart(disk, config)
    with pytest.raises(HeaderError) as info:
        node.open()
    assert info.value.code == "bad_header" and "version 99" in info.value.message
    _assert_failed_open_had_no_side_effect(node, disk, before)


@pytest.mark.req("CO-004", "HV-005")
@pytest.mark.parametrize("config", [NodeConfig(), NodeConfig(reader=False)], ids=["skip", "restore"])
def test_a_pointer_to_a_missing_file_fails_open_with_a_typed_error(config: NodeConfig) -> None:
    """What a node that removed the snapshot too early (CO-004) leaves behind: `open` must
    say so (snapshot_verify / missing) rather than die, and a tamper hook must refuse."""
    disk = fresh_skip_disk()
    token = Token.decode(disk.read(POINTER))
    disk.remove(f"{SNAP_DIR}/{token.file}")
    with pytest.raises(SnapshotError, match="does not exist"):
        restart(disk).tamper("flip_body_byte")
    before = _durable_files(disk)
    node = restart(disk, config)
    with pytest.raises(SnapshotVerifyError) as info:
        node.open()
    assert info.value.kind == "missing" and token.file in info.value.message
    assert info.value.to_wire()["kind"] == "missing"
    _assert_failed_open_had_no_side_effect(node, disk, before)


# -- C7: install_snapshot ---------------------------------------------------------------------------


ROWS = [["x", "10", 50], ["y", "20", 51]]


@pytest.mark.req("CS-010", "ST-011")
def test_install_snapshot_leaves_meta_absent_and_next_cold_start_falls_back() -> None:
    disk = SimDisk()
    node = opened(disk)
    apply_from(node, [add("c", 1, 1), add("c", 1, 2), add("c", 1, 3)], 1)
    assert node.install_snapshot(10, 700, 4, ROWS) == 10
    assert node.last_applied_index() == (0, False)
    assert node.scan("") == [("x", "10"), ("y", "20")]
    assert node.hlc() == (700, 4)
    assert Token.decode(disk.read(POINTER)).index == 10
    assert node.trace[-2:] == [("restore", 10), ("compact", 10)]
    again = restart(disk)
    result = again.open()
    assert (result.outcome, result.reason, result.effective) == ("fallback", "missing_meta", 10)
    assert again.scan("") == [("x", "10"), ("y", "20")]
    assert again.hlc() == (700, 4)
    assert again.apply(11, add("x", 1, 60)).result == "ok"
    assert again.get("x") == "11"


@pytest.mark.req("CS-011", "CS-010")
def test_install_snapshot_with_pin_after_restore_pins_meta_to_index() -> None:
    disk = SimDisk()
    config = NodeConfig(pin_after_restore=True)
    node = opened(disk, config)
    apply_from(node, [add("c", 1, 1)], 1)
    node.install_snapshot(10, 700, 4, ROWS)
    assert node.last_applied_index() == (10, True)
    again = restart(disk, config)
    result = again.open()
    assert (result.outcome, result.have, result.snap, result.effective) == ("skipped", 10, 10, 10)
    assert again.scan("") == [("x", "10"), ("y", "20")]


@pytest.mark.req("CS-011")
def test_cold_start_restore_with_pin_after_restore_lets_the_next_start_skip() -> None:
    disk = stale_meta_disk()
    config = NodeConfig(pin_after_restore=True)
    first = restart(disk, config)
    assert first.open().outcome == "executed"
    assert first.last_applied_index() == (5, True)
    second = restart(disk, config)
    assert second.open().outcome == "skipped"


@pytest.mark.req("CO-003", "CS-012")
@pytest.mark.parametrize("mode", [PowerLossMode.KEEP_ALL, PowerLossMode.DROP_ALL, PowerLossMode.TORN_LAST])
@pytest.mark.parametrize("pin_after_restore", [False, True], ids=["plain", "pin-after-restore"])
def test_crash_mid_install_leaves_old_store_intact(mode: PowerLossMode, pin_after_restore: bool) -> None:
    disk = SimDisk(seed=3)
    config = NodeConfig(pin_after_restore=pin_after_restore)
    node = opened(disk, config)
    apply_from(node, [add("c", 1, 1), put("a", "x", 2), add("c", 1, 3)], 1)
    node.failpoints.arm("mid_restore", "crash")
    with pytest.raises(SimulatedCrash):
        node.install_snapshot(10, 700, 4, ROWS)
    assert node.dead
    disk.power_loss(mode)
    old = Store(disk.clone(), sync=True)
    assert old.scan("") == [("a", "x"), ("c", "2")]
    assert old.last_applied_index() == (3, True)  # CS-012: never >= 10 with the old data
    again = restart(disk, config)
    result = again.open()
    assert (result.outcome, result.have, result.snap, result.effective) == ("executed", 3, 10, 10)
    assert again.scan("") == [("x", "10"), ("y", "20")]
    assert again.hlc() == (700, 4)


@pytest.mark.req("CO-003", "CS-012")
@pytest.mark.parametrize("mode", [PowerLossMode.KEEP_ALL, PowerLossMode.DROP_ALL])
@pytest.mark.parametrize("pin_after_restore", [False, True], ids=["plain", "pin-after-restore"])
def test_crash_mid_cold_start_restore_leaves_old_store_intact(
    mode: PowerLossMode, pin_after_restore: bool
) -> None:
    disk = stale_meta_disk()
    config = NodeConfig(pin_after_restore=pin_after_restore)
    store_before = disk.read(STORE_FILE)
    fp = Failpoints()
    fp.arm("mid_restore", "crash")
    node = restart(disk, config, fp)
    with pytest.raises(SimulatedCrash):
        node.open()
    assert node.dead and node.events == []
    with pytest.raises(NotOpenError):
        node.open()
    disk.power_loss(mode)
    assert disk.read(STORE_FILE) == store_before
    assert Store(disk.clone(), sync=True).last_applied_index() == (3, True)
    again = restart(disk, config)
    result = again.open()
    assert (result.outcome, result.effective) == ("executed", 5)
    assert (again.get("a"), again.get("c")) == ("x", "2")
