"""Property: exactly once after any crash, and crash ordering, on the simulated disk.

A Hypothesis state machine plays the harness against one reference node on a SimDisk:
it commits entries of every kind (indexes 1..N) and delivers each one as it commits,
begins snapshots and persists them at both sites (late persists too), installs
snapshots sent by "the leader", arms crash failpoints, and kills the node: a process
crash (KEEP_ALL) or a power loss in every mode. After every crash it reads the durable
state, restarts (a new Node on the same disk and config), opens and replays the log
from the effective applied index + 1.

Checked after every crash, before open:
  * P5 / S6: a pointer saved by a pinned persist is covered by the durable meta key,
    and every durable pin survives; the pointer and the compaction mark are the last
    saved ones (or the in-flight one); the pointer's snapshot holds the model's state
    at its index (P4, P6); in synced mode (or KEEP_ALL) no returned apply is lost (M1).
Checked at open: the outcome the gate must take for that durable state (C1, C2, C4),
  compacted <= effective <= N, the cold_start event (C5), header state applied (C3).
Checked after every step while the node is up (so after every restart + replay too):
  scan, digest and the full MVCC state (versions, intents, rollbacks) equal the model,
  a crash-free synced node that applied every committed entry exactly once (C6); every
  apply result equals the model's; the HLC ceiling and cutover never go backwards in a
  process lifetime and never exceed the model's; the meta key is monotonic in a process
  lifetime except across a restore.

PROPERTY_SCALE=<float> scales the example budget (e.g. 10 for a long soak run);
PROPERTY_SHRINK=0 reports a failure without shrinking it (shrinking can take minutes).
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from typing import ClassVar, TypeVar

import pytest
from _model import (
    ENTRY_KINDS,
    EntryGen,
    HypothesisDraw,
    Item,
    Model,
    PointerOracle,
    check_open,
    describe_config,
    read_durable,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from reference_impl.disk import PowerLossMode, SimDisk
from reference_impl.errors import PinError, SimulatedCrash, StaleSnapshotError
from reference_impl.node import POINTER, Node, NodeConfig, Site
from reference_impl.snapshot import Header, Token, encode_body

R = TypeVar("R")

PROFILE = "property-simdisk"
settings.register_profile(
    PROFILE,
    derandomize=True,  # CI is deterministic; PROPERTY_SCALE only changes the budget
    database=None,
    deadline=None,
    stateful_step_count=40,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
SCALE = float(os.environ.get("PROPERTY_SCALE", "1"))
if os.environ.get("PROPERTY_SHRINK", "1") == "0":  # report the first failure unshrunk, fast
    settings.register_profile(PROFILE, settings.get_profile(PROFILE),
                              phases=(Phase.explicit, Phase.generate))
SITES: tuple[Site, ...] = ("local", "config")

CRASH_POINTS = ("before_pin", "after_pin", "after_save", "after_batch_commit", "mid_restore")
# What the restart arms before open: a reader error (C2 read_err), a crash in the
# cold-start restore, or a crash after the k-th batch commit of the replay.
BOOT = ("plain", "plain", "reader_error", "mid_restore", "after_batch_commit")


def _meta(raw: bytes | None) -> int | None:
    return struct.unpack(">Q", raw)[0] if raw is not None and len(raw) == 8 else None


class CrashReplay(RuleBasedStateMachine):
    """One node on one SimDisk; subclasses choose the node configurations."""

    CONFIGS: ClassVar[tuple[NodeConfig, ...]] = (NodeConfig(),)

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.gen = EntryGen()
        self.disk = SimDisk()
        self.config = NodeConfig()
        self.oracle = PointerOracle(self.config)
        self.node: Node | None = None
        self.history: list[str] = []
        self.pending: dict[int, int] = {}  # snapshot id -> index, begun in this lifetime
        self.trace_seen = 0
        # Floors within one process lifetime (reset by a restart; the meta floor also
        # by a restore), and the meta key at the last step boundary (M1).
        self.ceiling_floor = 0
        self.cutover_floor = 0
        self.meta_floor: int | None = None
        self.boundary_meta: int | None = None
        # The exact in-memory meta key: the last data entry that committed a batch, raised
        # by pins, cleared (or pinned to the snapshot) by a restore (S2-S4, S6, EN-003/006).
        self.expected_meta: int | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _where(self) -> str:
        recent = " | ".join(self.history[-8:])
        return f"[{describe_config(self.config)}, step {len(self.history)}: ... {recent}]"

    def _run(self, fn: Callable[[], R]) -> tuple[bool, R | None]:
        """Run a node operation; a failpoint crash kills the node (returns ok=False)."""
        node = self.node
        assert node is not None
        try:
            return True, fn()
        except SimulatedCrash as crash:
            self.history.append(f"CRASH@{crash.point}")
            self.node = None
            return False, None
        finally:
            for event, index in node.trace[self.trace_seen:]:
                if event == "pin":  # returned: the pin is durable (S6)
                    self.oracle.pinned(index)
                    self.expected_meta = max(self.expected_meta or 0, index)
            self.trace_seen = len(node.trace)

    def _deliver(self, item: Item) -> bool:
        node = self.node
        assert node is not None
        spec = item.install
        if spec is not None:
            self.oracle.start("install", spec.index)
            ok, _ = self._run(lambda: node.install_snapshot(
                spec.index, spec.ceiling, spec.cutover, spec.rows))
            if ok:
                self.oracle.installed(spec.index)
                self.pending.clear()  # the install drops snapshots begun before it
                assert node.store is not None
                meta = _meta(node.store.meta_raw())
                assert meta is None or meta <= spec.index, (
                    f"{self._where()}: meta {meta} above the installed snapshot (CS-010)")
                self.meta_floor = self.boundary_meta = meta  # the restore reset the meta key
                self.expected_meta = spec.index if self.oracle.restore_pins else None
            return ok
        assert item.entry is not None
        entry = item.entry
        ok, outcome = self._run(lambda: node.apply(item.index, entry))
        if ok:
            assert outcome is not None
            if self.model.wrote[item.index]:
                self.expected_meta = item.index
            want = self.model.results[item.index]
            assert outcome.result == want, (
                f"{self._where()}: {item.describe()} answered {outcome.result!r}, the model "
                f"{want!r}: the node's state before it differs from the model's")
        return ok

    def _check_meta(self, node: Node, what: str) -> int | None:
        assert node.store is not None
        meta = _meta(node.store.meta_raw())
        assert meta == self.expected_meta, (
            f"{self._where()} {what}: the meta key is {meta}, expected {self.expected_meta} "
            f"(the last data entry that wrote, raised by pins, reset by a restore)")
        return meta

    def _compare_state(self, node: Node, what: str) -> None:
        where = self._where()
        n = self.model.last_index
        assert node.applied == n, f"{where} {what}: node applied {node.applied}, committed {n}"
        scan = node.scan("")
        assert scan == self.model.scan(), (
            f"{where} {what}: scan differs from the model (every committed entry applied "
            f"exactly once, C6):\n  node:  {scan}\n  model: {self.model.scan()}")
        assert node.digest() == self.model.digest(), f"{where} {what}: digest differs"
        assert node.store is not None
        body = encode_body(node.store.export_state())
        assert body == self.model.points[n].body, (
            f"{where} {what}: MVCC state (versions, intents, rollbacks) differs from the "
            f"model:\n  node:  {body!r}\n  model: {self.model.points[n].body!r}")

    # -- lifecycle --------------------------------------------------------------------------

    @initialize(data=st.data())
    def boot(self, data: st.DataObject) -> None:
        self.config = data.draw(st.sampled_from(self.CONFIGS), label="config")
        self.disk = SimDisk(seed=data.draw(st.integers(0, 2**16), label="disk seed"))
        self.oracle = PointerOracle(self.config)
        self.node = Node(self.disk, self.config)
        result = self.node.open()
        assert (result.outcome, result.reason, result.effective) == (
            "fallback", "not_reader" if not self.config.reader else "missing_meta", 0)
        self.history.append(f"boot {describe_config(self.config)}")

    def _restart(self, mode: PowerLossMode, seed: int, boot: str, skip: int) -> None:
        self.disk.power_loss(mode, random.Random(seed))
        self.history.append(f"restart after {mode.value}, boot={boot}/{skip}")
        where = self._where()
        n = self.model.last_index
        view = read_durable(self.disk)
        self.oracle.after_crash(view, where)
        assert view.meta is None or view.meta <= n, (
            f"{where}: durable meta {view.meta} claims an entry beyond the committed {n}")
        if self.boundary_meta is not None and (self.config.sync or mode is PowerLossMode.KEEP_ALL):
            assert view.meta is not None and view.meta >= self.boundary_meta, (
                f"{where}: durable meta {view.meta} < {self.boundary_meta}, the meta key of a "
                f"returned apply ({'synced mode, M1' if self.config.sync else 'process crash'})")
        if view.pointer is not None:
            assert view.header is not None and view.body is not None
            point = self.model.points[view.snap]
            assert view.body == point.body, (
                f"{where}: the snapshot at {view.snap} does not hold the state at "
                f"{view.snap} (P6):\n  file:  {view.body!r}\n  model: {point.body!r}")
            assert view.header.ceiling <= point.ceiling and view.header.cutover <= point.cutover, (
                f"{where}: snapshot header {view.header} beyond the log's ({point.ceiling}, "
                f"{point.cutover}) at {view.snap}")

        node = self.node = Node(self.disk, self.config)
        self.trace_seen = 0
        self.pending.clear()
        self.ceiling_floor = self.cutover_floor = 0
        self.meta_floor = self.boundary_meta = None
        if boot == "reader_error":
            node.failpoints.arm("reader", "error")
        elif boot != "plain":
            node.failpoints.arm(boot, "crash", skip=skip)
        self.oracle.start("open", view.snap)
        ok, result = self._run(node.open)
        node.failpoints.disarm("reader")
        if result is None:
            assert not ok and ("restore", view.snap) not in node.trace
            assert node.events == [], f"{where}: cold_start reported before success (C5)"
            self.oracle.abandon()  # mid_restore: the old store was never replaced
            return
        opened = result.to_json()
        check_open(opened, view, self.config, boot == "reader_error", n, where)
        assert node.events == [{"event": "cold_start", **opened}], (
            f"{where}: cold_start events {node.events} (C5: exactly one, after success)")
        self.oracle.opened(result.outcome, result.snap)
        header = view.header or Header()
        ceiling, cutover = node.hlc()
        assert ceiling >= header.ceiling and cutover >= header.cutover, (
            f"{where}: after open ({result.outcome}) hlc=({ceiling}, {cutover}) is below the "
            f"snapshot header ({header.ceiling}, {header.cutover}) (C3)")
        self.history.append(f"open {result.outcome}/{result.reason} eff={result.effective}")
        if result.outcome == "skipped":
            self.expected_meta = result.have
        else:
            restore_pin = self.oracle.restore_pins and view.pointer is not None
            self.expected_meta = result.snap if restore_pin else None
        self._check_meta(node, f"after open ({result.outcome})")
        for item in self.model.replay_from(result.effective):
            if not self._deliver(item):
                return
        self._compare_state(node, f"after restart + replay {result.effective + 1}..{n}")

    # -- rules ------------------------------------------------------------------------------

    def _commit_and_deliver(self, draw: HypothesisDraw, kinds: tuple[str, ...]) -> None:
        for _ in range(draw.integer(1, 4)):
            kind = draw.choice(kinds)
            if kind == "install":  # the leader sends a snapshot (C7)
                gap, ceiling, cutover, rows = self.gen.install(draw)
                item = self.model.commit_install(gap, ceiling, cutover, rows)
            else:
                item = self.model.commit_entry(self.gen.entry(draw, kind))
            self.history.append(f"apply {item.describe()}")
            if not self._deliver(item):
                return  # committed all the same: the replay delivers it

    # Three apply rules (Hypothesis has no rule weights): most steps deliver entries.
    @precondition(lambda self: self.node is not None)
    @rule(data=st.data())
    def apply_writes(self, data: st.DataObject) -> None:
        self._commit_and_deliver(HypothesisDraw(data), ("raw", "raw", "txn", "delete_prefix"))

    @precondition(lambda self: self.node is not None)
    @rule(data=st.data())
    def apply_txn_family(self, data: st.DataObject) -> None:
        self._commit_and_deliver(HypothesisDraw(data), ("prepare", "commit", "abort", "txn"))

    @precondition(lambda self: self.node is not None)
    @rule(data=st.data())
    def apply_mixed(self, data: st.DataObject) -> None:
        self._commit_and_deliver(HypothesisDraw(data), (*ENTRY_KINDS, "install"))

    @precondition(lambda self: self.node is not None)
    @rule(data=st.data(), persist_now=st.booleans())
    def snapshot(self, data: st.DataObject, persist_now: bool) -> None:
        """Begin a snapshot at the applied index; persist it now, or later (late persist)."""
        assert self.node is not None
        sid, index = self.node.snapshot_begin()
        assert index == self.model.last_index
        self.pending[sid] = index
        self.history.append(f"begin #{sid}@{index}")
        if persist_now:
            self._persist(data, sid)

    @precondition(lambda self: self.node is not None and self.pending)
    @rule(data=st.data())
    def persist_late(self, data: st.DataObject) -> None:
        """Persist a snapshot begun earlier (P6), possibly older than the pointer."""
        self._persist(data, data.draw(st.sampled_from(sorted(self.pending)), label="snapshot"))

    def _persist(self, data: st.DataObject, sid: int) -> None:
        node = self.node
        assert node is not None
        site = data.draw(st.sampled_from(SITES), label="site")
        pin_error = data.draw(st.sampled_from((False, False, False, True)), label="pin error")
        index = self.pending.pop(sid)
        late = self.model.last_index > index
        self.history.append(f"persist #{sid}@{index} {site}{' late' if late else ''}"
                            f"{' pin-error' if pin_error else ''}")
        where = self._where()
        stale = self.oracle.pointer is not None and index <= self.oracle.pointer
        trace_from = len(node.trace)
        if pin_error:
            node.failpoints.arm("pin", "error")
        if not stale:
            self.oracle.start("persist", index)
        try:
            ok, result = self._run(lambda: node.snapshot_persist(sid, site))
        except StaleSnapshotError:
            assert stale, f"{where}: persist@{index} stale? pointer {self.oracle.pointer}"
            return
        except PinError:
            assert pin_error and self.config.writer and not stale, f"{where}: unexpected PinError"
            assert all(e != "save" for e, _ in node.trace[trace_from:]), f"{where}: saved (P2)"
            pointer = Token.decode(self.disk.read(POINTER)).index if self.disk.exists(
                POINTER) else None
            assert pointer == self.oracle.pointer, f"{where}: pointer moved after a failed pin"
            self.oracle.abandon()
            return
        finally:
            node.failpoints.disarm("pin")
        if not ok:
            return
        assert result is not None and not stale, f"{where}: a stale persist@{index} succeeded"
        assert (result.index, result.site, result.pinned, result.compacted) == (
            index, site, self.config.writer, index), f"{where}: persist result {result}"
        order = [("pin", index)] if self.config.writer else []
        order += [("save", index), ("compact", index)]
        assert node.trace[trace_from:] == order, (
            f"{where}: persist trace {node.trace[trace_from:]}, expected {order} (P1)")
        self.oracle.persisted(index, result.pinned)
        assert node.store is not None
        meta = _meta(node.store.meta_raw())
        if result.pinned:
            assert meta is not None and meta >= index, f"{where}: meta {meta} after pin {index}"

    @precondition(lambda self: self.node is not None)
    @rule(point=st.sampled_from(CRASH_POINTS), skip=st.integers(0, 3))
    def arm_crash(self, point: str, skip: int) -> None:
        assert self.node is not None
        self.node.failpoints.arm(point, "crash", skip=skip)
        self.history.append(f"arm {point}/{skip}")

    @precondition(lambda self: self.node is not None)
    @rule(mode=st.sampled_from(tuple(PowerLossMode)), seed=st.integers(0, 2**16),
          boot=st.sampled_from(BOOT), skip=st.integers(0, 4))
    def kill(self, mode: PowerLossMode, seed: int, boot: str, skip: int) -> None:
        self.history.append("kill")
        self.node = None
        self._restart(mode, seed, boot, skip)

    @precondition(lambda self: self.node is None)
    @rule(mode=st.sampled_from(tuple(PowerLossMode)), seed=st.integers(0, 2**16),
          boot=st.sampled_from(BOOT), skip=st.integers(0, 4))
    def restart_after_crash(self, mode: PowerLossMode, seed: int, boot: str, skip: int) -> None:
        self._restart(mode, seed, boot, skip)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        node = self.node
        if node is None:
            return
        where = self._where()
        self._compare_state(node, "while up")
        ceiling, cutover = node.hlc()
        assert ceiling >= self.ceiling_floor and cutover >= self.cutover_floor, (
            f"{where}: hlc went backwards: ({ceiling}, {cutover}) after "
            f"({self.ceiling_floor}, {self.cutover_floor})")
        model_ceiling, model_cutover = self.model.node.hlc()
        assert ceiling <= model_ceiling and cutover <= model_cutover, (
            f"{where}: hlc ({ceiling}, {cutover}) beyond anything committed "
            f"({model_ceiling}, {model_cutover})")
        self.ceiling_floor, self.cutover_floor = ceiling, cutover
        meta = self._check_meta(node, "while up")
        if self.meta_floor is not None:
            assert meta is not None and meta >= self.meta_floor, (
                f"{where}: the meta key went from {self.meta_floor} to {meta} in one lifetime")
        self.meta_floor = self.boundary_meta = meta


# -- the configurations ----------------------------------------------------------------------


class Synced(CrashReplay):
    CONFIGS = (NodeConfig(sync=True),)


class Unsynced(CrashReplay):
    CONFIGS = (NodeConfig(sync=False),)


class LowerProfiles(CrashReplay):
    """Baseline (no reader, no writer), writer only, no writer, no header applier."""

    CONFIGS = tuple(
        NodeConfig(sync=sync, reader=reader, writer=writer, header_applier=applier)
        for sync in (True, False)
        for reader, writer, applier in ((False, False, False), (False, True, False),
                                        (True, False, True), (True, True, False))
    )


class RestorePin(CrashReplay):
    """pin_after_restore (CS-011), and the v1 header."""

    CONFIGS = tuple(NodeConfig(sync=sync, pin_after_restore=True, header_version=version)
                    for sync in (True, False) for version in (1, 2))


MACHINES: dict[str, tuple[type[CrashReplay], int]] = {
    "synced": (Synced, 300),
    "unsynced": (Unsynced, 300),
    "lower-profiles": (LowerProfiles, 250),
    "restore-pin": (RestorePin, 150),
}


@pytest.mark.req(
    "XR-001", "XR-002", "XR-003", "XR-004", "XR-005",
    "CO-001", "CO-002", "CO-003", "CO-004",
    "DM-001", "DM-002", "DM-003", "DM-004", "DM-005",
    "SP-001", "SP-002", "SP-003", "SP-004", "SP-005", "SP-006",
    "CS-001", "CS-002", "CS-003", "CS-004", "CS-005", "CS-006", "CS-007", "CS-008",
    "CS-009", "CS-010", "CS-011", "CS-012", "HV-001", "HV-006",
    "ST-004", "ST-005", "ST-008", "EN-003", "EN-006", "EN-007",
)
@pytest.mark.parametrize("name", list(MACHINES))
def test_crash_replay_exactly_once(name: str) -> None:
    machine, examples = MACHINES[name]
    run_state_machine_as_test(
        machine,
        settings=settings(settings.get_profile(PROFILE),
                          max_examples=max(1, round(examples * SCALE))),
    )
