"""The Hypothesis state machine: every rule is one suite step, judged by the oracle.

A `RuleBasedStateMachine` describes a system as a set of rules; Hypothesis runs a
sequence of them, choosing each next rule among those whose precondition holds, and
draws every rule's arguments. `ExploreMachine` is one node under test (a `Driver`):

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def apply_write(self, data):              # one rule ...
        self._apply(data, APPLY_KINDS["apply_write"])   # ... runs ONE suite step

Every rule builds exactly one `Step` with the arguments the YAML loader would produce
and runs it through the driver's `CaseRunner`; so a generated sequence is a suite case,
judged by the same oracle that judges the suites, through any adapter.

How to read this file:

- **Preconditions keep every sequence meaningful for ANY implementation.** A persist only
  of a begun snapshot newer than the pointer; `open` only after a (re)start; faults only
  when the node or the adapter advertises them (`self.has(...)`); at most one crash
  point armed per process lifetime (the oracle reasons about the armed one). A rule
  whose precondition is false is never chosen, so a sequence never asks for what the
  protocol does not define.
- **The machine's own expectations** are only those the protocol fixes exactly: an armed
  pin error fails the persist with `pin_failed`; a reader error or a torn meta value
  makes the cold start fall back; a damaged snapshot fails `open` with its verification
  error; `last_applied_index` reads the value the requirements fix while they fix one.
  That last one needs a model of the meta key (`meta`, `meta_known`, `meta_why`,
  `meta_since`), kept by `_track_applied`, `_after_open`, `_after_pin`: unknown after a
  crash until the next open, after a restore, and after results the protocol leaves open.
  Everything else (the state after a crash, exactly-once, the gate's decision, the
  (meta, pointer) pairs) is the oracle's.
- **Two kinds of crash points.** A failpoint (`failpoint_crash`, capability
  `failpoints`) is a named place in the node's code (`after_pin`, ...): it needs the
  node's cooperation, and it means the same in every implementation. A crash point
  (`crash_point`, `crash_point_in_persist`, the adapter's `crash_points` fault) is the
  node's nth write / fsync / fsyncdir / rename: no cooperation, so a node without
  failpoints still gets its crash orderings explored, but where the nth one falls depends
  on the implementation. So a crash point covers exactly ONE step (its window) and the
  lifetime ends after it (a kill when it did not fire): replayed on another node, the
  point fires in that step or not at all, and either way the next step is valid.
- **Blame.** A failure names what the oracle names. Where it names none, the machine
  names the cause it knows (`reblame`): EN-006 for a meta value that a non-data entry
  wrote, CO-004 for a snapshot gone after an interrupted persist, CS-005 for a cold start
  that fails on a reader error.
- **Swarm testing.** Hypothesis disables a random subset of rules per sequence, which
  diversifies the sequences; `ALWAYS_ENABLED` rules never are (a sequence whose `restart`
  is off would die at its first crash).
- **Each sequence draws its configuration** in `start` (the `@initialize` rule): the
  durability mode, a lower capability profile (`without`) of a node that honours it, and
  whether direct writes (index 0) may appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from ..cases import CRASH_POINTS, POWER_LOSS_MODES
from .driver import CRASH_POINT_OPS, OPEN_CRASH_NEEDS, RECOVERY_POINTS, SWITCHED, Driver, Target
from .entries import DIRECT_OPS, KEY, draw_entries
from .findings import Found, reblame, throw
from .model import NodeModel

SNAPSHOT_TAMPERS = {
    # kind -> (the error `open` must fail with, the requirement that says so)
    "truncate_snapshot": ({"code": "snapshot_verify", "kind": "too_small"}, "HV-002"),
    "wrong_token_crc": ({"code": "snapshot_verify", "kind": "token_crc"}, "HV-003"),
    "flip_body_byte": ({"code": "snapshot_verify", "kind": "file_crc"}, "HV-004"),
    "unknown_header_version": ("bad_header", "HV-008"),
}


# The entry kinds each apply rule draws from (a kind twice: twice as likely).
APPLY_KINDS = {"apply_write": ("raw", "raw", "delete_prefix"),
               "apply_txn": ("txn", "txn", "prepare", "commit", "abort")}

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


class ExploreMachine(NodeModel):
    """One node under test, driven through suite steps. Preconditions keep the sequences
    meaningful for ANY implementation of the protocol: a persist only of a begun snapshot
    newer than the pointer, open only after a (re)start, power loss only with the
    power_loss fault capability, failpoints and tampering only when advertised, at most
    one crash point armed per process lifetime (the oracle reasons about the armed one)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        _lifecycle_always_enabled(self)

    # -- entries -----------------------------------------------------------------------------

    def _apply(self, data: st.DataObject, kinds: Sequence[str]) -> None:
        entries = draw_entries(data, kinds, self.clock)
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
        self.d = Driver(self.t.impl, durability, without, self.t.stats, self.t.seed,
                        self.t.faults)
        self.caps = self.drv.begin() - self.t.hidden
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
            self.torn_until_open = False
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
        self._crash(data)

    def _crash(self, data: st.DataObject) -> None:
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
            self._power_lost()

    @precondition(lambda self: self.has("power_loss") and not self.powered_off and self.dead())
    @rule(loss=st.sampled_from(POWER_LOSS_MODES))
    def power_off(self, loss: str) -> None:
        # right after a kill or a crash at a failpoint: what was not synced is lost too
        self.powered_off = True
        self._run("crash", {"mode": "power", "loss": loss}, assumes=["power_loss"])
        self._power_lost()

    # -- applies -----------------------------------------------------------------------------

    @precondition(lambda self: self.is_open())
    @rule(data=st.data())
    def apply_write(self, data: st.DataObject) -> None:
        self._apply(data, APPLY_KINDS["apply_write"])

    # An installed snapshot carries each live key's last version only: no tombstones, no
    # older versions, no rollback markers. Transactions after it may therefore answer
    # differently from the model's full history (which the protocol allows), so they stop.
    @precondition(lambda self: self.is_open() and not self.installed)
    @rule(data=st.data())
    def apply_txn(self, data: st.DataObject) -> None:
        self._apply(data, APPLY_KINDS["apply_txn"])

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
        self._run("apply", {"entry": {"kind": "raw", "ts": self.clock.tick(),
                                      "ops": data.draw(DIRECT_OPS)}, "index": 0})
        self.meta_since.setdefault(0, "ST-007")

    @precondition(lambda self: self.is_open())
    @rule(to=st.integers(0, 3))
    def replay(self, to: int) -> None:
        applied, last = self.drv.runner.s.applied, self._last_index()
        self._run("replay", {"to": min(last, applied + to)} if to else {})

    # -- snapshots ---------------------------------------------------------------------------

    def _snapshot(self, site: str) -> None:
        index = self._last_index()
        args, assumes = self._persist_args({"site": site})
        self._run("snapshot", args, assumes=assumes)
        self._after_persist(index, args)

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

    @precondition(lambda self: self._install_possible())
    @rule(data=st.data(), ceiling=st.one_of(st.none(), st.integers(0, 50).map(lambda c: c * 100)))
    def install_snapshot(self, data: st.DataObject, ceiling: int | None) -> None:
        entries = draw_entries(data, ("raw", "delete_prefix", "txn", "hlc_lease", "control",
                                      "noop", "abort"), self.clock)
        args: dict[str, Any] = {"entries": entries}
        if ceiling is not None:
            args["ceiling"] = ceiling
        self.installed = True
        self._run("install_snapshot", args, assumes=["install_snapshot"])
        if self.alive():
            self.pointer, self.pointer_known = self._last_index(), True
            self.persist_interrupted = self.crashed_unsynced = False
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

    # -- crash points: at the node's own file-system operations, no cooperation needed --------
    #
    # A crash point stops the node at its nth write / fsync / fsyncdir / rename from now;
    # which step that lands in depends on how many such operations the node performs, so
    # it differs between implementations (the reference, a mutant, a node in another
    # language). A fixture must replay on any of them: the rule therefore arms the point
    # right before ONE step (its window) and ends the lifetime after it when it did not
    # fire. Replayed elsewhere, the point fires in that step or not at all, and the next
    # step is a restart or a crash either way, which is valid for a live node and a dead
    # one alike.

    def _crash_point_windows(self) -> list[str]:
        """The steps other than persists a crash point can be armed for now (steps that
        write): an apply, a replay, an install; before open, the cold start itself."""
        if not self.is_open():
            return ["open"]  # armed before open: a crash in the cold start, the restore
        out = ["apply_write"]
        if not self.installed:
            out.append("apply_txn")
        if self.drv.runner.s.applied < self._last_index():
            out.append("replay")
        if self._install_possible() and not self.installed:
            # (not a second install: entries of a crashed install are delivered again, and
            # a transaction among them is judged against history the first install dropped)
            out.append("install_snapshot")
        return out

    def _persist_windows(self) -> list[str]:
        """The persists a crash point can be armed for now."""
        out = []
        if self._can_snapshot():
            out += ["snapshot_local", "snapshot_config"]
        if self._can_persist():
            out += ["snapshot_persist_local", "snapshot_persist_config"]
        return out

    def _open_judged_after_crash(self) -> bool:
        """Whether the oracle can judge a crash inside the next open. A crash after the
        restore replaced the store leaves it at the snapshot, which the oracle learns only
        from the open's reply: it can judge that only where the restore leaves the meta key
        above every floor, i.e. with pin_after_restore (meta = the snapshot index) and a
        restore only when have < snap (the writer, the reader, the header applier; no
        reader error, no torn meta value)."""
        return (all(self.has(c) for c in OPEN_CRASH_NEEDS) and not self.reader_error
                and not self.torn_until_open)

    @precondition(lambda self: self.has("crash_points") and not self.crash_armed
                  and (self.is_open() or (self.before_open() and self.damaged is None
                                          and self._open_judged_after_crash())))
    @rule(data=st.data(), on=st.sampled_from(CRASH_POINT_OPS), nth=st.integers(1, 4))
    def crash_point(self, data: st.DataObject, on: str, nth: int) -> None:
        self._crash_point_in(data, on, nth, self._crash_point_windows())

    # (a rule of its own for the persists, as for the snapshots: the order of the pin, the
    # snapshot file, the pointer and the compaction is what this protocol is about)
    @precondition(lambda self: self.has("crash_points") and not self.crash_armed
                  and (self._can_snapshot() or self._can_persist()))
    @rule(data=st.data(), on=st.sampled_from(CRASH_POINT_OPS), nth=st.integers(1, 4))
    def crash_point_in_persist(self, data: st.DataObject, on: str, nth: int) -> None:
        self._crash_point_in(data, on, nth, self._persist_windows())

    def _crash_point_in(self, data: st.DataObject, on: str, nth: int,
                        windows: list[str]) -> None:
        """Arm a crash point at the `nth` `on` operation for one step drawn from `windows`;
        after it, the node is dead: stopped there, or killed when it did not get that far."""
        window = data.draw(st.sampled_from(windows), label="window")
        self.crash_armed = True
        self._run("crash_point", {"on": on, "nth": nth}, assumes=["crash_points"])
        if window == "open":
            self.open()
        elif window in ("apply_write", "apply_txn"):
            self._apply(data, APPLY_KINDS[window])
        elif window == "replay":
            self.replay(data.draw(st.integers(0, 3)))
        elif window in ("snapshot_local", "snapshot_config"):
            self._snapshot(window.removeprefix("snapshot_"))
        elif window in ("snapshot_persist_local", "snapshot_persist_config"):
            self._persist(data, window.removeprefix("snapshot_persist_"))
        else:
            self.install_snapshot(data, None)
        if self.alive():  # it did not fire: a kill (or a power loss) ends the window
            self._crash(data)
        else:
            self.crashed_unsynced = True

    @precondition(lambda self: self.before_open() and self.opened_ever
                  and self.has("tamper_hooks") and not self.tampered_meta)
    @rule()
    def tamper_meta(self) -> None:
        # once per sequence: a torn meta value makes every later cold start restore until a
        # data entry writes it again, which would hide most skip-path bugs
        self.torn_meta = self.tampered_meta = self.torn_until_open = True
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
            self._run("get", {"key": data.draw(KEY)})
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
            found = reblame(found, culprit)
        throw(found)

    @precondition(lambda self: self.is_open())
    @rule()
    def check(self) -> None:
        names = ["state_matches_model", "meta_invisible", "hlc_ceiling"]
        if self.has("reader"):
            names.append("meta_monotonic")
        self._run("check", {"invariants": names}, assumes=["reader"] if self.has("reader") else ())
