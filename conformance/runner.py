"""Run one case against one adapter, step by step, judging every reply with the oracle.

The runner owns the order of things (etcd's robustness tests split traffic from
validation the same way): it sends what the steps say, keeps the committed log
in the oracle's model, re-delivers entries after restarts, and asks the oracle
whether each observation is allowed. The first violation ends the case with a
failure that names the step, the request, the reply and what was allowed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reference_impl.errors import NodeError

from .adapters.base import Adapter, AdapterError, Exchange, Hello
from .adapters.layer import LayerFailed
from .cases import Case, CaseResult, Failure, Step
from .matching import FIELD_REQUIREMENTS, matches
from .oracle import Oracle, Violation
from .syncs import SyncLedger, category
from .trace import StepTrace
from .traffic import generate
from .wire import ReplyViolation


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


class CaseRunner:
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

    # -- entry point ------------------------------------------------------------------------------

    def run(self) -> CaseResult:
        start = time.monotonic()
        try:
            missing = self.begin()
            if missing:
                return self._not_applicable(missing, start)
            for step in self.case.steps:
                self.execute(step)
            self.finish()
        except StepFailed as exc:
            return self._failed(exc.failure, start)
        except LayerFailed as exc:  # the harness's own fault layer broke: not the node's fault
            result = self._failed(Failure(f"harness error: {exc}", step=self.step), start)
            result.status = "error"
            return result
        except AdapterError as exc:
            return self._failed(self.adapter_failure(exc), start)
        return CaseResult(self.case, "passed", time.monotonic() - start, self.steps_run,
                          syncs=self.syncs.as_dict(), unexercised=dict(self.unexercised))

    # The three phases of `run`, public so that one long-lived runner can be driven a step
    # at a time (conformance/explore/ builds each step as it goes).

    def begin(self) -> list[str]:
        """Start the node and the oracle; return what the node lacks for the case ([] when
        the case applies; then the oracle is ready). NodeDidNotStart when the node does not
        get through hello (LayerFailed, the harness's own, passes as it is)."""
        try:
            hello = self._start_or_probe()
        except LayerFailed:
            raise
        except AdapterError as exc:
            self.start_failure = start_reason(exc)
            raise NodeDidNotStart(self.start_failure) from exc
        self._counting = self.adapter.sync_counters() is not None
        missing = missing_capabilities(self.case, hello, self.adapter)
        if not missing:
            self.oracle = Oracle(hello.capabilities, self.case.durability)
        return missing

    def execute(self, step: Step) -> None:
        """Run one step; raises StepFailed (or AdapterError) at the first violation."""
        self.step = step
        try:
            getattr(self, f"_step_{step.kind}")(step.args)
        finally:
            self.timeline.record(self, step)
        self.steps_run += 1

    def finish(self) -> None:
        """The end of every case: replay to the log end and compare with the model."""
        self.step = None
        try:
            self._final_check()
        finally:
            self.timeline.record(self, None)

    def adapter_failure(self, exc: AdapterError) -> Failure:
        """An adapter error as the case's failure, at the step to blame: a reply that breaks
        the protocol fails the step that got it (with the field, value and rule in its
        message), a stray second reply the step of the request it repeats."""
        if isinstance(exc, ReplyViolation):
            return Failure(f"ProtocolViolation: {exc}",
                           step=self._step_of_request.get(exc.culprit_id, self.step),
                           request=exc.request, reply=exc.reply)
        return Failure(f"{type(exc).__name__}: {exc}", step=self.step)

    def _failed(self, failure: Failure, start: float) -> CaseResult:
        if failure.step is None:
            failure.step = self.step
        failure.logs = self.adapter.logs()
        return CaseResult(self.case, "failed", time.monotonic() - start, self.steps_run,
                          failure=failure, syncs=self.syncs.as_dict(),
                          violations=[failure.requirement] if failure.requirement else [],
                          trace=list(self.timeline.points))

    def _not_applicable(self, missing: list[str], start: float) -> CaseResult:
        """Name what was missing: a harness fault the adapter could not inject (and why), or
        what the node lacks; the report holds the former against the verdict."""
        faults = {f: why for f, why in self.adapter.unavailable_faults().items() if f in missing}
        node = [m for m in missing if m not in faults]
        why = [f"needs {', '.join(node)}; {self._who()} does not have it"] if node else []
        why += [f"needs {f}: the harness could not inject it here: {r}" for f, r in faults.items()]
        return CaseResult(self.case, "not_applicable", time.monotonic() - start, 0,
                          reason="; ".join(why), unavailable_faults=faults)

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

    def _step_open(self, args: dict[str, Any]) -> None:
        ex = self._request("open", args)
        if ex.reply is None:
            return
        if not ex.reply["ok"]:
            self._violations(self.o.on_open_failed(ex.events), ex)
            return
        r = ex.reply["result"]
        self._violations(self.o.on_open(r, ex.events), ex)
        self._note_exercised(args.get("exercises", {}), r, ex)
        self.s.open, self.s.applied, self.s.last_open = True, r["effective"], r
        self.s.snapshots.clear()
        hx = self._request("hlc")
        if hx.reply and hx.reply["ok"]:
            self._violations(self.o.on_hlc(hx.reply["result"]["ceiling"], r["snap"],
                                           r["effective"], self.s.applied), hx)

    def _entries(self, args: dict[str, Any]) -> Iterator[Any]:
        if "entry" in args:
            yield args["entry"]
        elif "entries" in args:
            yield from args["entries"]
        elif "generate" in args:
            yield from generate(args["generate"], self.rng, self.o.log.last_index)

    def _ensure_caught_up(self) -> bool:
        """Re-deliver what the node is missing; False when it died doing so (an armed
        crash point fired), which ends the step."""
        if self.s.open and self.s.applied < self.o.log.last_index:
            self._replay()
        return self.s.alive

    def _step_apply(self, args: dict[str, Any]) -> None:
        if "raw_entry" in args:
            self._apply_raw(args)
            return
        explicit = args.get("index")
        if explicit == 0:
            entry = args["entry"]
            ex = self._request("apply", args, index=0, entry=entry)
            if ex.reply and ex.reply["ok"]:
                expected = self.o.log.apply_direct(entry)
                got = ex.reply["result"]["result"]
                self._violations(self.o.on_applied(0, entry, got, expected), ex)
            return
        if explicit is not None and explicit != self.o.log.last_index + 1:
            ex = self._request("apply", args, index=explicit, entry=args["entry"])
            if ex.reply and ex.reply["ok"]:
                raise self._fail(f"index {explicit} accepted although the log is at "
                                 f"{self.o.log.last_index}", ex, "error bad_index", "BI-002")
            return
        if not self._ensure_caught_up():
            return
        for entry in self._entries(args):
            try:
                index, _ = self.o.log.append(entry)
            except NodeError as exc:
                if "expect_error" not in args:
                    raise self._fail(f"the suite's entry is invalid for the reference model: "
                                     f"{exc}") from exc
                # The model rejects it too and the step expects an error: deliver it
                # uncommitted, as a raw_entry (e.g. an oversized generated value, BI-005).
                self._request("apply", args, index=self.o.log.last_index + 1, entry=entry)
                continue
            ex = self._deliver(index, entry, args)
            if ex.reply is None:
                return

    def _apply_raw(self, args: dict[str, Any]) -> None:
        if not self._ensure_caught_up():
            return
        index = args.get("index", self.o.log.last_index + 1)
        ex = self._request("apply", args, index=index, entry=args["raw_entry"])
        if ex.reply and ex.reply["ok"]:
            raise self._fail("a malformed entry was accepted", ex, "an error",
                             self._bi_req("apply"))

    def _snapshot_begin(self, args: dict[str, Any]) -> tuple[int, int] | None:
        if not self._ensure_caught_up():
            return None
        ex = self._request("snapshot_begin", args)
        if ex.reply is None or not ex.reply["ok"]:
            return None
        r = ex.reply["result"]
        self.o.on_snapshot_header(self.s.applied)
        if r["index"] != self.s.applied:
            raise self._fail(f"snapshot_begin answered index {r['index']!r}", ex,
                             f"the applied index {self.s.applied}", "SP-006")
        return r["snapshot"], r["index"]

    def _persist(self, sid: int, index: int, args: dict[str, Any]) -> None:
        site = args.get("site", "local")
        previous = self.o.d.pointer_ceiling
        self.o.before_persist(index)
        armed = self.s.armed_crash
        ex = self._request("snapshot_persist", args, snapshot=sid, site=site)
        if ex.reply is None:
            if armed:
                self.o.on_persist_crash(index, armed)
            return
        if not ex.reply["ok"]:
            self.o.on_pin_failed(index, previous)
            if self.s.armed_error == "pin":
                self.s.armed_error = None
            return
        self._violations(self.o.on_persisted(index, site, ex.reply["result"]), ex)
        if "reader" in self.o.caps and "writer" in self.o.caps:
            lx = self._request("last_applied_index")
            if lx.reply and lx.reply["ok"]:
                r = lx.reply["result"]
                self._violations(self.o.check_meta_after_persist(
                    index, site, r["index"], r["present"]), lx)
                self._violations(self.o.on_last_applied(r["index"], r["present"]), lx)

    def _step_snapshot(self, args: dict[str, Any]) -> None:
        begun = self._snapshot_begin({})
        if begun is not None:
            self._persist(begun[0], begun[1], args)

    def _step_snapshot_begin(self, args: dict[str, Any]) -> None:
        begun = self._snapshot_begin(args)
        if begun is not None:
            self.s.snapshots[args["name"]] = begun

    def _step_snapshot_persist(self, args: dict[str, Any]) -> None:
        name = args["name"]
        if name not in self.s.snapshots:
            raise self._fail(f"snapshot {name!r} was not begun in this process lifetime")
        sid, index = self.s.snapshots.pop(name)
        self._persist(sid, index, args)

    def _step_crash(self, args: dict[str, Any]) -> None:
        mode = args.get("mode", "process")
        if mode == "power":
            self.adapter.power_loss(args["loss"])
            self.o.on_crash("power")
        else:
            self.adapter.crash()
            self.o.on_crash("process")
        self.s.alive = self.s.open = False

    def _step_restart(self, args: dict[str, Any]) -> None:
        if self.s.alive:
            self.adapter.crash()
            self.o.on_crash("process")
        hello = self._start()
        assert self.s.hello is not None
        if hello.capabilities != self.s.hello.capabilities:
            raise self._fail("the node advertised different capabilities after a restart")

    def _step_replay(self, args: dict[str, Any]) -> None:
        self._replay(args.get("to"))

    def _step_failpoint(self, args: dict[str, Any]) -> None:
        action = args.get("action", "crash")
        self._request("failpoint", args, name=args["name"], action=action,
                      skip=args.get("skip", 0))
        if action == "crash":
            self.s.armed_crash = args["name"]
        else:
            self.s.armed_error = args["name"]

    def _step_crash_point(self, args: dict[str, Any]) -> None:
        """Arm a crash point under the node: a request during which it fires gets no reply,
        as with a crash failpoint (the operation did not happen, everything before did)."""
        self.adapter.arm_crash_point(args["on"], args.get("nth", 1))
        self.s.armed_crash = f"crash_point:{args['on']}#{args.get('nth', 1)}"

    def _step_tamper(self, args: dict[str, Any]) -> None:
        ex = self._request("tamper", args, kind=args["kind"])
        if ex.reply and ex.reply["ok"]:
            self.o.on_tamper(args["kind"])

    def _step_install_snapshot(self, args: dict[str, Any]) -> None:
        if "raw" in args:
            self._request("install_snapshot", args, **args["raw"])
            return
        if not self._ensure_caught_up():
            return
        for entry in self._entries(args):
            self.o.log.append(entry)
        n = self.o.log.last_index
        ceiling = args.get("ceiling", self.o.log.ceilings[n])
        self.o.on_snapshot_header(n, ceiling)
        ex = self._request("install_snapshot", args, index=n, ceiling=ceiling,
                           cutover=args.get("cutover", self.o.log.cutovers[n]),
                           rows=self.o.log.rows())
        if ex.reply and ex.reply["ok"]:
            self.o.on_installed(n)
            self.s.applied = n
        elif ex.reply is None:
            self.o.on_install_crash(n)

    def _step_get(self, args: dict[str, Any]) -> None:
        self._request("get", args, key=args["key"])

    def _step_scan(self, args: dict[str, Any]) -> None:
        ex = self._request("scan", args, prefix=args.get("prefix", ""))
        if ex.reply and ex.reply["ok"]:
            self._violations(self.o.on_scan(ex.reply["result"].get("items", [])), ex)

    def _step_digest(self, args: dict[str, Any]) -> None:
        self._request("digest", args)

    def _step_hlc(self, args: dict[str, Any]) -> None:
        ex = self._request("hlc", args)
        if ex.reply and ex.reply["ok"]:
            self._violations(self.o.on_hlc(ex.reply["result"]["ceiling"], None, None,
                                           self.s.applied), ex)

    def _step_last_applied_index(self, args: dict[str, Any]) -> None:
        ex = self._request("last_applied_index", args)
        if ex.reply and ex.reply["ok"]:
            r = ex.reply["result"]
            self._violations(self.o.on_last_applied(r["index"], r["present"]), ex)

    def _step_set_durable_applied_index(self, args: dict[str, Any]) -> None:
        self._request("set_durable_applied_index", args, index=args["index"])

    def _step_check(self, args: dict[str, Any]) -> None:
        for name in args.get("invariants", []):
            if not self.s.alive:
                return  # an armed crash point fired while replaying for an earlier invariant
            if name == "state_matches_model":
                self._check_state()
            elif name == "meta_invisible":
                self._step_scan({})
            elif name == "hlc_ceiling":
                self._step_hlc({})
            elif name == "meta_monotonic":
                self._step_last_applied_index({})
            elif name == "no_extra_sync":
                self._check_sync_cost()
            elif name in ("p5_pairs", "no_cold_start_event"):
                pass  # judged at every open; naming them documents the case's intent
            else:
                raise self._fail(f"unknown invariant {name!r}")

    def _check_sync_cost(self) -> None:
        """ST-006: the latest indexed data apply cost no more syncs than the latest direct
        write (index 0, which records no meta key) in this case."""
        direct = self.syncs.last.get("direct write (index 0)")
        indexed = self.syncs.last.get(f"apply, {self.case.durability} mode")
        if direct is None or indexed is None:
            raise self._fail("no_extra_sync: needs a direct write and an indexed data apply "
                             "before it, both counted (capability sync_accounting)")
        if indexed > direct:
            raise self._fail(f"ST-006: an indexed data apply cost {indexed} sync(s), a direct "
                             f"write of the same kind {direct}", None,
                             f"<= {direct}: recording the meta key adds no sync", "ST-006")

    def _check_state(self) -> None:
        if not self.s.open:
            raise self._fail("state_matches_model: the node is not open")
        self._replay()
        if not self.s.alive:
            return
        ex = self._request("digest")
        sx = self._request("scan", prefix="")
        if ex.reply and ex.reply["ok"] and sx.reply and sx.reply["ok"]:
            items = sx.reply["result"].get("items", [])
            self._violations(self.o.on_scan(items), sx)
            self._violations(self.o.check_state(ex.reply["result"]["digest"], items,
                                                self.o.state_requirement()), ex)

    def _final_check(self) -> None:
        """Every case ends with exactly-once: replay to the log end, compare with the model."""
        if self.s.alive and self.s.open:
            self._check_state()


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


def run_case(case: Case, factory: AdapterFactory, seed: int = 0) -> CaseResult:
    adapter = factory(case)
    try:
        runner = CaseRunner(case, adapter, seed)
        result = runner.run()
        if result.status == "failed":
            result.start_failure = runner.start_failure
        return result
    finally:
        adapter.close()
