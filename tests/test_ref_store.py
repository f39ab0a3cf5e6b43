"""Unit tests of the reference store (reference_impl/store.py): the applied-index seam.

Covers the store peer tests of BRIEF §9 by behaviour (S1-S7, M1/M2 at the store level).
The on-disk record format is decoded here independently of the store's own parser, so
"data and meta in the same atomic record" is checked on the bytes, not on the store's
word for it.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

import crc32c as crc32c_lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.disk import OSDisk, PowerLossMode, SimDisk
from reference_impl.entries import parse_entry
from reference_impl.errors import StoreReadError
from reference_impl.failpoints import Failpoints
from reference_impl.fsm import FSM
from reference_impl.store import META_APPLIED_INDEX, STORE_FILE, Batch, Store

U64_MAX = 2**64 - 1


# -- helpers -------------------------------------------------------------------------------


def puts(ts: int, pairs: dict[str, str | None]) -> Batch:
    return Batch(versions=[(k, ts, v) for k, v in pairs.items()])


def records(disk: SimDisk | OSDisk) -> list[tuple[int, int, dict[str, Any]]]:
    """(start, end, decoded payload) of every intact frame of the store file.

    Frame = length:u32 || crc32c(payload):u32 || payload (little-endian), stop at the first
    bad frame: the format the store documents, parsed without the store's code.
    """
    data = disk.read(STORE_FILE)
    out = []
    off = 0
    while off + 8 <= len(data):
        length, crc = struct.unpack_from("<II", data, off)
        end = off + 8 + length
        payload = data[off + 8:end]
        if end > len(data) or crc32c_lib.crc32c(payload) != crc:
            break
        out.append((off, end, json.loads(payload)))
        off = end
    return out


def meta_of(record: dict[str, Any]) -> int | None:
    raw = record.get("m", {}).get(META_APPLIED_INDEX)
    return None if raw is None else int(raw, 16)


def reopen(disk: SimDisk | OSDisk, sync: bool = True) -> Store:
    return Store(disk, sync=sync)


def fsyncs(disk: SimDisk | OSDisk) -> tuple[int, int]:
    return disk.stats.fsyncs, disk.stats.dir_fsyncs


def txn(start: int, commit: int, ops: list[dict[str, Any]], reads: list[str] | None = None) -> Any:
    raw: dict[str, Any] = {"kind": "txn", "start_ts": start, "commit_ts": commit, "ops": ops}
    if reads:
        raw["reads"] = reads
    return parse_entry(raw)


def put(k: str, v: str) -> dict[str, Any]:
    return {"op": "put", "key": k, "value": v}


# -- S1: the reader ------------------------------------------------------------------------


@pytest.mark.req("ST-001")
def test_missing_meta_key_reads_as_zero_not_present() -> None:
    store = Store(SimDisk(), sync=True)
    assert store.last_applied_index() == (0, False)


@pytest.mark.req("ST-001", "ST-007")
def test_missing_meta_key_stays_absent_after_direct_writes_and_reopen() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(5, {"a": "1"}), 0)
    store.delete_prefix("a", None, 6, 0)
    assert store.last_applied_index() == (0, False)
    assert reopen(disk).last_applied_index() == (0, False)


@pytest.mark.req("ST-002")
@pytest.mark.parametrize("raw", [b"", b"\x00\x2a", b"\x01" * 7, b"\x01" * 9, b"\xff" * 16],
                         ids=["0-bytes", "2-bytes", "7-bytes", "9-bytes", "16-bytes"])
def test_last_applied_index_corrupt_value_reads_as_not_present(raw: bytes) -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(1, {"a": "1"}), 4)
    store.write_meta_raw(raw)
    assert store.meta_raw() == raw
    assert store.last_applied_index() == (0, False)
    again = reopen(disk)
    assert again.last_applied_index() == (0, False)
    # A torn value is "absent": the next pin writes whatever index it is given.
    assert again.set_durable_applied_index(2) is True
    assert again.last_applied_index() == (2, True)


@pytest.mark.req("ST-003")
def test_reader_failure_raises_store_read_error_not_absent() -> None:
    fp = Failpoints()
    store = Store(SimDisk(), sync=True, failpoints=fp)
    store.apply_mutations(puts(1, {"a": "1"}), 3)
    fp.arm("reader", "error")
    with pytest.raises(StoreReadError) as info:
        store.last_applied_index()
    assert type(info.value) is StoreReadError
    assert info.value.code == "read_error"
    assert META_APPLIED_INDEX in info.value.message
    # One-shot: the next read works and the value was never touched.
    assert store.last_applied_index() == (3, True)


# -- S6: the writer ------------------------------------------------------------------------


@pytest.mark.req("ST-012")
@pytest.mark.parametrize("value", [1, 0xDEADBEEFCAFEF00D, U64_MAX], ids=hex)
def test_set_durable_applied_index_round_trip(value: int) -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    assert store.set_durable_applied_index(value) is True
    assert store.last_applied_index() == (value, True)
    assert store.meta_raw() == value.to_bytes(8, "big")
    assert reopen(disk).last_applied_index() == (value, True)


@pytest.mark.req("ST-012", "SP-005")
def test_set_durable_applied_index_monotonic() -> None:
    store = Store(SimDisk(), sync=True)
    assert store.set_durable_applied_index(10) is True
    assert store.set_durable_applied_index(5) is False
    assert store.last_applied_index() == (10, True)
    assert store.set_durable_applied_index(10) is False
    assert store.last_applied_index() == (10, True)
    assert store.set_durable_applied_index(11) is True
    assert store.last_applied_index() == (11, True)


@pytest.mark.req("ST-012")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, U64_MAX) | st.integers(0, 20), min_size=1, max_size=12))
def test_set_durable_applied_index_advances_only_forward(values: list[int]) -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    best: int | None = None
    for v in values:
        written = store.set_durable_applied_index(v)
        assert written is (best is None or v > best)
        best = v if best is None else max(best, v)
        assert store.last_applied_index() == (best, True)
    assert reopen(disk).last_applied_index() == (best, True)


@pytest.mark.req("DM-004", "ST-012")
def test_set_durable_applied_index_uses_sync_survives_power_loss_when_unsynced() -> None:
    disk = SimDisk(seed=1)
    store = Store(disk, sync=False)
    for i in (1, 2, 3):
        store.apply_mutations(puts(i, {f"k{i}": str(i)}), i)
    assert store.set_durable_applied_index(0xDEADBEEFCAFEF00D) is True
    disk.power_loss(PowerLossMode.DROP_ALL)
    after = reopen(disk, sync=False)
    assert after.last_applied_index() == (0xDEADBEEFCAFEF00D, True)
    # The pin's fsync covers the whole log: the unsynced batches before it survive too.
    assert after.scan("k") == [("k1", "1"), ("k2", "2"), ("k3", "3")]


@pytest.mark.req("DM-002", "DM-004")
def test_unsynced_applies_without_a_pin_are_lost_whole_on_drop_all() -> None:
    # The control for the test above: without the pin these batches are not durable.
    disk = SimDisk(seed=1)
    store = Store(disk, sync=False)
    store.apply_mutations(puts(1, {"k1": "1"}), 1)
    disk.power_loss(PowerLossMode.DROP_ALL)
    after = reopen(disk, sync=False)
    assert after.last_applied_index() == (0, False)
    assert after.scan("") == []


@pytest.mark.req("DM-004", "ST-012")
def test_no_op_pin_still_syncs_so_unsynced_meta_above_it_survives_power_loss() -> None:
    # set_durable_applied_index's docstring: even a value no-op fsyncs, because in
    # unsynced mode the stored (higher) value and the data it covers may exist only in
    # OS buffers, and the pin is what makes them durable before the pointer is saved.
    disk = SimDisk(seed=2)
    store = Store(disk, sync=False)
    store.apply_mutations(puts(9, {"a": "9"}), 9)
    assert store.set_durable_applied_index(5) is False
    disk.power_loss(PowerLossMode.DROP_ALL)
    after = reopen(disk, sync=False)
    assert after.last_applied_index() == (9, True)
    assert after.get("a") == "9"


@pytest.mark.req("DM-003", "ST-012")
@pytest.mark.parametrize("sync", [False, True], ids=["unsynced", "synced"])
def test_set_durable_applied_index_survives_close_and_reopen_on_osdisk(tmp_path: Path, sync: bool) -> None:
    disk = OSDisk(tmp_path)
    store = Store(disk, sync=sync)
    store.apply_mutations(puts(1, {"a": "1"}), 1)
    before = fsyncs(disk)
    assert store.set_durable_applied_index(0xDEADBEEFCAFEF00D) is True
    assert fsyncs(disk) == (before[0] + 1, before[1])
    disk.close()
    again = Store(OSDisk(tmp_path), sync=sync)
    assert again.last_applied_index() == (0xDEADBEEFCAFEF00D, True)
    assert again.get("a") == "1"


# -- S2/S3/S4: bundling ----------------------------------------------------------------------


@pytest.mark.req("ST-004", "ST-005")
def test_apply_mutations_raft_at_bundles_meta_applied_index() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(3, {"a": "1", "b": "2", "c": None}), 7)
    assert store.get("a") == "1" and store.get("b") == "2" and store.get("c") is None
    assert store.last_applied_index() == (7, True)
    # On disk: one record holding the data AND the meta key.
    [(_, _, rec)] = records(disk)
    assert sorted(map(tuple, rec["v"])) == [("a", 3, "1"), ("b", 3, "2"), ("c", 3, None)]
    assert meta_of(rec) == 7
    again = reopen(disk)
    assert again.last_applied_index() == (7, True)
    assert again.scan("") == [("a", "1"), ("b", "2")]


@pytest.mark.req("ST-007")
def test_apply_mutations_zero_index_leaves_meta_key() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(1, {"a": "1"}), 0)
    assert store.last_applied_index() == (0, False)
    assert store.meta_raw() is None
    store.apply_mutations(puts(2, {"a": "2"}), 4)
    stored = store.meta_raw()
    store.apply_mutations(puts(3, {"a": "3", "b": "x"}), 0)
    store.delete_prefix("b", None, 4, 0)
    assert store.meta_raw() == stored
    assert store.get("a") == "3" and store.get("b") is None
    assert all(meta_of(rec) is None for _, _, rec in records(disk)[2:])
    assert reopen(disk).last_applied_index() == (4, True)


@pytest.mark.req("ST-008", "EN-004")
def test_delete_prefix_at_raft_at_bundles_meta_applied_index_and_honours_exclude() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(1, {"a/1": "x", "a/2": "y", "a/keep/1": "z", "ab": "w", "b/1": "v"}), 1)
    deleted = store.delete_prefix("a/", "a/keep/", 2, 9)
    assert deleted == 2
    assert store.scan("") == [("a/keep/1", "z"), ("ab", "w"), ("b/1", "v")]
    assert store.last_applied_index() == (9, True)
    rec = records(disk)[-1][2]
    assert sorted(map(tuple, rec["v"])) == [("a/1", 2, None), ("a/2", 2, None)]
    assert meta_of(rec) == 9
    # A delete-prefix matching nothing still records its index (a meta-only batch).
    assert store.delete_prefix("zzz/", None, 3, 10) == 0
    assert store.last_applied_index() == (10, True)
    assert meta_of(records(disk)[-1][2]) == 10
    again = reopen(disk)
    assert again.scan("") == [("a/keep/1", "z"), ("ab", "w"), ("b/1", "v")]
    assert again.last_applied_index() == (10, True)


@pytest.mark.req("ST-010", "ST-009")
@pytest.mark.parametrize("prefix", ["", "_", "_meta", META_APPLIED_INDEX])
def test_delete_prefix_never_removes_meta_key(prefix: str) -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(1, {"a": "1", META_APPLIED_INDEX: "user value"}), 6)
    store.delete_prefix(prefix, None, 2, 0)
    assert store.last_applied_index() == (6, True)
    assert store.delete_prefix(prefix, None, 3, 7) >= 0
    assert store.last_applied_index() == (7, True)
    assert reopen(disk).last_applied_index() == (7, True)


# -- S2/M2: atomicity under power loss -------------------------------------------------------


@pytest.mark.req("ST-005", "DM-002")
@pytest.mark.parametrize("mode", [PowerLossMode.TORN_LAST, PowerLossMode.RANDOM_PREFIX])
def test_power_loss_never_shows_data_without_meta_or_meta_without_data(mode: PowerLossMode) -> None:
    seen_partial = seen_torn = 0
    for seed in range(300):
        rng = random.Random(seed)
        disk = SimDisk(seed=seed)
        store = Store(disk, sync=False)
        n = rng.randint(1, 8)
        synced_floor = 0
        for i in range(1, n + 1):
            if rng.random() < 0.3:
                # a delete-prefix batch: removes the previous entry's keys, writes meta
                store.delete_prefix(f"e{i - 1}/", None, i, i)
            else:
                store.apply_mutations(
                    puts(i, {f"e{i}/a": str(i), f"e{i}/b": str(i), "last": str(i)}), i)
            if rng.random() < 0.2:
                store.set_durable_applied_index(i)  # a synced pin: a floor for recovery
                synced_floor = i
        disk.power_loss(mode)
        after = Store(disk, sync=False)
        seen_torn += after.recovery.truncated_bytes > 0
        index, present = after.last_applied_index()
        m = index if present else 0
        assert synced_floor <= m <= n, (seed, synced_floor, m, n)
        seen_partial += synced_floor < m < n
        # Replaying exactly batches 1..m on a fresh store must give the same user state.
        expect = Store(SimDisk(), sync=True)
        rng2 = random.Random(seed)
        rng2.randint(1, 8)
        for i in range(1, m + 1):
            if rng2.random() < 0.3:
                expect.delete_prefix(f"e{i - 1}/", None, i, i)
            else:
                expect.apply_mutations(
                    puts(i, {f"e{i}/a": str(i), f"e{i}/b": str(i), "last": str(i)}), i)
            rng2.random()
        assert after.export_state() == expect.export_state(), (seed, m)
        # And every intact record carries data and meta together.
        for _, _, rec in records(disk):
            assert meta_of(rec) is not None
    assert seen_partial > 10, "the seeds never produced a partially surviving log"
    if mode is PowerLossMode.TORN_LAST:
        assert seen_torn > 10, "the seeds never produced a torn record"


@pytest.mark.req("ST-005", "DM-002")
def test_recovery_stops_at_first_bad_record_and_truncates() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    for i in (1, 2, 3):
        store.apply_mutations(puts(i, {f"k{i}": str(i)}), i)
    frames = records(disk)
    assert len(frames) == 3
    (_, end1, _), (start2, end2, _), _ = frames
    data = bytearray(disk.read(STORE_FILE))
    data[(start2 + 8 + end2) // 2] ^= 0x01  # a byte in the middle record's payload
    disk.write(STORE_FILE, bytes(data))
    disk.fsync(STORE_FILE)

    after = reopen(disk)
    assert after.recovery.records == 1
    assert after.recovery.truncated_bytes == len(data) - end1
    assert disk.size(STORE_FILE) == end1
    # The third record was intact, but nothing after the first bad one is trusted.
    assert after.scan("") == [("k1", "1")]
    assert after.last_applied_index() == (1, True)
    # Appends continue after the last good record.
    after.apply_mutations(puts(2, {"k2": "two"}), 2)
    again = reopen(disk)
    assert again.recovery == type(again.recovery)(records=2, truncated_bytes=0)
    assert again.scan("") == [("k1", "1"), ("k2", "two")]
    assert again.last_applied_index() == (2, True)


# -- S5: the meta namespace ------------------------------------------------------------------


@pytest.mark.req("ST-009", "ST-011")
def test_meta_keys_never_appear_in_get_scan_or_export_state() -> None:
    store = Store(SimDisk(), sync=True)
    store.apply_mutations(puts(1, {"a": "1", "_m": "2"}), 5)
    store.set_durable_applied_index(8)
    assert store.get(META_APPLIED_INDEX) is None
    assert store.scan("") == [("_m", "2"), ("a", "1")]
    assert store.scan("_meta") == []
    assert store.user_keys("") == ["_m", "a"]
    state = store.export_state()
    assert META_APPLIED_INDEX not in json.dumps(state)
    assert set(state["versions"]) == {"_m", "a"}


@pytest.mark.req("ST-009", "ST-011")
def test_user_key_named_like_the_meta_key_is_a_separate_user_key() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    store.apply_mutations(puts(1, {META_APPLIED_INDEX: "hello"}), 3)
    assert store.get(META_APPLIED_INDEX) == "hello"
    assert store.last_applied_index() == (3, True)
    assert store.export_state()["versions"] == {META_APPLIED_INDEX: [[1, "hello"]]}
    again = reopen(disk)
    assert again.get(META_APPLIED_INDEX) == "hello"
    assert again.last_applied_index() == (3, True)


# -- S6: fsync costs -----------------------------------------------------------------------


@pytest.mark.req("ST-006", "DM-001")
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "unsynced"])
def test_fsyncs_exactly_one_per_synced_batch_and_none_unsynced(sync: bool) -> None:
    disk = SimDisk()
    store = Store(disk, sync=sync)
    per_batch = 1 if sync else 0
    for index, call in [
        (0, lambda i: store.apply_mutations(puts(1, {"a": "1"}), i)),
        (1, lambda i: store.apply_mutations(puts(2, {"a": "2", "b": "2"}), i)),
        (2, lambda i: store.delete_prefix("b", None, 3, i)),
        (3, lambda i: store.delete_prefix("nothing", None, 4, i)),
    ]:
        before = fsyncs(disk)
        call(index)
        assert fsyncs(disk) == (before[0] + per_batch, before[1]), index


@pytest.mark.req("ST-006")
def test_bundling_the_meta_key_adds_no_fsync() -> None:
    plain, bundled = SimDisk(), SimDisk()
    a, b = Store(plain, sync=True), Store(bundled, sync=True)
    for i in range(1, 6):
        a.apply_mutations(puts(i, {"k": str(i)}), 0)
        b.apply_mutations(puts(i, {"k": str(i)}), i)
    assert fsyncs(plain) == fsyncs(bundled)


@pytest.mark.req("DM-004", "ST-006")
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "unsynced"])
def test_set_durable_applied_index_is_exactly_one_fsync_even_as_a_value_no_op(sync: bool) -> None:
    disk = SimDisk()
    store = Store(disk, sync=sync)
    store.apply_mutations(puts(1, {"a": "1"}), 7)
    for value, written in [(9, True), (9, False), (3, False), (10, True)]:
        before = fsyncs(disk)
        assert store.set_durable_applied_index(value) is written
        assert fsyncs(disk) == (before[0] + 1, before[1]), value


# -- S7: re-applying landed entries (through the FSM) -----------------------------------------


@pytest.mark.req("ST-013")
def test_reapplying_a_raw_put_rewrites_the_same_cell() -> None:
    store = Store(SimDisk(), sync=True)
    fsm = FSM(store)
    entry = parse_entry({"kind": "raw", "ts": 4, "ops": [put("a", "1")]})
    assert fsm.apply(entry, 1).result == "ok"
    assert fsm.apply(entry, 2).result == "ok"
    assert store.versions("a") == [(4, "1")]
    assert store.last_applied_index() == (2, True)


@pytest.mark.req("ST-014", "ST-013")
def test_already_landed_advances_stale_applied_index() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    fsm = FSM(store)
    assert fsm.apply(parse_entry({"kind": "raw", "ts": 1, "ops": [put("z", "0")]}), 3).result == "ok"
    # The transaction's writes landed (as a direct write at its commit_ts), meta is stale (3).
    store.apply_mutations(puts(10, {"a": "x", "b": "y"}), 0)
    size = disk.size(STORE_FILE)
    out = fsm.apply(txn(5, 10, [put("a", "x"), put("b", "y")]), 4)
    assert (out.result, out.wrote) == ("already_landed", True)
    assert store.last_applied_index() == (4, True)
    assert store.versions("a") == [(10, "x")] and store.versions("b") == [(10, "y")]
    # The one new record is meta-only: the data was not rewritten.
    [(_, _, rec)] = [r for r in records(disk) if r[0] >= size]
    assert "v" not in rec and meta_of(rec) == 4


@pytest.mark.req("ST-015", "EN-003")
def test_already_landed_requires_every_mutation_key() -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    fsm = FSM(store)
    store.apply_mutations(puts(10, {"a": "x"}), 3)  # only a landed; b never did
    size, state = disk.size(STORE_FILE), store.export_state()
    out = fsm.apply(txn(5, 10, [put("a", "x"), put("b", "y")]), 4)
    assert (out.result, out.wrote) == ("conflict", False)
    assert store.get("b") is None
    assert store.last_applied_index() == (3, True)
    assert disk.size(STORE_FILE) == size and store.export_state() == state


def _newer_on_b(store: Store, fsm: FSM) -> None:
    store.apply_mutations(puts(10, {"a": "x"}), 0)
    store.apply_mutations(puts(12, {"b": "other"}), 0)


def _both_landed_then_newer_on_b(store: Store, fsm: FSM) -> None:
    store.apply_mutations(puts(10, {"a": "x", "b": "y"}), 0)
    store.apply_mutations(puts(12, {"b": "other"}), 0)


def _newer_on_a_read_key(store: Store, fsm: FSM) -> None:
    store.apply_mutations(puts(10, {"a": "x", "b": "y"}), 0)
    store.apply_mutations(puts(11, {"r": "other"}), 0)


def _locked_by_another_txn(store: Store, fsm: FSM) -> None:
    store.apply_mutations(puts(10, {"a": "x", "b": "y"}), 0)
    prep = parse_entry({"kind": "prepare", "txn": "t2", "start_ts": 10, "ops": [put("b", "q")]})
    assert fsm.apply(prep, 0).result == "ok"


@pytest.mark.req("ST-015", "EN-003", "EN-002")
@pytest.mark.parametrize("setup", [_newer_on_b, _both_landed_then_newer_on_b, _newer_on_a_read_key,
                                   _locked_by_another_txn],
                         ids=["newer-commit-on-b", "landed-then-newer-on-b", "newer-read-key",
                              "locked-by-another-txn"])
def test_already_landed_fast_path_does_not_hide_conflict(setup: Any) -> None:
    disk = SimDisk()
    store = Store(disk, sync=True)
    fsm = FSM(store)
    store.apply_mutations(puts(1, {"z": "0"}), 3)
    setup(store, fsm)
    size, state = disk.size(STORE_FILE), store.export_state()
    out = fsm.apply(txn(5, 10, [put("a", "x"), put("b", "y")], reads=["r"]), 4)
    assert (out.result, out.wrote) == ("conflict", False)
    assert store.last_applied_index() == (3, True)
    assert disk.size(STORE_FILE) == size and store.export_state() == state
