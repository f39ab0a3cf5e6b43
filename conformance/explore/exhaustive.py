"""Bounded exhaustive mode: every short sequence x every crash point x every end fault.

CrashMonkey and B3 (Mohan et al., OSDI 2018) found crash-consistency bugs in every file
system they tried by testing *all* short workloads, each with a crash at every point,
instead of a random sample of long ones: most such bugs need only a few operations. This
module applies the idea to this protocol. `exhaustive(spec, depth=N)` runs:

    for each valid sequence of 1..N symbols from ALPHABET        (sequences)
      for each durability mode the node has (x each lower profile, with profiles=True)
        for each end fault: a process kill, a power loss in each mode
          for each crash point of the operations, at each of its hits, or none
            for each crash point of the recovery, at each of its hits, or none
              one run (_exhaustive_run): open, [arm], the symbols, the end fault,
              restart, [arm], open, replay, check, (again after a recovery crash), finish

The alphabet is six symbols, each one suite step: `data` (a raw batch with an integer
add), `lease` (an HLC lease, a non-data entry), `delete` (a delete-prefix with exclude),
`begin` (snapshot_begin), `persist` and `persist_config` (snapshot_persist of the oldest
begun snapshot at each site). A sequence is valid when each persist has a begun snapshot
newer than the last one persisted and no snapshot is begun at index 0.

The crash points are the node's failpoints (with `failpoints`: armed after the first
open, they may fire anywhere in the sequence) and, with the adapter's `crash_points`
fault, each of write, fsync, fsyncdir and rename (a `Crash` with `on`): armed right
before the last symbol and counted within it (so each state is new: a crash point in an
earlier symbol is the same state as one in the last symbol of a shorter sequence), and
in the recovery within the cold start or within the replay. A crash point is armed at
its 1st hit, its 2nd, ... until a run where it no longer fires (`_Exhaustive.each_hit`;
a file-system crash point at most up to its `crash_nth`-th); a **crash state** is a run
whose armed points all fired, and only those are counted (`states`; those with a
file-system crash point also in `crash_point_states`). A violation ends its run, is counted per
requirement (`by_requirement`), and the first one of each requirement is saved as a
fixture (the enumeration goes from short to long, so it is among the shortest) and
replayed like exploration's. `first=True` stops at the first violation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..cases import POWER_LOSS_MODES
from .driver import (
    CRASH_POINT_OPS,
    OPEN_CRASH_NEEDS,
    OPERATION_POINTS,
    RECOVERY_POINTS,
    SWITCHED,
    Driver,
    Target,
    probe,
)
from .findings import Finding, Found, Stats, failed_step
from .fixtures import keep_fixture, print_finding
from .run import DEFAULT_OUT

# Crash points: each operation kind at its 1st..CRASH_NTH-th occurrence within its window.
CRASH_NTH = 4

# The alphabet of the bounded-exhaustive mode: each symbol is one suite step.
ALPHABET = ("data", "lease", "delete", "begin", "persist", "persist_config")


@dataclass
class ExhaustiveReport:
    target: str
    depth: int
    alphabet: tuple[str, ...]
    sequences: int  # valid operation sequences of length 1..depth
    states: int  # crash states explored (runs: sequence x crash point x end fault x mode)
    steps: int
    duration_s: float
    findings: list[Finding]
    by_requirement: dict[str, int]  # failing runs per violated requirement
    profiles: bool = False
    first_failure_s: float | None = None
    first_failure_states: int | None = None
    crash_point_states: int = 0  # states in which a crash point fired (in `states`)
    crash_nth: int = 0  # crash points: the largest nth tried (0: none, no crash_points)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["findings"] = [{"requirement": f.requirement, "message": f.message,
                            "steps": len(f.steps), "path": str(f.path) if f.path else None,
                            "rejected": f.rejected, "rejected_why": f.rejected_why}
                           for f in self.findings]
        return out


def _op_step(symbol: str, ts: int, names: list[str], n: int) -> tuple[str, dict[str, Any]]:
    if symbol == "data":
        return "apply", {"entry": {"kind": "raw", "ts": ts, "ops": [
            {"op": "add", "key": "n", "delta": 1}, {"op": "put", "key": "a/1", "value": f"v{ts}"}]}}
    if symbol == "lease":
        return "apply", {"entry": {"kind": "hlc_lease", "ceiling": 1000 * ts}}
    if symbol == "delete":
        return "apply", {"entry": {"kind": "delete_prefix", "prefix": "", "exclude": "a/keep/",
                                   "ts": ts}}
    if symbol == "begin":
        return "snapshot_begin", {"name": f"s{n}"}
    return "snapshot_persist", {"name": names[0],
                                "site": "config" if symbol == "persist_config" else "local"}


def sequences(depth: int, alphabet: Sequence[str] = ALPHABET) -> Iterator[tuple[str, ...]]:
    """Every valid sequence of 1..depth symbols: a persist needs a begun snapshot newer
    than the last one persisted; a snapshot needs at least one entry (no snapshot at 0)."""
    for length in range(1, depth + 1):
        for seq in itertools.product(alphabet, repeat=length):
            index, pending, pointer, ok = 0, [], 0, True
            for sym in seq:
                if sym in ("data", "lease", "delete"):
                    index += 1
                elif sym == "begin":
                    ok = ok and index > 0
                    pending.append(index)
                else:
                    if not pending or pending[0] <= pointer:
                        ok = False
                        break
                    pointer = pending.pop(0)
            if ok:
                yield seq


@dataclass(frozen=True)
class Crash:
    """One crash armed in a run.

    A failpoint (`on` None): the failpoint `name` at its hit `n` + 1 (`n` is the step's
    `skip`), armed at the start of the phase (after the first open; after the restart).
    A crash point (`on`: write, fsync, fsyncdir, rename): the node's `n`-th such operation
    (1: the first) within ONE step, its window `name`: `last` (the sequence's last symbol),
    `open` or `replay` (of the recovery). A crash point that does not fire in its window
    ends the run: the run without it covers that state. The window makes the crash land
    in the same step on any implementation, or nowhere, so its fixture replays anywhere.
    """

    name: str
    n: int
    on: str | None = None

    def arm(self, drv: Driver) -> None:
        if self.on is None:
            drv.assumes.add("failpoints")
            drv.run("failpoint", {"name": self.name, "action": "crash", "skip": self.n})
        else:
            drv.assumes.add("crash_points")
            drv.run("crash_point", {"on": self.on, "nth": self.n})

    def window(self, name: str) -> bool:
        """Whether this is a crash point whose window is `name`."""
        return self.on is not None and self.name == name


def _exhaustive_run(target: Target, seq: Sequence[str], durability: str, without: tuple[str, ...],
                    point: Crash | None, end: tuple[str, str | None],
                    recovery: Crash | None) -> tuple[bool, bool]:
    """One crash state: open, [arm `point`], the operations (until the node dies), the end
    fault, restart, [arm `recovery`], open, replay, check (again after a recovery crash),
    final check. Returns whether `point` and `recovery` fired. Raises Found.

    A file-system crash point is armed right before its window (the last operation; the
    recovery's open; its replay); when it does not fire there, the run ends at once,
    uncounted: the run without it is the same state."""
    drv = Driver(target.impl, durability, without, target.stats, target.seed, target.faults)
    fired = rec_fired = False
    try:
        drv.begin()
        drv.run("open", {})
        if point is not None and point.on is None:
            point.arm(drv)
        ts, begun = 0, 0
        pending: list[str] = []
        for i, sym in enumerate(seq):
            if not drv.alive:
                break
            if sym in ("data", "lease", "delete"):
                ts += 1
            elif sym == "begin":
                begun += 1
            kind, args = _op_step(sym, ts, pending, begun)
            if kind == "snapshot_persist":
                pending.pop(0)
            if point is not None and point.window("last") and i == len(seq) - 1:
                point.arm(drv)
            drv.run(kind, args)
            if kind == "snapshot_begin" and drv.alive:
                pending.append(args["name"])
        fired = point is not None and not drv.alive
        if point is not None and point.on is not None and not fired:
            return False, False
        mode, loss = end
        if mode == "power":
            drv.assumes.add("power_loss")
            drv.run("crash", {"mode": "power", "loss": loss})
        elif drv.alive:
            drv.run("crash", {"mode": "process"})
        for attempt in (0, 1):
            drv.run("restart", {})
            rec = recovery if attempt == 0 else None
            if rec is not None and not rec.window("replay"):
                rec.arm(drv)
            drv.run("open", {})
            if rec is not None and rec.window("open") and drv.alive:
                return fired, False
            if rec is not None and rec.window("replay"):
                if not drv.is_open:
                    return fired, False
                rec.arm(drv)
            if drv.is_open:
                drv.run("replay", {})
            if rec is not None and rec.window("replay") and drv.alive:
                return fired, False
            if drv.is_open:
                drv.run("check", {"invariants": ["state_matches_model", "meta_invisible",
                                                 "hlc_ceiling"]})
            if drv.alive:
                break
            rec_fired = True
        drv.finish()
    finally:
        drv.close()
    return fired, rec_fired


@dataclass
class _Exhaustive:
    target: Target
    out: Path | None
    log: TextIO | None
    first: bool = False  # stop at the first violation
    findings: dict[str, Finding] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)
    crash_nth: int = 0  # the largest nth of a crash point
    states: int = 0
    crash_point_states: int = 0
    first_failure_s: float | None = None
    first_failure_states: int | None = None

    def run(self, seq: Sequence[str], durability: str, without: tuple[str, ...],
            point: Crash | None, end: tuple[str, str | None],
            recovery: Crash | None) -> tuple[bool, bool]:
        try:
            fired, rec_fired = _exhaustive_run(self.target, seq, durability, without, point,
                                               end, recovery)
        except Found as f:
            # a violation ends the run: count it as a state of its own
            fired = rec_fired = True
            self.failing[f.requirement] = self.failing.get(f.requirement, 0) + 1
            if self.first_failure_s is None:
                self.first_failure_s = time.monotonic() - self.target.stats.started
                self.first_failure_states = self.states + 1
            if f.requirement not in self.findings:  # the first is among the shortest
                finding = Finding(f.requirement, f.failure.message, f.steps, f.case,
                                  failed_step=failed_step(f))
                self.findings[f.requirement] = finding
                if self.out is not None:
                    keep_fixture(finding, self.out, self.target, seed=None,
                                 spec=self.target.spec)
                if self.log is not None:
                    print_finding(finding, self.log)
            if self.first:
                self.states += 1
                raise _Stop from None
        if (point is None or fired) and (recovery is None or rec_fired):
            self.states += 1
            if (point is not None and point.on) or (recovery is not None and recovery.on):
                self.crash_point_states += 1
        return fired, rec_fired

    def each_hit(self, crash: Crash, run: Callable[[Crash], bool]) -> None:
        """Arm `crash` at its 1st, 2nd, ... hit until a run where it no longer fires (a
        crash point: at most up to its `crash_nth`-th operation)."""
        while run(crash) and (crash.on is None or crash.n < self.crash_nth):
            crash = dataclasses.replace(crash, n=crash.n + 1)

    def configuration(self, seq: Sequence[str], durability: str, without: tuple[str, ...],
                      end: tuple[str, str | None], points: Sequence[Crash],
                      recovery_points: Sequence[Crash]) -> None:
        """Every crash point of the operations (or none), each with every crash point of
        the recovery (or none)."""

        def with_point(point: Crash | None) -> bool:
            fired, _ = self.run(seq, durability, without, point, end, None)
            if point is not None and point.on is not None and not fired:
                return False  # (every recovery run would end where this one did)
            for q in recovery_points:
                self.each_hit(q, lambda rec: self.run(seq, durability, without, point, end,
                                                      rec)[1])
            return fired

        with_point(None)
        for p in points:
            self.each_hit(p, with_point)


class _Stop(Exception):
    pass


def _recovery_crash_points(caps: frozenset[str], without: tuple[str, ...],
                           crash_nth: int) -> list[Crash]:
    """The crash points of the recovery: within the replay; within the cold start only
    where the oracle can judge a crash there (driver.OPEN_CRASH_NEEDS)."""
    if crash_nth <= 0:
        return []
    windows = ["replay"]
    if all(c in caps and c not in without for c in OPEN_CRASH_NEEDS):
        windows.insert(0, "open")
    return [Crash(w, 1, on) for w in windows for on in CRASH_POINT_OPS]


def exhaustive(spec: str = "reference", *, depth: int = 4, alphabet: Sequence[str] = ALPHABET,
               out: Path | None = DEFAULT_OUT, timeout: float = 10.0, profiles: bool = False,
               first: bool = False, target: Target | None = None,
               log: TextIO | None = None, crash_nth: int = CRASH_NTH,
               hide: Iterable[str] = ()) -> ExhaustiveReport:
    """Bounded exhaustive exploration (CrashMonkey/B3): every valid sequence of up to
    `depth` symbols x every crash point at each of its hits (or none) x every end fault
    (process kill, power loss in each mode) x every crash point at each of its hits in
    the recovery that follows (or none) x each durability mode the node has (x the lower
    capability profiles of a node that honours `without`, with `profiles`).

    The crash points of the operations are the failpoints (with `failpoints`) and, with
    the `crash_points` fault, each of write, fsync, fsyncdir and rename at its 1st to
    `crash_nth`-th occurrence within the last operation; those of the recovery, the
    failpoints and each crash point within the cold start (`open`) or within the replay.
    `crash_nth=0` leaves crash points out."""
    target = target or probe(spec, timeout=timeout, hide=hide)
    stats = target.stats = Stats()
    caps = target.capabilities
    durabilities = ["synced"] + (["unsynced"] if "unsynced_mode" in caps else [])
    withouts: list[tuple[str, ...]] = [()]
    if profiles and target.switchable:
        withouts += [w for w in dict.fromkeys(SWITCHED) if w]
    ends: list[tuple[str, str | None]] = [("process", None)]
    if "power_loss" in caps:
        ends += [("power", loss) for loss in POWER_LOSS_MODES]
    points: list[Crash] = []
    recovery_points: list[Crash] = []
    if "failpoints" in caps:
        points += [Crash(p, 0) for p in OPERATION_POINTS]
        recovery_points += [Crash(p, 0) for p in RECOVERY_POINTS]
    if "crash_points" not in caps:
        crash_nth = 0
    if crash_nth > 0:
        points += [Crash("last", 1, on) for on in CRASH_POINT_OPS]
    ex = _Exhaustive(target, out, log, first, crash_nth=crash_nth)
    n_seq = 0
    with contextlib.suppress(_Stop):
        for seq in sequences(depth, alphabet):
            n_seq += 1
            for durability, without, end in itertools.product(durabilities, withouts, ends):
                ex.configuration(seq, durability, without, end, points,
                                 recovery_points + _recovery_crash_points(caps, without,
                                                                          crash_nth))
    return ExhaustiveReport(spec, depth, tuple(alphabet), n_seq, ex.states, stats.steps,
                            time.monotonic() - stats.started, list(ex.findings.values()),
                            ex.failing, profiles, ex.first_failure_s, ex.first_failure_states,
                            ex.crash_point_states, crash_nth)
