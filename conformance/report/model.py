"""The report's model: what a run's case results say about each requirement and profile.

From a run's case results and the requirement catalog this module derives

- a status per requirement (:func:`requirement_status`): ``passed``, ``failed``,
  ``not_applicable`` or ``untested``;
- a verdict per profile (:func:`profile_verdicts`), following the conformance statement of
  docs/protocol.md: a profile is certified only when the node advertises every capability of
  the profile and every MUST requirement of the profile passed, with none failed, none skipped
  as not applicable and none left without a case; and no MUST requirement of it is cited by a
  case that was not applicable only because the harness could not inject a fault it needs
  (``CaseResult.unavailable_faults``, e.g. a power loss through the local-process adapter).
  Such a requirement may have passed on other cases (a process kill), but the certificate
  would claim more than was tested: the verdict names the fault, the adapter's reason and the
  requirements, once per fault (``ProfileVerdict.untested_faults``). A case that also needed a
  node capability the node does not advertise does not count: it could not have run anyway.

How case statuses count for a requirement: ``passed`` and ``xpassed`` are passes (an xpassed
case shows the behaviour holds; its expectation is stale), ``failed``, ``error`` and
``xfailed`` are failures (an xfailed case is a *known* failure: it still fails the
requirement, an expectation never certifies anything), ``not_applicable`` did not run. A
failing case fails its root cause (:mod:`.blame`: one failure, one name), even when the
case does not cite it; the other requirements it cites are consequences, not checked.

A run of part of the suites (``RunInfo.selection``: ``run -k``, a suite file, a fixture)
certifies nothing: its verdicts say "not all cases ran" once, instead of a reason per
requirement whose cases were not selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from conformance.cases import CaseResult
from conformance.catalog import LEVELS, Catalog

from .blame import blame, named_requirements
from .text import scrub

RequirementState = Literal["passed", "not_exercised", "failed", "interrupted",
                           "not_applicable", "untested"]
REQUIREMENT_STATUSES: tuple[RequirementState, ...] = (
    "passed", "not_exercised", "failed", "interrupted", "not_applicable", "untested",
)
CASE_STATUSES = ("passed", "failed", "error", "not_applicable", "xfailed", "xpassed")
_PASSING = frozenset({"passed", "xpassed"})
_FAILING = frozenset({"failed", "error", "xfailed"})


# --------------------------------------------------------------------------- data


@dataclass
class RunInfo:
    """Who was tested, how, and when."""

    implementation: dict[str, Any]  # from hello: name, version
    adapter: str  # e.g. "in-process reference"
    protocol_version: int
    capabilities: list[str]  # advertised in hello
    profile: str | None  # the profile the implementation claims
    seed: int
    started: str  # ISO 8601, UTC
    duration_s: float
    command: str
    harness_version: str
    # harness faults the adapter said it could not inject in this run, with its reason
    unavailable_faults: dict[str, str] = field(default_factory=dict)
    # the seeded exploration the certificate includes (explore/budget.py Exploration.to_dict,
    # plus its one-line "summary"); None when none ran
    exploration: dict[str, Any] | None = None
    # what part of the suites this run selected, in words (selection_of); None when it ran
    # every case of the suites, as certify does
    selection: str | None = None

    def identity(self) -> str:
        name = str(self.implementation.get("name", "unknown implementation"))
        version = self.implementation.get("version")
        return f"{name} {version}" if version not in (None, "") else name


@dataclass
class RequirementStatus:
    """What the cases of one run say about one requirement."""

    id: str
    status: RequirementState
    # case status -> ids of the cases with that status (citing or naming the requirement)
    cases: dict[str, list[str]] = field(default_factory=dict)
    # case id -> failure message, for the cases that failed, errored or xfailed
    failures: dict[str, str] = field(default_factory=dict)
    # case id -> why it did not apply (the missing capability)
    not_applicable: dict[str, str] = field(default_factory=dict)
    # True when the requirement failed and every failing case was an expected failure
    known_failure: bool = False
    # case id -> why that passing case did not exercise it (CaseResult.unexercised)
    unexercised: dict[str, str] = field(default_factory=dict)
    # case id -> the failure that stopped that citing case before it checked this
    # requirement (the failure named another one)
    interrupted: dict[str, str] = field(default_factory=dict)
    # case id -> the root cause (requirement ID) of the failure that stopped it, for the
    # cases in ``interrupted``: this requirement is a consequence of that one there
    stopped_by: dict[str, str] = field(default_factory=dict)

    @property
    def case_ids(self) -> list[str]:
        return [cid for ids in self.cases.values() for cid in ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "known_failure": self.known_failure,
            "cases": self.cases,
            "failures": self.failures,
            "not_applicable": self.not_applicable,
            "unexercised": self.unexercised,
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
        }


@dataclass(frozen=True)
class UntestedFault:
    """A harness fault the adapter could not inject, and the MUST requirements of a profile
    that cases needing it cite."""

    reason: str  # the adapter's reason, in words
    requirements: tuple[str, ...]


@dataclass
class ProfileVerdict:
    """Whether the run certifies one profile, and if not, why not."""

    name: str
    description: str
    capabilities: tuple[str, ...]  # cumulative, in catalog order
    certified: bool
    missing_capabilities: tuple[str, ...]
    must: tuple[str, ...]  # IDs of the profile's MUST requirements
    must_passed: int
    failed: tuple[str, ...]  # MUST requirement IDs that failed
    not_applicable: tuple[str, ...]  # MUST requirement IDs whose every case was skipped
    untested: tuple[str, ...]  # MUST requirement IDs no case cites
    # IDs of the profile's requirements for nodes lacking a capability this node advertises
    excluded: tuple[str, ...]
    reasons: tuple[str, ...]  # why not certified, in words; empty when certified
    # level (SHOULD, MAY) -> requirement status -> count; informational, never blocking
    optional: dict[str, dict[str, int]]
    # harness fault -> why it could not be injected and the MUST requirements left untested
    # by it; any entry blocks certification (the first reasons name it)
    untested_faults: dict[str, UntestedFault] = field(default_factory=dict)
    # MUST requirement IDs whose guarded state never arose for this node (``not_exercised``),
    # and what a certificate must say about each, in words; neither blocks it
    not_exercised: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    # root cause -> the MUST requirement IDs whose cases all stopped at its failure before
    # checking them (status interrupted): its consequences, blocking but not failed
    consequences: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # RunInfo.selection: a run of part of the suites, which certifies nothing
    selection: str | None = None

    @property
    def profile(self) -> str:
        """The profile's name (alias of ``name``)."""
        return self.name

    def summary(self) -> str:
        """One console line: the verdict, and why not: the untested faults (whole), every
        failed requirement and the consequences of each, missing capabilities, a partial
        run, and how many requirements had no case run; or what a certificate did not
        test."""
        if not self.certified:
            return "not certified: " + "; ".join(self.why_not())
        if self.not_exercised:
            return f"CERTIFIED (not exercised for this node: {', '.join(self.not_exercised)})"
        return "CERTIFIED"

    def why_not(self) -> list[str]:
        """Why not certified, grouped: one item per kind of reason, every requirement ID
        named (empty when certified)."""
        if self.certified:
            return []
        out = [_fault_reason(f, gap) for f, gap in self.untested_faults.items()]
        if self.selection is not None:
            out.append(f"not all cases ran ({self.selection})")
        if self.failed:
            out.append("failed " + ", ".join(self.failed))
        for root, rids in self.consequences.items():
            out.append(f"not checked, their cases stopped at the {root} failure: "
                       + ", ".join(rids))
        if self.missing_capabilities:
            noun = "capability" if len(self.missing_capabilities) == 1 else "capabilities"
            out.append(f"missing {noun} " + ", ".join(self.missing_capabilities))
        fault_only = {r for u in self.untested_faults.values() for r in u.requirements}
        skipped = [r for r in self.not_applicable if r not in fault_only]
        if skipped:
            out.append(f"not applicable to this node: {_ids(skipped)}")
        if self.untested and self.selection is None:
            out.append(f"no case cites {_ids(self.untested)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data["untested_faults"] = {
            fault: {"reason": u.reason, "requirements": list(u.requirements)}
            for fault, u in self.untested_faults.items()
        }
        data["consequences"] = {k: list(v) for k, v in self.consequences.items()}
        return data


