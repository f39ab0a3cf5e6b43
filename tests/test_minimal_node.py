"""examples/minimal_node.py through ProcessAdapter, checked against the reference server.

The reference runs as a baseline node too (--no-reader --no-writer --no-header-applier),
so every reply, the open results included, must be the same.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.adapters.base import Exchange
from conformance.adapters.process import HelloRefused, ProcessAdapter

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "minimal_node.py"
MINIMAL = [sys.executable, str(EXAMPLE), "--data-dir", "{data_dir}"]
REFERENCE = [sys.executable, "-m", "reference_impl.server", "--data-dir", "{data_dir}",
             "--no-reader", "--no-writer", "--no-header-applier"]


def live_members(pgid: int) -> list[int]:
    """Processes of process group `pgid` that are still running (zombies count as gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            found.append(int(entry))
    return found


@pytest.fixture
def make() -> Iterator[Callable[[list[str]], ProcessAdapter]]:
    made: list[ProcessAdapter] = []

    def factory(argv: list[str]) -> ProcessAdapter:
        made.append(ProcessAdapter(argv, timeout=10.0))
        return made[-1]

    yield factory
    for adapter in made:
        adapter.close()
    deadline = time.monotonic() + 3
    pgids = [pid for adapter in made for pid in adapter.pids]
    while any(live_members(g) for g in pgids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(live_members(g) for g in pgids), "a node process outlived its adapter"


# -- one fixed sequence covering every entry kind and result ------------------------------


def put(k: str, v: str) -> dict[str, Any]:
    return {"op": "put", "key": k, "value": v}


def add(k: str, d: int) -> dict[str, Any]:
    return {"op": "add", "key": k, "delta": d}


def delete(k: str) -> dict[str, Any]:
    return {"op": "del", "key": k}


def raw(ts: int, *ops: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "raw", "ts": ts, "ops": list(ops)}


def txn(start: int, commit: int, *ops: dict[str, Any], reads: list[str] | None = None
        ) -> dict[str, Any]:
    e: dict[str, Any] = {"kind": "txn", "start_ts": start, "commit_ts": commit, "ops": list(ops)}
    if reads is not None:
        e["reads"] = reads
    return e


def prepare(t: str, start: int, *ops: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "prepare", "txn": t, "start_ts": start, "ops": list(ops)}


def commit(t: str, ts: int) -> dict[str, Any]:
    return {"kind": "commit", "txn": t, "commit_ts": ts}


def abort(t: str) -> dict[str, Any]:
    return {"kind": "abort", "txn": t}


# The committed log: entry i + 1 is applied at index i + 1.
LOG: list[dict[str, Any]] = [
    raw(10, put("a", "1"), put("b", "2"), add("n", 3)),            # 1 ok
    raw(11, add("a", 5)),                                           # 2 ok: a = 6
    raw(12, put("s", "x"), add("s", 1)),                            # 3 type_error
    txn(11, 13, put("c", "3"), add("n", 1), reads=["a"]),           # 4 ok
    txn(11, 13, put("c", "3"), add("n", 1), reads=["a"]),           # 5 already_landed
    txn(5, 14, put("a", "9")),                                      # 6 conflict: a@10, a@11
    txn(10, 42, put("z", "2"), reads=["a"]),                        # 7 conflict via a read
    prepare("t1", 13, put("p", "1"), add("n", 10)),                 # 8 ok: an intent
    txn(13, 15, put("p", "2")),                                     # 9 conflict: p is locked
    commit("t1", 16),                                               # 10 ok: p = 1, n = 14
    commit("t2", 16),                                               # 11 txn_not_found
    abort("t3"),                                                    # 12 ok: rollback marker
    prepare("t3", 16, put("q", "1")),                               # 13 aborted
    prepare("t4", 16, put("q", "1")),                               # 14 ok
    abort("t4"),                                                    # 15 ok: intent dropped
    prepare("t6", 1, put("a", "0")),                                # 16 conflict: newer a
    raw(17, put("user/1", "u1"), put("user/2", "u2"), put("user/keep/x", "k")),  # 17 ok
    {"kind": "delete_prefix", "prefix": "user/", "exclude": "user/keep/", "ts": 18},  # 18
    raw(5, put("user/1", "late")),                                  # 19 ok, but hidden: ts 5
    {"kind": "hlc_lease", "ceiling": 1000},                         # 20
    {"kind": "hlc_lease", "ceiling": 500},                          # 21 never backwards
    {"kind": "control", "opcode": "cutover", "value": 2},           # 22
    {"kind": "control", "opcode": "rotate_key", "value": 9},        # 23 not a cutover
    {"kind": "control", "opcode": "cutover", "value": 1},           # 24 max: stays 2
    {"kind": "noop"},                                               # 25
    prepare("t5", 20, add("user/keep/x", 1)),                       # 26 ok
    commit("t5", 40),                                               # 27 type_error: "k" + 1
    abort("t5"),                                                    # 28 ok
    raw(41, put("ключ", "värde ✓"), add("n", -20)),                  # 29 ok, non-ASCII
    {"kind": "delete_prefix", "prefix": "nothing/", "ts": 42},      # 30 ok, deletes nothing
    txn(41, 43, delete("b"), put("d", "4")),                        # 31 ok
    {"kind": "delete_prefix", "prefix": "", "exclude": "", "ts": 44},  # 32 ok: excludes all
    raw(45, put("c", "newer")),                                     # 33 ok
    txn(11, 13, put("c", "3"), add("n", 1), reads=["a"]),           # 34 conflict: c@45 too
    prepare("t7", 44, put("r", "1")),                               # 35 ok
    prepare("t7", 44, put("r", "2")),                               # 36 ok: its own intent
    commit("t7", 46),                                               # 37 ok: r = 2
    prepare("t8", 46, put("lk", "1")),                              # 38 ok
    txn(46, 47, put("other", "1"), reads=["lk"]),                   # 39 conflict: read locked
    abort("t8"),                                                    # 40 ok
]

RESULTS = ["ok", "ok", "type_error", "ok", "already_landed", "conflict", "conflict", "ok",
           "conflict", "ok", "txn_not_found", "ok", "aborted", "ok", "ok", "conflict"] + \
    ["ok"] * 10 + ["type_error"] + ["ok"] * 5 + \
    ["ok", "conflict", "ok", "ok", "ok", "ok", "conflict", "ok"]

# Requests that must be rejected (state unchanged), sent between entries 12 and 13.
REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"index": 99, "entry": {"kind": "noop"}}, "bad_index"),               # skips ahead
    ({"index": 12, "entry": {"kind": "noop"}}, "bad_index"),               # backwards
    ({"index": -1, "entry": {"kind": "noop"}}, "bad_index"),
    ({"index": True, "entry": {"kind": "noop"}}, "bad_index"),
    ({"index": 13, "entry": {"kind": "bogus"}}, "bad_entry"),
    ({"index": 13, "entry": ["noop"]}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "noop", "extra": 1}}, "bad_entry"),
    ({"index": 13, "entry": raw(1)}, "bad_entry"),                          # empty ops
    ({"index": 13, "entry": {"kind": "raw", "ts": -1, "ops": [put("k", "v")]}}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "raw", "ts": 2**64, "ops": [put("k", "v")]}}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "raw", "ts": 1.0, "ops": [put("k", "v")]}}, "bad_entry"),
    ({"index": 13, "entry": raw(1, {"op": "mul", "key": "k"})}, "bad_entry"),
    ({"index": 13, "entry": raw(1, {"op": "add", "key": "k", "delta": "1"})}, "bad_entry"),
    ({"index": 13, "entry": raw(1, {"op": "add", "key": "k", "delta": True})}, "bad_entry"),
    ({"index": 13, "entry": raw(1, {"op": "put", "key": 7, "value": "v"})}, "bad_entry"),
    ({"index": 13, "entry": raw(1, put("k" * 1025, "v"))}, "too_large"),
    ({"index": 13, "entry": raw(1, put("é" * 513, "v"))}, "too_large"),      # 1026 bytes
    ({"index": 13, "entry": raw(1, put("k", "v" * (1024 * 1024 + 1)))}, "too_large"),
    ({"index": 13, "entry": txn(5, 5, put("k", "v"))}, "bad_entry"),         # start >= commit
    ({"index": 13, "entry": txn(0, 0, put("k", "v"))}, "bad_entry"),
    ({"index": 13, "entry": {**txn(1, 2, put("k", "v")), "reads": "k"}}, "bad_entry"),
    ({"index": 13, "entry": {**txn(1, 2, put("k", "v")), "reads": [1]}}, "bad_entry"),
    ({"index": 13, "entry": prepare("", 1, put("k", "v"))}, "bad_entry"),
    ({"index": 13, "entry": commit("t", 0)}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "control", "opcode": "", "value": 1}}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "hlc_lease", "ceiling": None}}, "bad_entry"),
    ({"index": 13, "entry": {"kind": "delete_prefix", "prefix": 3, "ts": 1}}, "bad_entry"),
    ({"index": 13}, "bad_request"),                                          # no entry
]


