"""`conformance explore`: Hypothesis finds, shrinks and saves failing step sequences.

Handwritten cases cover the bugs someone thought of. Exploration generates the cases
instead: a Hypothesis `RuleBasedStateMachine` whose every rule builds ONE suite `Step`
(the arguments exactly as the YAML loader would produce them) and runs it through one
long-lived `CaseRunner` over the chosen adapter. The same oracle that judges the suites
judges every generated step, so every adapter works (in process, local process, image).
The machine keeps the sequences meaningful (preconditions) and adds only expectations the
protocol fixes exactly: an armed pin error fails the persist with `pin_failed`; a reader
error or a torn meta value makes the cold start fall back with `read_err` /
`missing_meta`; a damaged snapshot fails `open` with the matching verification error; and
`last_applied_index` reads the value the requirements fix while they fix one (a data
entry that wrote records its index, a conflict, a non-data entry or a direct write leaves
the key alone, a pin keeps the maximum, a skip keeps `have`; unknown after a crash until
the next open, after a restore, and after results the protocol leaves open).

A failing step raises `Found` (one subclass per violated requirement, raised from one
place, so Hypothesis tracks and shrinks one failure per requirement); Hypothesis shrinks
it to a minimal sequence; the sequence is written as a YAML fixture in the suite format
with a `fixture:` block (catches, guards = the violated requirement, seed, implementation
identity from `hello`, Hypothesis version). Findings are deduplicated by the violated
requirement and the shrunk sequence: one fixture per requirement and run (a strictly
shorter sequence found later replaces it), and a (requirement, steps) pair already saved
is never written again. `conformance replay FILE --impl ...` reproduces a fixture.
Hypothesis' example database lives in `.hypothesis/conformance` (a cache, gitignored);
the YAML fixtures are the record.

`--exhaustive` is the bounded-exhaustive mode (CrashMonkey/B3 applied to this protocol):
every sequence of up to `--depth` operations from a small alphabet that includes
snapshot_begin and snapshot_persist, each combined with every crash point (a failpoint at
each of its hits) and every power-loss mode at the end, then restart, open (with every
crash point of the recovery at each of its hits), replay and the exactly-once check.

    conformance explore --impl mutant:pin-error-ignored --time 30
    conformance explore --impl reference --examples 500 --seed 7 --out /tmp/found
    conformance explore --impl "python examples/minimal_node.py --data-dir {data_dir}" --time 120
    conformance explore --exhaustive --depth 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO, cast

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reference_impl.errors import NodeError

from . import __version__
from .adapters.base import AdapterError
from .cases import CRASH_POINTS, POWER_LOSS_MODES, Case, Failure, Location, Step
from .impls import Implementation, ImplementationUnavailable, resolve
from .runner import CaseRunner, StepFailed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("fixtures/found")
DEFAULT_DATABASE = Path(".hypothesis/conformance")
SCHEMA = ROOT / "conformance" / "schema" / "suite.schema.json"

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
SITES = ("local", "config")
SNAPSHOT_TAMPERS = {
    # kind -> (the error `open` must fail with, the requirement that says so)
    "truncate_snapshot": ({"code": "snapshot_verify", "kind": "too_small"}, "HV-002"),
    "wrong_token_crc": ({"code": "snapshot_verify", "kind": "token_crc"}, "HV-003"),
    "flip_body_byte": ({"code": "snapshot_verify", "kind": "file_crc"}, "HV-004"),
    "unknown_header_version": ("bad_header", "HV-008"),
}
# The crash points the operations reach (a persist: before_pin, after_pin, after_save; a
# data batch or a pin: after_batch_commit), and those the recovery reaches (the restore
# at open: mid_restore; the replay, and a pin after the restore: after_batch_commit).
OPERATION_POINTS = ("before_pin", "after_pin", "after_save", "after_batch_commit")
RECOVERY_POINTS = ("mid_restore", "after_batch_commit")
# Capability switches the reference (in process, local process) honours through a case's
# `without`: exploration draws lower profiles of it too.
SWITCHED = ((), (), (), ("pin_after_restore",), ("writer",), ("header_applier",), ("reader",))


# =============================================================================== findings


class Found(AssertionError):
    """A generated sequence failed. Subclassed per violated requirement (`found_class`),
    so Hypothesis keeps one minimal example per requirement."""

    requirement: str = ""
    failure: Failure
    steps: list[Step]
    case: Case


_FOUND: dict[str, type[Found]] = {}


def found_class(requirement: str) -> type[Found]:
    cls = _FOUND.get(requirement)
    if cls is None:
        name = "Found_" + re.sub(r"\W", "_", requirement)
        cls = type(name, (Found,), {"requirement": requirement, "__module__": __name__})
        _FOUND[requirement] = cls
    return cls


def _found(failure: Failure, requirement: str, steps: list[Step], case: Case) -> Found:
    exc = found_class(requirement)(f"{requirement}: {failure.message}")
    exc.failure, exc.steps, exc.case = failure, list(steps), case
    return exc


def _reblame(found: Found, requirement: str) -> Found:
    """The same failure, naming the requirement the machine knows to be the cause."""
    found.failure.requirement = requirement
    return _found(found.failure, requirement, found.steps, found.case)


def throw(found: Found) -> NoReturn:
    """The one place a `Found` is raised, never while another exception is handled.

    Hypothesis tells failures apart by exception type, raise location and context
    (`__context__`): one raise site and no context leave the type, i.e. the violated
    requirement, as the only difference, so the same bug reached through different oracle
    checks shrinks as one failure instead of several near-identical fixtures.
    """
    found.__context__ = found.__cause__ = None
    raise found


def collect_found(exc: BaseException) -> list[Found]:
    """The `Found` failures in what Hypothesis raised (one, or an exception group)."""
    if isinstance(exc, Found):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [f for inner in exc.exceptions for f in collect_found(inner)]
    return []


@dataclass
class Finding:
    requirement: str
    message: str
    steps: list[Step]
    case: Case
    path: Path | None = None
    duplicate: bool = False
    replay_red: bool | None = None  # the saved fixture fails again on the implementation
    reference_green: bool | None = None  # ... and passes on the in-process reference
    seen: int = 1  # how many campaigns of the run found this requirement violated

    def key(self) -> str:
        return fixture_key(self.requirement, self.case, self.steps)


@dataclass
class Stats:
    """Counters shared by every example of a run."""

    examples: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    first_failure_s: float | None = None
    first_failure_steps: int | None = None
    first_failure_examples: int | None = None

    def failed(self) -> None:
        if self.first_failure_s is None:
            self.first_failure_s = time.monotonic() - self.started
            self.first_failure_steps = self.steps
            self.first_failure_examples = self.examples


# =============================================================================== step plumbing


def make_step(kind: str, args: dict[str, Any], index: int) -> Step:
    return Step(kind, args, Location("<explore>", index + 1), index)


def _step_requirements(kind: str, args: dict[str, Any], state_req: str) -> tuple[str, ...]:
    """The requirement a failure of this step names when the oracle names none (an
    unexpected error or death, a reply that breaks an expectation the step carries)."""
    if kind in ("snapshot", "snapshot_persist"):
        if args.get("expect_error") == "pin_failed":
            return ("SP-003",)
        return ("SP-001",) if args.get("site", "local") == "local" else ("SP-002",)
    fixed = {"snapshot_begin": "SP-006", "crash": "XR-001", "restart": "XR-001",
             "failpoint": "XR-002", "tamper": "HV-009", "install_snapshot": "CS-010",
             "hlc": "EN-007", "last_applied_index": "ST-004", "open": "CS-008"}
    return (fixed.get(kind, state_req),)


class Driver:
    """One case, built step by step: a CaseRunner over a fresh adapter, and the steps
    it has run. Both the Hypothesis machine and the exhaustive mode drive one."""

    def __init__(self, impl: Implementation, durability: str, without: tuple[str, ...],
                 stats: Stats, seed: int = 0) -> None:
        mode = cast(Literal["synced", "unsynced"], durability)
        self.case = Case(id="explore", description="generated by conformance explore",
                         requirements=("XR-001",), capabilities=(), durability=mode,
                         steps=(), location=Location("<explore>", 1), suite="explore",
                         without=without)
        self.adapter = impl.factory(self.case)
        self.runner = CaseRunner(self.case, self.adapter, seed)
        self.steps: list[Step] = []
        self.stats = stats
        self.failed = False
        self.assumes: set[str] = set()  # capabilities the generated expectations assume
        self.closed = False

    def begin(self) -> frozenset[str]:
        """Start the node; return its capabilities plus the adapter's fault capabilities."""
        failure: Failure | None = None
        try:
            missing = self.runner.begin()
        except AdapterError as exc:
            failure = Failure(f"{type(exc).__name__}: {exc}")
        if failure is not None:
            throw(self._found(failure, "CS-008"))
        if missing:  # cannot happen: the case requires nothing
            raise RuntimeError(f"the explore case is not applicable: {missing}")
        hello = self.runner.s.hello
        assert hello is not None
        return hello.capabilities | self.adapter.fault_capabilities

    @property
    def alive(self) -> bool:
        return self.runner.s.alive

    @property
    def is_open(self) -> bool:
        return self.runner.s.alive and self.runner.s.open

    def run(self, kind: str, args: dict[str, Any], requirements: tuple[str, ...] = ()) -> None:
        step = make_step(kind, args, len(self.steps))
        self.steps.append(step)
        reqs = requirements or _step_requirements(kind, args, self.runner.o.state_requirement())
        self.runner.case = replace(self.case, requirements=reqs)
        self.stats.steps += 1
        failure: Failure | None = None
        try:
            self.runner.execute(step)
        except StepFailed as exc:
            failure = exc.failure
        except AdapterError as exc:
            failure = Failure(f"{type(exc).__name__}: {exc}", step=step)
        if failure is not None:
            throw(self._found(failure, failure.requirement or reqs[0]))

    def finish(self) -> None:
        """The end of every case: replay to the log end and compare with the model."""
        if self.failed or self.runner.oracle is None:
            return
        state_req = self.runner.o.state_requirement()
        self.runner.case = replace(self.case, requirements=(state_req,))
        failure: Failure | None = None
        try:
            self.runner.finish()
        except StepFailed as exc:
            failure = exc.failure
        except AdapterError as exc:
            failure = Failure(f"{type(exc).__name__}: {exc}")
        if failure is not None:
            throw(self._found(failure, failure.requirement or state_req))

    def _found(self, failure: Failure, requirement: str) -> Found:
        self.failed = True
        self.stats.failed()
        failure.logs = self.adapter.logs()
        return _found(failure, requirement, self.steps, self.case_for_fixture())

    def case_for_fixture(self) -> Case:
        return replace(self.case, capabilities=tuple(sorted(self.assumes)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.adapter.close()


# =============================================================================== the machine


@dataclass
class Target:
    """What a run explores: the implementation, what it advertises, how to vary it."""

    impl: Implementation
    spec: str  # the --impl value
    capabilities: frozenset[str]  # hello capabilities + the adapter's fault capabilities
    identity: str  # "name version" from hello, and the adapter
    switchable: bool  # honours `without` (the reference, its mutants)
    seed: int = 0  # the adapter seed (power-loss randomness); replay uses the same
    stats: Stats = field(default_factory=Stats)


def probe(spec: str, *, seed: int = 0, timeout: float = 10.0) -> Target:
    """Resolve --impl and say hello once: identity and capabilities."""
    impl = resolve(spec, seed=seed, timeout=timeout)
    case = Case(id="explore-probe", description="probe", requirements=("XR-001",),
                capabilities=(), durability="synced", steps=(),
                location=Location("<explore>", 1), suite="explore")
    adapter = impl.factory(case)
    try:
        hello = adapter.start("synced")
        caps = hello.capabilities | adapter.fault_capabilities
        name = f"{hello.implementation.get('name', '?')} {hello.implementation.get('version', '')}"
    finally:
        adapter.close()
    switchable = spec.startswith(("reference", "mutant:", "mutant-process:"))
    return Target(impl, spec, caps, f"{name.strip()} ({impl.name})", switchable, seed)


def _present(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


_KEY = st.sampled_from(KEYS)
_OP = st.one_of(
    st.fixed_dictionaries({"op": st.just("add"), "key": _KEY, "delta": st.integers(-2, 5)}),
    st.fixed_dictionaries({"op": st.just("put"), "key": _KEY, "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries({"op": st.just("del"), "key": _KEY}),
)
_OPS = st.lists(_OP, min_size=1, max_size=3)
_DIRECT_KEY = st.sampled_from(DIRECT_KEYS)
_DIRECT_OPS = st.lists(st.one_of(
    st.fixed_dictionaries({"op": st.just("put"), "key": _DIRECT_KEY,
                           "value": st.sampled_from(VALUES)}),
    st.fixed_dictionaries({"op": st.just("del"), "key": _DIRECT_KEY})), min_size=1, max_size=2)


# Hypothesis' stateful engine does "swarm testing": each generated sequence enables a
# random subset of the rules. That diversifies the sequences, but a sequence whose
# `restart` is disabled dies at its first crash (no rule can run: Hypothesis discards the
# sequence). These rules are therefore never disabled: the lifecycle, and one productive
# rule when the node is open.
ALWAYS_ENABLED = frozenset({"restart", "open", "apply_write"})


def _lifecycle_always_enabled(machine: RuleBasedStateMachine) -> None:
    try:
        from hypothesis.stateful import RuleStrategy
    except ImportError:  # pragma: no cover - a Hypothesis without it: plain swarm testing
        return
    if not hasattr(RuleStrategy, "_rule_is_enabled") or not hasattr(machine, "_rules_strategy"):
        return  # pragma: no cover

    class _Strategy(RuleStrategy):
        def _rule_is_enabled(self, r: Any) -> bool:
            if r.function.__name__ in ALWAYS_ENABLED:
                return bool(self.is_valid(r))
            return bool(super()._rule_is_enabled(r))  # type: ignore[no-untyped-call]

    machine._rules_strategy = _Strategy(machine)


class ExploreMachine(RuleBasedStateMachine):
    """One node under test, driven through suite steps. Preconditions keep the sequences
    meaningful for ANY implementation of the protocol: a persist only of a begun snapshot
    newer than the pointer, open only after a (re)start, power loss only with the
    power_loss fault capability, failpoints and tampering only when advertised, at most
    one crash point armed per process lifetime (the oracle reasons about the armed one)."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        _lifecycle_always_enabled(self)
        self.t = target
        self.d: Driver | None = None
        self.caps: frozenset[str] = frozenset()
        self.ts = 0  # the last timestamp handed out
        self.names = 0
        self.pending: dict[str, int] = {}  # begun snapshots of this lifetime: name -> index
        self.pointer: int | None = None  # the pointer's index (None: no snapshot)
        self.pointer_known = True
        self.opened_ever = False
        self.installed = False
        self.tampered_meta = False
        self.reader_error_armed = self.reader_error_before = False  # this / the last lifetime
        self.direct_writes = False  # this sequence may make direct writes (index 0)
        self.damaged: str | None = None  # a snapshot tamper kind: open fails from now on
        # A persist failed or crashed before its pointer save since the last one that
        # completed: the previous pointer's snapshot must still be there (CO-004), so an
        # open or a tamper that cannot find it names CO-004.
        self.persist_interrupted = False
        # The meta key as the protocol fixes it, while it does (`meta_known`): None is
        # absent. `meta_why` is the requirement that fixed the value last; `meta_since`
        # maps a value the node may wrongly report to the requirement it would then
        # violate (an index of a non-data entry applied since: EN-006, ...).
        self.meta: int | None = None
        self.meta_known = True
        self.meta_why = "ST-001"
        self.meta_since: dict[int, str] = {}
        self.seen_applied = 0  # the node's applied index when the meta was last updated
        # this process lifetime
        self.crash_armed = False
        self.pin_error = False
        self.reader_error = False
        self.torn_meta = False
        self.open_tried = False
        self.powered_off = False  # a power loss since the last restart

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def drv(self) -> Driver:
        assert self.d is not None
        return self.d

    def _run(self, kind: str, args: dict[str, Any], reqs: tuple[str, ...] = (),
             assumes: Sequence[str] = ()) -> None:
        self.drv.assumes.update(assumes)
        self.drv.run(kind, args, reqs)
        if not self.drv.alive:
            self._lifetime_over()
        elif self.drv.runner.s.open:
            self._track_applied()

    def _run_pointer_read(self, kind: str, args: dict[str, Any], reqs: tuple[str, ...],
                          assumes: Sequence[str]) -> None:
        """A step that reads the snapshot the pointer names (open, tamper). After a persist
        that failed or crashed before its pointer save, that file must still be there: an
        error reply or a death then names CO-004 (the snapshot was removed too early)."""
        try:
            self._run(kind, args, reqs, assumes)
            return
        except Found as exc:
            found = exc
        reply = found.failure.reply
        error = (reply or {}).get("error") or {}
        if kind == "open" and self.reader_error and error.get("code") == "read_error":
            found = _reblame(found, "CS-005")  # the read error must fall back, not fail
        elif (self.persist_interrupted and self.damaged is None and found.requirement != "CO-004"
                and (reply is None or reply.get("ok") is False)):
            found = _reblame(found, "CO-004")
        throw(found)

    def _lifetime_over(self) -> None:
        self.pending.clear()
        self.crash_armed = self.pin_error = self.reader_error = False
        self.torn_meta = False
        self.meta_known = False
        if not self.drv.alive:
            self.open_tried = False

    def _tick(self) -> int:
        self.ts += 1
        return self.ts

    def has(self, cap: str) -> bool:
        return cap in self.caps

    def alive(self) -> bool:
        return self.d is not None and self.drv.alive

    def dead(self) -> bool:
        return self.d is not None and not self.drv.alive

    def is_open(self) -> bool:
        return self.d is not None and self.drv.is_open

    def before_open(self) -> bool:
        """Alive, not open, and open not tried yet in this lifetime."""
        return self.alive() and not self.drv.runner.s.open and not self.open_tried

    def _last_index(self) -> int:
        return self.drv.runner.o.log.last_index

    def _newer_than_pointer(self, index: int) -> bool:
        return self.pointer_known and (self.pointer is None or index > self.pointer)

    # -- the meta key, as far as the protocol fixes it ----------------------------------------

    def _set_meta(self, value: int | None, why: str, known: bool = True) -> None:
        self.meta, self.meta_known, self.meta_why = value, known, why
        self.meta_since = {}

    def _track_applied(self) -> None:
        """Entries the node applied since the last step: a data entry that wrote records its
        index (ST-004), a conflict leaves meta alone (EN-003), a non-data entry too (EN-006);
        any other result (already_landed: SHOULD advance; nothing written) leaves it open."""
        runner = self.drv.runner
        log = runner.o.log
        for i in range(self.seen_applied + 1, runner.s.applied + 1):
            entry, result = log.entry(i), log.result(i)
            kind = entry.get("kind")
            if kind in ("hlc_lease", "control", "noop"):
                self.meta_since[i] = "EN-006"
                continue
            if result == "ok":
                self._set_meta(i, "ST-008" if kind == "delete_prefix" else "ST-004")
            elif result == "conflict":
                self.meta_since[i] = "EN-003"
            elif self.meta != i:
                self.meta_known = False
        self.seen_applied = runner.s.applied

    def _after_open(self) -> None:
        result = self.drv.runner.s.last_open or {}
        snap = result.get("snap")
        self.pointer = snap if isinstance(snap, int) and snap > 0 else None
        self.pointer_known = True
        self.pending.clear()
        self.seen_applied = self.drv.runner.s.applied
        have = result.get("have")
        if result.get("outcome") == "skipped" and isinstance(have, int):
            self._set_meta(have, "CS-006")
        elif (result.get("reason") == "missing_meta" and self.pointer is None
              and not self.torn_meta and not self.has("pin_after_restore")):
            self._set_meta(None, "ST-001")  # never recorded, nothing restored: still absent
        elif self.has("pin_after_restore") and self.pointer is not None:
            self._set_meta(self.pointer, "CS-011")
        else:  # after a restore: at or below the snapshot's index (CS-010)
            self._set_meta(None, "CS-010", known=False)

    def _after_pin(self, index: int) -> None:
        """A persist pinned at `index` (ST-012: the pin keeps the maximum)."""
        if not self.has("writer"):
            return
        if self.meta_known:
            late = self.meta is not None and self.meta > index
            self._set_meta(max(index, self.meta or 0), "SP-005" if late else "ST-012")

    # -- entries -----------------------------------------------------------------------------

    def _entry(self, data: st.DataObject, kind: str) -> dict[str, Any]:
        if kind == "raw":
            return {"kind": "raw", "ts": self._tick(), "ops": data.draw(_OPS)}
        if kind == "delete_prefix":
            prefix = data.draw(st.sampled_from(PREFIXES))
            exclude = data.draw(st.sampled_from(EXCLUDES))
            return _present(kind="delete_prefix", prefix=prefix, exclude=exclude,
                                ts=self._tick())
        if kind == "txn":
            # an OCC transaction; an old start_ts conflicts with newer writes, and a commit_ts
            # already used makes the already-landed fast path a candidate
            if self.ts > 1 and data.draw(st.booleans()):
                commit = data.draw(st.integers(max(1, self.ts - 3), self.ts))
            else:
                commit = self._tick()
            start = max(0, commit - data.draw(st.integers(1, 4)))
            reads = data.draw(st.lists(_KEY, max_size=2, unique=True))
            ops = data.draw(st.lists(_OP, min_size=1, max_size=2))
            out: dict[str, Any] = {"kind": "txn", "start_ts": start, "commit_ts": commit,
                                   "ops": ops}
            if reads:
                out["reads"] = reads
            return out
        if kind == "prepare":
            start = max(0, self.ts - data.draw(st.integers(0, 3)))
            return {"kind": "prepare", "txn": data.draw(st.sampled_from(TXNS)),
                    "start_ts": start, "ops": data.draw(st.lists(_OP, min_size=1, max_size=2))}
        if kind == "commit":
            return {"kind": "commit", "txn": data.draw(st.sampled_from(TXNS)),
                    "commit_ts": self._tick()}
        if kind == "abort":
            return {"kind": "abort", "txn": data.draw(st.sampled_from(TXNS))}
        if kind == "hlc_lease":
            return {"kind": "hlc_lease", "ceiling": data.draw(st.integers(0, 50)) * 100}
        if kind == "control":
            return {"kind": "control", "opcode": data.draw(st.sampled_from(("cutover", "other"))),
                    "value": data.draw(st.integers(0, 9))}
        return {"kind": "noop"}

    def _entries(self, data: st.DataObject, kinds: Sequence[str]) -> list[dict[str, Any]]:
        chosen = data.draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3))
        return [self._entry(data, k) for k in chosen]

    def _apply(self, data: st.DataObject, kinds: Sequence[str]) -> None:
        entries = self._entries(data, kinds)
        args = {"entry": entries[0]} if len(entries) == 1 else {"entries": entries}
        self._run("apply", args)

    # -- lifecycle ---------------------------------------------------------------------------

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.t.stats.examples += 1
        durabilities = ["synced"]
        if "unsynced_mode" in self.t.capabilities:
            durabilities.append("unsynced")
        durability = data.draw(st.sampled_from(durabilities), label="durability")
        without: tuple[str, ...] = ()
        if self.t.switchable:
            without = data.draw(st.sampled_from(SWITCHED), label="without")
        # Direct writes in one sequence in five: once a crash follows one, the oracle stops
        # comparing states for the rest of the sequence (the write may be lost), which would
        # hide every exactly-once bug after it.
        self.direct_writes = data.draw(st.integers(0, 4), label="direct writes") == 4
        self.d = Driver(self.t.impl, durability, without, self.t.stats, self.t.seed)
        self.caps = self.drv.begin()
        if durability == "unsynced":
            self.drv.assumes.add("unsynced_mode")

    def teardown(self) -> None:
        if self.d is None:
            return
        try:
            if not self.d.failed:
                self.d.finish()
        finally:
            self.d.close()

    @precondition(lambda self: self.before_open())
    @rule()
    def open(self) -> None:
        args: dict[str, Any] = {}
        reqs: tuple[str, ...] = ()
        assumes: list[str] = []
        if self.damaged is not None:
            error, req = SNAPSHOT_TAMPERS[self.damaged]
            args, reqs = {"expect_error": error}, (req, "HV-005", "CS-009")
        elif self.reader_error:
            args = {"expect": {"outcome": "fallback", "reason": "read_err"}}
            reqs, assumes = ("CS-005",), ["reader"]
        elif self.torn_meta and self.has("reader"):
            args = {"expect": {"have": None, "outcome": "fallback", "reason": "missing_meta"}}
            reqs, assumes = ("ST-002", "CS-004"), ["reader"]
        self.open_tried = True
        self._run_pointer_read("open", args, reqs, assumes)
        if self.is_open():
            self.opened_ever = True
            self._after_open()

    @precondition(lambda self: self.dead() or (self.alive() and self.open_tried
                                                and not self.drv.runner.s.open))
    @rule()
    def restart(self) -> None:
        # after a crash, or after an open that failed (a damaged snapshot)
        self._run("restart", {})
        self._lifetime_over()
        self.open_tried = self.powered_off = False
        self.reader_error_before, self.reader_error_armed = self.reader_error_armed, False

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        # a process kill, or (with the power_loss fault) a power loss in any mode
        modes: list[str | None] = [None]
        if self.has("power_loss"):
            modes += list(POWER_LOSS_MODES)
        loss = data.draw(st.sampled_from(modes))
        if loss is None:
            self._run("crash", {"mode": "process"})
        else:
            self.powered_off = True
            self._run("crash", {"mode": "power", "loss": loss}, assumes=["power_loss"])

    @precondition(lambda self: self.has("power_loss") and not self.powered_off and self.dead())
    @rule(loss=st.sampled_from(POWER_LOSS_MODES))
    def power_off(self, loss: str) -> None:
        # right after a kill or a crash at a failpoint: what was not synced is lost too
        self.powered_off = True
        self._run("crash", {"mode": "power", "loss": loss}, assumes=["power_loss"])

    # -- applies -----------------------------------------------------------------------------

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def apply_write(self, data: st.DataObject) -> None:
        self._apply(data, ("raw", "raw", "delete_prefix"))

    # An installed snapshot carries each live key's last version only: no tombstones, no
    # older versions, no rollback markers. Transactions after it may therefore answer
    # differently from the model's full history (which the protocol allows), so they stop.
    @precondition(lambda self: self.is_open() and not self.installed)
    @rule(data=st.data())
    def apply_txn(self, data: st.DataObject) -> None:
        self._apply(data, ("txn", "txn", "prepare", "commit", "abort"))

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def apply_non_data(self, data: st.DataObject) -> None:
        self._apply(data, ("hlc_lease", "hlc_lease", "control", "noop"))

    @precondition(lambda self: self.is_open() and self.direct_writes and not self.crash_armed)
    @rule(data=st.data())
    def apply_direct(self, data: st.DataObject) -> None:
        # index 0: a direct write, outside the log; no meta bump (ST-007, EN-008). Not with
        # a crash point armed: a direct write the crash interrupts may or may not have
        # landed, and the model cannot tell.
        self._run("apply", {"entry": {"kind": "raw", "ts": self._tick(),
                                      "ops": data.draw(_DIRECT_OPS)}, "index": 0})
        self.meta_since.setdefault(0, "ST-007")

    @precondition(lambda self: self.is_open())
    @rule(to=st.integers(0, 3))
    def replay(self, to: int) -> None:
        applied, last = self.drv.runner.s.applied, self._last_index()
        self._run("replay", {"to": min(last, applied + to)} if to else {})

    # -- snapshots ---------------------------------------------------------------------------

    def _persist_args(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        if self.pin_error and self.has("writer"):
            return {**args, "expect_error": "pin_failed"}, ["writer", "failpoints"]
        return args, []

    def _after_persist(self, index: int, args: dict[str, Any]) -> None:
        runner = self.drv.runner
        if runner.s.alive:
            if "expect_error" in args:
                self.pin_error = False
                self.persist_interrupted = True
            else:
                self.pointer = index
                self.persist_interrupted = False
                self._after_pin(index)
        elif runner.s.armed_crash == "after_save":
            self.pointer = index
            self.persist_interrupted = False
        else:  # before the pointer save (the pointer is the old one) or unknown
            self.persist_interrupted = True
            if runner.s.armed_crash not in ("before_pin", "after_pin"):
                self.pointer_known = False

    def _snapshot(self, site: str) -> None:
        index = self._last_index()
        args, assumes = self._persist_args({"site": site})
        self._run("snapshot", args, assumes=assumes)
        self._after_persist(index, args)

    def _can_snapshot(self) -> bool:
        return (self.is_open() and self._last_index() > 0
                and self._newer_than_pointer(self._last_index()))

    # (one rule per site: the persists are what this protocol is about, so they get more
    # of the rule choices)
    @precondition(lambda self: self._can_snapshot())
    @rule()
    def snapshot_local(self) -> None:
        self._snapshot("local")

    @precondition(lambda self: self._can_snapshot())
    @rule()
    def snapshot_config(self) -> None:
        self._snapshot("config")

    @precondition(lambda self: self.is_open() and self._last_index() > 0
                  and len(self.pending) < 3)
    @rule()
    def snapshot_begin(self) -> None:
        self.names += 1
        name = f"s{self.names}"
        self._run("snapshot_begin", {"name": name})
        begun = self.drv.runner.s.snapshots.get(name)
        if begun is not None and self.alive():
            self.pending[name] = begun[1]

    def _can_persist(self) -> bool:
        return self.is_open() and any(self._newer_than_pointer(i) for i in self.pending.values())

    def _persist(self, data: st.DataObject, site: str) -> None:
        names = sorted(n for n, i in self.pending.items() if self._newer_than_pointer(i))
        name = data.draw(st.sampled_from(names))
        index = self.pending.pop(name)
        args, assumes = self._persist_args({"name": name, "site": site})
        self._run("snapshot_persist", args, assumes=assumes)
        self._after_persist(index, args)

    @precondition(lambda self: self._can_persist())
    @rule(data=st.data())
    def snapshot_persist_local(self, data: st.DataObject) -> None:
        self._persist(data, "local")

    @precondition(lambda self: self._can_persist())
    @rule(data=st.data())
    def snapshot_persist_config(self, data: st.DataObject) -> None:
        self._persist(data, "config")

    def _install_possible(self) -> bool:
        if not (self.is_open() and self.has("install_snapshot") and not self.pin_error):
            return False
        try:
            self.drv.runner.o.log.rows()  # the harness cannot install prepared intents
        except NodeError:
            return False
        return True

    @precondition(lambda self: self._install_possible())
    @rule(data=st.data(), ceiling=st.one_of(st.none(), st.integers(0, 50).map(lambda c: c * 100)))
    def install_snapshot(self, data: st.DataObject, ceiling: int | None) -> None:
        entries = self._entries(data, ("raw", "delete_prefix", "txn", "hlc_lease", "control",
                                       "noop", "abort"))
        args: dict[str, Any] = {"entries": entries}
        if ceiling is not None:
            args["ceiling"] = ceiling
        self.installed = True
        self._run("install_snapshot", args, assumes=["install_snapshot"])
        if self.alive():
            self.pointer, self.pointer_known = self._last_index(), True
            self.persist_interrupted = False
            self.pending.clear()  # an install supersedes every snapshot begun before it
            self.seen_applied = self.drv.runner.s.applied
            if self.has("pin_after_restore"):
                self._set_meta(self.pointer, "CS-011")
            else:
                self._set_meta(None, "CS-010", known=False)
        else:
            self.pointer_known = False

    # -- faults --------------------------------------------------------------------------------

    @precondition(lambda self: self.is_open() and self.has("failpoints")
                  and not self.crash_armed)
    @rule(name=st.sampled_from(CRASH_POINTS), skip=st.sampled_from((0, 0, 1, 2)))
    def failpoint_crash(self, name: str, skip: int) -> None:
        self.crash_armed = True
        self._run("failpoint", {"name": name, "action": "crash", "skip": skip},
                  assumes=["failpoints"])

    @precondition(lambda self: self.before_open() and self.opened_ever
                  and self.has("failpoints") and not self.crash_armed and self.damaged is None)
    @rule(name=st.sampled_from(RECOVERY_POINTS + CRASH_POINTS),
          skip=st.sampled_from((0, 0, 0, 1)))
    def failpoint_recovery_crash(self, name: str, skip: int) -> None:
        # armed before open: a crash in the restore (mid_restore), in the replay or a pin
        # after the restore (after_batch_commit), or later in this lifetime
        self.crash_armed = True
        self._run("failpoint", {"name": name, "action": "crash", "skip": skip},
                  assumes=["failpoints"])

    @precondition(lambda self: self.is_open() and self.has("failpoints") and self.has("writer")
                  and not self.pin_error)
    @rule()
    def failpoint_pin_error(self) -> None:
        self.pin_error = True
        self._run("failpoint", {"name": "pin", "action": "error", "skip": 0},
                  assumes=["failpoints", "writer"])

    @precondition(lambda self: self.before_open() and self.opened_ever
                  and self.has("failpoints") and self.has("reader") and not self.reader_error
                  and not self.reader_error_before)
    @rule()
    def failpoint_reader_error(self) -> None:
        # not in two lifetimes in a row: the cold start after a crash in a restore forced by
        # a reader error must get the chance to trust the meta key
        self.reader_error = self.reader_error_armed = True
        self._run("failpoint", {"name": "reader", "action": "error", "skip": 0},
                  assumes=["failpoints", "reader"])

    @precondition(lambda self: self.before_open() and self.opened_ever
                  and self.has("tamper_hooks") and not self.tampered_meta)
    @rule()
    def tamper_meta(self) -> None:
        # once per sequence: a torn meta value makes every later cold start restore until a
        # data entry writes it again, which would hide most skip-path bugs
        self.torn_meta = self.tampered_meta = True
        self._run("tamper", {"kind": "torn_meta"}, assumes=["tamper_hooks"])

    @precondition(lambda self: self.before_open() and self.has("tamper_hooks")
                  and self.damaged is None and self.pointer_known and self.pointer is not None)
    @rule(kind=st.sampled_from(sorted(SNAPSHOT_TAMPERS)))
    def tamper_snapshot(self, kind: str) -> None:
        # the damage is durable: every open fails from now on, with the error it names
        self._run_pointer_read("tamper", {"kind": kind}, (), ["tamper_hooks"])
        self.damaged = kind

    # -- reads and checks ------------------------------------------------------------------------

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(("get", "scan", "digest", "hlc")))
        if kind == "get":
            self._run("get", {"key": data.draw(_KEY)})
        elif kind == "scan":
            self._run("scan", {"prefix": data.draw(st.sampled_from(("", "a/", "_")))})
        else:
            self._run(kind, {})

    @precondition(lambda self: self.is_open() and self.has("reader"))
    @rule()
    def read_meta(self) -> None:
        self._track_applied()
        args: dict[str, Any] = {}
        if self.meta_known:
            args["expect"] = ({"index": self.meta, "present": True} if self.meta is not None
                              else {"index": 0, "present": False})
        try:
            self._run("last_applied_index", args, (self.meta_why, "ST-004"), assumes=["reader"])
            return
        except Found as exc:
            found = exc
        # the value read names the culprit when an entry since could have written it
        result = (found.failure.reply or {}).get("result") or {}
        index = result.get("index")
        culprit = self.meta_since.get(index) if result.get("present") is True and \
            isinstance(index, int) else None
        if culprit is not None and culprit != found.requirement:
            found = _reblame(found, culprit)
        throw(found)

    @precondition(lambda self: self.is_open())
    @rule()
    def check(self) -> None:
        names = ["state_matches_model", "meta_invisible", "hlc_ceiling"]
        if self.has("reader"):
            names.append("meta_monotonic")
        self._run("check", {"invariants": names}, assumes=["reader"] if self.has("reader") else ())


# =============================================================================== fixtures


def fixture_key(requirement: str, case: Case, steps: Sequence[Step]) -> str:
    """What deduplicates findings: the violated requirement and the shrunk sequence
    (with the configuration it ran under)."""
    blob = json.dumps([requirement, case.durability, sorted(case.without),
                       [[s.kind, s.args] for s in steps]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_/.-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def flow(value: Any) -> str:
    """A JSON value as one line of YAML flow style (what the loader reads back as is)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if _PLAIN.match(value) and value.lower() not in _RESERVED else (
            json.dumps(value, ensure_ascii=False))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    raise TypeError(f"not a JSON value: {value!r}")


def step_line(step: Step) -> str:
    if step.kind == "check":
        return f"- check: {flow(step.args['invariants'])}"
    return f"- {step.kind}: {flow(step.args)}"


def fixture_capabilities(case: Case, steps: Sequence[Step]) -> list[str]:
    caps = set(case.capabilities)
    needs = {"failpoint": "failpoints", "tamper": "tamper_hooks",
             "install_snapshot": "install_snapshot", "last_applied_index": "reader"}
    for s in steps:
        if s.kind in needs:
            caps.add(needs[s.kind])
        if s.kind == "crash" and s.args.get("mode") == "power":
            caps.add("power_loss")
    if case.durability == "unsynced":
        caps.add("unsynced_mode")
    return sorted(caps)


def fixture_text(finding: Finding, stem: str, *, seed: int | None, identity: str,
                 spec: str, out_dir: Path, shrunk_from: int | None = None) -> str:
    case = finding.case
    schema = os.path.relpath(SCHEMA, out_dir.resolve())
    message = finding.message.splitlines()[0] if finding.message else finding.requirement
    if len(message) > 160:
        message = message[:157] + "..."
    notes = (f"{len(finding.steps)} steps"
             + (f", shrunk by Hypothesis from {shrunk_from}" if shrunk_from else "")
             + f"; the failure: {message}; reproduce with: conformance replay "
             f"{out_dir / (stem + '.yaml')} --impl {spec!r}")
    catches = spec.split(":", 1)[1] if spec.startswith(("mutant:", "mutant-process:")) else identity
    lines = [
        f"# yaml-language-server: $schema={schema}",
        f"suite: {stem}",
        "description: " + json.dumps(f"Found by conformance explore on {identity}: it violates "
                                     f"{finding.requirement}.", ensure_ascii=False),
        "fixture:",
        f"  catches: [{json.dumps(catches, ensure_ascii=False)}]",
        f"  guards: [{finding.requirement}]",
    ]
    if seed is not None:
        lines.append(f"  seed: {seed}")
    lines += [
        f"  implementation: {json.dumps(identity, ensure_ascii=False)}",
        f"  hypothesis_version: {json.dumps(hypothesis.__version__)}",
        f"  notes: {json.dumps(notes, ensure_ascii=False)}",
        "cases:",
        f"  - id: explore-{stem}",
        "    description: " + json.dumps(f"A generated sequence that violated "
                                         f"{finding.requirement}: {message}", ensure_ascii=False),
        f"    requirements: [{finding.requirement}]",
    ]
    caps = fixture_capabilities(case, finding.steps)
    if caps:
        lines.append(f"    capabilities: [{', '.join(caps)}]")
    if case.without:
        lines.append(f"    without: [{', '.join(case.without)}]")
    if case.durability != "synced":
        lines.append(f"    durability: {case.durability}")
    lines += ["    tags: [explore]", "    steps:"]
    lines += ["      " + step_line(s) for s in finding.steps]
    return "\n".join(lines) + "\n"


def save_fixture(finding: Finding, out_dir: Path, *, seed: int | None, identity: str, spec: str,
                 shrunk_from: int | None = None) -> Path:
    """Write the finding as a fixture unless the same (requirement, steps) is saved already."""
    stem = f"{finding.requirement.lower()}-{finding.key()}"
    path = out_dir / f"{stem}.yaml"
    finding.path = path
    if path.exists():
        finding.duplicate = True
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(fixture_text(finding, stem, seed=seed, identity=identity, spec=spec,
                                 out_dir=out_dir, shrunk_from=shrunk_from))
    return path


def verify_fixture(path: Path, target: Target) -> tuple[bool, bool]:
    """Replay a saved fixture: (red on the implementation naming its requirement,
    green on the in-process reference)."""
    from .loader import load_suite
    from .runner import run_case

    suite = load_suite(path)
    case = suite.cases[0]
    guards = (suite.fixture or {}).get("guards", [])
    got = run_case(case, target.impl.factory, target.seed)
    red = got.status == "failed" and (not guards or got.violations == [guards[0]])
    ref = run_case(case, resolve("reference", seed=target.seed).factory, target.seed)
    return red, ref.status in ("passed", "not_applicable")


# =============================================================================== exploration


@dataclass
class ExploreReport:
    target: str
    identity: str
    seed: int
    duration_s: float
    examples: int
    steps: int
    campaigns: int
    findings: list[Finding]
    first_failure_s: float | None
    first_failure_steps: int | None
    first_failure_examples: int | None
    hypothesis_version: str = hypothesis.__version__

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps_per_s"] = round(self.steps_per_s, 1)
        out["findings"] = [{"requirement": f.requirement, "message": f.message,
                            "steps": len(f.steps), "path": str(f.path) if f.path else None,
                            "duplicate": f.duplicate, "seen": f.seen,
                            "replay_red": f.replay_red,
                            "reference_green": f.reference_green} for f in self.findings]
        return out


MAX_CAMPAIGN = 2000


def _campaign_seed(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big")


def explore(spec: str = "reference", *, time_budget: float | None = None,
            max_examples: int | None = None, seed: int = 0, out: Path | None = DEFAULT_OUT,
            database: Path | None = DEFAULT_DATABASE, shrink: bool = True,
            stop_at_first: bool = False, step_count: int = 40, batch: int | None = None,
            timeout: float = 10.0, verify: bool = True, target: Target | None = None,
            log: TextIO | None = None) -> ExploreReport:
    """Explore `spec` until the time or example budget is spent (or, with stop_at_first,
    until the first failure). Each campaign is one Hypothesis run with its own seed,
    derived from `seed`; failures are shrunk (unless shrink=False), saved under `out`
    (deduplicated) and replayed (verify)."""
    if time_budget is None and max_examples is None:
        time_budget = 60.0
    target = target or probe(spec, timeout=timeout)
    stats = target.stats = Stats()
    deadline = None if time_budget is None else stats.started + time_budget
    db = DirectoryBasedExampleDatabase(str(database)) if database is not None else None
    # Campaign sizes: a first small one measures the rate, the next ones fit the time left.
    # One campaign holds every sequence it tried in memory (~0.1 MB each): at most
    # MAX_CAMPAIGN per campaign keeps a long run's memory flat.
    first_batch = batch or (50 if target.impl.in_process else 5)
    rate = 0.0  # sequences per second in the last campaign
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else [])
    findings: dict[str, Finding] = {}
    campaigns = 0

    def factory() -> ExploreMachine:
        return ExploreMachine(target)

    # the example database key: one per implementation (and the machine's code)
    factory._hypothesis_internal_add_digest = spec.encode()  # type: ignore[attr-defined]
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline and campaigns:
            break
        if max_examples is not None and stats.examples >= max_examples:
            break
        if max_examples is not None:
            n = min(MAX_CAMPAIGN, max_examples - stats.examples)
        elif campaigns == 0 or deadline is None or rate <= 0:
            n = first_batch
        else:
            n = min(MAX_CAMPAIGN, max(1, int(rate * (deadline - now) * 0.9)))
        conf = settings(
            max_examples=n, stateful_step_count=step_count, deadline=None, database=db,
            phases=phases if campaigns == 0 else [p for p in phases if p != Phase.reuse],
            verbosity=Verbosity.quiet, report_multiple_bugs=not stop_at_first,
            suppress_health_check=list(HealthCheck), print_blob=False,
        )
        hypothesis.seed(_campaign_seed(seed, campaigns))(factory)
        examples_before, started = stats.examples, time.monotonic()
        campaigns += 1
        try:
            with _shrink_budget(None if deadline is None else deadline - time.monotonic()):
                # (it takes any callable that returns a machine)
                run_state_machine_as_test(cast("type[RuleBasedStateMachine]", factory),
                                          settings=conf)
        except Unsatisfiable:
            pass  # the budget ran out before this campaign generated a sequence
        except BaseException as exc:  # noqa: BLE001 - Found, or a group of them
            found = collect_found(exc)
            if not found:
                raise
            for f in found:
                finding = Finding(f.requirement, f.failure.message, f.steps, f.case)
                # One fixture per violated requirement and run: a later campaign (another
                # seed) usually shrinks the same bug to a different minimal sequence. Only
                # a strictly shorter one replaces the fixture saved first.
                earlier = findings.get(finding.requirement)
                if earlier is not None and len(finding.steps) >= len(earlier.steps):
                    earlier.seen += 1
                    continue
                if earlier is not None:
                    finding.seen = earlier.seen + 1
                    if earlier.path is not None and not earlier.duplicate:
                        earlier.path.unlink(missing_ok=True)
                findings[finding.requirement] = finding
                if out is not None and finding.steps:  # (none: the node never said hello)
                    save_fixture(finding, out, seed=seed, identity=target.identity, spec=spec)
                    if verify and not finding.duplicate:
                        assert finding.path is not None
                        finding.replay_red, finding.reference_green = verify_fixture(
                            finding.path, target)
                if log is not None:
                    _print_finding(finding, log)
            if stop_at_first:
                break
        if stats.examples == examples_before:
            break
        rate = (stats.examples - examples_before) / max(1e-3, time.monotonic() - started)
    return ExploreReport(spec, target.identity, seed, time.monotonic() - stats.started,
                         stats.examples, stats.steps, campaigns, list(findings.values()),
                         stats.first_failure_s, stats.first_failure_steps,
                         stats.first_failure_examples)


@contextlib.contextmanager
def _shrink_budget(seconds: float | None) -> Iterator[None]:
    """Bound Hypothesis' shrinking by the time left (its own bound is 5 minutes); when it
    runs out, the smallest sequence found so far is reported."""
    from hypothesis.internal.conjecture import engine

    saved = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if seconds is None or saved is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = max(5, int(seconds))
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


def _print_finding(f: Finding, out: TextIO) -> None:
    where = f" -> {f.path}{' (duplicate)' if f.duplicate else ''}" if f.path else ""
    if f.seen > 1:
        where += " (shorter than the earlier one for this requirement: replaces it)"
    verdict = ""
    if f.replay_red is not None:
        verdict = (f"; replay {'red' if f.replay_red else 'NOT RED'}, reference "
                   f"{'green' if f.reference_green else 'NOT GREEN'}")
    print(f"FOUND {f.message.splitlines()[0]} ({len(f.steps)} steps){where}"
          f"{verdict}", file=out, flush=True)
    for s in f.steps:
        print(f"    {step_line(s)}", file=out)


# =============================================================================== exhaustive


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

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["findings"] = [{"requirement": f.requirement, "message": f.message,
                            "steps": len(f.steps), "path": str(f.path) if f.path else None}
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


def _exhaustive_run(target: Target, seq: Sequence[str], durability: str, without: tuple[str, ...],
                    point: tuple[str, int] | None, end: tuple[str, str | None],
                    recovery: tuple[str, int] | None) -> tuple[bool, bool]:
    """One crash state: open, [arm `point`], the operations (until the node dies), the end
    fault, restart, [arm `recovery`], open, replay, check (again after a recovery crash),
    final check. Returns whether `point` and `recovery` fired. Raises Found."""
    drv = Driver(target.impl, durability, without, target.stats, target.seed)
    fired = rec_fired = False
    try:
        drv.begin()
        drv.run("open", {})
        if point is not None:
            drv.assumes.add("failpoints")
            drv.run("failpoint", {"name": point[0], "action": "crash", "skip": point[1]})
        ts, begun = 0, 0
        pending: list[str] = []
        for sym in seq:
            if not drv.alive:
                break
            if sym in ("data", "lease", "delete"):
                ts += 1
            elif sym == "begin":
                begun += 1
            kind, args = _op_step(sym, ts, pending, begun)
            if kind == "snapshot_persist":
                pending.pop(0)
            drv.run(kind, args)
            if kind == "snapshot_begin" and drv.alive:
                pending.append(args["name"])
        fired = point is not None and not drv.alive
        mode, loss = end
        if mode == "power":
            drv.assumes.add("power_loss")
            drv.run("crash", {"mode": "power", "loss": loss})
        elif drv.alive:
            drv.run("crash", {"mode": "process"})
        for attempt in (0, 1):
            drv.run("restart", {})
            if attempt == 0 and recovery is not None:
                drv.assumes.add("failpoints")
                drv.run("failpoint", {"name": recovery[0], "action": "crash", "skip": recovery[1]})
            drv.run("open", {})
            if drv.is_open:
                drv.run("replay", {})
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
    states: int = 0
    first_failure_s: float | None = None
    first_failure_states: int | None = None

    def run(self, seq: Sequence[str], durability: str, without: tuple[str, ...],
            point: tuple[str, int] | None, end: tuple[str, str | None],
            recovery: tuple[str, int] | None) -> tuple[bool, bool]:
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
                finding = Finding(f.requirement, f.failure.message, f.steps, f.case)
                self.findings[f.requirement] = finding
                if self.out is not None:
                    save_fixture(finding, self.out, seed=None, identity=self.target.identity,
                                 spec=self.target.spec)
                    if not finding.duplicate:
                        assert finding.path is not None
                        finding.replay_red, finding.reference_green = verify_fixture(
                            finding.path, self.target)
                if self.log is not None:
                    _print_finding(finding, self.log)
            if self.first:
                self.states += 1
                raise _Stop from None
        if (point is None or fired) and (recovery is None or rec_fired):
            self.states += 1
        return fired, rec_fired

    def each_hit(self, name: str, run: Callable[[tuple[str, int]], bool]) -> None:
        """Arm `name` at its 1st, 2nd, ... hit until a run where it no longer fires."""
        skip = 0
        while run((name, skip)):
            skip += 1

    def configuration(self, seq: Sequence[str], durability: str, without: tuple[str, ...],
                      end: tuple[str, str | None], points: Sequence[str],
                      recovery_points: Sequence[str]) -> None:
        """Every crash point of the operations (or none), each with every crash point of
        the recovery (or none)."""

        def with_point(point: tuple[str, int] | None) -> bool:
            fired, _ = self.run(seq, durability, without, point, end, None)
            for q in recovery_points:
                self.each_hit(q, lambda rec: self.run(seq, durability, without, point, end,
                                                      rec)[1])
            return fired

        with_point(None)
        for p in points:
            self.each_hit(p, with_point)


class _Stop(Exception):
    pass


def exhaustive(spec: str = "reference", *, depth: int = 4, alphabet: Sequence[str] = ALPHABET,
               out: Path | None = DEFAULT_OUT, timeout: float = 10.0, profiles: bool = False,
               first: bool = False, target: Target | None = None,
               log: TextIO | None = None) -> ExhaustiveReport:
    """Bounded exhaustive exploration (CrashMonkey/B3): every valid sequence of up to
    `depth` symbols x every crash point at each of its hits (or none) x every end fault
    (process kill, power loss in each mode) x every crash point at each of its hits in
    the recovery that follows (or none) x each durability mode the node has (x the lower
    capability profiles of a node that honours `without`, with `profiles`)."""
    target = target or probe(spec, timeout=timeout)
    stats = target.stats = Stats()
    caps = target.capabilities
    durabilities = ["synced"] + (["unsynced"] if "unsynced_mode" in caps else [])
    withouts: list[tuple[str, ...]] = [()]
    if profiles and target.switchable:
        withouts += [w for w in dict.fromkeys(SWITCHED) if w]
    ends: list[tuple[str, str | None]] = [("process", None)]
    if "power_loss" in caps:
        ends += [("power", loss) for loss in POWER_LOSS_MODES]
    points = OPERATION_POINTS if "failpoints" in caps else ()
    recovery_points = RECOVERY_POINTS if "failpoints" in caps else ()
    ex = _Exhaustive(target, out, log, first)
    n_seq = 0
    with contextlib.suppress(_Stop):
        for seq in sequences(depth, alphabet):
            n_seq += 1
            for durability, without, end in itertools.product(durabilities, withouts, ends):
                ex.configuration(seq, durability, without, end, points, recovery_points)
    return ExhaustiveReport(spec, depth, tuple(alphabet), n_seq, ex.states, stats.steps,
                            time.monotonic() - stats.started, list(ex.findings.values()),
                            ex.failing, profiles, ex.first_failure_s, ex.first_failure_states)


# =============================================================================== command line


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "explore", help="generate step sequences with Hypothesis; shrink and save failures",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", default="reference",
                   help="reference | reference-process | mutant:NAME | mutant-process:NAME | "
                        "a command line with {data_dir} | image:NAME[:TAG]")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--time", type=float, default=None, metavar="S",
                        help="explore for S seconds (default 60)")
    budget.add_argument("--examples", type=int, default=None, metavar="N",
                        help="explore N generated sequences")
    p.add_argument("--seed", type=int, default=0, help="the Hypothesis seed (reproducible)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"where failing sequences are saved as fixtures (default {DEFAULT_OUT})")
    p.add_argument("--steps", type=int, default=40, help="steps per generated sequence")
    p.add_argument("--first", action="store_true", help="stop at the first failure")
    p.add_argument("--no-shrink", action="store_true", help="save failures unshrunk (faster)")
    p.add_argument("--no-database", action="store_true",
                   help=f"do not use Hypothesis' example database ({DEFAULT_DATABASE})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--exhaustive", action="store_true",
                   help="bounded exhaustive mode: every sequence up to --depth operations x "
                        "every crash point x every power-loss mode")
    p.add_argument("--depth", type=int, default=4, help="--exhaustive: the sequence length")
    p.add_argument("--profiles", action="store_true",
                   help="--exhaustive: also every lower capability profile (a node that "
                        "honours `without`: the reference and its mutants)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")


def command(args: argparse.Namespace) -> int:
    """Exit status: 0 when nothing failed, 1 when a failure was found, 2 on a usage error."""
    try:
        target = probe(args.impl, timeout=args.timeout)
    except (ImplementationUnavailable, AdapterError, ValueError) as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    print(f"conformance {__version__} explore: {target.identity}; capabilities "
          f"{', '.join(sorted(target.capabilities))}", file=sys.stderr)
    if args.exhaustive:
        ex = exhaustive(args.impl, depth=args.depth, out=args.out, target=target,
                        profiles=args.profiles, first=args.first, log=sys.stdout)
        print(f"\nexhaustive depth {ex.depth} over {{{', '.join(ex.alphabet)}}}: {ex.sequences} "
              f"sequences, {ex.states} crash states, {ex.steps} steps in {ex.duration_s:.1f}s "
              f"({ex.steps_per_s:.0f} steps/s); {len(ex.findings)} distinct violation(s)"
              + "".join(f"\n  {req}: {n} failing state(s)"
                        for req, n in sorted(ex.by_requirement.items())))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(ex.to_dict(), indent=2, default=str) + "\n")
        return 1 if ex.findings else 0
    report = explore(args.impl, time_budget=args.time, max_examples=args.examples,
                     seed=args.seed, out=args.out,
                     database=None if args.no_database else DEFAULT_DATABASE,
                     shrink=not args.no_shrink, stop_at_first=args.first, step_count=args.steps,
                     timeout=args.timeout, target=target, log=sys.stdout)
    first = ("" if report.first_failure_s is None else
             f"; first failure after {report.first_failure_s:.2f}s, {report.first_failure_steps}"
             f" steps, {report.first_failure_examples} sequences")
    print(f"\n{report.examples} sequences, {report.steps} steps in {report.duration_s:.1f}s "
          f"({report.steps_per_s:.0f} steps/s), {report.campaigns} campaign(s), seed "
          f"{report.seed}: {len(report.findings)} distinct failure(s){first}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return 1 if report.findings else 0


