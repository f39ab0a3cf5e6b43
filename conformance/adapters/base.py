"""The adapter seam: one node under test, started, driven, crashed and restarted.

The runner only speaks to this interface, so an in-process node, a local
process and a container are interchangeable. An adapter never lets a child
outlive `close()`, and every wait it does has a timeout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


class AdapterError(Exception):
    """The node under test misbehaved at the transport or process level."""


class RequestTimeout(AdapterError):
    pass


class NodeDied(AdapterError):
    """The node exited (or was killed) while a request was in flight."""


class ProtocolViolation(AdapterError):
    """A reply that is not valid protocol (bad JSON, wrong id, missing fields)."""


class PowerLossUnsupported(AdapterError):
    pass


@dataclass(frozen=True)
class Hello:
    version: int
    implementation: dict[str, Any]
    capabilities: frozenset[str]
    entry_kinds: frozenset[str]


@dataclass
class Exchange:
    """One request and what came back: a reply, or nothing because the node died."""

    request: dict[str, Any]
    reply: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)


class Adapter(ABC):
    #: harness-side fault capabilities, e.g. {"process_kill", "power_loss"}
    fault_capabilities: frozenset[str] = frozenset({"process_kill"})

    @abstractmethod
    def start(self, durability: str) -> Hello:
        """Start the node (a fresh data dir the first time, the same one after) and say hello."""

    @abstractmethod
    def request(self, op: str, **fields: Any) -> Exchange:
        """Send one request and wait (with a timeout) for its reply.

        Returns the exchange with `reply=None` when the node died before replying;
        raises RequestTimeout / ProtocolViolation for a hang or a malformed reply.
        """

    @abstractmethod
    def crash(self) -> None:
        """Kill the node at once (SIGKILL); OS buffers survive."""

    def power_loss(self, mode: str) -> None:
        """Kill the node and drop writes it had not synced, per mode."""
        raise PowerLossUnsupported(self.unavailable_faults().get(
            "power_loss", f"{type(self).__name__} cannot simulate a power loss"))

    def arm_crash_point(self, on: str, nth: int) -> None:
        """Stop the node at its `nth` file-system operation `on` from now (a crash point of
        the crash-simulating filesystem, conformance/faults/crashfs); disarmed at start."""
        raise PowerLossUnsupported(self.unavailable_faults().get(
            "crash_points", f"{type(self).__name__} has no crash points"))

    def sync_counters(self) -> dict[str, int] | None:
        """What the node did to its files so far (writes, fsyncs, fsyncdirs, ...), counted
        by a layer under it; None when the adapter has no such layer."""
        return None

    def unavailable_faults(self) -> dict[str, str]:
        """Harness faults this adapter cannot inject here, each with the reason in words.

        The verdict quotes the reason: a case that needs such a fault is not applicable,
        and a profile whose MUST requirements it cites cannot be certified (the harness,
        not the node, could not test it). The default: every fault this adapter class does
        not provide at all.
        """
        out: dict[str, str] = {}
        if "power_loss" not in self.fault_capabilities:
            out["power_loss"] = f"{self.describe()} cannot simulate a power loss"
        if "crash_points" not in self.fault_capabilities:
            out["crash_points"] = f"{self.describe()} has no file-system crash points"
        if "sync_accounting" not in self.fault_capabilities:
            out["sync_accounting"] = f"{self.describe()} cannot count the node's syncs"
        return out

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def logs(self) -> str:
        """The node's log output so far (stderr / container logs)."""

    @abstractmethod
    def close(self) -> None:
        """Stop the node and remove everything the adapter created. Idempotent."""

    def describe(self) -> str:
        return type(self).__name__
