"""The runner's state and plumbing: the node's lifetime as the runner sees it, requests with
their expectations (`expect`, `expect_error`, `expect_crash`), log delivery and blame.

The step handlers (steps.py) and the case's phases (case.py) build on `RunnerCore`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..adapters.base import Adapter, AdapterError, Exchange, Hello
from ..cases import Case, Failure, Step
from ..matching import FIELD_REQUIREMENTS, matches
from ..oracle import Oracle, Violation
from ..syncs import SyncLedger, category
from ..trace import StepTrace


class StepFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class NodeDidNotStart(StepFailed, AdapterError):
    """The node did not get through `hello` at the start of a case: a failed step for the
    case (the start), and an adapter error for a caller that drives the runner itself."""

    def __init__(self, reason: str) -> None:
        super().__init__(Failure(f"the node did not start: {reason}"))
        self.reason = reason


def start_reason(exc: AdapterError) -> str:
    """Why a start failed, in words, without the log tail some messages carry (the case's
    failure shows the log): the same words for every case when the node never starts."""
    return str(exc).split("; stderr ends with", 1)[0].strip() or type(exc).__name__


AdapterFactory = Callable[[Case], Adapter]


@dataclass
class _State:
    hello: Hello | None = None
    applied: int = 0          # what the node has applied in this lifetime
    open: bool = False
    alive: bool = False
    armed_crash: str | None = None
    armed_error: str | None = None
    snapshots: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (id, index)
    last_open: dict[str, Any] | None = None


def missing_capabilities(case: Case, hello: Hello, adapter: Adapter) -> list[str]:
    have = set(hello.capabilities) | (set(adapter.fault_capabilities)
                                      - set(adapter.unavailable_faults()))
    needs = set(case.capabilities)
    if case.durability == "unsynced":
        needs.add("unsynced_mode")
    missing = sorted(needs - have)
    present_but_excluded = sorted(set(case.without) & set(hello.capabilities))
    return missing + [f"not {c}" for c in present_but_excluded]


class RunnerCore:
    """What every step shares: the case, the adapter, the oracle and the run's state."""

    def __init__(self, case: Case, adapter: Adapter, seed: int = 0) -> None:
        self.case = case
        self.adapter = adapter
        self.seed = seed
        self.rng = random.Random(f"{seed}:{case.id}")
        self.s = _State()
        self.oracle: Oracle | None = None
        self.step: Step | None = None
        self.steps_run = 0
        # Every exchange, summarized, for differential mode (compare with the reference).
        self.trace: list[dict[str, Any]] = []
        # request id -> the step that sent it: a stray second reply blames that step
        self._step_of_request: dict[int, Step | None] = {}
        # Syncs per kind of request, where a layer under the node counts them (syncs.py).
        self.syncs = SyncLedger()
        self._counting = False
        # requirement -> why this case did not exercise it (a step's `exercises`)
        self.unexercised: dict[str, str] = {}
        # why the node did not start for this case (NodeDidNotStart), "" when it did
        self.start_failure = ""
        # per-step numbers for the report's timeline of a failing case (trace.py)
        self.timeline = StepTrace()

    def _who(self) -> str:
        return self.adapter.describe()

    # -- plumbing -----------------------------------------------------------------------------------

    @property
    def o(self) -> Oracle:
        assert self.oracle is not None
        return self.oracle

    def _start_or_probe(self) -> Hello:
        """Start the node; a node that refuses an unsynced hello is asked again in synced mode,
        so that a node without unsynced_mode makes the case not applicable, not failed."""
        try:
            return self._start()
        except AdapterError as exc:
            if self.case.durability != "unsynced" or getattr(exc, "code", None) != "unsupported":
                raise
            hello = self.adapter.start("synced")
            if "unsynced_mode" in hello.capabilities:
                raise  # it claims the mode, yet refused it: a real failure
            return hello

    def _start(self) -> Hello:
        hello = self.adapter.start(self.case.durability)
        self.s.hello, self.s.alive, self.s.open = hello, True, False
        self.s.armed_crash = self.s.armed_error = None
        return hello

    def _fail(self, message: str, ex: Exchange | None = None, allowed: str = "",
              requirement: str | None = None) -> StepFailed:
        return StepFailed(Failure(message, step=self.step,
                                  request=ex.request if ex else None,
                                  reply=ex.reply if ex else None,
                                  allowed=allowed or None, requirement=requirement))

    def _violations(self, found: list[Violation], ex: Exchange | None = None) -> None:
        if found:
            v = found[0]
            raise self._fail(f"{v.requirement}: {v.message}", ex, v.allowed, v.requirement)

    def _request(self, op: str, args: dict[str, Any] | None = None, **fields: Any) -> Exchange:
        """Send a request; handle expect_error / expect_crash; return the exchange.

        Returns the exchange also when the node died (reply None) with a crash armed or
        expected; the caller checks `ex.reply`.
        """
        args = args or {}
        if not self.s.alive:
            raise self._fail(f"{op}: the node is not running; add a restart step first",
                             requirement=self._case_req())
        cat = category(op, fields, self.case.durability) if self._counting else None
        before = self.adapter.sync_counters() if cat else None
        ex = self.adapter.request(op, **fields)
        self._step_of_request[ex.request["id"]] = self.step
        if cat and before is not None and ex.reply is not None and ex.reply.get("ok") is True:
            after = self.adapter.sync_counters()
            if after is not None:
                self.syncs.record(cat, int(after["syncs"]) - int(before["syncs"]))
        self.trace.append(summarize(self.step, ex))
        if ex.reply is None:
            self.s.alive = self.s.open = False
            if self.s.armed_crash is None and not args.get("expect_crash"):
                raise self._fail(f"the node died during {op!r} with no crash failpoint armed",
                                 ex, "a reply", self._case_req())
            self.o.on_crash("failpoint")
            return ex
        if args.get("expect_crash"):
            raise self._fail(f"{op}: expected the node to crash (armed failpoint "
                             f"{self.s.armed_crash!r}), but it replied", ex, "no reply",
                             self._case_req())
        if not isinstance(ex.reply.get("ok"), bool):
            raise self._fail(f"{op}: reply without a boolean 'ok'", ex)
        want_err = args.get("expect_error")
        if ex.reply["ok"]:
            if want_err is not None:
                raise self._fail(f"{op}: expected error {want_err!r}, but the request "
                                 "succeeded", ex, f"error {want_err!r}", self._bi_req(op))
            if "expect" in args:
                self._match(args["expect"], ex.reply.get("result") or {}, ex)
            return ex
        err = ex.reply.get("error") or {}
        if want_err is None:
            raise self._fail(f"{op} failed: {err.get('code')}: {err.get('message')}", ex,
                             "success", self._case_req())
        code, kind = (want_err, None) if isinstance(want_err, str) else (
            want_err.get("code"), want_err.get("kind"))
        if err.get("code") != code or (kind is not None and err.get("kind") != kind):
            raise self._fail(f"{op}: error {err.get('code')!r} (kind {err.get('kind')!r})", ex,
                             f"error {code!r}" + (f" with kind {kind!r}" if kind else ""),
                             self._bi_req(op))
        return ex

    def _case_req(self) -> str | None:
        """The requirement a failed step expectation (a reply, an error, a crash) violates:
        the case's first, as for a failed `expect` match."""
        return self.case.requirements[0] if self.case.requirements else None

    def _bi_req(self, op: str) -> str | None:
        reqs = [r for r in self.case.requirements if r.startswith(("BI-", "HV-", "SP-003"))]
        return reqs[0] if reqs else (self.case.requirements[0] if self.case.requirements else None)

    def _match(self, expect: dict[str, Any], result: dict[str, Any], ex: Exchange) -> None:
        for key, matcher in expect.items():
            got = result.get(key)
            ok, what = matches(got, matcher)
            if not ok:
                raise self._fail(f"{ex.request['op']}: {key} = {got!r}", ex, f"{key} {what}",
                                 self._blame(str(ex.request["op"]), key))

    def _note_exercised(self, exercises: dict[str, dict[str, Any]], result: dict[str, Any],
                        ex: Exchange) -> None:
        """A step's `exercises`: requirement -> the reply that shows the state it guards
        arose. Where the node legally took another path (docs/protocol.md leaves it the
        choice), the case still judges every step, but does not count as exercising that
        requirement; the report says so (`CaseResult.unexercised`)."""
        for rid, want in exercises.items():
            for key, matcher in want.items():
                ok, what = matches(result.get(key), matcher)
                if not ok:
                    shown = ", ".join(f"{k} {result.get(k)!r}" for k in ("outcome", "have", "snap")
                                      if k in result) or f"{key} {result.get(key)!r}"
                    where = f"step {self.step.index + 1} " if self.step else ""
                    self.unexercised.setdefault(
                        rid, f"{self.case.id} {where}{ex.request['op']} answered {shown}; the "
                             f"state {rid} guards needs {key} {what}")
                    break

    def _blame(self, op: str, field: str) -> str | None:
        """The requirement an unexpected field value violates: the first one the case cites
        (in the case's order: authors put the main one first) among those that govern that
        field, else the case's first requirement."""
        governing = FIELD_REQUIREMENTS.get((op, field), ())
        for rid in self.case.requirements:
            if rid in governing:
                return rid
        return self.case.requirements[0] if self.case.requirements else None

    # -- log delivery -------------------------------------------------------------------------------

    def _deliver(self, index: int, entry: Any, args: dict[str, Any] | None = None) -> Exchange:
        ex = self._request("apply", args, index=index, entry=entry)
        if ex.reply is None or not ex.reply["ok"]:
            return ex
        self.s.applied = index
        # The reply passed its schema (conformance/wire/): every type read below is the one
        # docs/protocol.md gives, so nothing is coerced (a coercion let "no" pass as true).
        got = ex.reply["result"]["result"]
        self._violations(self.o.on_applied(index, entry, got, self.o.log.result(index)), ex)
        return ex

    def _replay(self, to: int | None = None) -> None:
        end = self.o.log.last_index if to is None else min(to, self.o.log.last_index)
        if not self.s.open:
            raise self._fail("replay: the node is not open; add an open step first")
        while self.s.applied < end:
            i = self.s.applied + 1
            ex = self._deliver(i, self.o.log.entry(i))
            if ex.reply is None:
                return

    # -- steps ------------------------------------------------------------------------------------------


def summarize(step: Step | None, ex: Exchange) -> dict[str, Any]:
    """An exchange as differential mode compares it: no ids, handles or messages."""
    out: dict[str, Any] = {"step": step.index if step else None, "op": ex.request.get("op")}
    if ex.reply is None:
        out["reply"] = "died"
    elif ex.reply.get("ok"):
        result = dict(ex.reply.get("result") or {})
        result.pop("snapshot", None)  # an opaque handle: any value is fine
        out["reply"] = {"ok": True, "result": result}
    else:
        err = ex.reply.get("error") or {}
        out["reply"] = {"ok": False, "code": err.get("code"), "kind": err.get("kind")}
    return out
