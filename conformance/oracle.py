"""The oracle: a model of the committed log and of what must be durable.

The harness plays the Raft log. Every committed entry is applied exactly once
to a *model* (the reference FSM on a simulated, always-synced disk, never
crashed), which gives the expected result of every entry and the expected
user-visible state. Alongside, the oracle tracks what the protocol makes
durable (acknowledged synced batches, pins, saved pointers), so that after a
crash it can compute the *set* of acceptable cold-start observations rather
than one value: e.g. in unsynced mode any `have` between the last pin and the
last applied index is legal, and both gate outcomes may be, depending on it.

Each check returns `Violation`s naming the requirement the check guards; the
runner turns the first one into the case's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reference_impl.disk import SimDisk
from reference_impl.errors import NodeError
from reference_impl.node import Node, NodeConfig


@dataclass(frozen=True)
class Violation:
    requirement: str
    message: str
    allowed: str = ""


class ModelLog:
    """The committed log and a model node that applied each entry exactly once."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.results: list[str] = []
        self.ceilings: list[int] = [0]  # ceilings[i] = HLC ceiling after index i
        self.cutovers: list[int] = [0]
        self._node = Node(SimDisk(), NodeConfig(sync=True))
        self._node.open()
        self.direct_writes = 0

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def append(self, entry: Any) -> tuple[int, str]:
        """Commit an entry at the next index; return (index, model result).

        Raises NodeError when the reference rejects the entry (it is then not committed).
        """
        index = self.last_index + 1
        outcome = self._node.apply(index, entry)
        self.entries.append(entry)
        self.results.append(outcome.result)
        ceiling, cutover = self._node.hlc()
        self.ceilings.append(ceiling)
        self.cutovers.append(cutover)
        return index, outcome.result

    def apply_direct(self, entry: Any) -> str:
        """A direct write (index 0): part of the state, never part of the log."""
        self.direct_writes += 1
        return self._node.apply(0, entry).result

    def entry(self, index: int) -> Any:
        return self.entries[index - 1]

    def result(self, index: int) -> str:
        return self.results[index - 1]

    def digest(self) -> str:
        return self._node.digest()

    def scan(self) -> list[tuple[str, str]]:
        return self._node.scan("")

    def rows(self) -> list[list[Any]]:
        """The current state as install_snapshot rows [key, value, commit_ts]."""
        store = self._node.store
        assert store is not None
        if store.intents():
            raise NodeError("install_snapshot with prepared intents is not supported by the harness")
        rows: list[list[Any]] = []
        for key in store.user_keys():
            versions = store.versions(key)
            ts, value = versions[-1]
            if value is not None:
                rows.append([key, value, ts])
        return rows

    def install_is_faithful(self) -> bool:
        """Whether `rows` carry everything that can change how later entries are judged.

        Rows carry each live key's latest version only. Older versions of a live key never
        matter (the latest is newer than all of them), but a key whose latest version is a
        tombstone does (its timestamp makes a transaction started before it conflict), and
        so do rollback markers (a later prepare of that transaction is aborted): after such
        an install the node, which never received them, and this model may judge the next
        entries differently. Handwritten cases avoid it; exploration installs only when
        this holds."""
        store = self._node.store
        assert store is not None
        if store.intents() or store.rollbacks():
            return False
        return all(store.versions(k)[-1][1] is not None for k in store.user_keys())

    def max_lease_between(self, low: int, high: int) -> int:
        """The highest ceiling any entry in (low, high] carries (0 if none)."""
        best = 0
        for i in range(low + 1, high + 1):
            e = self.entry(i)
            if isinstance(e, dict) and e.get("kind") == "hlc_lease":
                best = max(best, int(e.get("ceiling", 0)))
        return best


WRITING_RESULTS = frozenset({"ok", "already_landed"})
DATA_KINDS = frozenset({"raw", "txn", "delete_prefix", "prepare", "commit", "abort"})


