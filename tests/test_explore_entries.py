"""Exploration's draws (issue 15, item 3): flat integer codes mapped to entries, cheap rule choice.

Entries are drawn as a few small integers mapped through tables (conformance/explore/
entries.py). These tests hold the mapping to what the nested strategies it replaced could
produce (every op, read set, prefix and field value is still some code), to the weights
they drew with (each op kind a third of the ops, counts mostly at the maximum), and to the
shrinking direction (code 0 is the simplest choice, and Hypothesis' shrinking of a failing
batch ends at the simplest entry that still fails). The rule choice evaluates each
precondition at most once per step, and a campaign leaves the garbage collector as it
found it.
"""

from __future__ import annotations

import gc
import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import find, settings

from conformance.explore import ExploreMachine, explore
from conformance.explore import choice as choice_module
from conformance.explore.entries import (
    COUNT,
    DIRECT_KEYS,
    DIRECT_OPS,
    EXCLUDES,
    FIELDS,
    KEYS,
    OPS,
    PREFIXES,
    READS,
    TXNS,
    VALUES,
    Clock,
    Code,
    entry_codes,
    make_direct_ops,
    make_entries,
    make_entry,
)
from conformance.explore.machine import APPLY_KINDS, INSTALL_KINDS, READ_STEPS


def _op_key(op: dict[str, Any]) -> tuple[Any, ...]:
    return (op["op"], op["key"], op.get("delta", op.get("value")))


def _clock(ts: int) -> Clock:
    clock = Clock()
    clock.ts = ts
    return clock


