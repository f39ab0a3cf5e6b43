"""Differential mode: run a case on the implementation and on the reference, compare
every exchange.

The oracle already judges each reply on its own; differential mode adds a
stricter, simpler check: the implementation must answer exactly what the
reference answers, request by request (results, error codes and kinds; not ids,
snapshot handles or messages). The reference runs in process with the
implementation's advertised capabilities, so both play the same profile.
Observations that depend on a power loss's random survivors are compared only
by success or error code.
"""

from __future__ import annotations

import time
from typing import Any

from .adapters.inprocess import InProcessAdapter
from .cases import Case, CaseResult, Failure
from .impls import reference_config
from .runner import AdapterFactory, CaseRunner


def _comparable(entry: dict[str, Any], loose: bool) -> Any:
    reply = entry["reply"]
    if loose and isinstance(reply, dict):
        return {"op": entry["op"], "ok": reply["ok"], "code": reply.get("code")}
    return {"op": entry["op"], "reply": reply}


def run_differential(case: Case, factory: AdapterFactory, seed: int = 0) -> CaseResult:
    started = time.monotonic()
    adapter = factory(case)
    try:
        runner = CaseRunner(case, adapter, seed)
        result = runner.run()
    finally:
        adapter.close()
    if result.status != "passed" or runner.s.hello is None:
        return result
    config = reference_config(runner.s.hello.capabilities, case.without)
    reference = CaseRunner(case, InProcessAdapter(seed=seed, config=config), seed)
    ref_result = reference.run()
    if ref_result.status != "passed":
        return result  # the reference cannot play this case the same way; nothing to compare
    loose_steps = {s.index for s in case.steps
                   if s.kind == "crash" and s.args.get("mode") == "power"}
    loose = False
    for mine, ref in zip(runner.trace, reference.trace, strict=False):
        if mine["step"] in loose_steps or ref["step"] in loose_steps:
            loose = True
        if _comparable(mine, loose) != _comparable(ref, loose):
            step = case.steps[mine["step"]] if mine["step"] is not None else None
            return CaseResult(case, "failed", time.monotonic() - started, result.steps_run,
                              failure=Failure(
                                  f"differs from the reference at {mine['op']!r}",
                                  step=step, reply={"implementation": mine["reply"]},
                                  allowed=f"the reference's reply: {ref['reply']}"))
    if len(runner.trace) != len(reference.trace):
        return CaseResult(case, "failed", time.monotonic() - started, result.steps_run,
                          failure=Failure(f"made {len(runner.trace)} requests, the reference "
                                          f"{len(reference.trace)}"))
    return result