def _ids(rids: Sequence[str], shown: int = 8) -> str:
    """Requirement IDs, the first `shown` of them named and the rest counted."""
    more = f" and {len(rids) - shown} more" if len(rids) > shown else ""
    return ", ".join(rids[:shown]) + more



# --------------------------------------------------------------------------- analysis


def _order(results: Iterable[CaseResult]) -> list[CaseResult]:
    return sorted(results, key=lambda r: (r.case.suite, r.case.id))


def _failure_message(result: CaseResult) -> str:
    """The failing check in its one wording (the root cause's, :mod:`.blame`), scrubbed."""
    b = blame(result)
    if b is not None:
        return scrub(b.message)
    if result.reason:
        return scrub(result.reason)
    return f"case {result.status} without a recorded failure"


def _na_reason(result: CaseResult) -> str:
    if result.reason:
        return scrub(result.reason)
    if result.case.capabilities:
        return "needs capability " + ", ".join(result.case.capabilities)
    return "not applicable"


def _named_violations(result: CaseResult) -> list[str]:
    """Requirement IDs a failing case fails: its root cause first (:mod:`.blame`)."""
    return named_requirements(result)


def requirement_status(
    results: Sequence[CaseResult], catalog: Catalog
) -> dict[str, RequirementStatus]:
    """Requirement ID -> its status in this run, for every catalog requirement, sorted by ID.

    ``passed``: at least one case citing it ran, every one that ran passed, and at least one
    of them exercised it.
    ``not_exercised``: cases citing it ran and passed, but in every one the node legally took
    a path where the state it guards never arose (``CaseResult.unexercised``).
    ``interrupted``: no citing case passed or failed it: each that ran stopped at a failure
    that named another requirement, before it checked this one. A failing case fails the
    requirements its failure names; when it names none (the node died, a harness error),
    every requirement it cites.
    ``failed``: some case citing it (or naming it as violated) failed, errored or xfailed.
    ``not_applicable``: every citing case was not applicable.
    ``untested``: no case cites it.
    """
    evidence: dict[str, list[CaseResult]] = {r.id: [] for r in catalog.requirements}
    for result in _order(results):
        for rid in dict.fromkeys([*result.case.requirements, *_named_violations(result)]):
            if rid in evidence:
                evidence[rid].append(result)
    out: dict[str, RequirementStatus] = {}
    for rid in sorted(evidence):
        cited = evidence[rid]
        cases: dict[str, list[str]] = {}
        for res in cited:
            cases.setdefault(res.status, []).append(res.case.id)
        failing = [r for r in cited if r.status in _FAILING and _fails(r, rid)]
        stopped = {r.case.id: _failure_message(r) for r in cited
                   if r.status in _FAILING and not _fails(r, rid)}
        stopped_by = {r.case.id: _named_violations(r)[0] for r in cited
                      if r.case.id in stopped}
        ran = [r for r in cited if r.status != "not_applicable" and r.case.id not in stopped]
        unexercised = {r.case.id: r.unexercised[rid] for r in ran if rid in r.unexercised}
        state: RequirementState
        if failing:
            state = "failed"
        elif ran:
            state = "not_exercised" if len(unexercised) == len(ran) else "passed"
        elif stopped:
            state = "interrupted"
        elif cited:
            state = "not_applicable"
        else:
            state = "untested"
        out[rid] = RequirementStatus(
            id=rid,
            status=state,
            cases={s: cases[s] for s in CASE_STATUSES if s in cases},
            failures={r.case.id: _failure_message(r) for r in failing},
            not_applicable={
                r.case.id: _na_reason(r) for r in cited if r.status == "not_applicable"
            },
            known_failure=bool(failing) and all(r.status == "xfailed" for r in failing),
            unexercised=unexercised,
            interrupted=stopped,
            stopped_by=stopped_by,
        )
    return out


