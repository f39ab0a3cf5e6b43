"""The Hypothesis state machine: every rule is one suite step, judged by the oracle.

A `RuleBasedStateMachine` describes a system as a set of rules; Hypothesis runs a
sequence of them, choosing each next rule among those whose precondition holds, and
draws every rule's arguments. `ExploreMachine` is one node under test (a `Driver`):

    @precondition(lambda self: self.is_open())
    @rule(codes=entry_codes(APPLY_KINDS["apply_write"]))
    def apply_write(self, codes):            # one rule ...
        self._apply(codes)                    # ... runs ONE suite step

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
  diversifies the sequences; `ALWAYS_ENABLED` rules (choice.py, which also makes the
  choice of each next rule cheap) never are (a sequence whose `restart` is off would die
  at its first crash).
- **Each sequence draws its configuration** in `start` (the `@initialize` rule): the
  durability mode, a lower capability profile (`without`) of a node that honours it, and
  whether direct writes (index 0) may appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from ..cases import CRASH_POINTS, POWER_LOSS_MODES
from .choice import rule_strategy
from .driver import CRASH_POINT_OPS, OPEN_CRASH_NEEDS, RECOVERY_POINTS, SWITCHED, Driver, Target
from .entries import (
    DIRECT_CODES,
    KEYS,
    READ_PREFIXES,
    Code,
    code_range,
    entry_codes,
    make_direct_ops,
    make_entries,
)
from .findings import Found, reblame, throw
from .model import NodeModel

SNAPSHOT_TAMPERS = {
    # kind -> (the error `open` must fail with, the requirement that says so)
    "truncate_snapshot": ({"code": "snapshot_verify", "kind": "too_small"}, "HV-002"),
    "wrong_token_crc": ({"code": "snapshot_verify", "kind": "token_crc"}, "HV-003"),
    "flip_body_byte": ({"code": "snapshot_verify", "kind": "file_crc"}, "HV-004"),
    "unknown_header_version": ("bad_header", "HV-008"),
}


# The entry kinds each apply rule draws from (a kind twice: twice as likely; the simplest
# first, towards which shrinking moves).
APPLY_KINDS = {"apply_write": ("raw", "raw", "delete_prefix"),
               "apply_txn": ("txn", "txn", "prepare", "commit", "abort"),
               "apply_non_data": ("hlc_lease", "hlc_lease", "control", "noop")}
INSTALL_KINDS = ("raw", "delete_prefix", "txn", "hlc_lease", "control", "noop", "abort")
# A read, by code: a get of each key, a scan of each prefix, a digest, the HLC; each kind
# a quarter of the codes (the get of the first key first).
_READ_OPTIONS: tuple[tuple[str, list[dict[str, str]]], ...] = (
    ("get", [{"key": k} for k in KEYS]), ("scan", [{"prefix": p} for p in READ_PREFIXES]),
    ("digest", [{}]), ("hlc", [{}]))
READ_STEPS = tuple((kind, options[i % len(options)]) for kind, options in _READ_OPTIONS
                   for i in range(15))

class ExploreMachine(NodeModel):
    """One node under test, driven through suite steps. Preconditions keep the sequences
    meaningful for ANY implementation of the protocol: a persist only of a begun snapshot
    newer than the pointer, open only after a (re)start, power loss only with the
    power_loss fault capability, failpoints and tampering only when advertised, at most
    one crash point armed per process lifetime (the oracle reasons about the armed one)."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        strategy = rule_strategy(self)
        if strategy is not None:
            self._rules_strategy = strategy

    # -- entries -----------------------------------------------------------------------------

    def _apply(self, codes: Sequence[Code]) -> None:
        entries = make_entries(codes, self.clock)
        args = {"entry": entries[0]} if len(entries) == 1 else {"entries": entries}
        self._run("apply", args)

    # -- lifecycle ---------------------------------------------------------------------------

    @initialize(durability=code_range(2), without=code_range(len(SWITCHED)),
                direct=code_range(5))
    def start(self, durability: int, without: int, direct: int) -> None:
        self.t.stats.examples += 1
        durabilities = ["synced"]
        if "unsynced_mode" in self.t.capabilities:
            durabilities.append("unsynced")
        mode = durabilities[durability % len(durabilities)]
        lower = SWITCHED[without] if self.t.switchable else ()
        # Direct writes in one sequence in five: once a crash follows one, the oracle stops
        # comparing states for the rest of the sequence (the write may be lost), which would
        # hide every exactly-once bug after it.
        self.direct_writes = direct == 4
        self.d = Driver(self.t.impl, mode, lower, self.t.stats, self.t.seed, self.t.faults)
        self.caps = self.drv.begin() - self.t.hidden
        if mode == "unsynced":
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
    @rule(how=code_range(1 + len(POWER_LOSS_MODES)))
    def crash(self, how: int) -> None:
        self._crash(how)

    def _crash(self, how: int) -> None:
        # a process kill (code 0), or (with the power_loss fault) a power loss in any mode
        loss = POWER_LOSS_MODES[how - 1] if how and self.has("power_loss") else None
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
    @rule(codes=entry_codes(APPLY_KINDS["apply_write"]))
    def apply_write(self, codes: Sequence[Code]) -> None:
        self._apply(codes)

    # An installed snapshot carries each live key's last version only: no tombstones, no
    # older versions, no rollback markers. Transactions after it may therefore answer
    # differently from the model's full history (which the protocol allows), so they stop.
    @precondition(lambda self: self.is_open() and not self.installed)
    @rule(codes=entry_codes(APPLY_KINDS["apply_txn"]))
    def apply_txn(self, codes: Sequence[Code]) -> None:
        self._apply(codes)

    @precondition(lambda self: self.is_open())
    @rule(codes=entry_codes(APPLY_KINDS["apply_non_data"]))
    def apply_non_data(self, codes: Sequence[Code]) -> None:
        self._apply(codes)

    @precondition(lambda self: self.is_open() and self.direct_writes and not self.crash_armed)
    @rule(ops=DIRECT_CODES)
    def apply_direct(self, ops: Sequence[int]) -> None:
        # index 0: a direct write, outside the log; no meta bump (ST-007, EN-008). Not with
        # a crash point armed: a direct write the crash interrupts may or may not have
        # landed, and the model cannot tell.
        self._run("apply", {"entry": {"kind": "raw", "ts": self.clock.tick(),
                                      "ops": make_direct_ops(ops)}, "index": 0})
        self.meta_since.setdefault(0, "ST-007")

    @precondition(lambda self: self.is_open())
    @rule(to=code_range(4))
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

    def _persist(self, pick: int, site: str) -> None:
        names = sorted(n for n, i in self.pending.items() if self._newer_than_pointer(i))
        name = names[pick % len(names)]
        index = self.pending.pop(name)
        args, assumes = self._persist_args({"name": name, "site": site})
        self._run("snapshot_persist", args, assumes=assumes)
        self._after_persist(index, args)

    # (which begun snapshot: a code; at most 3 are pending)
    @precondition(lambda self: self._can_persist())
    @rule(pick=code_range(3))
    def snapshot_persist_local(self, pick: int) -> None:
        self._persist(pick, "local")

    @precondition(lambda self: self._can_persist())
    @rule(pick=code_range(3))
    def snapshot_persist_config(self, pick: int) -> None:
        self._persist(pick, "config")

    # ceiling: no ceiling (codes 0..50, half of them, the simplest), else 0..5000 by 100
    @precondition(lambda self: self._install_possible())
    @rule(codes=entry_codes(INSTALL_KINDS), ceiling=code_range(102))
    def install_snapshot(self, codes: Sequence[Code], ceiling: int) -> None:
        args: dict[str, Any] = {"entries": make_entries(codes, self.clock)}
        if ceiling > 50:
            args["ceiling"] = (ceiling - 51) * 100
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
        window = windows[data.draw(code_range(len(windows)), label="window")]
        self.crash_armed = True
        self._run("crash_point", {"on": on, "nth": nth}, assumes=["crash_points"])
        if window == "open":
            self.open()
        elif window in ("apply_write", "apply_txn"):
            self._apply(data.draw(entry_codes(APPLY_KINDS[window])))
        elif window == "replay":
            self.replay(data.draw(code_range(4)))
        elif window in ("snapshot_local", "snapshot_config"):
            self._snapshot(window.removeprefix("snapshot_"))
        elif window in ("snapshot_persist_local", "snapshot_persist_config"):
            self._persist(data.draw(code_range(3)), window.removeprefix("snapshot_persist_"))
        else:
            self.install_snapshot(data.draw(entry_codes(INSTALL_KINDS)), 0)
        if self.alive():  # it did not fire: a kill (or a power loss) ends the window
            self._crash(data.draw(code_range(1 + len(POWER_LOSS_MODES))))
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
    @rule(what=code_range(len(READ_STEPS)))
    def read(self, what: int) -> None:
        kind, args = READ_STEPS[what]
        self._run(kind, dict(args))

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
