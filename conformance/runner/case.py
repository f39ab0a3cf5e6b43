"""A case, start to end: start the node (or find what it lacks), run each step, end with the
final check; the result names the step that failed and what was allowed."""

from __future__ import annotations

import time

from ..adapters.base import AdapterError
from ..adapters.layer import LayerFailed
from ..cases import Case, CaseResult, Failure, Step
from ..oracle import Oracle
from ..wire import ReplyViolation
from .base import AdapterFactory, NodeDidNotStart, StepFailed, missing_capabilities, start_reason
from .steps import StepRunner


class CaseRunner(StepRunner):
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