@dataclass
class Durability:
    """What the protocol has made durable so far; survives crashes (it is the harness's)."""

    synced_floor: int = 0   # meta must be >= this after any crash (M1 applies, pins)
    written: int = 0        # highest index whose batch reached the store (survives a kill)
    pointer_floor: int = 0  # an acknowledged persist: the pointer must be >= this
    pointer_ceiling: int = 0  # the highest persist attempted: the pointer must be <= this
    # A restore without pin-after-restore leaves meta below (or without) the pointer at
    # this index (C7): the one pointer for which P5's "meta >= pointer" does not hold.
    gap_pointer: int | None = None
    meta_torn: bool = False  # tampered: the meta value must read as absent
    compacted_floor: int = 0


@dataclass
class Lifetime:
    """Observations within one process lifetime (reset at each restart)."""

    last_meta: int | None = None
    last_ceiling: int = 0
    opened: bool = False
    skipped: bool = False  # the open of this lifetime skipped the body restore
    # A lower bound of the node's in-memory HLC ceiling: the header applied at open, then every
    # lease delivered in this lifetime. After a skip past leases in (snap, have], which are not
    # delivered again (C4), it is below the model's ceiling, and so is a later snapshot's header.
    ceiling_floor: int = 0


class Oracle:
    def __init__(self, capabilities: frozenset[str], durability: str) -> None:
        self.log = ModelLog()
        self.caps = capabilities
        self.synced = durability == "synced"
        self.d = Durability()
        self.life = Lifetime()
        self.last_crash = ""  # "", "process", "power", "failpoint"
        self.tainted = False  # a direct write was lost to a crash: states cannot be compared
        # snapshot index -> a lower bound of the HLC ceiling in that snapshot's header
        self.header_floor: dict[int, int] = {}

    # -- apply ---------------------------------------------------------------------------------

    def on_applied(self, index: int, entry: Any, got: str, expected: str) -> list[Violation]:
        out: list[Violation] = []
        if _kind(entry) == "hlc_lease" and got == expected == "ok":
            self.life.ceiling_floor = max(self.life.ceiling_floor, int(entry.get("ceiling", 0)))
        if got != expected:
            req = "EN-001"
            if expected == "conflict" and got == "already_landed":
                req = "ST-015"
            elif expected == "conflict" or got == "conflict":
                req = "EN-002"
            elif expected == "already_landed":
                req = "ST-014"
            out.append(Violation(req, f"entry {index} ({_kind(entry)}) answered {got!r}",
                                 f"the model answers {expected!r}"))
        if index > 0 and _kind(entry) in DATA_KINDS and expected in WRITING_RESULTS:
            self.d.written = max(self.d.written, index)
            if self.synced:
                # Only a synced write closes a restore's meta gap: an unsynced one may vanish.
                self.d.synced_floor = max(self.d.synced_floor, index)
                self.d.gap_pointer = None
                self.d.meta_torn = False
        return out

    # -- snapshot persist -------------------------------------------------------------------------

    def on_snapshot_header(self, index: int, ceiling: int | None = None) -> None:
        """A snapshot at `index` was begun (its header holds at least the lifetime floor) or
        is being installed with header ceiling `ceiling`; only one of them can be saved."""
        bound = self.life.ceiling_floor if ceiling is None else ceiling
        self.header_floor[index] = min(self.header_floor.get(index, bound), bound)

    def header_ceiling(self, snap: int) -> int:
        """What the HLC ceiling in the header of the snapshot at `snap` is at least."""
        if snap in self.header_floor:
            return self.header_floor[snap]
        return self.log.ceilings[snap] if snap <= self.log.last_index else 0

    def before_persist(self, index: int) -> None:
        self.d.pointer_ceiling = max(self.d.pointer_ceiling, index)

    def on_persisted(self, index: int, site: str, result: dict[str, Any]) -> list[Violation]:
        out: list[Violation] = []
        req = "SP-001" if site == "local" else "SP-002"
        writer = "writer" in self.caps
        if result["index"] != index:
            out.append(Violation("SP-006", f"persist answered index {result['index']!r}",
                                 f"the snapshot was begun at {index}"))
        # `pinned` is a boolean: the reply passed its schema (a truthy "no" no longer passes)
        if result["pinned"] is not writer:
            out.append(Violation(req if writer else "SP-004",
                                 f"persist answered pinned={result.get('pinned')!r}",
                                 f"pinned must be {writer} for a node "
                                 f"{'with' if writer else 'without'} the writer capability"))
        self.d.pointer_floor = max(self.d.pointer_floor, index)
        self.d.compacted_floor = max(self.d.compacted_floor, index)
        if writer:
            self._pinned(index)
        return out

    def _pinned(self, index: int) -> None:
        self.d.synced_floor = max(self.d.synced_floor, index)
        self.d.written = max(self.d.written, index)
        self.d.gap_pointer = None
        self.d.meta_torn = False

    def on_persist_crash(self, index: int, point: str) -> None:
        """The node died at a failpoint inside a persist of `index`."""
        writer = "writer" in self.caps
        if point in ("after_pin", "after_save") and writer:
            self._pinned(index)
        if point == "after_save":
            self.d.pointer_floor = max(self.d.pointer_floor, index)

    def on_pin_failed(self, index: int, previous_ceiling: int) -> None:
        # P2: nothing saved; the pointer cannot have moved.
        self.d.pointer_ceiling = previous_ceiling

    def check_meta_after_persist(self, index: int, site: str, meta: int,
                                 present: bool) -> list[Violation]:
        if "writer" not in self.caps:
            return []
        if not present or meta < index:
            req = "SP-001" if site == "local" else "SP-002"
            return [Violation(req, f"after persisting the {site} snapshot at {index}, "
                                   f"last_applied_index is {meta if present else 'absent'}",
                              f">= {index}: the pin must precede the save")]
        return []

    # -- install / tamper -----------------------------------------------------------------------

    def on_installed(self, index: int) -> None:
        self.life.ceiling_floor = max(self.life.ceiling_floor, self.header_ceiling(index))
        self.d.pointer_floor = self.d.pointer_ceiling = max(self.d.pointer_ceiling, index)
        self.d.compacted_floor = max(self.d.compacted_floor, index)
        self.d.written = max(self.d.written, index)
        if "pin_after_restore" in self.caps:
            self._pinned(index)
        else:
            self.d.gap_pointer = index

    def on_install_crash(self, index: int) -> None:
        """The node died inside an install at `index`: the pointer may already be at `index`
        with the store (and meta) still before it, the C7 gap; or the install may be whole."""
        self.d.pointer_ceiling = max(self.d.pointer_ceiling, index)
        self.d.gap_pointer = index

    def on_tamper(self, kind: str) -> None:
        if kind == "torn_meta":
            self.d.meta_torn = True

    # -- crash / restart ---------------------------------------------------------------------------

    def on_crash(self, kind: str) -> None:
        """kind: process | power | failpoint. A power loss keeps only what was synced."""
        self.last_crash = kind
        if kind == "power":
            self.d.written = self.d.synced_floor
        if self.log.direct_writes:
            self.tainted = True
        self.life = Lifetime()

    # -- cold start ---------------------------------------------------------------------------------

    def on_open(self, r: dict[str, Any], events: list[dict[str, Any]]) -> list[Violation]:
        out: list[Violation] = []
        have, snap, eff = r.get("have"), r.get("snap"), r.get("effective")
        outcome, reason = r.get("outcome"), r.get("reason")
        if not isinstance(snap, int) or not isinstance(eff, int):
            return [Violation("CS-008", f"open result lacks integer snap/effective: {r}",
                              "see docs/protocol.md, open result")]
        reader, header = "reader" in self.caps, "header_applier" in self.caps
        d = self.d
        n = self.log.last_index

        if snap < d.pointer_floor:
            out.append(Violation(
                "SP-007", f"the snapshot pointer is at {snap}",
                f">= {d.pointer_floor}: the last persist or install that replied must survive "
                f"a {'power loss' if self.last_crash == 'power' else 'crash'}"))
        elif not snap <= max(d.pointer_ceiling, d.pointer_floor):
            out.append(Violation(
                "CO-001", f"the snapshot pointer is at {snap}",
                f"between {d.pointer_floor} (last acknowledged persist) and "
                f"{d.pointer_ceiling} (last attempted)"))
        if outcome not in ("skipped", "executed", "fallback"):
            out.append(Violation("CS-008", f"unknown outcome {outcome!r}",
                                 "skipped | executed | fallback"))
        if not reader:
            if outcome != "fallback" or reason != "not_reader":
                out.append(Violation("CS-003", f"outcome {outcome!r} reason {reason!r}",
                                     "fallback with reason not_reader (no reader capability)"))
        elif have is None:
            if reason not in ("missing_meta", "read_err") or outcome != "fallback":
                out.append(Violation("CS-004", f"have is null but outcome {outcome!r} reason "
                                               f"{reason!r}",
                                     "fallback with reason missing_meta or read_err"))
            floor = self._meta_floor()
            if floor > 0 and d.gap_pointer is None and not d.meta_torn and reason == "missing_meta":
                out.append(self._lost_meta(floor, "absent"))
        else:
            if d.meta_torn:
                out.append(Violation("ST-002", f"a torn meta value was read as {have}",
                                     "absent: a value that is not exactly 8 bytes reads as "
                                     "(0, false)"))
            floor = self._meta_floor()
            if have < floor and d.gap_pointer is None:
                out.append(self._lost_meta(floor, str(have)))
            if have > max(n, d.written):
                out.append(Violation("ST-004", f"have = {have} is beyond the last index "
                                               f"ever delivered ({n})", f"<= {n}"))
            if "writer" in self.caps and have < snap and snap != d.gap_pointer:
                out.append(Violation("CO-001", f"(meta, pointer) = ({have}, {snap})",
                                     f"a pointer at {snap} is saved only after the pin, so "
                                     f"meta >= {snap}: allowed pairs are (Y, X' < X), (X, X'), "
                                     "(X, X), (Z > X, X)"))
            if (not header) != (reason == "not_header_applier" and outcome == "fallback"):
                out.append(Violation(
                    "CS-008", f"outcome {outcome!r} reason {reason!r} with have {have}",
                    "fallback with reason not_header_applier exactly when the node lacks "
                    "header_applier (docs/protocol.md, open step 3)"))
            if reason is None or reason == "not_header_applier":
                if have >= snap and header and outcome != "skipped":
                    out.append(Violation("CS-001", f"have {have} >= snap {snap} but outcome "
                                                   f"{outcome!r}", "skipped"))
                if have < snap and outcome == "skipped":
                    out.append(Violation("CS-002", f"have {have} < snap {snap} but outcome "
                                                   "'skipped'", "executed (full restore)"))
                if outcome == "skipped" and not header:
                    out.append(Violation("CS-001", "skipped without the header_applier "
                                                   "capability", "a full restore"))
            elif outcome == "skipped":
                out.append(Violation("CS-004", f"skipped with fallback reason {reason!r}",
                                     "fallback (full restore)"))
        if outcome == "skipped" and eff != have:
            out.append(Violation("CS-006", f"skipped, but effective = {eff}",
                                 f"effective = have = {have}"))
        if outcome in ("executed", "fallback") and eff != snap:
            out.append(Violation("CS-007", f"{outcome}, but effective = {eff}",
                                 f"effective = snap = {snap}"))
        compacted = r.get("compacted", 0)
        if isinstance(compacted, int) and eff < compacted:
            out.append(Violation("CO-004", f"effective {eff} < compacted {compacted}: entries "
                                           f"{eff + 1}..{compacted} are needed but gone",
                                 "compaction only after the pointer at that index is durable"))
        if eff > n:
            out.append(Violation("XR-004", f"effective {eff} is beyond the log end {n}", f"<= {n}"))
        cold = [e for e in events if e.get("event") == "cold_start"]
        if len(cold) != 1:
            out.append(Violation("CS-008", f"{len(cold)} cold_start events for one open",
                                 "exactly one, after success"))
        elif cold[0].get("outcome") != outcome or cold[0].get("effective") != eff:
            out.append(Violation("CS-008", f"cold_start event {cold[0]} disagrees with the "
                                           f"open result", "the same outcome and effective"))

        if outcome in ("executed", "fallback"):
            if "pin_after_restore" in self.caps and snap > 0:
                # The restore replaced the store with the state at snap and pinned meta = snap:
                # the floor is snap now, even if applies before the crash had gone further.
                self._pinned(snap)
                d.synced_floor = d.written = snap
            else:
                # The restore rolled the store back to snap and left meta absent or older.
                d.gap_pointer = snap
                d.synced_floor = min(d.synced_floor, snap)
                d.written = snap
            d.meta_torn = False
        self.life = Lifetime(opened=True, skipped=outcome == "skipped")
        return out

    def on_open_failed(self, events: list[dict[str, Any]]) -> list[Violation]:
        if any(e.get("event") == "cold_start" for e in events):
            return [Violation("CS-009", "a cold_start outcome was reported, then open failed",
                              "the outcome is reported only after the skip or restore succeeded")]
        return []

    def _meta_floor(self) -> int:
        if self.last_crash == "power":
            return self.d.synced_floor
        return max(self.d.synced_floor, self.d.written)

    def _lost_meta(self, floor: int, got: str) -> Violation:
        if self.last_crash == "power":
            req = "DM-001" if self.synced else "DM-004"
        elif not self.synced:
            req = "DM-003"
        else:
            req = "CO-002"
        return Violation(req, f"after a {self.last_crash or 'restart'}, the durable applied "
                              f"index is {got}", f">= {floor} (acknowledged as durable)")

    # -- reads ----------------------------------------------------------------------------------------

    def on_hlc(self, ceiling: int, snap: int | None, effective: int | None,
               applied: int) -> list[Violation]:
        out: list[Violation] = []
        if ceiling < self.life.last_ceiling:
            out.append(Violation("EN-007", f"the HLC ceiling went from {self.life.last_ceiling} "
                                           f"to {ceiling}", "never backwards"))
        if snap is not None and effective is not None:
            floor = self.header_ceiling(snap)
            self.life.ceiling_floor = max(self.life.ceiling_floor, floor)
            floor = max(floor, self.log.max_lease_between(effective, applied))
            if ceiling < floor:
                req = "HV-001" if self.life.skipped else "HV-006"
                out.append(Violation(req, f"after the cold start the HLC ceiling is {ceiling}",
                                     f">= {floor} (the snapshot header's ceiling and replayed "
                                     "leases)"))
        self.life.last_ceiling = max(self.life.last_ceiling, ceiling)
        return out

    def on_last_applied(self, index: int, present: bool) -> list[Violation]:
        out: list[Violation] = []
        if present and self.life.last_meta is not None and index < self.life.last_meta:
            out.append(Violation("ST-012", f"the durable applied index went from "
                                           f"{self.life.last_meta} to {index}", "monotonic"))
        if present:
            self.life.last_meta = index
        return out

    def on_scan(self, items: list[Any]) -> list[Violation]:
        leaked = [k for k, _ in items if isinstance(k, str) and k.startswith("_meta")]
        if leaked:
            return [Violation("ST-009", f"scan returned meta keys {leaked}",
                              "meta keys live outside the user key space")]
        return []

    def check_state(self, digest: str, scan: list[Any] | None, crash_req: str) -> list[Violation]:
        if self.tainted:
            return []
        if digest != self.log.digest():
            model = dict(self.log.scan())
            got = dict((k, v) for k, v in scan) if scan is not None else {}
            diff = sorted(set(model.items()) ^ set(got.items()))[:10]
            if scan is not None and not diff:
                # the state is right; the digest of it is not (docs/protocol.md, Digest)
                return [Violation(crash_req,
                                  f"the digest {digest} is not the one of the items scan "
                                  f"returns, which match the model ({self.log.digest()})",
                                  "the lowercase hex SHA-256 of the scan items serialized as "
                                  "docs/protocol.md, Digest says")]
            return [Violation(crash_req, "after replay the user-visible state differs from the "
                                         f"model; first differences: {diff}",
                              "every committed entry applied exactly once")]
        return []

    def state_requirement(self) -> str:
        return {"process": "XR-001", "failpoint": "XR-002", "power": "XR-003"}.get(
            self.last_crash, "EN-001")


def _kind(entry: Any) -> str:
    return str(entry.get("kind")) if isinstance(entry, dict) else type(entry).__name__
