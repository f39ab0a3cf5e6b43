"""One node under test, driven a step at a time: what exploration runs its steps through.

A suite case is a fixed list of steps that `CaseRunner.run` executes from start to end.
Exploration does not know its steps in advance: each one is chosen after the previous
one ran, from what the node answered. `Driver` is that case built as it goes:

    drv = Driver(impl, "synced", without=(), stats=Stats())
    caps = drv.begin()                  # start the node: its capabilities + the adapter's
    drv.run("open", {})                 # one suite step, judged by the oracle
    drv.run("apply", {"entry": {"kind": "raw", "ts": 1, "ops": [...]}})
    drv.finish()                        # replay to the log end, compare with the model
    drv.close()

Each `run` builds one `Step` exactly as the YAML loader would (`make_step`), appends it
to `drv.steps` and executes it on one long-lived `CaseRunner`; so the steps run so far
are, at any moment, a suite case that `conformance replay` can run again. A failing step
raises `Found` (`findings.throw`) naming the requirement the oracle names, or, when the
oracle names none (an error reply, a death), the one `step_requirements` gives for the
step.

`faults` names the harness faults the steps may use (`power_loss`, `crash_points`): the
case declares them, so that an adapter that provides them per case (the crash-simulating
filesystem under a local process or a container, mounted only for a case that needs it)
does. `Target.faults` is what the probe found.

`drv.assumes` collects the capabilities the generated expectations rely on (a step that
expects `pin_failed` assumes the pin failpoint); the saved fixture declares them, so a
replay on a node without them is *not applicable*, not a failure.

`Target` is what a run explores (the implementation, what it advertises, its identity
from `hello`), made once by `probe`. Both the Hypothesis machine (`machine.py`) and the
exhaustive mode (`exhaustive.py`) drive `Driver`s over a `Target`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from ..adapters.base import AdapterError
from ..cases import Case, Failure, Location, Step
from ..impls import Implementation, resolve
from ..runner import CaseRunner, StepFailed
from .findings import Found, Stats, make_found, throw

# The failpoints the operations reach (a persist: before_pin, after_pin, after_save; a data
# batch or a pin: after_batch_commit), and those the recovery reaches (the restore at open:
# mid_restore; the replay, and a pin after the restore: after_batch_commit).
OPERATION_POINTS = ("before_pin", "after_pin", "after_save", "after_batch_commit")
RECOVERY_POINTS = ("mid_restore", "after_batch_commit")
# The file-system operations a crash point is armed at (the `crash_point` step's `on`): the
# ones whose order a durable protocol depends on. Any adapter with the `crash_points` fault
# has them, with no cooperation from the node (the simulated disk in process, the
# crash-simulating filesystem under a process or a container).
CRASH_POINT_OPS = ("write", "fsync", "fsyncdir", "rename")
# A crash point inside a cold start is judged only on a node with these: its restore (if
# any) then leaves the meta key at the snapshot index, above every floor the oracle keeps
# (machine.ExploreMachine._open_judged_after_crash).
OPEN_CRASH_NEEDS = ("pin_after_restore", "writer", "reader", "header_applier")
# The faults the crash-simulating filesystem gives an external node: a case declares them
# so that the adapter mounts it (a mount per node costs ~0.1 s).
LAYER_FAULTS = frozenset({"power_loss", "crash_points"})
# Capability switches the reference (in process, local process) honours through a case's
# `without`: exploration draws lower profiles of it too.
SWITCHED = ((), (), (), ("pin_after_restore",), ("writer",), ("header_applier",), ("reader",))


def make_step(kind: str, args: dict[str, Any], index: int) -> Step:
    """The `index`-th step of a generated case, as the loader builds a suite's steps."""
    return Step(kind, args, Location("<explore>", index + 1), index)


# What a step of each kind cites (else: what the oracle's state comparison names).
_STEP_REQUIREMENT = {"snapshot_begin": "SP-006", "crash": "XR-001", "restart": "XR-001",
                     "failpoint": "XR-002", "crash_point": "XR-002", "tamper": "HV-009",
                     "install_snapshot": "CS-010", "hlc": "EN-007",
                     "last_applied_index": "ST-004", "open": "CS-008"}


def step_requirements(kind: str, args: dict[str, Any], state_req: str) -> tuple[str, ...]:
    """The requirement a failure of this step names when the oracle names none (an
    unexpected error or death, a reply that breaks an expectation the step carries)."""
    if kind in ("snapshot", "snapshot_persist"):
        if args.get("expect_error") == "pin_failed":
            return ("SP-003",)
        return ("SP-001",) if args.get("site", "local") == "local" else ("SP-002",)
    return (_STEP_REQUIREMENT.get(kind, state_req),)