def drive(node: ProcessAdapter) -> list[Any]:
    """Run the fixed sequence; return a transcript of every reply (results, error codes)."""
    out: list[Any] = []

    def req(op: str, **fields: Any) -> dict[str, Any]:
        ex: Exchange = node.request(op, **fields)
        assert ex.reply is not None, f"{op} died"
        reply = ex.reply
        out.append([op, reply["result"] if reply["ok"] else reply["error"]["code"]])
        return reply

    for op in ("get", "apply", "digest", "snapshot_begin"):  # before open
        req(op, key="a", index=1, entry={"kind": "noop"})
    assert out[-1][1] == "not_open"
    req("open")
    req("open")                                                   # already_open
    req("apply", index=0, entry=raw(30, put("direct", "1")))     # a direct write
    for i, entry in enumerate(LOG, start=1):
        if i == 13:
            digest = req("digest")["result"]
            for fields, code in REJECTED:
                reply = req("apply", **fields)
                assert not reply["ok"] and reply["error"]["code"] == code, (fields, reply)
            assert req("digest")["result"] == digest  # rejected requests changed nothing
        if i == 20:
            first = req("snapshot_begin")["result"]["snapshot"]
        if i == 25:
            second = req("snapshot_begin")["result"]["snapshot"]
            req("snapshot_persist", snapshot=second, site="config")
            req("snapshot_persist", snapshot=first, site="local")   # snapshot_out_of_date
            req("snapshot_persist", snapshot=999)                   # unknown_snapshot
        assert req("apply", index=i, entry=entry)["result"]["result"] == RESULTS[i - 1], i
    req("apply", index=0, entry=txn(11, 13, put("c", "3")))  # already_landed, direct
    for k in ("a", "b", "c", "n", "p", "q", "r", "s", "user/1", "user/keep/x", "ключ", "none"):
        req("get", key=k)
    req("scan")
    req("scan", prefix="user/")
    req("hlc")
    req("digest")
    return out


