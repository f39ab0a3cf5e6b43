"""Run one case against one adapter, step by step, judging every reply with the oracle.

The runner owns the order of things (etcd's robustness tests split traffic from
validation the same way): it sends what the steps say, keeps the committed log
in the oracle's model, re-delivers entries after restarts, and asks the oracle
whether each observation is allowed. The first violation ends the case with a
failure that names the step, the request, the reply and what was allowed.
"""

from .base import (
    AdapterFactory,
    NodeDidNotStart,
    RunnerCore,
    StepFailed,
    missing_capabilities,
    start_reason,
    summarize,
)
from .case import CaseRunner, run_case
from .steps import StepRunner

__all__ = ["AdapterFactory", "CaseRunner", "NodeDidNotStart", "RunnerCore", "StepFailed",
           "StepRunner", "missing_capabilities", "run_case", "start_reason", "summarize"]
