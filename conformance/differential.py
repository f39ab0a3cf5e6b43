"""Differential mode: run a case on the implementation and on the reference, compare
every exchange.

The oracle already judges each reply on its own; differential mode adds a
stricter, simpler check: the implementation must answer exactly what the
reference answers, request by request (results, error codes and kinds; not ids,
snapshot handles or messages). The reference runs in process with the
implementation's advertised capabilities, so both play the same profile.
Nothing after the first power loss or `crash_point` step is compared: what survives a
power loss is a random draw, and where a node stops at a crash point depends on its own I/O
pattern, so two correct nodes legitimately part ways there (the oracle still judges them).
"""

from __future__ import annotations

import time
from typing import Any

from .adapters.inprocess import InProcessAdapter
from .cases import Case, CaseResult, Failure
from .impls import reference_config
from .runner import AdapterFactory, CaseRunner


def _comparable(entry: dict[str, Any]) -> Any:
    return {"op": entry["op"], "reply": entry["reply"]}


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
    # Compared up to the first power loss or crash point only: from there on, what survived
    # and where the node stopped depend on its own I/O (and the simulated disk and the
    # crash-simulating filesystem draw survivors differently), so two correct nodes
    # legitimately part ways; the oracle still judges every reply after it.
    cut = min((s.index for s in case.steps if s.kind == "crash_point"
               or (s.kind == "crash" and s.args.get("mode") == "power")), default=None)
    mine_trace, ref_trace = runner.trace, reference.trace
    if cut is not None:
        mine_trace = [e for e in mine_trace if e["step"] is not None and e["step"] < cut]
        ref_trace = [e for e in ref_trace if e["step"] is not None and e["step"] < cut]
    for mine, ref in zip(mine_trace, ref_trace, strict=False):
        if _comparable(mine) != _comparable(ref):
            step = case.steps[mine["step"]] if mine["step"] is not None else None
            return CaseResult(case, "failed", time.monotonic() - started, result.steps_run,
                              failure=Failure(
                                  f"differs from the reference at {mine['op']!r}",
                                  step=step, reply={"implementation": mine["reply"]},
                                  allowed=f"the reference's reply: {ref['reply']}"))
    if len(mine_trace) != len(ref_trace):
        return CaseResult(case, "failed", time.monotonic() - started, result.steps_run,
                          failure=Failure(f"made {len(mine_trace)} requests, the reference "
                                          f"{len(ref_trace)}"))
    return result
