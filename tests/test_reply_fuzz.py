"""Fuzz: 10,000 malformed lines from the node, through the process adapter and the runner.

The scripted node (tests/_scripted_node.py) plays the cases of tests/data/wire_cases.yaml and
one line it writes (an event or a reply, anywhere in the case) is rewritten by a seeded
mutation: a field replaced by a wrong type, a float, NaN, a 10,000-digit integer, a deeply
nested array or a lone surrogate; a field dropped or duplicated; the line truncated, flipped,
doubled, padded past the line bound, preceded by garbage, or stdout closed in its place.
Everything after the stdout queue is the harness's own code, the decoding shared with the
container adapter included. No trial may end as a harness error or a traceback: each is a
failed case naming the step (or the node's start, for the first hello), or a pass when the
mutation happened to be valid; and every failure must print.

FUZZ_TRIALS (default 10,000) and FUZZ_SEED change the budget and the seed.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _scripted_node import CLOSE, Script, scripted, scripted_adapter

from conformance.cases import Case
from conformance.catalog import load_catalog
from conformance.loader import load_suites
from conformance.runner import CaseRunner

CASES = Path(__file__).parent / "data" / "wire_cases.yaml"
TRIALS = int(os.environ.get("FUZZ_TRIALS", "10000"))
SEED = int(os.environ.get("FUZZ_SEED", "13"))
MAX_LINE = 4096  # small, so that an over-long line costs little (the cases' lines are shorter)

Mutation = Callable[[bytes, random.Random], list[bytes]]


class _Raw:
    """A token json.dumps cannot write (NaN, 6.0 as written, a 10,000-digit integer)."""

    def __init__(self, text: str) -> None:
        self.text = text


def render(value: Any) -> bytes:
    """JSON text of `value`, with `_Raw` tokens and `_Dup` objects written as they are."""
    if isinstance(value, _Raw):
        return value.text.encode()
    if isinstance(value, _Dup):
        pairs = list(value.pairs)
        return b"{" + b",".join(json.dumps(k).encode() + b":" + render(v) for k, v in pairs) + b"}"
    if isinstance(value, dict):
        return b"{" + b",".join(json.dumps(k).encode() + b":" + render(v)
                               for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(render(v) for v in value) + b"]"
    return json.dumps(value).encode()


class _Dup:
    """An object with a key twice."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


BAD_VALUES: list[Any] = [
    "6", "no", "false", "", "0", True, False, None, [], {}, -1, 2**64, 7, 0,
    _Raw("6.0"), _Raw("1e308"), _Raw("-0.5"), _Raw("NaN"), _Raw("Infinity"), _Raw("-Infinity"),
    _Raw("9" * 10_000), _Raw("-" + "9" * 30), "\ud800", "x\udfff", _Raw("[" * 3000 + "]" * 3000),
    [["k"]], [[1, 2]], {"event": 1}, "0" * 64, "A" * 64,
]
# Rewrites that can never leave a valid line (the others may: e.g. 7 where 7 is right).
ALWAYS_INVALID = {"raw-token", "duplicate-key", "garbage-line", "not-an-object",
                  "close-stdout", "over-long", "deep-nesting"}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside `value` (dict keys and list indexes), depth first."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(path + (k,))
            out += _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(path + (i,))
            out += _paths(v, path + (i,))
    return out


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        obj = obj[p]
    return obj


def _structural(kind: str) -> Mutation:
    def mutate(line: bytes, rng: random.Random) -> list[bytes]:
        obj = json.loads(line)
        paths = _paths(obj)
        path = rng.choice(paths)
        parent, key = _parent(obj, path), path[-1]
        if kind == "replace":
            parent[key] = rng.choice(BAD_VALUES)
        elif kind == "drop" and isinstance(parent, dict):
            del parent[key]
        elif kind == "drop":
            parent.pop(key)
        elif kind == "add-field":
            target = parent if isinstance(parent, dict) else obj
            target[f"extra_{rng.randrange(99)}"] = rng.choice([1, "x", None, [1], {"a": 1}])
        elif kind == "raw-token":
            parent[key] = _Raw(rng.choice(["6.0", "1e308", "NaN", "Infinity", "-Infinity",
                                           "9" * 10_000, "1" * 21, "-2.5e-3"]))
        elif kind == "duplicate-key":
            objects = [p for p in [()] + paths if isinstance(_get(obj, p), dict)
                       and _get(obj, p)]
            where = rng.choice(objects)
            inner = _get(obj, where)
            k = rng.choice(list(inner))
            dup = _Dup(list(inner.items()) + [(k, rng.choice([inner[k], 1, "x"]))])
            if where:
                _parent(obj, where)[where[-1]] = dup
            else:
                obj = dup
        elif kind == "deep-nesting":
            depth = rng.randrange(65, 20_000)
            parent[key] = _Raw("[" * depth + "]" * depth)
        return [render(obj) + b"\n"]
    return mutate


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _truncate(line: bytes, rng: random.Random) -> list[bytes]:
    return [line[:rng.randrange(0, len(line) - 1)] + b"\n"]


