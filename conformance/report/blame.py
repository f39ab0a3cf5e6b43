"""One failure, one name: the requirement a failing case is blamed on (its root cause).

One wrong reply can make several checks fail: an ``open`` that answers ``effective`` =
snap + 1 after a restore breaks CS-007, and every case that expected ``effective`` = snap
for its own purpose (the HLC ceiling after a restore, HV-006; the snapshot body, ST-011)
stops at the same reply. The report names the root cause once and lists the rest as its
consequences. The **blame order**, applied to the step at which a case failed (also in
docs/report.md, "One failure, one name"):

1. **The reply breaks the protocol by itself.** When the step failed on the case's
   ``expect:`` and the reply breaks a rule that holds for every node whatever happened
   before (:data:`REPLY_RULES`: the result table of ``open`` in docs/protocol.md), the
   rule's requirement is the root cause. The case expected that value *because of* the
   rule; the requirement it was written for was never reached.
2. **The check that failed.** Otherwise the requirement the harness named for the check
   that failed (``Failure.requirement``): the oracle's check names the requirement it
   guards; an ``expect:`` mismatch, the cited requirement that governs the field
   (``matching.FIELD_REQUIREMENTS``), else the case's first.
3. **Nothing named** (a harness error, a broken connection): every requirement the case
   cites fails, since none of them can be told apart.

The root cause fails. The other requirements the case cites are its consequences: the
case stopped before checking them (requirement status ``interrupted``), unless another
case checks them.

A rule's wording is the oracle's, word for word (``conformance/oracle.py``, ``on_open``),
so one check reads the same whichever path found it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.cases import CaseResult, Failure
from conformance.matching import matches

_FAILING = frozenset({"failed", "error", "xfailed"})


@dataclass(frozen=True)
class Blame:
    """Why one failing case failed, named once."""

    root: str | None  # the root-cause requirement; None when the failure names none
    message: str  # the failing check, in its one wording ("CS-007: executed, but ...")
    allowed: str | None  # what the check allows, in words
    rule: str  # which step of the blame order named it: "reply", "check" or "none"
    # the requirements the case cites that it did not check because it stopped here
    consequences: tuple[str, ...]
    # the requirement the harness named at the failing step, when the blame order put
    # another one first (the case's own expectation, a consequence too)
    superseded: str | None = None


@dataclass(frozen=True)
class ReplyRule:
    """A rule one reply can break by itself: ``check(result)`` returns (message, allowed)
    when it is broken, else None."""

    op: str
    requirement: str
    check: Callable[[Mapping[str, Any]], tuple[str, str] | None]
    # the value of each reply field the rule fixes, given the reply (for the timeline)
    fixes: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda r: {}


def _effective_on_skip(r: Mapping[str, Any]) -> tuple[str, str] | None:
    if r.get("outcome") == "skipped" and r.get("effective") != r.get("have"):
        return f"skipped, but effective = {r.get('effective')}", f"effective = have = {r.get('have')}"
    return None


def _effective_on_restore(r: Mapping[str, Any]) -> tuple[str, str] | None:
    outcome = r.get("outcome")
    if outcome in ("executed", "fallback") and r.get("effective") != r.get("snap"):
        return f"{outcome}, but effective = {r.get('effective')}", f"effective = snap = {r.get('snap')}"
    return None


def _skip_behind_snapshot(r: Mapping[str, Any]) -> tuple[str, str] | None:
    have, snap = r.get("have"), r.get("snap")
    if (r.get("outcome") == "skipped" and r.get("reason") is None
            and isinstance(have, int) and isinstance(snap, int) and have < snap):
        return f"have {have} < snap {snap} but outcome 'skipped'", "executed (full restore)"
    return None


def _skip_with_reason(r: Mapping[str, Any]) -> tuple[str, str] | None:
    reason = r.get("reason")
    if r.get("outcome") == "skipped" and reason not in (None, "not_header_applier"):
        return f"skipped with fallback reason {reason!r}", "fallback (full restore)"
    return None


# Rules of docs/protocol.md ("open", result fields) that one reply breaks by itself,
# whatever the node's history and capabilities.
REPLY_RULES: tuple[ReplyRule, ...] = (
    ReplyRule("open", "CS-006", _effective_on_skip, lambda r: {"effective": r.get("have")}),
    ReplyRule("open", "CS-007", _effective_on_restore, lambda r: {"effective": r.get("snap")}),
    ReplyRule("open", "CS-002", _skip_behind_snapshot),
    ReplyRule("open", "CS-004", _skip_with_reason),
)


def _result(failure: Failure) -> Mapping[str, Any] | None:
    reply = failure.reply
    if not isinstance(reply, Mapping) or reply.get("ok") is not True:
        return None
    result = reply.get("result")
    return result if isinstance(result, Mapping) else None


def _expectation_failed(failure: Failure, result: Mapping[str, Any]) -> bool:
    """Whether the failing step's ``expect:`` rejects the failing reply (the runner matches
    it before the oracle judges the reply, so the expectation is what stopped the case)."""
    step = failure.step
    expect = step.args.get("expect") if step is not None else None
    if not isinstance(expect, Mapping):
        return False
    return any(not matches(result.get(key), want)[0] for key, want in expect.items())


def broken_rule(op: str, result: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The first rule of :data:`REPLY_RULES` that the reply to ``op`` breaks by itself:
    (requirement, message, allowed), else None."""
    for rule in REPLY_RULES:
        if rule.op == op:
            broken = rule.check(result)
            if broken is not None:
                return rule.requirement, broken[0], broken[1]
    return None


