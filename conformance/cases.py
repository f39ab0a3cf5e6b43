"""The data model shared by the suite loader, the runner, the report and the plugin.

A suite file holds cases; a case is an ordered list of steps. Every object
remembers where it came from (file, line, column) so that any error or failure
can point at the YAML a person wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .trace import TracePoint

# Step kinds, in the order docs/suites.md documents them.
STEP_KINDS = (
    "open", "apply", "snapshot", "snapshot_begin", "snapshot_persist", "crash", "restart",
    "replay", "failpoint", "crash_point", "tamper", "install_snapshot", "get", "scan", "digest", "hlc",
    "last_applied_index", "set_durable_applied_index", "check",
)

# Invariants a `check` step can name; the runner also checks most of them on its own.
INVARIANTS = (
    "state_matches_model",   # digest/scan equal the model after every committed entry once
    "meta_invisible",        # no meta key in scans (S5)
    "p5_pairs",              # (meta, pointer) is an allowed pair (P5)
    "meta_monotonic",        # the durable applied index never went backwards in this lifetime
    "hlc_ceiling",           # the HLC ceiling is >= what the protocol guarantees, and monotonic
    "no_cold_start_event",   # no cold_start event since the last open request (C5)
    "no_extra_sync",         # an indexed data apply costs no more syncs than a direct write
)
CRASH_POINTS = ("before_pin", "after_pin", "after_save", "mid_restore", "after_batch_commit")
ERROR_POINTS = ("pin", "reader")
TAMPER_KINDS = ("torn_meta", "truncate_snapshot", "flip_body_byte", "wrong_token_crc",
                "unknown_header_version")
POWER_LOSS_MODES = ("drop_all", "random_prefix", "torn_last")
CAPABILITIES = ("reader", "writer", "header_applier", "unsynced_mode", "failpoints",
                "tamper_hooks", "install_snapshot", "pin_after_restore", "power_loss",
                "crash_points", "sync_accounting")
# Operations a crash point of the crash-simulating filesystem counts (conformance/faults/crashfs)
CRASH_POINT_OPS = ("write", "fsync", "fsyncdir", "rename", "create", "unlink", "truncate")
# Error codes a reply can carry (docs/protocol.md, "Error codes"); `expect_error` names one.
ERROR_CODES = ("bad_request", "unknown_op", "unsupported", "bad_entry", "too_large", "bad_index",
               "not_open", "already_open", "read_error", "pin_failed", "injected", "bad_snapshot",
               "snapshot_verify", "bad_header", "snapshot_out_of_date", "unknown_snapshot")

Status = Literal["passed", "failed", "not_applicable", "error", "xfailed", "xpassed"]


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int = 1  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Step:
    kind: str
    args: dict[str, Any]
    location: Location
    index: int  # position in the case, 0-based

    def describe(self) -> str:
        return f"step {self.index + 1} ({self.kind}) at {self.location}"


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    requirements: tuple[str, ...]
    capabilities: tuple[str, ...]
    durability: Literal["synced", "unsynced"]
    steps: tuple[Step, ...]
    location: Location
    suite: str  # suite name (file stem, e.g. "snapshot_persist")
    tags: tuple[str, ...] = ()
    # Capabilities the node must NOT have: the case checks a lower-profile behaviour
    # (e.g. no reader -> fallback not_reader). The in-process reference switches them off.
    without: tuple[str, ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    cases: tuple[Case, ...]
    # the `fixture:` block of a regression fixture (fixtures/regressions/), else None
    fixture: dict[str, Any] | None = None


@dataclass
class Failure:
    """Why a case failed: the step, the exchange, and what the oracle allowed."""

    message: str
    step: Step | None = None
    request: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    allowed: str | None = None  # what the oracle would have accepted, in words
    requirement: str | None = None  # the requirement the violated check guards
    logs: str = ""  # the node's stderr / container logs, tail

    def render(self) -> str:
        lines = [self.message]
        if self.step is not None:
            lines.append(f"  at {self.step.describe()}")
        if self.requirement:
            lines.append(f"  violates {self.requirement}")
        if self.request is not None:
            lines.append(f"  request: {self.request}")
        if self.reply is not None:
            lines.append(f"  reply:   {self.reply}")
        if self.allowed:
            lines.append(f"  allowed: {self.allowed}")
        if self.logs:
            lines.append("  node log (tail):")
            lines += ["    " + ln for ln in self.logs.splitlines()[-20:]]
        return "\n".join(lines)


@dataclass
class CaseResult:
    case: Case
    status: Status
    duration: float = 0.0
    steps_run: int = 0
    failure: Failure | None = None
    reason: str = ""  # for not_applicable: the missing capability; for xfail: the expectation
    violations: list[str] = field(default_factory=list)  # requirement IDs the oracle saw violated
    # for not_applicable: the harness faults (e.g. power_loss) the case needed and the adapter
    # could not inject here, with the adapter's reason; empty when the node lacked something
    unavailable_faults: dict[str, str] = field(default_factory=dict)
    # syncs the node made per kind of request, [requests, syncs] (conformance/syncs.py);
    # empty when no layer under the node counted them
    syncs: dict[str, list[int]] = field(default_factory=dict)
    # requirement -> why this passing case did not exercise it: the node legally took a path
    # where the state the requirement guards never arose (a step's `exercises`)
    unexercised: dict[str, str] = field(default_factory=dict)
    # for a case that failed because the node did not start (no hello): why, in words,
    # without its log (the same for every case when the node never starts)
    start_failure: str = ""
    # for a failing case: what each step showed, for the report's timeline (trace.py);
    # empty for the other statuses, to keep reports small
    trace: list[TracePoint] = field(default_factory=list)