def _fails(result: CaseResult, rid: str) -> bool:
    """Whether a failing case fails `rid`: the requirements its failure names, or, when it
    names none, every one it cites."""
    named = _named_violations(result)
    return rid in named if named else True


def unavailable_faults(results: Iterable[CaseResult], info: RunInfo) -> dict[str, str]:
    """The run's unavailable harness faults: those the adapter reported (``RunInfo``), and
    those the not-applicable cases name, with the first reason given, sorted by fault."""
    out = dict(info.unavailable_faults)
    for res in _order(results):
        for fault, why in res.unavailable_faults.items():
            out.setdefault(fault, why)
    return dict(sorted(out.items()))


# What a harness fault tests, for the verdict's reason: "<words> could not be tested".
FAULT_WORDS = {"power_loss": "durability under power loss",
               "process_kill": "behaviour after a process kill",
               "crash_points": "behaviour at file-system crash points"}


def _fault_only(res: CaseResult, advertised: set[str]) -> bool:
    """Not applicable only because of a harness fault the adapter could not inject: the node
    has every node capability the case needs and none of those it must not have."""
    if res.status != "not_applicable" or not res.unavailable_faults:
        return False
    needs = set(res.case.capabilities) - set(res.unavailable_faults)
    if res.case.durability == "unsynced":
        needs.add("unsynced_mode")
    return needs <= advertised and not advertised.intersection(res.case.without)


