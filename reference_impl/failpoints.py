"""Failpoints at the protocol's crash points (in the spirit of etcd's gofail).

A failpoint is a named place in the code. Armed with `crash`, reaching it raises
`SimulatedCrash` (the in-process stand-in for a SIGKILL at that instant); armed
with `error`, the operation in progress fails with `InjectedError` instead.
Each arming fires once, on the (skip+1)-th time the point is reached.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from .errors import InjectedError, SimulatedCrash

# Crash points, in protocol order for a snapshot persist, then restore and apply.
CRASH_POINTS = ("before_pin", "after_pin", "after_save", "mid_restore", "after_batch_commit")
# Error points: the pin (set_durable_applied_index) fails; the applied-index reader fails.
ERROR_POINTS = ("pin", "reader")
ALL_POINTS = CRASH_POINTS + ERROR_POINTS

Action = Literal["crash", "error"]


@dataclass
class _Arming:
    action: Action
    skip: int


@dataclass
class Failpoints:
    armed: dict[str, _Arming] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)

    def arm(self, name: str, action: Action = "crash", *, skip: int = 0) -> None:
        if name not in ALL_POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(ALL_POINTS)}")
        if action not in ("crash", "error"):
            raise ValueError(f"failpoint action must be 'crash' or 'error', got {action!r}")
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ValueError(f"failpoint skip must be a non-negative integer, got {skip!r}")
        self.armed[name] = _Arming(action, skip)

    def disarm(self, name: str) -> None:
        self.armed.pop(name, None)

    def hit(self, name: str) -> None:
        self.hits[name] += 1
        self.trace.append(name)
        arming = self.armed.get(name)
        if arming is None:
            return
        if arming.skip > 0:
            arming.skip -= 1
            return
        del self.armed[name]
        if arming.action == "crash":
            raise SimulatedCrash(name)
        raise InjectedError(f"injected error at failpoint {name!r}")
