"""Entry generators for suites (`apply: {generate: ...}`): deterministic from the case seed.

The traffic half of a case, as in etcd's robustness tests: what the harness commits, apart
from how the node is judged (oracle.py) and driven (runner/).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any


def generate(spec: dict[str, Any], rng: random.Random, start: int) -> Iterator[dict[str, Any]]:
    """Entry generators for suites: deterministic from the case seed."""
    kind, count = spec["kind"], int(spec["count"])
    for i in range(count):
        ts = start + i + 1
        if kind == "add":
            yield {"kind": "raw", "ts": ts,
                   "ops": [{"op": "add", "key": spec.get("key", "n"),
                            "delta": spec.get("delta", 1)}]}
        elif kind == "put":
            key = f"{spec.get('key_prefix', 'k/')}{i}"
            yield {"kind": "raw", "ts": ts,
                   "ops": [{"op": "put", "key": key, "value": _put_value(spec, ts)}]}
        elif kind == "lease":
            yield {"kind": "hlc_lease",
                   "ceiling": spec.get("ceiling_start", 1000) + i * spec.get("ceiling_step", 100)}
        elif kind == "noop":
            yield {"kind": "noop"}
        else:
            yield _mixed(rng, ts)


def _put_value(spec: dict[str, Any], ts: int) -> str:
    """The `put` generator's value; with `value_bytes`, exactly that many UTF-8 bytes:
    `value` (default "v") repeated as many whole times as fit, padded with "v"."""
    if "value_bytes" not in spec:
        return str(spec.get("value", f"v{ts}"))
    size, unit = int(spec["value_bytes"]), str(spec.get("value") or "v")
    value = unit * (size // len(unit.encode()))
    return value + "v" * (size - len(value.encode()))


def _mixed(rng: random.Random, ts: int) -> dict[str, Any]:
    keys = ["a/1", "a/2", "b/1", "n"]
    roll = rng.random()
    if roll < 0.45:
        return {"kind": "raw", "ts": ts, "ops": [{"op": "add", "key": "n", "delta": 1},
                                                 {"op": "put", "key": rng.choice(keys[:3]),
                                                  "value": f"v{ts}"}]}
    if roll < 0.6:
        return {"kind": "txn", "start_ts": max(0, ts - rng.randint(1, 4)), "commit_ts": ts,
                "ops": [{"op": "put", "key": rng.choice(keys), "value": f"t{ts}"}]}
    if roll < 0.7:
        return {"kind": "delete_prefix", "prefix": "a/", "exclude": rng.choice([None, "a/1"]),
                "ts": ts}
    if roll < 0.85:
        return {"kind": "hlc_lease", "ceiling": ts * 10}
    if roll < 0.92:
        return {"kind": "control", "opcode": "cutover", "value": ts}
    return {"kind": "noop"}