def _flip(line: bytes, rng: random.Random) -> list[bytes]:
    data = bytearray(line[:-1])
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return [bytes(data).replace(b"\n", b" ") + b"\n"]


MUTATIONS: dict[str, Mutation] = {
    "replace": _structural("replace"),
    "drop": _structural("drop"),
    "add-field": _structural("add-field"),
    "raw-token": _structural("raw-token"),
    "duplicate-key": _structural("duplicate-key"),
    "deep-nesting": _structural("deep-nesting"),
    "truncate": _truncate,
    "flip-bytes": _flip,
    "doubled": lambda line, rng: [line, line],
    "blank-lines": lambda line, rng: [b"\n", b"  \r\n", line],
    "garbage-line": lambda line, rng: [rng.choice([b"debug: hello\n", b"\xff\xfe\n",
                                                   b'{"foo": 1}\n', b"[]\n", b"null\n"]), line],
    "not-an-object": lambda line, rng: [b"[" + line[:-1] + b"]\n"],
    "close-stdout": lambda line, rng: [CLOSE],
    "over-long": lambda line, rng: [line[:1] + b" " * MAX_LINE + line[1:]],
    "stray-event": lambda line, rng: [rng.choice([b'{"event":"cold_start"}\n',
                                                  b'{"event":"other","x":1}\n']), line],
}


def _cases() -> list[Case]:
    return list(load_suites([CASES], load_catalog())[0].cases)


def _lines_written(case: Case, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> int:
    script = Script()
    scripted(monkeypatch, script)
    adapter = scripted_adapter(data_dir, max_line=MAX_LINE)
    try:
        result = CaseRunner(case, adapter).run()
    finally:
        adapter.close()
    assert result.status == "passed", result.failure.render() if result.failure else result
    return script.written


def test_10000_malformed_lines_end_as_failed_steps_never_harness_errors(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cases = _cases()
    lengths = {c.id: _lines_written(c, monkeypatch, tmp_path / "probe") for c in cases}
    rng = random.Random(SEED)
    outcomes: Counter[tuple[str, str]] = Counter()
    for trial in range(TRIALS):
        case = cases[trial % len(cases)]
        name = rng.choice(sorted(MUTATIONS))
        target = rng.randrange(lengths[case.id])
        mutation = MUTATIONS[name]
        script = Script(target, lambda line, m=mutation: m(line, rng))
        scripted(monkeypatch, script)
        adapter = scripted_adapter(tmp_path / "node", max_line=MAX_LINE)
        try:
            result = CaseRunner(case, adapter).run()  # an exception fails the test: traceback
        finally:
            adapter.close()
        where = f"trial {trial}: {name} of line {target} in {case.id}"
        # not_applicable: a valid hello that lost a capability the case needs
        assert result.status in ("passed", "failed", "not_applicable"), f"{where}: {result.status}"
        outcomes[(name, result.status)] += 1
        if result.status == "failed":
            failure = result.failure
            assert failure is not None
            text = failure.render()
            text.encode("utf-8")  # printable: no lone surrogate reached the message
            assert "harness error" not in text, f"{where}: {text}"
            # a step; else the final check (replay and compare, after the last step: the
            # report says so) or the node's start (the first hello, before any step)
            final = result.steps_run == len(case.steps)
            start = result.steps_run == 0 and ("did not start" in text or "hello (id 1)" in text)
            assert failure.step is not None or final or start, (
                f"{where}: a failure naming no step: {text}")
        else:
            assert name not in ALWAYS_INVALID, f"{where}: {result.status}"
    failed = sum(n for (_, status), n in outcomes.items() if status == "failed")
    for name in MUTATIONS:  # each mutation ran, and all but the benign ones failed cases
        assert sum(n for (m, _), n in outcomes.items() if m == name) > 0, name
        if name not in ("add-field", "blank-lines"):
            assert outcomes[(name, "failed")] > 0, (name, outcomes)
    assert outcomes[("blank-lines", "failed")] == 0, outcomes  # tolerated by the protocol
    assert failed >= TRIALS * 0.7, outcomes
