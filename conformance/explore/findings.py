"""What a failing step becomes: a `Found` exception for Hypothesis, a `Finding` for the run.

Hypothesis decides which failures are "the same bug" by looking at the exception: its
type, the file and line it was raised from, and its context (`__context__`). It keeps
and shrinks one minimal example per distinct failure. This module makes "the violated
requirement" that unit:

- `found_class("SP-003")` is a subclass of `Found` made once per requirement, so the
  type carries the requirement and nothing else differs between two failures of it;
- `throw(found)` is the only place a `Found` is raised, and it clears the context, so
  the raise site and the context never differ either.

Without this, one bug reached through two oracle checks (say, a lost entry seen by the
state comparison and by a scan) shrank as two failures and was saved as two
near-identical fixtures.

    try:
        runner.execute(step)
    except StepFailed as exc:
        failure = exc.failure
    ...
    throw(make_found(failure, failure.requirement or "XR-001", steps, case))

A caught `Found` can be blamed again before it is thrown on (`reblame`): the machine
does that where it knows the cause better than the oracle (an `open` that cannot find
the snapshot after an interrupted persist is CO-004, not CS-008).

`Finding` is what a run reports and saves: the requirement, the message, the steps and
the case, plus where the fixture went and how its replay went; `fixture_key` is what
deduplicates findings (the requirement and the shrunk steps, hashed). `Stats` counts the
sequences and steps of a whole run (every campaign, every example).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ..cases import Case, Failure, Step


class Found(AssertionError):
    """A generated sequence failed. Subclassed per violated requirement (`found_class`),
    so Hypothesis keeps one minimal example per requirement."""

    requirement: str = ""
    failure: Failure
    steps: list[Step]
    case: Case


_FOUND: dict[str, type[Found]] = {}


def found_class(requirement: str) -> type[Found]:
    """The `Found` subclass of `requirement` (made on first use, then always the same)."""
    cls = _FOUND.get(requirement)
    if cls is None:
        name = "Found_" + re.sub(r"\W", "_", requirement)
        cls = type(name, (Found,), {"requirement": requirement, "__module__": __name__})
        _FOUND[requirement] = cls
    return cls


def make_found(failure: Failure, requirement: str, steps: list[Step], case: Case) -> Found:
    """A `Found` for `failure`, naming `requirement`, with a copy of the steps so far."""
    exc = found_class(requirement)(f"{requirement}: {failure.message}")
    exc.failure, exc.steps, exc.case = failure, list(steps), case
    return exc


def reblame(found: Found, requirement: str) -> Found:
    """The same failure, naming the requirement the machine knows to be the cause."""
    found.failure.requirement = requirement
    return make_found(found.failure, requirement, found.steps, found.case)


def throw(found: Found) -> NoReturn:
    """The one place a `Found` is raised, never while another exception is handled.

    Hypothesis tells failures apart by exception type, raise location and context
    (`__context__`): one raise site and no context leave the type, i.e. the violated
    requirement, as the only difference, so the same bug reached through different oracle
    checks shrinks as one failure instead of several near-identical fixtures.
    """
    found.__context__ = found.__cause__ = None
    raise found


def failed_step(found: Found) -> int | None:
    """The index of the step `found` failed at; None when the end-of-case check (the
    replay to the log end and the state comparison) failed."""
    step = found.failure.step
    return None if step is None else step.index


def collect_found(exc: BaseException) -> list[Found]:
    """The `Found` failures in what Hypothesis raised (one, or an exception group)."""
    if isinstance(exc, Found):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [f for inner in exc.exceptions for f in collect_found(inner)]
    return []


@dataclass
class Finding:
    """One violated requirement as a run reports it (and `fixtures.save_fixture` saves it)."""

    requirement: str
    message: str
    steps: list[Step]
    case: Case
    path: Path | None = None
    duplicate: bool = False
    # the step that failed (its index in `steps`); None when the end-of-case check failed
    failed_step: int | None = None
    # the saved fixture fails again on the implementation, at the same step, naming the
    # same requirement
    replay_red: bool | None = None
    reference_green: bool | None = None  # ... and passes on the in-process reference
    # ... and on the second correct node (examples/journal_node), where it applies; None
    # when that node is the target, or is not there
    second_green: bool | None = None
    seen: int = 1  # how many campaigns of the run found this requirement violated
    # steps the last shrinking pass removed after Hypothesis' (minimize.py)
    minimized: int = 0
    # not a fixture (fixtures.keep_fixture): moved apart, with why
    rejected: bool = False
    rejected_why: str = ""

    def key(self) -> str:
        return fixture_key(self.requirement, self.case, self.steps)


def fixture_key(requirement: str, case: Case, steps: Sequence[Step]) -> str:
    """What deduplicates findings: the violated requirement and the shrunk sequence
    (with the configuration it ran under)."""
    blob = json.dumps([requirement, case.durability, sorted(case.without),
                       [[s.kind, s.args] for s in steps]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class Stats:
    """Counters shared by every example of a run."""

    examples: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)
    first_failure_s: float | None = None
    first_failure_steps: int | None = None
    first_failure_examples: int | None = None

    def failed(self) -> None:
        if self.first_failure_s is None:
            self.first_failure_s = time.monotonic() - self.started
            self.first_failure_steps = self.steps
            self.first_failure_examples = self.examples

