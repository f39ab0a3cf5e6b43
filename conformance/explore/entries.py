"""The log entries exploration generates: flat small integers mapped through tables.

Random keys from a large space would never collide: no write conflict, no already-landed
transaction, no delete-prefix that removes something a later read looks for. So every
entry lives in a world of five keys that overlap by prefix (`KEYS`), four prefixes and
three excludes for delete-prefix, four values (the empty string and the largest int64
among them), two transaction ids. Timestamps come from one `Clock` per sequence.

**Drawn as codes, mapped to entries.** Hypothesis' cost is per choice and per nested
strategy, so an entry is not a composite of `one_of` / `fixed_dictionaries` / `lists`
(a raw entry of three ops was about 15 choices, its kind and a list of ops, each a
`one_of` of dictionaries, each value a strategy of its own) but a few small integers,
each one choice, mapped through the tables below (the same entry: five).
`entry_codes(kinds)` draws the codes of one to three entries in one strategy (a rule's
argument: no `data.draw` of its own), `make_entries` maps them, with the clock, to
entries:

    codes = data.draw(entry_codes(("raw", "txn")))   # or a rule argument
    # (("txn", (9, 21), (4, 63)),)   (kind, its fields, its ops)
    make_entries(codes, Clock())
    # [{"kind": "txn", "start_ts": 0, "commit_ts": 1, "ops": [{"op": "add", "key": "n",
    #   "delta": -2}, {"op": "put", ...}], "reads": ["a/keep/1", "b/1"]}]

**Shrinking moves towards simple entries**: Hypothesis shrinks each integer towards 0, and
every table puts its simplest choice first (`add` before `put` before `del`, the key `n`
first, a delta of 0, a new commit timestamp before a reused one, no reads, one op before
two). Every entry the earlier nested strategies could produce is a code here (the tests
enumerate them), with about the same weights: each op kind a third of the ops (the op
table repeats the smaller kinds), and the counts as Hypothesis' lists drew them, mostly
the maximum (`COUNT`).

Every entry is a dict exactly as a suite's `entry:` reads (docs/suites.md, entries), so a
generated sequence saves as a fixture with nothing to translate.

Direct writes (index 0, not from the log) have their own keys (`DIRECT_KEYS`): a restore
or a power loss may lose them, after which the model's state differs from the node's, so
no result the oracle compares may depend on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from hypothesis import strategies as st

# The small worlds the generated entries live in: few keys, so that entries interact
# (conflicts, already-landed transactions, delete-prefix with exclude over real keys).
KEYS = ("n", "a/1", "a/2", "a/keep/1", "b/1")
PREFIXES = ("a/", "", "b/", "a/keep/")
EXCLUDES = (None, "a/keep/", "a/1")
VALUES = ("1", "x", "", "9223372036854775807")
DELTAS = (0, 1, -1, 2, -2, 3, 4, 5)  # -2..5, in the order Hypothesis shrinks them (to 0)
# Direct writes (index 0) are part of the state but not of the log: a restore or a power
# loss can lose them, after which the model's state differs (the oracle stops comparing
# states then). So they touch keys no logged entry reads, with put/del only, and no
# result the oracle compares can depend on them.
DIRECT_KEYS = ("d/1", "d/2")
TXNS = ("t1", "t2")
READ_PREFIXES = ("", "a/", "_")  # scans: everything, a prefix, and the meta key's

Code = tuple[str, tuple[int, ...], tuple[int, ...]]  # (kind, its fields, its ops)


def _op_table(keys: Sequence[str], kinds: Sequence[str]) -> tuple[dict[str, Any], ...]:
    """One row per op code: each op kind an equal block (smaller kinds repeat their rows),
    simplest first: add, put, del; within a kind the key, then the delta or value."""
    by_kind: dict[str, list[dict[str, Any]]] = {
        "add": [{"op": "add", "key": k, "delta": d} for k in keys for d in DELTAS],
        "put": [{"op": "put", "key": k, "value": v} for k in keys for v in VALUES],
        "del": [{"op": "del", "key": k} for k in keys]}
    block = max(len(by_kind[k]) for k in kinds)
    return tuple(by_kind[k][i % len(by_kind[k])] for k in kinds for i in range(block))


OPS = _op_table(KEYS, ("add", "put", "del"))  # 3 x 40 rows
DIRECT_OPS = _op_table(DIRECT_KEYS, ("put", "del"))  # 2 x 8 rows
# the reads of a transaction: none, one key, two distinct keys in either order (the
# weights of Hypothesis' unique lists: mostly two)
READS = ((), *((k,) for k in KEYS), *((a, b) for a in KEYS for b in KEYS if a != b))
# How many (entries in a batch, ops in an entry), by code: shrinks to one, drawn mostly
# at the maximum as Hypothesis' lists of up to 2 or 3 were.
COUNT = {2: (1, 2, 2, 2, 2, 2, 2, 2, 2, 2), 3: (1, 2, 3, 3, 3, 3, 3, 3, 3, 3)}

# Each kind's fields (the range of each code) and at most how many ops it carries.
FIELDS: dict[str, tuple[tuple[int, ...], int]] = {
    "raw": ((), 3),
    "delete_prefix": ((len(PREFIXES) * len(EXCLUDES),), 0),
    "txn": ((8 * 4, len(READS)), 2),  # (commit: new or one of the last 4) x start offset
    "prepare": ((len(TXNS) * 4,), 2),  # txn x how far start_ts lags behind
    "commit": ((len(TXNS),), 0),
    "abort": ((len(TXNS),), 0),
    "hlc_lease": ((51,), 0),  # ceiling 0..5000 in steps of 100
    "control": ((2 * 10,), 0),  # opcode x value
    "noop": ((), 0),
}
_INTS: dict[int, st.SearchStrategy[int]] = {}


def code_range(n: int) -> st.SearchStrategy[int]:
    """The codes 0..n-1 (shrinking towards 0): one strategy per range, built once (one
    built per draw would be validated again each time)."""
    strategy = _INTS.get(n)
    if strategy is None:
        strategy = _INTS[n] = st.integers(0, n - 1)
    return strategy


class Clock:
    """The timestamps of one sequence: `tick()` hands out the next, `ts` is the last."""

    def __init__(self) -> None:
        self.ts = 0

    def tick(self) -> int:
        self.ts += 1
        return self.ts


def present(**kw: Any) -> dict[str, Any]:
    """The keyword arguments that are not None (optional entry fields are left out)."""
    return {k: v for k, v in kw.items() if v is not None}


@st.composite
def _codes(draw: st.DrawFn, kinds: tuple[str, ...]) -> tuple[Code, ...]:
    out = []
    for _ in range(COUNT[3][draw(code_range(10))]):
        kind = kinds[draw(code_range(len(kinds)))]
        sizes, max_ops = FIELDS[kind]
        fields = tuple(draw(code_range(n)) for n in sizes)
        n_ops = COUNT[max_ops][draw(code_range(10))] if max_ops else 0
        out.append((kind, fields, tuple(draw(code_range(len(OPS))) for _ in range(n_ops))))
    return tuple(out)


@cache
def entry_codes(kinds: tuple[str, ...]) -> st.SearchStrategy[tuple[Code, ...]]:
    """The codes of one to three entries, each of a kind drawn from `kinds` (repeat a kind
    to weigh it; the first is the simplest). Built once per `kinds`."""
    unknown = set(kinds) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown entry kinds: {sorted(unknown)}")
    return _codes(kinds)


@st.composite
def _direct_codes(draw: st.DrawFn) -> tuple[int, ...]:
    return tuple(draw(code_range(len(DIRECT_OPS))) for _ in range(COUNT[2][draw(code_range(10))]))


DIRECT_CODES = _direct_codes()  # the codes of a direct write's ops (one or two)


def make_entry(code: Code, clock: Clock) -> dict[str, Any]:
    """The entry a code stands for (timestamps from `clock`)."""
    kind, fields, op_codes = code
    ops = [dict(OPS[c]) for c in op_codes]
    if kind == "raw":
        return {"kind": "raw", "ts": clock.tick(), "ops": ops}
    if kind == "delete_prefix":
        prefix, exclude = divmod(fields[0], len(EXCLUDES))
        return present(kind="delete_prefix", prefix=PREFIXES[prefix],
                       exclude=EXCLUDES[exclude], ts=clock.tick())
    if kind == "txn":
        # an OCC transaction; an old start_ts conflicts with newer writes, and a commit_ts
        # already used (commit codes 4..7, half of them) makes the already-landed fast
        # path a candidate
        commit_code, lag = divmod(fields[0], 4)
        if clock.ts > 1 and commit_code >= 4:
            low = max(1, clock.ts - 3)
            commit = low + (commit_code - 4) % (clock.ts - low + 1)
        else:
            commit = clock.tick()
        out: dict[str, Any] = {"kind": "txn", "start_ts": max(0, commit - 1 - lag),
                               "commit_ts": commit, "ops": ops}
        reads = READS[fields[1]]
        if reads:
            out["reads"] = list(reads)
        return out
    if kind == "prepare":
        txn, lag = divmod(fields[0], 4)
        return {"kind": "prepare", "txn": TXNS[txn], "start_ts": max(0, clock.ts - lag),
                "ops": ops}
    if kind == "commit":
        return {"kind": "commit", "txn": TXNS[fields[0]], "commit_ts": clock.tick()}
    if kind == "abort":
        return {"kind": "abort", "txn": TXNS[fields[0]]}
    if kind == "hlc_lease":
        return {"kind": "hlc_lease", "ceiling": fields[0] * 100}
    if kind == "control":
        opcode, value = divmod(fields[0], 10)
        return {"kind": "control", "opcode": ("cutover", "other")[opcode], "value": value}
    return {"kind": "noop"}


def make_entries(codes: Sequence[Code], clock: Clock) -> list[dict[str, Any]]:
    return [make_entry(c, clock) for c in codes]


def make_direct_ops(codes: Sequence[int]) -> list[dict[str, Any]]:
    return [dict(DIRECT_OPS[c]) for c in codes]


def draw_entries(data: st.DataObject, kinds: Sequence[str], clock: Clock) -> list[dict[str, Any]]:
    """One to three entries, each of a kind drawn from `kinds` (repeat a kind to weigh it):
    one `data.draw` of their codes."""
    return make_entries(data.draw(entry_codes(tuple(kinds))), clock)
