"""Unit tests of the reference node's rejections: every bad call gets a typed error.

For each rejected call: the exact error class, its stable `.code`, a message naming the
offending field, and no state change (user state digest, next expected index, meta key,
HLC state and every durable file byte-for-byte). Then the node must accept the next valid
call (BI-007).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from reference_impl.disk import SimDisk
from reference_impl.entries import MAX_KEY_BYTES, MAX_VALUE_BYTES
from reference_impl.errors import (
    AlreadyOpenError,
    BadRequestError,
    CapabilityError,
    EntryError,
    HeaderError,
    IndexOrderError,
    LimitError,
    NodeError,
    NotOpenError,
    SimulatedCrash,
    SnapshotError,
    SnapshotVerifyError,
    StaleSnapshotError,
    UnknownSnapshotError,
)
from reference_impl.failpoints import ALL_POINTS, Failpoints
from reference_impl.node import TAMPER_KINDS, Node, NodeConfig
from reference_impl.server import Server

MIB = 1024 * 1024
assert (MAX_KEY_BYTES, MAX_VALUE_BYTES) == (1024, MIB)

# -- entries --------------------------------------------------------------------------------

P = {"op": "put", "key": "k", "value": "v"}


def raw(*ops: Any, ts: Any = 10) -> dict[str, Any]:
    return {"kind": "raw", "ts": ts, "ops": list(ops)}


def put(key: Any, value: Any = "v") -> dict[str, Any]:
    return {"op": "put", "key": key, "value": value}


def add(key: Any, delta: Any) -> dict[str, Any]:
    return {"op": "add", "key": key, "delta": delta}


def txn(start: Any, commit: Any, *ops: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": "txn", "start_ts": start, "commit_ts": commit, "ops": list(ops) or [P], **extra}


def dp(prefix: Any, exclude: Any = None, ts: Any = 10) -> dict[str, Any]:
    return {"kind": "delete_prefix", "prefix": prefix, "exclude": exclude, "ts": ts}


# -- plumbing -------------------------------------------------------------------------------


def disk_files(disk: SimDisk, root: str = "") -> dict[str, bytes]:
    """Every file on the disk with its content (directories walked)."""
    out: dict[str, bytes] = {}
    for name in disk.listdir(root):
        path = f"{root}/{name}" if root else name
        try:
            out.update(disk_files(disk, path))
        except NotADirectoryError:
            out[path] = disk.read(path)
    return out


def observe(node: Node) -> dict[str, Any]:
    return {
        "digest": node.digest(),
        "scan": node.scan(""),
        "applied": node.applied,
        "meta": node.last_applied_index(),
        "hlc": node.hlc(),
        "files": disk_files(node.disk),  # type: ignore[arg-type]
    }


@pytest.fixture
def node() -> Node:
    """An open node with data, header state and a persisted snapshot; applied index 5."""
    n = Node(SimDisk(seed=5))
    n.open()
    n.apply(1, raw(put("a", "1"), add("n", 5), ts=1))
    n.apply(2, {"kind": "hlc_lease", "ceiling": 90})
    n.apply(3, {"kind": "control", "opcode": "cutover", "value": 4})
    sid, _ = n.snapshot_begin()
    n.snapshot_persist(sid, "local")
    n.apply(4, raw(put("b", "2"), ts=4))
    n.apply(5, {"kind": "noop"})
    return n


def assert_rejected(exc: BaseException, cls: type[NodeError], code: str, field: str) -> None:
    assert type(exc) is cls, f"{type(exc).__name__} is not {cls.__name__}: {exc}"
    assert isinstance(exc, NodeError)
    assert exc.code == code == cls.code
    assert exc.to_wire()["code"] == code
    assert field in exc.message, f"{field!r} not named in {exc.message!r}"


def assert_usable(node: Node) -> None:
    nxt = node.applied + 1
    assert node.apply(nxt, raw(add("n", 1), ts=100 + nxt)).result == "ok"
    assert node.last_applied_index() == (nxt, True)


E, L = EntryError, LimitError
BAD_ENTRIES: list[tuple[str, object, type[NodeError], str]] = [
    # unknown or missing kinds, not an object
    ("unknown-kind", {"kind": "bogus"}, E, "kind 'bogus'"),
    ("kind-wrong-case", {"kind": "RAW", "ts": 1, "ops": [P]}, E, "kind 'RAW'"),
    ("kind-missing", {"ts": 1, "ops": [P]}, E, "kind"),
    ("kind-not-string", {"kind": 7}, E, "kind 7"),
    ("entry-is-list", ["raw"], E, "entry"),
    ("entry-is-string", "noop", E, "entry"),
    ("entry-is-none", None, E, "entry"),
    ("unexpected-field", {"kind": "noop", "extra": 1}, E, "extra"),
    ("unexpected-field-raw", {**raw(P), "start_ts": 1}, E, "start_ts"),
    # malformed ops
    ("ops-missing", {"kind": "raw", "ts": 1}, E, "raw.ops"),
    ("ops-not-list", {"kind": "raw", "ts": 1, "ops": "put"}, E, "raw.ops"),
    ("ops-is-object", {"kind": "raw", "ts": 1, "ops": P}, E, "raw.ops"),
    ("ops-empty", raw(), E, "raw.ops"),
    ("op-not-object", raw(5), E, "raw.ops[0]"),
    ("op-unknown", raw({"op": "mul", "key": "k"}), E, "raw.ops[0].op"),
    ("op-name-missing", raw({"key": "k", "value": "v"}), E, "raw.ops[0].op"),
    ("put-value-missing", raw({"op": "put", "key": "k"}), E, "raw.ops[0].value"),
    ("put-value-int", raw(put("k", 5)), E, "raw.ops[0].value"),
    ("put-value-none", raw(put("k", None)), E, "raw.ops[0].value"),
    ("key-missing", raw({"op": "del"}), E, "raw.ops[0].key"),
    ("key-int", raw({"op": "del", "key": 5}), E, "raw.ops[0].key"),
    ("second-op-bad", raw(P, put("x", 1)), E, "raw.ops[1].value"),
    ("txn-ops-bad", txn(1, 2, {"op": "put"}), E, "txn.ops[0].key"),
    ("prepare-ops-empty", {"kind": "prepare", "txn": "t", "start_ts": 1, "ops": []}, E, "prepare.ops"),
    # timestamps
    ("ts-missing", {"kind": "raw", "ops": [P]}, E, "raw.ts"),
    ("ts-negative", raw(P, ts=-1), E, "raw.ts"),
    ("ts-bool", raw(P, ts=True), E, "raw.ts"),
    ("ts-float", raw(P, ts=1.0), E, "raw.ts"),
    ("ts-string", raw(P, ts="1"), E, "raw.ts"),
    ("ts-2^64", raw(P, ts=2**64), E, "raw.ts"),
    ("txn-start-equals-commit", txn(5, 5), E, "start_ts (5) must be < commit_ts (5)"),
    ("txn-start-after-commit", txn(6, 5), E, "start_ts (6) must be < commit_ts (5)"),
    ("txn-commit-zero", txn(0, 0), E, "txn.commit_ts"),
    ("txn-start-negative", txn(-1, 5), E, "txn.start_ts"),
    ("txn-reads-not-list", txn(1, 2, reads="k"), E, "txn.reads"),
    ("txn-read-key-int", txn(1, 2, reads=["k", 5]), E, "txn.reads[1]"),
    ("delete-prefix-ts-negative", dp("a", ts=-5), E, "delete_prefix.ts"),
    ("commit-ts-zero", {"kind": "commit", "txn": "t", "commit_ts": 0}, E, "commit.commit_ts"),
    ("prepare-start-missing", {"kind": "prepare", "txn": "t", "ops": [P]}, E, "prepare.start_ts"),
    # other kinds' fields
    ("delete-prefix-prefix-missing", {"kind": "delete_prefix", "ts": 1}, E, "delete_prefix.prefix"),
    ("delete-prefix-exclude-int", dp("a", 5), E, "delete_prefix.exclude"),
    ("prepare-txn-empty", {"kind": "prepare", "txn": "", "start_ts": 1, "ops": [P]}, E, "prepare.txn"),
    ("commit-txn-missing", {"kind": "commit", "commit_ts": 3}, E, "commit.txn"),
    ("abort-txn-int", {"kind": "abort", "txn": 5}, E, "abort.txn"),
    ("lease-negative", {"kind": "hlc_lease", "ceiling": -1}, E, "hlc_lease.ceiling"),
    ("lease-missing", {"kind": "hlc_lease"}, E, "hlc_lease.ceiling"),
    ("lease-2^64", {"kind": "hlc_lease", "ceiling": 2**64}, E, "hlc_lease.ceiling"),
    ("control-opcode-empty", {"kind": "control", "opcode": "", "value": 1}, E, "control.opcode"),
    ("control-value-negative", {"kind": "control", "opcode": "cutover", "value": -1}, E, "control.value"),
    # integer add deltas
    ("delta-missing", raw({"op": "add", "key": "n"}), E, "raw.ops[0].delta"),
    ("delta-string", raw(add("n", "1")), E, "raw.ops[0].delta"),
    ("delta-float", raw(add("n", 1.5)), E, "raw.ops[0].delta"),
    ("delta-bool", raw(add("n", True)), E, "raw.ops[0].delta"),
    ("delta-above-int64", raw(add("n", 2**63)), E, "raw.ops[0].delta"),
    ("delta-below-int64", raw(add("n", -(2**63) - 1)), E, "raw.ops[0].delta"),
    # text that is not valid UTF-8
    ("lone-surrogate-key", raw(put("\ud800")), E, "raw.ops[0].key"),
    ("lone-surrogate-key-del", raw({"op": "del", "key": "a\udfff"}), E, "raw.ops[0].key"),
    ("lone-surrogate-value", raw(put("k", "\udc00")), E, "raw.ops[0].value"),
    ("lone-surrogate-prefix", dp("\ud800"), E, "delete_prefix.prefix"),
    ("lone-surrogate-read", txn(1, 2, reads=["\ud800"]), E, "txn.reads[0]"),
    # size limits
    ("key-1025", raw(put("k" * 1025)), L, "raw.ops[0].key"),
    ("key-1025-utf8", raw(put("é" * 512 + "k")), L, "raw.ops[0].key"),
    ("key-1025-del", raw({"op": "del", "key": "k" * 1025}), L, "raw.ops[0].key"),
    ("key-1025-add", raw(add("k" * 1025, 1)), L, "raw.ops[0].key"),
    ("key-1025-txn-read", txn(1, 2, reads=["k" * 1025]), L, "txn.reads[0]"),
    ("key-1025-prefix", dp("k" * 1025), L, "delete_prefix.prefix"),
    ("key-1025-exclude", dp("k", "k" * 1025), L, "delete_prefix.exclude"),
    ("key-1025-prepare", {"kind": "prepare", "txn": "t", "start_ts": 1, "ops": [put("k" * 1025)]}, L,
     "prepare.ops[0].key"),
    ("value-1MiB+1", raw(put("k", "v" * (MIB + 1))), L, "raw.ops[0].value"),
    ("value-1MiB+1-utf8", raw(put("k", "é" * (MIB // 2) + "v")), L, "raw.ops[0].value"),
    ("value-1MiB+1-txn", txn(1, 2, put("k", "v" * (MIB + 1))), L, "txn.ops[0].value"),
]


def _entry_params() -> list[Any]:
    params = []
    for name, entry, cls, field in BAD_ENTRIES:
        reqs = ["BI-007"]
        if "kind" in name or name.startswith("entry-") or name.startswith("unexpected"):
            reqs.append("BI-001")
        if name.startswith("key-1025") or name.startswith("lone-surrogate-key"):
            reqs.append("BI-004")
        if name.startswith("value-1MiB"):
            reqs.append("BI-005")
        if name.startswith("delta"):
            reqs.append("EN-009")
        params.append(pytest.param(entry, cls, field, id=name, marks=pytest.mark.req(*reqs)))
    return params


# -- entries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_direct_write", [False, True], ids=["raft", "direct"])
@pytest.mark.parametrize(("entry", "cls", "field"), _entry_params())
def test_bad_entry_is_rejected_typed_and_changes_nothing(
    node: Node, entry: object, cls: type[NodeError], field: str, as_direct_write: bool
) -> None:
    before = observe(node)
    index = 0 if as_direct_write else node.applied + 1
    with pytest.raises(NodeError) as info:
        node.apply(index, entry)
    assert_rejected(info.value, cls, cls.code, field)
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("BI-004")
@pytest.mark.parametrize("key", ["k" * 1024, "é" * 512, "\U0001F600" * 256, "é" * 511 + "kk"],
                         ids=["ascii", "2-byte", "4-byte", "mixed"])
def test_key_of_exactly_1024_bytes_is_accepted(node: Node, key: str) -> None:
    assert len(key.encode()) == 1024
    nxt = node.applied + 1
    assert node.apply(nxt, raw(put(key, "v"), put(key, "w"))).result == "ok"
    assert node.get(key) == "w"
    assert node.apply(nxt + 1, dp(key)).result == "ok"
    assert node.get(key) is None
    assert node.last_applied_index() == (nxt + 1, True)


@pytest.mark.req("BI-005")
@pytest.mark.parametrize("value", ["v" * MIB, "é" * (MIB // 2)], ids=["ascii", "2-byte"])
def test_value_of_exactly_one_mib_is_accepted(node: Node, value: str) -> None:
    assert len(value.encode()) == MIB
    nxt = node.applied + 1
    assert node.apply(nxt, raw(put("big", value))).result == "ok"
    assert node.get("big") == value
    assert node.last_applied_index() == (nxt, True)


# -- indexes ------------------------------------------------------------------------------------


@pytest.mark.req("BI-002", "BI-007")
@pytest.mark.parametrize(("index", "words"), [
    (5, "index 5 goes backwards"), (4, "index 4 goes backwards"), (1, "index 1 goes backwards"),
    (7, "index 7 skips ahead"), (100, "index 100 skips ahead"),
])
def test_index_not_last_plus_one_is_rejected(node: Node, index: int, words: str) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.apply(index, raw(add("n", 1)))
    assert_rejected(info.value, IndexOrderError, "bad_index", words)
    assert "the last applied index is 5" in info.value.message
    assert "next entry must be 6" in info.value.message
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("BI-002", "BI-007")
@pytest.mark.parametrize("index", [-1, True, False, "6", 6.0, None, [6]],
                         ids=["negative", "true", "false", "string", "float", "none", "list"])
def test_index_not_a_non_negative_integer_is_rejected(node: Node, index: object) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.apply(index, raw(add("n", 1)))  # type: ignore[arg-type]
    assert_rejected(info.value, IndexOrderError, "bad_index", "index must be a non-negative integer")
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("EN-008", "BI-002", "ST-007")
def test_index_zero_direct_write_is_allowed_any_time() -> None:
    n = Node(SimDisk())
    n.open()
    # before any Raft entry
    assert n.apply(0, raw(put("d", "0"), ts=1)).result == "ok"
    assert (n.applied, n.last_applied_index(), n.get("d")) == (0, (0, False), "0")
    assert n.apply(1, raw(put("r", "1"), ts=2)).result == "ok"
    # between Raft entries, several in a row, every data kind
    for i, entry in enumerate([raw(add("d", 1), ts=3), txn(3, 4, put("t", "x")), dp("r"),
                               {"kind": "prepare", "txn": "p", "start_ts": 4, "ops": [put("q", "1")]},
                               {"kind": "commit", "txn": "p", "commit_ts": 6}]):
        assert n.apply(0, entry).result == "ok", i
        assert (n.applied, n.last_applied_index()) == (1, (1, True))
    assert (n.get("d"), n.get("t"), n.get("r"), n.get("q")) == ("1", "x", None, "1")
    assert n.apply(2, {"kind": "noop"}).result == "ok"
    with pytest.raises(IndexOrderError):
        n.apply(1, {"kind": "noop"})
    # after a snapshot
    sid, _ = n.snapshot_begin()
    n.snapshot_persist(sid, "config")
    assert n.apply(0, raw(put("d", "late"), ts=9)).result == "ok"
    assert (n.applied, n.last_applied_index(), n.get("d")) == (2, (2, True), "late")
    assert n.apply(3, raw(put("e", "3"), ts=10)).result == "ok"


# -- before open, after a crash, open twice --------------------------------------------------------


CALLS: list[tuple[str, Callable[[Node], object]]] = [
    ("apply", lambda n: n.apply(1, raw(P))),
    ("apply-direct", lambda n: n.apply(0, raw(P))),
    ("apply-bad-entry", lambda n: n.apply(1, {"kind": "bogus"})),
    ("get", lambda n: n.get("k")),
    ("scan", lambda n: n.scan("")),
    ("digest", lambda n: n.digest()),
    ("hlc", lambda n: n.hlc()),
    ("snapshot_begin", lambda n: n.snapshot_begin()),
    ("snapshot_persist", lambda n: n.snapshot_persist(1, "local")),
    ("last_applied_index", lambda n: n.last_applied_index()),
    ("set_durable_applied_index", lambda n: n.set_durable_applied_index(1)),
    ("install_snapshot", lambda n: n.install_snapshot(5, 0, 0, [["k", "v", 1]])),
]


@pytest.mark.req("BI-003")
@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[name for name, _ in CALLS])
def test_call_before_open_is_rejected_and_creates_nothing(call: Callable[[Node], object]) -> None:
    disk = SimDisk()
    n = Node(disk)
    with pytest.raises(NodeError) as info:
        call(n)
    assert_rejected(info.value, NotOpenError, "not_open", "open")
    assert disk.listdir("") == []
    assert n.events == [] and n.trace == []
    n.open()  # and the node opens normally afterwards
    assert n.apply(1, raw(P)).result == "ok"


@pytest.mark.req("BI-003")
@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[name for name, _ in CALLS])
def test_call_after_a_crash_is_rejected(node: Node, call: Callable[[Node], object]) -> None:
    node.failpoints.arm("after_batch_commit", "crash")
    with pytest.raises(SimulatedCrash):
        node.apply(node.applied + 1, raw(P))
    files = disk_files(node.disk)  # type: ignore[arg-type]
    with pytest.raises(NodeError) as info:
        call(node)
    assert_rejected(info.value, NotOpenError, "not_open", "crashed")
    with pytest.raises(NotOpenError, match="crashed"):
        node.open()
    assert disk_files(node.disk) == files  # type: ignore[arg-type]


@pytest.mark.req("BI-007")
def test_open_twice_is_rejected(node: Node) -> None:
    before = observe(node)
    events = list(node.events)
    with pytest.raises(NodeError) as info:
        node.open()
    assert_rejected(info.value, AlreadyOpenError, "already_open", "already open")
    assert observe(node) == before and node.events == events
    assert_usable(node)


# -- snapshot API -----------------------------------------------------------------------------------


@pytest.mark.req("BI-007")
@pytest.mark.parametrize("site", ["remote", "", None, "LOCAL", "local "])
def test_unknown_snapshot_site_is_rejected_and_the_snapshot_stays_pending(node: Node, site: object) -> None:
    sid, index = node.snapshot_begin()
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.snapshot_persist(sid, site)  # type: ignore[arg-type]
    assert_rejected(info.value, BadRequestError, "bad_request", f"site {site!r}")
    assert observe(node) == before
    res = node.snapshot_persist(sid, "config")
    assert (res.index, res.pinned) == (index, True)


@pytest.mark.req("BI-007")
@pytest.mark.parametrize("sid", [0, 999, "1", None])
def test_unknown_snapshot_id_is_rejected(node: Node, sid: object) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.snapshot_persist(sid, "local")  # type: ignore[arg-type]
    assert_rejected(info.value, UnknownSnapshotError, "unknown_snapshot", f"id {sid}")
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("BI-007", "ST-012")
@pytest.mark.parametrize("index", [-1, 2**64, True, "7", 7.0, None])
def test_set_durable_applied_index_out_of_range_is_rejected(node: Node, index: object) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.set_durable_applied_index(index)  # type: ignore[arg-type]
    assert_rejected(info.value, BadRequestError, "bad_request", "index must be an unsigned 64-bit integer")
    assert observe(node) == before
    assert node.set_durable_applied_index(2**64 - 1) is True


@pytest.mark.req("BI-007")
def test_capability_calls_on_a_lower_profile_are_rejected() -> None:
    n = Node(SimDisk(), NodeConfig(reader=False, writer=False))
    n.open()
    for call, field in ((n.last_applied_index, "reader"), (lambda: n.set_durable_applied_index(3), "writer")):
        with pytest.raises(NodeError) as info:
            call()
        assert_rejected(info.value, CapabilityError, "unsupported", field)
    assert n.apply(1, raw(P)).result == "ok"


# -- install_snapshot ----------------------------------------------------------------------------


BAD_ROWS: list[tuple[str, object, str]] = [
    ("rows-string", "abc", "install_snapshot.rows"),
    ("rows-int", 5, "install_snapshot.rows"),
    ("rows-none", None, "install_snapshot.rows"),
    ("rows-bytes", b"kv1", "install_snapshot.rows"),
    ("row-not-list", ["kv1"], "install_snapshot.rows[0]"),
    ("row-object", [{"key": "k", "value": "v", "ts": 1}], "install_snapshot.rows[0]"),
    ("row-arity-2", [["k", "v"]], "install_snapshot.rows[0]"),
    ("row-arity-4", [["k", "v", 1, 2]], "install_snapshot.rows[0]"),
    ("second-row-arity", [["k", "v", 1], ["j", "w"]], "install_snapshot.rows[1]"),
    ("duplicate-key", [["k", "v", 1], ["k", "w", 2]], "install_snapshot.rows[1]: duplicate key"),
    ("ts-negative", [["k", "v", -1]], "install_snapshot.rows[0]: bad commit_ts"),
    ("ts-string", [["k", "v", "1"]], "install_snapshot.rows[0]: bad commit_ts"),
    ("ts-bool", [["k", "v", True]], "install_snapshot.rows[0]: bad commit_ts"),
    ("ts-float", [["k", "v", 1.0]], "install_snapshot.rows[0]: bad commit_ts"),
    ("ts-none", [["k", "v", None]], "install_snapshot.rows[0]: bad commit_ts"),
    ("ts-2^64", [["k", "v", 2**64]], "install_snapshot.rows[0]: bad commit_ts"),
    ("key-int", [[5, "v", 1]], "install_snapshot.rows[0]: bad key"),
    ("key-1025", [["k" * 1025, "v", 1]], "install_snapshot.rows[0]: bad key"),
    ("key-lone-surrogate", [["\ud800", "v", 1]], "install_snapshot.rows[0]: bad key"),
    ("value-none", [["k", None, 1]], "install_snapshot.rows[0]: bad value"),
    ("value-1MiB+1", [["k", "v" * (MIB + 1), 1]], "install_snapshot.rows[0]: bad value"),
    ("value-lone-surrogate", [["k", "\udc00", 1]], "install_snapshot.rows[0]: bad value"),
]


@pytest.mark.req("BI-006", "BI-007")
@pytest.mark.parametrize(("rows", "field"), [pytest.param(r, f, id=i) for i, r, f in BAD_ROWS])
def test_malformed_install_snapshot_rows_are_rejected(node: Node, rows: object, field: str) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.install_snapshot(20, 100, 5, rows)  # type: ignore[arg-type]
    assert_rejected(info.value, SnapshotError, "bad_snapshot", field)
    assert observe(node) == before
    assert node.trace[-1] != ("restore", 20)
    assert node.install_snapshot(20, 100, 5, [["k", "v", 1]]) == 20
    assert node.scan("") == [("k", "v")]


@pytest.mark.req("BI-006", "BI-007")
@pytest.mark.parametrize("which", ["ceiling", "cutover"])
@pytest.mark.parametrize("value", [-1, 2**64, "1", True, None, 1.0])
def test_install_snapshot_bad_header_fields_are_rejected(node: Node, which: str, value: object) -> None:
    before = observe(node)
    args = {"ceiling": 1, "cutover": 1, which: value}
    with pytest.raises(NodeError) as info:
        node.install_snapshot(20, args["ceiling"], args["cutover"], [])  # type: ignore[arg-type]
    assert_rejected(info.value, SnapshotError, "bad_snapshot", f"install_snapshot.{which}")
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("BI-006", "BI-007")
@pytest.mark.parametrize("index", [5, 4, 1, 0, -1, True, "20", None, 20.0])
def test_install_snapshot_at_or_below_applied_is_rejected(node: Node, index: object) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.install_snapshot(index, 1, 1, [["k", "v", 1]])  # type: ignore[arg-type]
    assert_rejected(info.value, StaleSnapshotError, "snapshot_out_of_date",
                    f"installed snapshot index {index!r} must be > the applied index 5")
    assert observe(node) == before
    assert node.install_snapshot(6, 1, 1, [["k", "v", 1]]) == 6


# -- a malformed snapshot file at open ------------------------------------------------------------


@pytest.mark.req("BI-006", "HV-002", "HV-003", "HV-004", "HV-008")
@pytest.mark.parametrize(("kind", "cls", "code", "field"), [
    ("truncate_snapshot", SnapshotVerifyError, "snapshot_verify", "too_small"),
    ("wrong_token_crc", SnapshotVerifyError, "snapshot_verify", "token_crc"),
    ("flip_body_byte", SnapshotVerifyError, "snapshot_verify", "file_crc"),
    ("unknown_header_version", HeaderError, "bad_header", "version 99"),
])
@pytest.mark.parametrize("config", [NodeConfig(), NodeConfig(reader=False)], ids=["skip", "restore"])
def test_tampered_snapshot_file_fails_open_typed_and_changes_nothing(
    node: Node, kind: str, cls: type[NodeError], code: str, field: str, config: NodeConfig
) -> None:
    disk = node.disk
    closed = Node(disk, config)
    closed.tamper(kind)
    files = disk_files(disk)  # type: ignore[arg-type]
    with pytest.raises(NodeError) as info:
        closed.open()
    assert_rejected(info.value, cls, code, field)
    assert closed.store is None and closed.events == []
    assert disk_files(disk) == files  # type: ignore[arg-type]


# -- harness-facing hooks: tamper kinds, failpoint names ------------------------------------------


@pytest.mark.req("BI-007")
@pytest.mark.parametrize("kind", ["bogus", "", "TORN_META", "truncate", None])
def test_unknown_tamper_kind_is_rejected_and_changes_nothing(node: Node, kind: object) -> None:
    disk = node.disk
    closed = Node(disk)
    files = disk_files(disk)  # type: ignore[arg-type]
    with pytest.raises(NodeError) as info:
        closed.tamper(kind)  # type: ignore[arg-type]
    assert_rejected(info.value, BadRequestError, "bad_request", f"tamper kind {kind!r}")
    for known in TAMPER_KINDS:
        assert known in info.value.message
    assert disk_files(disk) == files  # type: ignore[arg-type]
    assert closed.open().outcome == "skipped"


@pytest.mark.req("BI-007")
def test_tamper_on_an_open_node_is_rejected(node: Node) -> None:
    before = observe(node)
    with pytest.raises(NodeError) as info:
        node.tamper("torn_meta")
    assert_rejected(info.value, AlreadyOpenError, "already_open", "tamper")
    assert observe(node) == before
    assert_usable(node)


@pytest.mark.req("BI-007")
def test_tamper_snapshot_without_a_snapshot_is_rejected() -> None:
    disk = SimDisk()
    fresh = Node(disk)
    fresh.open()
    fresh.apply(1, raw(P))
    closed = Node(disk)
    files = disk_files(disk)
    with pytest.raises(NodeError) as info:
        closed.tamper("flip_body_byte")
    assert_rejected(info.value, SnapshotError, "bad_snapshot", "no saved snapshot")
    assert disk_files(disk) == files


@pytest.mark.req("BI-007")
@pytest.mark.parametrize(("name", "action", "skip", "field"), [
    ("bogus", "crash", 0, "failpoint 'bogus'"),
    ("BEFORE_PIN", "crash", 0, "failpoint 'BEFORE_PIN'"),
    ("", "error", 0, "failpoint ''"),
    ("pin", "explode", 0, "action"),
    ("reader", "error", "x", "skip"),
    ("reader", "error", -1, "skip"),
    ("reader", "error", True, "skip"),
])
def test_bad_failpoint_arming_is_rejected(node: Node, name: str, action: str, skip: Any, field: str) -> None:
    # In process: Failpoints.arm refuses with a ValueError naming the field and arms nothing.
    fp = Failpoints()
    with pytest.raises(ValueError, match=field.replace("'", ".")):
        fp.arm(name, action, skip=skip)  # type: ignore[arg-type]
    assert fp.armed == {}
    # Over the node's wire protocol (the same server the process adapter runs): bad_request.
    before = observe(node)
    server = Server(node, _NullOut())
    reply = server.dispatch({"id": 1, "op": "failpoint", "name": name, "action": action, "skip": skip})
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert field in reply["error"]["message"]
    assert node.failpoints.armed == {}
    assert observe(node) == before
    assert_usable(node)
    for known in ALL_POINTS:
        fp.arm(known, "error")  # every documented name is accepted


class _NullOut:
    def write(self, text: str) -> int:
        json.loads(text)
        return len(text)

    def flush(self) -> None:
        pass