def _fault_gaps(results: Sequence[CaseResult], advertised: set[str]) -> dict[str, dict[str, str]]:
    """Harness fault -> requirement ID cited by a case not applicable only because of it ->
    the adapter's reason (the first, in case order)."""
    gaps: dict[str, dict[str, str]] = {}
    for res in _order(results):
        if _fault_only(res, advertised):
            for fault, why in sorted(res.unavailable_faults.items()):
                for rid in res.case.requirements:
                    gaps.setdefault(fault, {}).setdefault(rid, why)
    return gaps


def _untested_faults(must: Iterable[str], gaps: dict[str, dict[str, str]]
                     ) -> dict[str, UntestedFault]:
    """Per fault, the given MUST requirements that its gaps leave untested, with the reason."""
    must = set(must)
    out: dict[str, UntestedFault] = {}
    for fault, cited in sorted(gaps.items()):
        rids = sorted(must & set(cited))
        if rids:
            why = "; ".join(dict.fromkeys(cited[r] for r in rids))
            out[fault] = UntestedFault(why, tuple(rids))
    return out


def _fault_reason(fault: str, gap: UntestedFault) -> str:
    what = FAULT_WORDS.get(fault, f"behaviour under the {fault.replace('_', ' ')} fault")
    noun = "requirement" if len(gap.requirements) == 1 else "requirements"
    return (f"{what} could not be tested: {gap.reason}"
            f" ({noun} {', '.join(gap.requirements)})")


def _no_case_reason(rid: str, st: RequirementStatus) -> str:
    if st.status == "untested":
        return f"requirement {rid} had no case run (no case cites it)"
    if st.status == "interrupted":
        roots = ", ".join(dict.fromkeys(st.stopped_by.values()))
        cases = ", ".join(st.interrupted)
        return (f"requirement {rid} had no case run to completion (a consequence of {roots}:"
                f" case {cases} stopped at that failure before checking it)")
    reasons = sorted(set(st.not_applicable.values()))
    return f"requirement {rid} had no case run (not applicable: {'; '.join(reasons)})"


def _caveat(rid: str, st: RequirementStatus) -> str:
    return (f"requirement {rid} was not exercised: the state it guards never arose for this "
            f"node ({'; '.join(st.unexercised.values())})")


def selection_of(command: str, pattern: str | None = None,
                 paths: Sequence[object] = ()) -> str | None:
    """``RunInfo.selection`` for a command line: None when the run covers every case of
    the suites (certify, or run without paths and -k), else what it selected, in words."""
    parts = [str(p) for p in paths]
    if pattern:
        parts.append(f"-k {pattern}")
    if command == "replay" or parts:
        return f"this {command} selected " + (" ".join(parts) or "one fixture")
    return None


