"""Entry builders and an opened node, shared by the reference's unit tests
(test_ref_engine, test_ref_gate)."""

from __future__ import annotations

from typing import Any

from reference_impl.disk import SimDisk
from reference_impl.failpoints import Failpoints
from reference_impl.node import Node, NodeConfig


def add(key: str, delta: int, ts: int) -> dict[str, Any]:
    return {"kind": "raw", "ts": ts, "ops": [{"op": "add", "key": key, "delta": delta}]}


def put(key: str, value: str, ts: int) -> dict[str, Any]:
    return {"kind": "raw", "ts": ts, "ops": [{"op": "put", "key": key, "value": value}]}


NOOP: dict[str, Any] = {"kind": "noop"}


def lease(ceiling: int) -> dict[str, Any]:
    return {"kind": "hlc_lease", "ceiling": ceiling}


def cutover(value: int) -> dict[str, Any]:
    return {"kind": "control", "opcode": "cutover", "value": value}


def opened(disk: SimDisk, config: NodeConfig | None = None, fp: Failpoints | None = None) -> Node:
    node = Node(disk, config or NodeConfig(), failpoints=fp or Failpoints())
    node.open()
    return node
