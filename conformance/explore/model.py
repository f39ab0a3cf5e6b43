"""What the exploring machine knows about its node, and how each step's outcome updates it.

A rule-based state machine is two things: the rules (which step may run next, with which
arguments: `machine.py`), and the state the rules' preconditions and expectations read.
This module is the state, `NodeModel`, the base class of `ExploreMachine`:

- **the lifecycle**: `alive()`, `dead()`, `is_open()`, `before_open()`, read from the
  driver's runner, which follows every reply;
- **the snapshot pointer**: `pointer` (its index, None without a snapshot) while
  `pointer_known`; a persist that crashed at an unknown moment makes it unknown until the
  next open reports it again (`_after_persist`); `pending` holds the snapshots begun in
  this process lifetime (`snapshot_begin`) and not yet persisted;
- **the meta key** as far as the protocol fixes it: `meta` while `meta_known`, the
  requirement that fixed it last (`meta_why`), and the values the node might wrongly
  report, each with the requirement that would then be violated (`meta_since`). A data
  entry that wrote records its index (ST-004), a conflict or a non-data entry leaves it
  (EN-003, EN-006), a pin keeps the maximum (ST-012, SP-005), a skip keeps `have`
  (CS-006); a crash, a restore and results the protocol leaves open make it unknown;
- **the faults armed in this process lifetime** (`crash_armed`, `pin_error`,
  `reader_error`, `torn_meta`), forgotten when the lifetime ends (`_lifetime_over`), and
  those that outlive it (`damaged`: a tampered snapshot makes every later open fail;
  `crashed_unsynced`: a crash point stopped the node between an operation and its sync,
  so a power loss in a later lifetime may still take back what the node saw then).

Every step goes through `_run`: it records what the generated expectations assume
(`assumes`, the capabilities the fixture will declare), runs the step on the driver and
then updates the model (a death ends the lifetime; an open node's new applies move the
meta key). A step that fails raises `Found` out of `_run`; the model is not updated then
(the sequence is over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from .driver import Driver, Target
from .entries import Clock
from .findings import Found, reblame, throw


class NodeModel(RuleBasedStateMachine):
    """The state `ExploreMachine`'s rules read and update: one node's lifecycle, pointer,
    meta key and armed faults, as far as the protocol fixes them."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.t = target
        self.d: Driver | None = None
        self.caps: frozenset[str] = frozenset()
        self.clock = Clock()  # the timestamps handed out
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
        # A crash point stopped the node since the last persist or install that completed:
        # what it had written is seen by the next lifetimes (a process crash keeps the page
        # cache) but may not be durable (say, a rename whose directory was not synced), so a
        # power loss may take back the pointer the last open reported (`_power_lost`).
        self.crashed_unsynced = False
        # A torn meta value the oracle expects to read as absent until an open completes: a
        # crash inside that open may rewrite the meta key, which the oracle cannot see, so
        # no crash point is armed for it.
        self.torn_until_open = False
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
            found = reblame(found, "CS-005")  # the read error must fall back, not fail
        elif (self.persist_interrupted and self.damaged is None and found.requirement != "CO-004"
                and (reply is None or reply.get("ok") is False)):
            found = reblame(found, "CO-004")
        throw(found)

    def _lifetime_over(self) -> None:
        self.pending.clear()
        self.crash_armed = self.pin_error = self.reader_error = False
        self.torn_meta = False
        self.meta_known = False
        if not self.drv.alive:
            self.open_tried = False

    def _power_lost(self) -> None:
        """A power loss: what was not durable is gone. The pointer the last open reported
        is known to be durable unless a crash point stopped the node since."""
        if self.crashed_unsynced:
            self.pointer_known = False

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

    # -- what a step's outcome tells (snapshots) ------------------------------------------

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
                self.persist_interrupted = self.crashed_unsynced = False
                self._after_pin(index)
        elif runner.s.armed_crash == "after_save":
            self.pointer = index
            self.persist_interrupted = False
        else:  # before the pointer save (the pointer is the old one) or unknown
            self.persist_interrupted = True
            if runner.s.armed_crash not in ("before_pin", "after_pin"):
                self.pointer_known = False

    def _can_snapshot(self) -> bool:
        return (self.is_open() and self._last_index() > 0
                and self._newer_than_pointer(self._last_index()))

    def _can_persist(self) -> bool:
        return self.is_open() and any(self._newer_than_pointer(i) for i in self.pending.values())

    def _install_possible(self) -> bool:
        if not (self.is_open() and self.has("install_snapshot") and not self.pin_error):
            return False
        # the harness cannot install prepared intents, tombstones or rollback markers
        return self.drv.runner.o.log.install_is_faithful()