def test_same_results_and_digest_as_the_reference(make: Callable[..., ProcessAdapter]) -> None:
    ref, mini = make(REFERENCE), make(MINIMAL)
    ref.start("synced")
    hello = mini.start("synced")
    assert hello.capabilities == frozenset()
    assert hello.entry_kinds == frozenset(
        {"raw", "txn", "delete_prefix", "prepare", "commit", "abort", "hlc_lease", "control",
         "noop"})
    expected, got = drive(ref), drive(mini)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"reply {i}: {g} != reference {e}"
    results = {r[1]["result"] for r in got if r[0] == "apply" and isinstance(r[1], dict)}
    assert results == {"ok", "conflict", "already_landed", "txn_not_found", "aborted",
                       "type_error"}
    assert {"not_open", "already_open", "snapshot_out_of_date", "unknown_snapshot"} <= {
        r[1] for r in got if isinstance(r[1], str)}


def replay(node: ProcessAdapter, effective: int, upto: int = len(LOG)) -> None:
    for i in range(effective + 1, upto + 1):
        reply = node.request("apply", index=i, entry=LOG[i - 1]).reply
        assert reply is not None and reply["ok"], reply


@pytest.mark.parametrize("snapshot_at", [0, 12, 25, len(LOG)])
def test_cold_start_restores_the_snapshot_then_replay_is_exactly_once(
        make: Callable[..., ProcessAdapter], snapshot_at: int) -> None:
    ref, mini = make(REFERENCE), make(MINIMAL)
    for node in (ref, mini):
        node.start("synced")
        node.request("open")
        replay(node, 0, snapshot_at)
        if snapshot_at:
            sid = node.request("snapshot_begin").reply["result"]["snapshot"]  # type: ignore[index]
            node.request("snapshot_persist", snapshot=sid, site="local")
        replay(node, snapshot_at)
    expected = mini.request("digest").reply
    hlc = mini.request("hlc").reply
    assert expected is not None and hlc is not None
    assert expected["result"] == ref.request("digest").reply["result"]  # type: ignore[index]

    for node in (ref, mini):
        node.crash()
        node.start("synced")
    ex = mini.request("open")
    assert ex.reply is not None and ex.reply["ok"]
    opened = ex.reply["result"]
    assert opened == ref.request("open").reply["result"]  # type: ignore[index]
    assert opened == {"outcome": "fallback", "reason": "not_reader", "have": None,
                      "snap": snapshot_at, "effective": snapshot_at, "gap": None,
                      "compacted": snapshot_at, "last_applied": snapshot_at}
    assert ex.events == [{"event": "cold_start", **opened}]
    if snapshot_at == 0:  # the state file was reset: nothing applied twice
        assert mini.request("scan").reply["result"] == {"items": []}  # type: ignore[index]
    replay(mini, opened["effective"])
    assert mini.request("digest").reply["result"] == expected["result"]  # type: ignore[index]
    assert mini.request("hlc").reply["result"] == hlc["result"]  # type: ignore[index]
    files = sorted(p.name for p in mini.data_dir.iterdir())
    assert files == (["pointer.json", f"snap-{snapshot_at:020d}.snap", "state.json"]
                     if snapshot_at else ["state.json"])