class Driver:
    """One case, built step by step: a CaseRunner over a fresh adapter, and the steps
    it has run. Both the Hypothesis machine and the exhaustive mode drive one."""

    def __init__(self, impl: Implementation, durability: str, without: tuple[str, ...],
                 stats: Stats, seed: int = 0, faults: frozenset[str] = frozenset()) -> None:
        mode = cast(Literal["synced", "unsynced"], durability)
        # `faults`: the harness faults the steps may use; declared by the case, so that an
        # adapter that provides them per case (the crash-simulating filesystem) does
        layer = tuple(sorted(faults & LAYER_FAULTS))
        self.case = Case(id="explore", description="generated by conformance explore",
                         requirements=("XR-001",), capabilities=layer, durability=mode,
                         steps=(), location=Location("<explore>", 1), suite="explore",
                         without=without)
        self.adapter = impl.factory(self.case)
        self.runner = CaseRunner(self.case, self.adapter, seed)
        self.steps: list[Step] = []
        self.stats = stats
        self.failed = False
        self.assumes: set[str] = set()  # capabilities the generated expectations assume
        self.closed = False
        self._cited: dict[tuple[str, ...], Case] = {}  # the case citing each requirement tuple

    def begin(self) -> frozenset[str]:
        """Start the node; return its capabilities plus the adapter's fault capabilities."""
        failure: Failure | None = None
        try:
            missing = self.runner.begin()
        except AdapterError as exc:
            failure = Failure(f"{type(exc).__name__}: {exc}")
        if failure is not None:
            throw(self._found(failure, "CS-008"))
        if missing:  # the case requires only faults the probe found: a harness problem
            why = self.adapter.unavailable_faults()
            raise RuntimeError(f"the explore case is not applicable: {missing}"
                               + "".join(f"; {f}: {why[f]}" for f in missing if f in why))
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
        """Run one step; raise `Found` when it fails. `requirements`: what the step cites
        (what a failed expectation of its names), else `step_requirements`."""
        step = make_step(kind, args, len(self.steps))
        self.steps.append(step)
        reqs = requirements or step_requirements(kind, args, self.runner.o.state_requirement())
        self.runner.case = self._citing(reqs)
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
        self.runner.case = self._citing((state_req,))
        failure: Failure | None = None
        try:
            self.runner.finish()
        except StepFailed as exc:
            failure = exc.failure
        except AdapterError as exc:
            failure = Failure(f"{type(exc).__name__}: {exc}")
        if failure is not None:
            throw(self._found(failure, failure.requirement or state_req))

    def _citing(self, requirements: tuple[str, ...]) -> Case:
        """The case, citing `requirements` (what a failure of the next step names); one
        copy per tuple, not one per step."""
        case = self._cited.get(requirements)
        if case is None:
            case = self._cited[requirements] = replace(self.case, requirements=requirements)
        return case

    def _found(self, failure: Failure, requirement: str) -> Found:
        self.failed = True
        self.stats.failed()
        failure.logs = self.adapter.logs()
        return make_found(failure, requirement, self.steps, self.case_for_fixture())

    def case_for_fixture(self) -> Case:
        """The case as a fixture declares it: the capabilities the expectations assume."""
        return replace(self.case, capabilities=tuple(sorted(self.assumes)))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.adapter.close()


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
    # capabilities explored as if absent (`--hide`): not in `capabilities`, and the machine
    # takes them out of what each node advertises (the oracle still knows them)
    hidden: frozenset[str] = frozenset()

    @property
    def faults(self) -> frozenset[str]:
        """The harness faults a Driver must ask its adapter for (see Driver)."""
        return self.capabilities & LAYER_FAULTS


def probe(spec: str, *, seed: int = 0, timeout: float = 10.0, hide: Iterable[str] = (),
          impl: Implementation | None = None) -> Target:
    """Resolve --impl and say hello once: identity and capabilities. `hide`: capabilities
    to explore as if the node (or the adapter) lacked them, e.g. `failpoints`, to see
    what a node without failpoints gets. `impl`: an Implementation already resolved
    (`spec` then only names it)."""
    impl = impl or resolve(spec, seed=seed, timeout=timeout)
    case = Case(id="explore-probe", description="probe", requirements=("XR-001",),
                capabilities=(), durability="synced", steps=(),
                location=Location("<explore>", 1), suite="explore")
    adapter = impl.factory(case)
    try:
        hello = adapter.start("synced")
        # the faults the adapter can inject here (runner.missing_capabilities does the same)
        caps = hello.capabilities | (adapter.fault_capabilities
                                     - set(adapter.unavailable_faults()))
        name = f"{hello.implementation.get('name', '?')} {hello.implementation.get('version', '')}"
    finally:
        adapter.close()
    switchable = spec.startswith(("reference", "mutant:", "mutant-process:"))
    hidden = frozenset(hide)
    return Target(impl, spec, caps - hidden, f"{name.strip()} ({impl.name})", switchable, seed,
                  hidden=hidden)