def profile_verdicts(
    results: Sequence[CaseResult],
    catalog: Catalog,
    advertised_capabilities: Iterable[str],
    selection: str | None = None,
) -> list[ProfileVerdict]:
    """One verdict per catalog profile, in catalog order.

    Certified iff every (cumulative) capability of the profile is advertised and every MUST
    requirement of the profile (``catalog.for_profile``) passed. Requirements that apply only
    to nodes without a capability the node advertises (``Requirement.without``) are left out
    and listed in ``excluded``. SHOULD and MAY results are summarised in ``optional`` and never
    block certification. A MUST requirement cited by a case that was not applicable only
    because of a harness fault the adapter could not inject blocks it too, passed or not: one
    reason per fault, first (``untested_faults``). A MUST requirement whose guarded state never
    arose for this node (``not_exercised``: its cases passed on a legal path that avoids the
    state) does not block, and the certificate says so (``caveats``). A run of part of
    the suites (``selection``) certifies no profile: one reason says not all cases ran,
    instead of one per requirement whose cases were not selected.
    """
    statuses = requirement_status(results, catalog)
    advertised = set(advertised_capabilities)
    gaps = _fault_gaps(results, advertised)
    fault_only = {r.case.id for r in results if _fault_only(r, advertised)}
    verdicts: list[ProfileVerdict] = []
    for prof in catalog.profiles:
        cumulative = catalog.profile_capabilities(prof.name)
        caps = tuple(c for c in catalog.capabilities if c in cumulative)
        caps += tuple(sorted(cumulative - set(caps)))
        missing = tuple(c for c in caps if c not in advertised)
        # A requirement for nodes without some capability (Requirement.without) cannot be
        # checked on a node that advertises it, and does not bind such a node.
        reqs = sorted(
            (r for r in catalog.for_profile(prof.name) if not advertised.intersection(r.without)),
            key=lambda r: r.id,
        )
        excluded = tuple(
            sorted(r.id for r in catalog.for_profile(prof.name)
                   if advertised.intersection(r.without))
        )
        must = [r for r in reqs if r.level == "MUST"]
        failed = [r.id for r in must if statuses[r.id].status == "failed"]
        skipped = [r.id for r in must if statuses[r.id].status == "not_applicable"]
        untested = [r.id for r in must if statuses[r.id].status == "untested"]
        faults = _untested_faults((r.id for r in must), gaps)
        reasons = [_fault_reason(f, gap) for f, gap in faults.items()]
        if selection is not None:
            reasons.append(f"not all cases ran ({selection}); `conformance certify` runs "
                           "them all")
        reasons += [f"missing capability {c}" for c in missing]
        for r in must:
            st = statuses[r.id]
            if st.status == "failed":
                known = " (known failure)" if st.known_failure else ""
                reasons.append(
                    f"requirement {r.id} failed by case {', '.join(st.failures)}{known}"
                )
            elif st.status == "untested" and selection is not None:
                pass  # its cases were not selected: said once above
            elif st.status in ("untested", "interrupted") or (
                st.status == "not_applicable" and not set(st.not_applicable) <= fault_only
            ):  # (not applicable only for want of a fault: already said, once per fault)
                reasons.append(_no_case_reason(r.id, st))
        consequences: dict[str, list[str]] = {}
        for r in must:
            if statuses[r.id].status == "interrupted":
                for root in dict.fromkeys(statuses[r.id].stopped_by.values()):
                    consequences.setdefault(root, []).append(r.id)
        not_exercised = tuple(r.id for r in must if statuses[r.id].status == "not_exercised")
        caveats = tuple(_caveat(rid, statuses[rid]) for rid in not_exercised)
        optional: dict[str, dict[str, int]] = {}
        for level in LEVELS:
            if level == "MUST":
                continue
            counts: dict[str, int] = dict.fromkeys(REQUIREMENT_STATUSES, 0)
            for r in reqs:
                if r.level == level:
                    counts[statuses[r.id].status] += 1
            optional[level] = counts
        verdicts.append(
            ProfileVerdict(
                name=prof.name,
                description=prof.description,
                capabilities=caps,
                certified=not reasons,
                missing_capabilities=missing,
                must=tuple(r.id for r in must),
                must_passed=sum(1 for r in must
                                if statuses[r.id].status in ("passed", "not_exercised")),
                failed=tuple(failed),
                not_applicable=tuple(skipped),
                untested=tuple(untested),
                excluded=excluded,
                reasons=tuple(reasons),
                optional=optional,
                untested_faults=faults,
                not_exercised=not_exercised,
                caveats=caveats,
                consequences={k: tuple(v) for k, v in sorted(consequences.items())},
                selection=selection,
            )
        )
    return verdicts

