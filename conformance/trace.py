"""Per-step traces: the numbers a person draws to explain a failing case.

After every executed step the runner calls :meth:`StepTrace.record` once. It keeps, per
step, what the node *reported* in that step's replies (docs/protocol.md):

- ``applied``: the node's in-memory applied index (``effective`` after ``open``, then the
  index of every accepted ``apply``); ``None`` while the node is not open;
- ``meta``: the durable applied index, from ``open``'s ``have``, a ``last_applied_index``
  reply, or absent (``meta_absent``) when the node said so;
- ``pointer``: the snapshot pointer's index, from ``open``'s ``snap`` or an accepted
  ``snapshot_persist`` / ``install_snapshot``;
- ``effective``: ``open``'s effective applied index;
- ``event``: a crash, a power loss, or the node dying in a request (a crash point fired);

and what the oracle's model required at that point (``log_end``: the committed log,
``meta_floor``: what the durable applied index must be at least after any crash). A value
the node did not report at a step is ``None``: the picture carries the last reported one
forward or leaves a gap, and never makes one up.

Numbers only, so a failing case's trace stays small; the runner attaches it to failing
results only (``CaseResult.trace``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runner imports this module
    from .cases import Step
    from .runner import CaseRunner

# the label of the pseudo-step after the last one: the runner replays to the log end and
# compares the node's state with the model's
FINAL_CHECK = "final check"


@dataclass(frozen=True)
class TracePoint:
    """What one step showed; ``None`` where the node reported nothing."""

    step: int  # 0-based index in the case; -1 for the final check
    kind: str  # the step kind, or FINAL_CHECK
    line: int  # the step's line in the suite file (0 for the final check)
    applied: int | None = None
    meta: int | None = None
    meta_absent: bool = False  # the node reported no durable applied index
    pointer: int | None = None
    effective: int | None = None
    event: str | None = None  # "crash", "power loss (MODE)", "died in OP"
    log_end: int | None = None  # model: the committed log's last index
    meta_floor: int | None = None  # model: the durable applied index must be >= this

    @property
    def label(self) -> str:
        return FINAL_CHECK if self.step < 0 else f"step {self.step + 1} ({self.kind})"

    def to_dict(self) -> dict[str, Any]:
        """The fields that say something: defaults are left out, to keep reports small."""
        return {k: v for k, v in asdict(self).items()
                if k in ("step", "kind", "line") or (v is not None and v is not False)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TracePoint:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _from_replies(exchanges: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The values the node reported in one step's replies (the runner's exchange summaries,
    runner.summarize); the last report of each value wins."""
    out: dict[str, Any] = {}
    for ex in exchanges:
        op, reply = ex.get("op"), ex.get("reply")
        if reply == "died":
            out["event"] = f"died in {op}"
            continue
        if not isinstance(reply, Mapping) or reply.get("ok") is not True:
            continue
        result = reply.get("result")
        if not isinstance(result, Mapping):
            continue
        if op == "open":
            out["pointer"] = _int(result.get("snap"))
            out["effective"] = _int(result.get("effective"))
            have = _int(result.get("have"))
            if have is not None:
                out["meta"], out["meta_absent"] = have, False
            elif result.get("reason") == "missing_meta":
                out["meta"], out["meta_absent"] = None, True
        elif op == "last_applied_index":
            if result.get("present") is True:
                out["meta"], out["meta_absent"] = _int(result.get("index")), False
            elif result.get("present") is False:
                out["meta"], out["meta_absent"] = None, True
        elif op in ("snapshot_persist", "install_snapshot"):
            out["pointer"] = _int(result.get("index"))
    return out


class StepTrace:
    """The trace of one case run, one point per executed step (the runner's hook)."""

    def __init__(self) -> None:
        self.points: list[TracePoint] = []
        self._seen = 0  # how many of the runner's exchange summaries earlier points used

    def record(self, runner: CaseRunner, step: Step | None) -> None:
        """Called by the runner once after each step (``None``: the final check), also when
        the step failed."""
        exchanges = runner.trace[self._seen:]
        self._seen = len(runner.trace)
        values = _from_replies(exchanges)
        if step is not None and step.kind == "crash":
            mode = step.args.get("mode", "process")
            values["event"] = (f"power loss ({step.args.get('loss', '?')})" if mode == "power"
                               else "crash")
        model = runner.oracle
        self.points.append(TracePoint(
            step=-1 if step is None else step.index,
            kind=FINAL_CHECK if step is None else step.kind,
            line=0 if step is None else step.location.line,
            applied=runner.s.applied if runner.s.open and runner.s.alive else None,
            log_end=model.log.last_index if model is not None else None,
            meta_floor=model.d.synced_floor if model is not None else None,
            **values,
        ))
