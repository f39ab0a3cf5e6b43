"""The log entries exploration generates, drawn from small worlds so that they interact.

Random keys from a large space would never collide: no write conflict, no already-landed
transaction, no delete-prefix that removes something a later read looks for. So every
entry lives in a world of five keys that overlap by prefix (`KEYS`), four prefixes and
three excludes for delete-prefix, four values (the empty string and the largest int64
among them), two transaction ids. Timestamps come from one `Clock` per sequence.

    clock = Clock()
    entry = draw_entry(data, "txn", clock)      # data: a Hypothesis st.DataObject
    # {"kind": "txn", "start_ts": 0, "commit_ts": 1, "ops": [...], "reads": [...]}

Every entry is a dict exactly as a suite's `entry:` reads (docs/suites.md, entries), so a
generated sequence saves as a fixture with nothing to translate. Shrinking works on the
draws: Hypothesis moves each `sampled_from` towards its first element and each integer
towards its lower bound, which is why the simplest choice comes first in every tuple
(`add` before `put` before `del`, the key `n` first, the prefix `a/` first).

Direct writes (index 0, not from the log) have their own keys (`DIRECT_KEYS`): a restore
or a power loss may lose them, after which the model's state differs from the node's, so
no result the oracle compares may depend on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

# The small worlds the generated entries live in: few keys, so that entries interact
# (conflicts, already-landed transactions, delete-prefix with exclude over real keys).
KEYS = ("n", "a/1", "a/2", "a/keep/1", "b/1")
PREFIXES = ("a/", "", "b/", "a/keep/")
EXCLUDES = (None, "a/keep/", "a/1")
VALUES = ("1", "x", "", "9223372036854775807")
# Direct writes (index 0) are part of the state but not of the log: a restore or a power
# loss can lose them, after which the model's state differs (the oracle stops comparing
# states then). So they touch keys no logged entry reads, with put/del only, and no
# result the oracle compares can depend on them.
DIRECT_KEYS = ("d/1", "d/2")
TXNS = ("t1", "t2")

KEY = st.sampled_from(KEYS)
OP = st.one_of(
    st.fixed_dictionaries({"op": st.just("add"), "key": KEY, "delta": st.integers(-2, 5)}),
    st.fixed_dictionaries({"op": st.just("put"), "key": KEY, "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries({"op": st.just("del"), "key": KEY}),
)
OPS = st.lists(OP, min_size=1, max_size=3)
_DIRECT_KEY = st.sampled_from(DIRECT_KEYS)
DIRECT_OPS = st.lists(st.one_of(
    st.fixed_dictionaries({"op": st.just("put"), "key": _DIRECT_KEY,
                           "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries({"op": st.just("del"), "key": _DIRECT_KEY})), min_size=1, max_size=2)


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


def draw_entry(data: st.DataObject, kind: str, clock: Clock) -> dict[str, Any]:
    """One entry of `kind`: raw, delete_prefix, txn, prepare, commit, abort, hlc_lease,
    control, or (anything else) noop."""
    if kind == "raw":
        return {"kind": "raw", "ts": clock.tick(), "ops": data.draw(OPS)}
    if kind == "delete_prefix":
        prefix = data.draw(st.sampled_from(PREFIXES))
        exclude = data.draw(st.sampled_from(EXCLUDES))
        return present(kind="delete_prefix", prefix=prefix, exclude=exclude, ts=clock.tick())
    if kind == "txn":
        # an OCC transaction; an old start_ts conflicts with newer writes, and a commit_ts
        # already used makes the already-landed fast path a candidate
        if clock.ts > 1 and data.draw(st.booleans()):
            commit = data.draw(st.integers(max(1, clock.ts - 3), clock.ts))
        else:
            commit = clock.tick()
        start = max(0, commit - data.draw(st.integers(1, 4)))
        reads = data.draw(st.lists(KEY, max_size=2, unique=True))
        ops = data.draw(st.lists(OP, min_size=1, max_size=2))
        out: dict[str, Any] = {"kind": "txn", "start_ts": start, "commit_ts": commit,
                               "ops": ops}
        if reads:
            out["reads"] = reads
        return out
    if kind == "prepare":
        start = max(0, clock.ts - data.draw(st.integers(0, 3)))
        return {"kind": "prepare", "txn": data.draw(st.sampled_from(TXNS)),
                "start_ts": start, "ops": data.draw(st.lists(OP, min_size=1, max_size=2))}
    if kind == "commit":
        return {"kind": "commit", "txn": data.draw(st.sampled_from(TXNS)),
                "commit_ts": clock.tick()}
    if kind == "abort":
        return {"kind": "abort", "txn": data.draw(st.sampled_from(TXNS))}
    if kind == "hlc_lease":
        return {"kind": "hlc_lease", "ceiling": data.draw(st.integers(0, 50)) * 100}
    if kind == "control":
        return {"kind": "control", "opcode": data.draw(st.sampled_from(("cutover", "other"))),
                "value": data.draw(st.integers(0, 9))}
    return {"kind": "noop"}


def draw_entries(data: st.DataObject, kinds: Sequence[str], clock: Clock) -> list[dict[str, Any]]:
    """One to three entries, each of a kind drawn from `kinds` (repeat a kind to weigh it)."""
    chosen = data.draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3))
    return [draw_entry(data, k, clock) for k in chosen]
