"""The in-process adapter: the reference node (or a mutant of it) on a simulated disk.

No serialization: requests go straight to the reference server's dispatcher. Its replies
and events pass the same schema check as a remote node's (conformance/wire/), so every run
in process proves the schemas against the reference.
A crash drops the node object; a power loss also drops the simulated disk's
unsynced writes, in any of its modes. Deterministic from the seed.
"""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Callable
from typing import Any

from reference_impl.disk import PowerLossMode, SimDisk
from reference_impl.errors import SimulatedCrash
from reference_impl.node import Node, NodeConfig
from reference_impl.server import Server

from ..wire import check_event, check_reply
from .base import Adapter, AdapterError, Exchange, Hello

NodeFactory = Callable[[SimDisk, NodeConfig], Node]


def reference_node(disk: SimDisk, config: NodeConfig) -> Node:
    return Node(disk, config)


class _Sink:
    """Collects events the server would have written to stdout."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.events.append(json.loads(line))
        return len(text)

    def flush(self) -> None:
        pass


class InProcessAdapter(Adapter):
    fault_capabilities = frozenset({"process_kill", "power_loss", "crash_points",
                                    "sync_accounting"})

    def __init__(self, seed: int = 0, config: NodeConfig | None = None,
                 node_factory: NodeFactory = reference_node, name: str = "reference") -> None:
        self.seed = seed
        self.disk = SimDisk(seed=seed)
        self.rng = random.Random(seed)
        self.base_config = config or NodeConfig()
        self.node_factory = node_factory
        self.name = name
        self._server: Server | None = None
        self._sink = _Sink()
        self._next_id = 1
        self._log: list[str] = []

    def describe(self) -> str:
        return f"in-process {self.name}"

    def start(self, durability: str) -> Hello:
        self.disk.disarm_crash_points()  # a crash point lives for one node lifetime
        self._sink = _Sink()
        node = self.node_factory(self.disk, self.base_config)
        self._server = Server(node, self._sink)  # type: ignore[arg-type]
        ex = self.request("hello", versions=[1], harness="conformance",
                          config={"durability": durability})
        if ex.reply is None or not ex.reply.get("ok"):
            raise AdapterError(f"hello failed: {ex.reply}")
        r = ex.reply["result"]
        return Hello(r["version"], r["implementation"], frozenset(r["capabilities"]),
                     frozenset(r["entry_kinds"]))

    def request(self, op: str, **fields: Any) -> Exchange:
        if self._server is None:
            raise AdapterError(f"{op}: the node is not running (crashed, or never started)")
        req = {"id": self._next_id, "op": op, **fields}
        self._next_id += 1
        before = len(self._sink.events)
        try:
            reply = self._server.dispatch(json.loads(json.dumps(req)))
        except SimulatedCrash as crash:
            self._log.append(str(crash))
            self._server = None
            return Exchange(req, None, self._sink.events[before:])
        except Exception:  # noqa: BLE001 - an uncaught exception kills a real process too
            self._log.append(f"{op}: the node raised an uncaught exception and died:\n"
                             + traceback.format_exc())
            self._server = None
            return Exchange(req, None, self._sink.events[before:])
        events = self._sink.events[before:]
        for event in events:
            check_event(req, event)
        check_reply(req, reply)
        if op == "shutdown":
            self._server = None
        return Exchange(req, reply, events)

    def crash(self) -> None:
        self._server = None
        self._log.append("crash: process kill")

    def power_loss(self, mode: str) -> None:
        self._server = None
        report = self.disk.power_loss(PowerLossMode(mode), self.rng)
        self._log.append(f"power loss {mode}: {report}")

    def arm_crash_point(self, on: str, nth: int) -> None:
        """The simulated disk raises SimulatedCrash at the node's nth `on` operation."""
        self.disk.arm_crash_point(on, nth)
        self._log.append(f"crash point armed: {on} #{nth}")

    def sync_counters(self) -> dict[str, int] | None:
        st = self.disk.stats
        return {"fsyncs": st.fsyncs, "fsyncdirs": st.dir_fsyncs, "sync_writes": 0,
                "syncs": st.total_fsyncs(), "bytes_written": st.bytes_written}

    def alive(self) -> bool:
        return self._server is not None

    def logs(self) -> str:
        return "\n".join(self._log)

    def close(self) -> None:
        self._server = None