def _entries(kind: str, ts: int, ops: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
    """Every entry of `kind` the codes give at clock `ts` (with the ops `ops`)."""
    sizes, max_ops = FIELDS[kind]
    codes = itertools.product(*(range(n) for n in sizes))
    return [make_entry((kind, fields, ops if max_ops else ()), _clock(ts)) for fields in codes]


def test_every_op_the_nested_strategies_drew_is_a_code_and_each_kind_a_third() -> None:
    # what one_of(add(key, integers(-2, 5)), put(key, sampled_from(VALUES)), del(key)) drew
    nested = ({("add", k, d) for k in KEYS for d in range(-2, 6)}
              | {("put", k, v) for k in KEYS for v in VALUES} | {("del", k, None) for k in KEYS})
    assert {_op_key(op) for op in OPS} == nested
    assert Counter(op["op"] for op in OPS) == {"add": 40, "put": 40, "del": 40}
    assert OPS[0] == {"op": "add", "key": "n", "delta": 0}  # shrinks to the simplest op
    direct = {("put", k, v) for k in DIRECT_KEYS for v in VALUES} | {
        ("del", k, None) for k in DIRECT_KEYS}
    assert {_op_key(op) for op in make_direct_ops(range(len(DIRECT_OPS)))} == direct
    assert Counter(op["op"] for op in DIRECT_OPS) == {"put": 8, "del": 8}
    # counts: one to three entries (one or two ops), the first code the fewest, and mostly
    # the maximum, as Hypothesis' lists drew them
    assert COUNT[3][0] == 1 and set(COUNT[3]) == {1, 2, 3} and COUNT[3].count(3) >= 8
    assert COUNT[2][0] == 1 and set(COUNT[2]) == {1, 2} and COUNT[2].count(2) >= 9


def test_every_field_value_of_every_kind_is_a_code() -> None:
    deletes = {(e["prefix"], e.get("exclude")) for e in _entries("delete_prefix", 3)}
    assert deletes == set(itertools.product(PREFIXES, EXCLUDES))
    # a transaction at ts 5: a new commit (6) or one of the last four; start 1..4 before it
    txns = _entries("txn", 5)
    assert {(t["commit_ts"], t["start_ts"]) for t in txns} == {
        (commit, max(0, commit - lag)) for commit in range(2, 7) for lag in range(1, 5)}
    assert sum(t["commit_ts"] == 6 for t in txns) * 2 == len(txns)  # a reused one half the time
    reads = {tuple(t.get("reads", ())) for t in txns}
    assert reads == {()} | {(k,) for k in KEYS} | set(itertools.permutations(KEYS, 2))
    assert len(READS) == len(reads)
    # at ts 1 no commit is reused (nothing committed before it but ts 1)
    assert {t["commit_ts"] for t in _entries("txn", 1)} == {2}
    assert {(p["txn"], p["start_ts"]) for p in _entries("prepare", 5)} == set(
        itertools.product(TXNS, range(2, 6)))
    assert {c["txn"] for c in _entries("commit", 5)} == {a["txn"] for a in
                                                          _entries("abort", 5)} == set(TXNS)
    assert {h["ceiling"] for h in _entries("hlc_lease", 5)} == set(range(0, 5001, 100))
    assert {(c["opcode"], c["value"]) for c in _entries("control", 5)} == set(
        itertools.product(("cutover", "other"), range(10)))
    assert _entries("noop", 5) == [{"kind": "noop"}]
    ops = make_entry(("raw", (), (0, 40, 80)), _clock(0))["ops"]
    assert [op["op"] for op in ops] == ["add", "put", "del"]


def test_code_zero_is_the_simplest_entry_of_each_kind() -> None:
    simplest = {kind: make_entry((kind, (0,) * len(sizes), (0,) if max_ops else ()), _clock(3))
                for kind, (sizes, max_ops) in FIELDS.items()}
    add_n = [{"op": "add", "key": "n", "delta": 0}]
    assert simplest["raw"] == {"kind": "raw", "ts": 4, "ops": add_n}
    assert simplest["txn"] == {"kind": "txn", "start_ts": 3, "commit_ts": 4, "ops": add_n}
    assert simplest["delete_prefix"] == {"kind": "delete_prefix", "prefix": "a/", "ts": 4}
    assert simplest["prepare"] == {"kind": "prepare", "txn": "t1", "start_ts": 3, "ops": add_n}
    assert simplest["hlc_lease"] == {"kind": "hlc_lease", "ceiling": 0}
    assert simplest["control"] == {"kind": "control", "opcode": "cutover", "value": 0}
    # every rule's kinds start with its simplest kind, the one shrinking moves to
    assert [k[0] for k in APPLY_KINDS.values()] == ["raw", "txn", "hlc_lease"]
    assert INSTALL_KINDS[0] == "raw"
    assert READ_STEPS[0] == ("get", {"key": "n"})
    assert Counter(kind for kind, _ in READ_STEPS) == {"get": 15, "scan": 15, "digest": 15,
                                                       "hlc": 15}


def _minimal(kinds: tuple[str, ...], wanted: Any) -> list[dict[str, Any]]:
    codes: tuple[Code, ...] = find(entry_codes(kinds),
                                   lambda c: wanted(make_entries(c, _clock(3))),
                                   settings=settings(database=None, max_examples=2000))
    return make_entries(codes, _clock(3))


def test_shrinking_a_batch_ends_at_the_simplest_entries_that_still_fail() -> None:
    """Hypothesis' shrinking works on the codes: the batch loses its other entries, the
    entry its other ops, and what is left is the first of each table."""
    assert _minimal(APPLY_KINDS["apply_write"], lambda es: any(
        e["kind"] == "delete_prefix" for e in es)) == [
            {"kind": "delete_prefix", "prefix": "a/", "ts": 4}]
    assert _minimal(APPLY_KINDS["apply_write"], lambda es: any(
        op["op"] == "del" for e in es for op in e.get("ops", ()))) == [
            {"kind": "raw", "ts": 4, "ops": [{"op": "del", "key": "n"}]}]
    assert _minimal(APPLY_KINDS["apply_txn"], lambda es: any(
        e["kind"] == "txn" and e["commit_ts"] <= 3 for e in es)) == [
            {"kind": "txn", "start_ts": 0, "commit_ts": 1,
             "ops": [{"op": "add", "key": "n", "delta": 0}]}]
    assert _minimal(INSTALL_KINDS, lambda es: len(es) == 3) == [
        {"kind": "raw", "ts": 4 + i, "ops": [{"op": "add", "key": "n", "delta": 0}]}
        for i in range(3)]


def test_unknown_entry_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown entry kinds"):
        entry_codes(("raw", "no-such-kind"))


def test_each_precondition_is_evaluated_at_most_once_per_rule_choice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing a rule used to ask for the same preconditions again and again (is any rule
    valid, the rejection sampling, the scan of the valid ones); they read state that only a
    step changes. Every precondition runs at most once per choice, and the sequences still
    run long (restart, open and apply_write escape swarm testing)."""
    calls: Counter[tuple[int, str]] = Counter()
    choices = [0]
    real_check = choice_module._one_check
    real_draw = choice_module._RuleStrategy.do_draw

    def counted_check(preconditions: Any) -> Any:
        check = real_check(preconditions)
        name = getattr(preconditions[0], "__qualname__", "?") if preconditions else "none"

        def counting(machine: ExploreMachine) -> bool:
            calls[(choices[0], name + str(id(check)))] += 1
            return bool(check(machine))
        return counting

    def counted_draw(self: Any, data: Any) -> Any:
        choices[0] += 1
        return real_draw(self, data)

    monkeypatch.setattr(choice_module, "_one_check", counted_check)
    monkeypatch.setattr(choice_module._RuleStrategy, "do_draw", counted_draw)
    report = explore("reference", max_examples=10, seed=3, out=None, database=None)
    assert report.steps > 10 * report.examples / 2
    assert choices[0] > report.examples and calls  # (a crash point rule runs several steps)
    assert max(calls.values()) == 1


def test_a_campaign_leaves_the_garbage_collector_as_it_found_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects made before a campaign are frozen out of the collector's full collections
    during it (a tenth of an in-process campaign's time went to scanning them), and
    unfrozen after it."""
    frozen: list[int] = []
    real = ExploreMachine.teardown

    def teardown(self: ExploreMachine) -> None:
        frozen.append(gc.get_freeze_count())
        real(self)

    before = gc.get_freeze_count()
    monkeypatch.setattr(ExploreMachine, "teardown", teardown)
    explore("reference", max_examples=3, seed=0, out=None, database=None)
    assert gc.get_freeze_count() == before == 0
    assert frozen and min(frozen) > 0