def test_crash_before_any_snapshot_then_restart_twice(make: Callable[..., ProcessAdapter]
                                                      ) -> None:
    mini = make(MINIMAL)
    mini.start("synced")
    mini.request("open")
    replay(mini, 0, 10)
    mini.crash()
    for _ in range(2):
        mini.start("synced")
        assert mini.request("open").reply["result"]["effective"] == 0  # type: ignore[index]
        assert mini.request("get", key="n").reply["result"] == {"value": None}  # type: ignore[index]
        mini.crash()


def test_unsynced_hello_is_refused(make: Callable[..., ProcessAdapter]) -> None:
    mini = make(MINIMAL)
    with pytest.raises(HelloRefused) as info:
        mini.start("unsynced")
    assert info.value.code == "unsupported"
    assert not mini.alive()
    assert mini.start("synced").capabilities == frozenset()


def test_gated_and_unknown_ops(make: Callable[..., ProcessAdapter]) -> None:
    mini = make(MINIMAL)
    mini.start("synced")

    def code(op: str, **fields: Any) -> str:
        reply = mini.request(op, **fields).reply
        assert reply is not None and not reply["ok"]
        return str(reply["error"]["code"])

    assert code("failpoint", name="before_pin", action="crash") == "unsupported"
    assert code("tamper", kind="torn_meta") == "unsupported"
    mini.request("open")
    for op in ("last_applied_index", "set_durable_applied_index", "install_snapshot"):
        assert code(op, index=1) == "unsupported"
    assert code("no_such_op") == "unknown_op"
    assert code("hello", versions=[1]) == "already_open"
    assert code("get") == "bad_request"
    assert code("snapshot_persist", snapshot=1, site="elsewhere") == "bad_request"
    ex = mini.request("shutdown")
    assert ex.reply == {"id": ex.request["id"], "ok": True, "result": {}}
    assert not mini.alive()


def test_snapshot_verification_on_open(make: Callable[..., ProcessAdapter]) -> None:
    mini = make(MINIMAL)
    mini.start("synced")
    mini.request("open")
    replay(mini, 0, 3)
    sid = mini.request("snapshot_begin").reply["result"]["snapshot"]  # type: ignore[index]
    mini.request("snapshot_persist", snapshot=sid)
    mini.crash()
    snap = mini.data_dir / f"snap-{3:020d}.snap"
    data = bytearray(snap.read_bytes())
    data[10] ^= 0xFF
    snap.write_bytes(bytes(data))
    mini.start("synced")
    ex = mini.request("open")
    assert ex.reply is not None and ex.reply["error"]["code"] == "snapshot_verify"
    assert ex.reply["error"]["kind"] == "file_crc"
    assert ex.events == []  # no cold_start event for a failed cold start
    assert mini.request("get", key="a").reply["error"]["code"] == "not_open"  # type: ignore[index]


def test_the_example_is_independent() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
