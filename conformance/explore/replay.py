"""Replaying a saved or shortened sequence: does it fail the same way, do correct nodes pass?

One criterion serves three places: the replay of a fixture just saved
(`fixtures.verify_fixture`), each trial of the last shrinking pass (`minimize.minimize`),
and the test that real-library fixtures have no removable step (tests/real). A sequence
"fails the same way" when it fails, naming exactly the requirement (the first guard), and,
where the step is checked, at the same step (None: the end-of-case check). A correct node
"passes" it when the case passes or does not apply to it.
"""

from __future__ import annotations

from ..cases import Case
from ..impls import resolve
from ..runner import AdapterFactory, run_case

CORRECT = ("passed", "not_applicable")


def _where(step: int | None) -> str:
    return "the end-of-case check" if step is None else f"step {step + 1}"


def failing_step(case: Case, factory: AdapterFactory, seed: int) -> tuple[str, list[str],
                                                                          int | None]:
    """Run `case`: its status, the requirements it names as violated, the failing step."""
    got = run_case(case, factory, seed)
    step = got.failure.step.index if got.failure and got.failure.step else None
    return got.status, list(got.violations), step


def differs(case: Case, factory: AdapterFactory, seed: int, requirement: str | None,
            failed_at: int | None, *, check_step: bool = True) -> str:
    """"" when `case` fails the same way (module doc), else what it did instead.
    `requirement` None accepts any violated requirement."""
    status, named, step = failing_step(case, factory, seed)
    if status != "failed":
        return f"it {status}"
    if requirement is not None and named != [requirement]:
        return f"it names {', '.join(named) or 'no requirement'}"
    if check_step and step != failed_at:
        return f"it fails at {_where(step)}, found at {_where(failed_at)}"
    return ""


def passes(case: Case, factory: AdapterFactory, seed: int) -> bool:
    return run_case(case, factory, seed).status in CORRECT


def passes_on_reference(case: Case, seed: int) -> bool:
    return passes(case, resolve("reference", seed=seed).factory, seed)