def rule_expectations(op: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """Reply field -> the value the rules the reply breaks fix it at (empty when it breaks
    none, or none of them fixes a value)."""
    out: dict[str, Any] = {}
    for rule in REPLY_RULES:
        if rule.op == op and rule.check(result) is not None:
            out.update(rule.fixes(result))
    return out


def failing_expectations(result: CaseResult) -> dict[str, Any]:
    """Reply field -> what the failing step should have answered: the step's ``expect:``
    and the protocol rules its reply breaks (the rules win: they are the root cause)."""
    failure = result.failure
    if failure is None or failure.step is None:
        return {}
    expect = failure.step.args.get("expect")
    out = dict(expect) if isinstance(expect, Mapping) else {}
    reply = _result(failure)
    if reply is not None:
        out.update(rule_expectations(str((failure.request or {}).get("op", "")), reply))
    return out


def _strip_requirement(message: str, rid: str | None) -> str:
    """The message without its leading "RID: " (as many as a wrapper stacked)."""
    prefix = f"{rid}: "
    while rid and message.startswith(prefix):
        message = message[len(prefix):]
    return message


def blame(result: CaseResult) -> Blame | None:
    """The root cause of a failing case, per the blame order; None for a case that did not
    fail (passed, not applicable, xpassed)."""
    if result.status not in _FAILING:
        return None
    failure = result.failure
    cited = tuple(dict.fromkeys(result.case.requirements))
    named = [r for r in (*result.violations,
                         *((failure.requirement,) if failure and failure.requirement else ()))]
    named = list(dict.fromkeys(named))
    if failure is None:
        message = result.reason or f"case {result.status} without a recorded failure"
        root = named[0] if named else None
        return Blame(root, message, None, "check" if root else "none",
                     tuple(r for r in cited if r not in named))
    reply = _result(failure)
    op = str((failure.request or {}).get("op", ""))
    if reply is not None and _expectation_failed(failure, reply):
        broken = broken_rule(op, reply)
        if broken is not None:
            rid, text, allowed = broken
            superseded = failure.requirement if failure.requirement != rid else None
            return Blame(rid, f"{rid}: {text}", allowed, "reply",
                         tuple(r for r in cited if r != rid), superseded)
    if named:
        root = named[0]
        message = f"{root}: {_strip_requirement(failure.message, root)}"
        return Blame(root, message, failure.allowed, "check",
                     tuple(r for r in cited if r not in named))
    return Blame(None, failure.message, failure.allowed, "none", ())


def named_requirements(result: CaseResult) -> list[str]:
    """The requirements a failing case fails: its root cause (and any other violation the
    harness recorded), or, when it names none, none (the caller then fails all it cites)."""
    b = blame(result)
    if b is None or b.root is None:
        return []
    others = [r for r in result.violations if r not in (b.root, b.superseded)]
    return list(dict.fromkeys([b.root, *others]))
