"""The certification report: requirement statuses, profile verdicts and the three files."""

from __future__ import annotations

import json
import shlex
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conformance.cases import Case, CaseResult, Failure, Location, Status, Step
from conformance.catalog import Catalog, Profile, Requirement, Source, load_catalog
from conformance.impls import resolve
from conformance.report import (
    RunInfo,
    profile_verdicts,
    requirement_status,
    write_report,
)

SUITE_FILE = "suites/snapshot_persist.yaml"


def req(rid: str, level: str = "MUST", caps: tuple[str, ...] = ()) -> Requirement:
    area = {"ST": "store", "SP": "snapshot_persist", "CS": "cold_start"}[rid[:2]]
    return Requirement(
        id=rid,
        area=area,
        title=f"title of {rid}",
        level=level,
        text=f"The node {level} do {rid}.",
        capabilities=caps,
        source=Source(brief=("S1",)),
    )


def small_catalog() -> Catalog:
    return Catalog(
        version=1,
        capabilities={"reader": "reads", "writer": "writes", "failpoints": "fails"},
        profiles=(
            Profile("baseline", "nothing", ()),
            Profile("pinned", "adds the writer", ("writer",)),
            Profile("skip", "adds the reader", ("reader",)),
        ),
        requirements=(
            req("ST-001"),
            req("ST-002"),
            req("SP-001", "MUST", ("writer",)),
            req("SP-002", "SHOULD"),
            req("CS-001", "MUST", ("reader",)),
            req("CS-002", "MAY", ("reader",)),
        ),
    )


def make_case(
    cid: str,
    reqs: tuple[str, ...],
    *,
    suite: str = "snapshot_persist",
    caps: tuple[str, ...] = (),
    line: int = 10,
) -> Case:
    steps = tuple(
        Step(kind, {}, Location(f"suites/{suite}.yaml", line + 2 + i, 7), i)
        for i, kind in enumerate(("open", "apply", "snapshot_persist"))
    )
    return Case(
        id=cid,
        description=f"case {cid}",
        requirements=reqs,
        capabilities=caps,
        durability="synced",
        steps=steps,
        location=Location(f"suites/{suite}.yaml", line, 3),
        suite=suite,
    )


def make_result(case: Case, status: Status, **kw: Any) -> CaseResult:
    if status in ("failed", "error", "xfailed") and "failure" not in kw:
        step = case.steps[-1]
        kw["failure"] = Failure(
            message=f"{case.id}: pointer saved before the pin",
            step=step,
            request={"id": 9, "op": "snapshot_persist", "snapshot": 1, "site": "local"},
            reply={"id": 9, "ok": True, "result": {"index": 5, "pinned": False}},
            allowed="pinned = true with meta >= 5",
            requirement=case.requirements[0] if case.requirements else None,
            logs="line one\nline two <&> \x1b[31mred\x1b[0m",
        )
    return CaseResult(case=case, status=status, duration=0.25, steps_run=len(case.steps), **kw)


def info(caps: list[str] | None = None, profile: str | None = "skip") -> RunInfo:
    return RunInfo(
        implementation={"name": "reference", "version": "0.1.0"},
        adapter="in-process reference",
        protocol_version=1,
        capabilities=sorted(caps if caps is not None else ["reader", "writer", "failpoints"]),
        profile=profile,
        seed=1234,
        started="2024-05-01T12:00:00Z",
        duration_s=3.5,
        command="conformance run --adapter inprocess --seed 1234",
        harness_version="0.1.0",
    )


def mixed_results() -> list[CaseResult]:
    """ST-001 passed, ST-002 failed, CS-001 not applicable, SP-001 passed, the rest untested."""
    return [
        make_result(make_case("st-pass", ("ST-001",), suite="store", line=4), "passed"),
        make_result(make_case("st-fail", ("ST-002", "ST-001"), suite="store", line=20), "failed"),
        make_result(
            make_case("cs-na", ("CS-001",), suite="cold_start", caps=("reader",)),
            "not_applicable",
            reason="missing capability reader",
        ),
        make_result(make_case("sp-pass", ("SP-001",), caps=("writer",)), "passed"),
    ]


def all_passing() -> list[CaseResult]:
    return [
        make_result(make_case("st-1", ("ST-001", "ST-002"), suite="store"), "passed"),
        make_result(make_case("sp-1", ("SP-001", "SP-002"), caps=("writer",)), "passed"),
        make_result(make_case("cs-1", ("CS-001",), suite="cold_start", caps=("reader",)), "passed"),
    ]


# --------------------------------------------------------------------------- statuses


def test_requirement_statuses() -> None:
    statuses = requirement_status(mixed_results(), small_catalog())
    assert list(statuses) == sorted(statuses)  # by id
    assert {rid: s.status for rid, s in statuses.items()} == {
        "CS-001": "not_applicable",
        "CS-002": "untested",
        "SP-001": "passed",
        "SP-002": "untested",
        # st-fail also cites ST-001, but its failure names ST-002: it stopped before it
        # checked ST-001, which st-pass passed
        "ST-001": "passed",
        "ST-002": "failed",
    }
    st001 = statuses["ST-001"]
    assert st001.cases == {"passed": ["st-pass"], "failed": ["st-fail"]}
    assert st001.failures == {}
    assert st001.interrupted == {"st-fail": "ST-002: st-fail: pointer saved before the pin"}
    assert st001.stopped_by == {"st-fail": "ST-002"}
    assert statuses["ST-002"].failures == {"st-fail": "ST-002: st-fail: pointer saved before the pin"}
    assert statuses["ST-002"].cases == {"failed": ["st-fail"]}
    assert statuses["CS-001"].not_applicable == {"cs-na": "missing capability reader"}
    assert statuses["CS-002"].cases == {}
    assert statuses["SP-001"].case_ids == ["sp-pass"]


def test_a_failure_fails_what_it_names_and_interrupts_the_rest() -> None:
    """A case that fails on CS-002 before it checks SP-006 does not fail SP-006 (a node
    correct at a profile with SP-006 and without CS-002 would be rejected for nothing), nor
    pass it: SP-006 is interrupted, and blocks the profile unless another case checks it.
    A failure that names nothing (the node died) fails every requirement the case cites.
    Each case counts once per requirement, even when it names the one it cites."""
    cat = small_catalog()
    stopped = make_result(make_case("c", ("CS-001", "ST-001")), "failed")  # names CS-001
    st = requirement_status([stopped], cat)
    assert st["CS-001"].status == "failed" and st["CS-001"].case_ids == ["c"]
    assert st["ST-001"].status == "interrupted" and list(st["ST-001"].interrupted) == ["c"]
    baseline = next(v for v in profile_verdicts([stopped], cat, []) if v.name == "baseline")
    assert not baseline.certified
    assert ("requirement ST-001 had no case run to completion (a consequence of CS-001: case c"
            " stopped at that failure before checking it)") in baseline.reasons
    assert baseline.consequences == {"CS-001": ("ST-001",)}
    died = make_result(make_case("d", ("CS-001", "ST-001")), "failed",
                       failure=Failure("the node died", requirement=None))
    st = requirement_status([died], cat)
    assert st["CS-001"].status == st["ST-001"].status == "failed"


def test_passed_needs_one_case_that_ran() -> None:
    cat = small_catalog()
    results = [
        make_result(make_case("a", ("ST-001",)), "passed"),
        make_result(make_case("b", ("ST-001",), caps=("reader",)), "not_applicable"),
    ]
    st = requirement_status(results, cat)["ST-001"]
    assert st.status == "passed"
    assert st.not_applicable == {"b": "needs capability reader"}  # reason derived


def test_error_and_xfail_fail_the_requirement() -> None:
    cat = small_catalog()
    results = [
        make_result(make_case("err", ("ST-001",)), "error"),
        make_result(make_case("xf", ("ST-002",)), "xfailed", reason="known bug #12"),
        make_result(make_case("xp", ("SP-001",)), "xpassed"),
    ]
    statuses = requirement_status(results, cat)
    assert statuses["ST-001"].status == "failed"
    assert not statuses["ST-001"].known_failure
    assert statuses["ST-002"].status == "failed"
    assert statuses["ST-002"].known_failure
    assert statuses["SP-001"].status == "passed"


def test_named_violation_fails_an_uncited_requirement() -> None:
    cat = small_catalog()
    res = make_result(make_case("a", ("ST-001",)), "failed", violations=["SP-002"])
    statuses = requirement_status([res], cat)
    assert statuses["SP-002"].status == "failed"
    assert statuses["SP-002"].cases == {"failed": ["a"]}


def test_a_requirement_whose_guarded_state_never_arose_is_not_exercised() -> None:
    """Every passing case citing CS-001 took a legal path that avoids its state: the status
    says so, and it passes again as soon as one case exercised it."""
    cat = small_catalog()
    why = "c1 step 3 open answered outcome 'skipped'; the state CS-001 guards needs ..."
    avoided = make_result(make_case("c1", ("ST-001", "CS-001")), "passed",
                          unexercised={"CS-001": why})
    st = requirement_status([avoided], cat)
    assert st["CS-001"].status == "not_exercised"
    assert st["CS-001"].unexercised == {"c1": why}
    assert st["ST-001"].status == "passed"  # the case exercised its other requirement
    exercised = make_result(make_case("c2", ("CS-001",)), "passed")
    assert requirement_status([avoided, exercised], cat)["CS-001"].status == "passed"
    failing = make_result(make_case("c3", ("CS-001",)), "failed")
    assert requirement_status([avoided, failing], cat)["CS-001"].status == "failed"


def test_an_unexercised_must_requirement_certifies_with_a_caveat(tmp_path: Path) -> None:
    why = "cs-1 step 3 open answered outcome 'skipped'; the state CS-001 guards needs ..."
    results = all_passing()
    results[2] = replace(results[2], unexercised={"CS-001": why})
    verdicts = {v.name: v for v in profile_verdicts(results, small_catalog(),
                                                    ["reader", "writer", "failpoints"])}
    skip = verdicts["skip"]
    assert skip.certified and skip.must_passed == len(skip.must)
    assert skip.caveats == (
        f"requirement CS-001 was not exercised: the state it guards never arose for this node"
        f" ({why})",)
    assert skip.summary() == "CERTIFIED (not exercised for this node: CS-001)"
    assert verdicts["pinned"].caveats == () and verdicts["pinned"].summary() == "CERTIFIED"
    paths = write_report(results, small_catalog(), info(["reader", "writer", "failpoints"]),
                         tmp_path)
    md = paths.markdown.read_text(encoding="utf-8")
    assert ("**CERTIFIED** for the claimed profile `skip`; what it did not test for this"
            f" node:\n\n- {skip.caveats[0]}") in md
    assert f"- `skip`: {skip.caveats[0]}" in md  # under the profiles table
    assert "passed, not exercised" in md
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    skip_json = next(p for p in data["profiles"] if p["name"] == "skip")
    assert skip_json["caveats"] == list(skip.caveats)


# --------------------------------------------------------------------------- verdicts


def test_not_certified_when_a_must_case_was_not_applicable() -> None:
    results = mixed_results()
    results = [r for r in results if r.status != "failed"]  # nothing failed
    verdicts = {v.name: v for v in profile_verdicts(results, small_catalog(), ["reader", "writer"])}
    skip = verdicts["skip"]
    assert not skip.certified
    assert skip.missing_capabilities == ()
    assert skip.failed == ()
    assert skip.not_applicable == ("CS-001",)
    assert any("CS-001 had no case run" in r and "reader" in r for r in skip.reasons)
    # ST-002 is now cited by no case at all
    assert skip.untested == ("ST-002",)
    assert any("ST-002 had no case run (no case cites it)" in r for r in skip.reasons)


def test_certified_when_every_must_passes() -> None:
    verdicts = profile_verdicts(all_passing(), small_catalog(), ["reader", "writer", "failpoints"])
    assert [v.name for v in verdicts] == ["baseline", "pinned", "skip"]  # catalog order
    assert [v.profile for v in verdicts] == ["baseline", "pinned", "skip"]  # alias
    for v in verdicts:
        assert v.certified, v.reasons
        assert v.reasons == ()
        assert v.must_passed == len(v.must)
    skip = verdicts[-1]
    assert skip.capabilities == ("reader", "writer")  # cumulative
    assert skip.must == ("CS-001", "SP-001", "ST-001", "ST-002")
    assert skip.optional["SHOULD"]["passed"] == 1
    assert skip.optional["MAY"]["untested"] == 1  # CS-002: informational only


def test_missing_capability_blocks_certification() -> None:
    verdicts = {v.name: v for v in profile_verdicts(all_passing(), small_catalog(), ["writer"])}
    assert verdicts["pinned"].certified
    assert not verdicts["skip"].certified
    assert verdicts["skip"].missing_capabilities == ("reader",)
    assert verdicts["skip"].reasons == ("missing capability reader",)


def test_failed_must_blocks_and_should_does_not() -> None:
    cat = small_catalog()
    results = all_passing() + [make_result(make_case("sp-should", ("SP-002",)), "failed")]
    verdicts = {v.name: v for v in profile_verdicts(results, cat, ["reader", "writer"])}
    assert verdicts["skip"].certified
    assert verdicts["skip"].optional["SHOULD"]["failed"] == 1
    results.append(make_result(make_case("st-bad", ("ST-002",), suite="store"), "failed"))
    verdicts = {v.name: v for v in profile_verdicts(results, cat, ["reader", "writer"])}
    assert not verdicts["baseline"].certified
    assert verdicts["baseline"].failed == ("ST-002",)
    assert verdicts["baseline"].reasons == ("requirement ST-002 failed by case st-bad",)


def test_requirement_for_nodes_without_a_capability() -> None:
    base = small_catalog()
    fallback = Requirement(
        id="CS-003", area="cold_start", title="no reader means fallback", level="MUST",
        text="A node without the reader MUST fall back.", capabilities=(),
        source=Source(brief=("C2",)), without=("reader",),
    )
    cat = Catalog(base.version, base.capabilities, base.profiles, (*base.requirements, fallback))
    na = make_result(
        make_case("cs-fallback", ("CS-003",), suite="cold_start"),
        "not_applicable", reason="the node has capability reader",
    )
    # a node with the reader: CS-003 cannot run and does not bind it
    results = [*all_passing(), na]
    verdicts = {v.name: v for v in profile_verdicts(results, cat, ["reader", "writer"])}
    assert verdicts["baseline"].certified and verdicts["pinned"].certified
    assert verdicts["baseline"].excluded == ("CS-003",)
    assert "CS-003" not in verdicts["baseline"].must
    # a node without the reader: CS-003 binds baseline and must pass
    verdicts = {v.name: v for v in profile_verdicts(results, cat, ["writer"])}
    assert not verdicts["baseline"].certified
    assert verdicts["baseline"].not_applicable == ("CS-003",)
    ok = make_result(make_case("cs-fallback", ("CS-003",), suite="cold_start"), "passed")
    verdicts = {v.name: v for v in profile_verdicts([*all_passing(), ok], cat, ["writer"])}
    assert verdicts["pinned"].certified and verdicts["pinned"].excluded == ()


def test_real_catalog_profiles_with_no_results() -> None:
    cat = load_catalog()
    statuses = requirement_status([], cat)
    assert set(statuses) == {r.id for r in cat.requirements}
    assert {s.status for s in statuses.values()} == {"untested"}
    verdicts = profile_verdicts([], cat, [])  # a node advertising no capability
    assert [v.name for v in verdicts] == [p.name for p in cat.profiles]
    assert not any(v.certified for v in verdicts)
    baseline = verdicts[0]
    musts = [r.id for r in cat.for_profile("baseline") if r.level == "MUST"]
    assert baseline.untested == tuple(sorted(musts))
    assert baseline.missing_capabilities == () and baseline.excluded == ()
    for v in verdicts[1:]:
        assert set(v.missing_capabilities) == cat.profile_capabilities(v.name)


# --------------------------------------------------------------------------- files


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    results = mixed_results()
    results.append(
        make_result(make_case("sp-xfail", ("SP-002",), line=40), "xfailed", reason="bug #7")
    )
    paths = write_report(results, small_catalog(), info(), tmp_path / "out")
    assert paths.out_dir == tmp_path / "out"
    return tmp_path / "out", json.loads(paths.json.read_text(encoding="utf-8"))


def test_junit_counts(written: tuple[Path, dict[str, Any]]) -> None:
    out, _ = written
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 5
    assert [s.get("name") for s in root.findall("testsuite")] == [
        "cold_start", "snapshot_persist", "store",
    ]
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("cold_start", "cs-na"),
        ("snapshot_persist", "sp-pass"),
        ("snapshot_persist", "sp-xfail"),
        ("store", "st-fail"),
        ("store", "st-pass"),
    ]
    assert len(root.findall(".//failure")) == 1
    assert len(root.findall(".//error")) == 0
    skipped = root.findall(".//skipped")
    assert len(skipped) == 2  # not_applicable + xfailed
    assert skipped[0].get("message") == "missing capability reader"
    assert root.get("tests") == "5" and root.get("failures") == "1"
    assert root.get("skipped") == "2"
    store = root.find("./testsuite[@name='store']")
    assert store is not None and store.get("tests") == "2" and store.get("failures") == "1"
    failing = root.find("./testsuite/testcase[@name='st-fail']")
    assert failing is not None
    failure = failing.find("failure")
    assert failure is not None
    assert failure.get("message") == "ST-002: st-fail: pointer saved before the pin"
    assert "not checked, the case stopped here: ST-001" in (failure.text or "")
    assert "<&>" in (failure.text or "")  # escaped on write, intact after parsing
    props = [(p.get("name"), p.get("value")) for p in failing.iter("property")]
    assert ("requirement", "ST-002") in props and ("requirement", "ST-001") in props
    assert failing.get("time") == "0.250"


def test_markdown_shows_verdict_and_failure_location(written: tuple[Path, dict[str, Any]]) -> None:
    out, _ = written
    md = (out / "report.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    # the verdict first, right under the title; the run's details last
    assert lines[0] == "# Conformance report: reference 0.1.0"
    assert lines[2] == "**NOT CERTIFIED** for the claimed profile `skip`:"
    assert md.index("## Profiles") < md.index("## Root causes") < md.index("## Failures") \
        < md.index("## Not applicable") < md.index("## Requirements") < md.index("## Run")
    for text in ("Protocol version**: 1", "Seed**: 1234", "3.50 s",
                 "conformance run --adapter inprocess --seed 1234"):
        assert text in md[md.index("## Run"):]
    # the failing step's YAML location and the root cause, named once
    assert "suites/store.yaml:24:7" in md
    assert "- Root cause: ST-002: st-fail: pointer saved before the pin" in md
    assert "| ST-002: title of ST-002 | 1 |" in md
    assert "Case defined at `suites/store.yaml:20:3`; cites ST-002, ST-001" in md
    assert "```text\nST-002: st-fail: pointer saved before the pin\nat step 3" in md
    assert "not checked, the case stopped here: ST-001" in md
    assert "| **failed** | 2 | SP-002, ST-002 |" in md
    assert "| untested (no case ran) | 1 | CS-002 |" in md
    assert "## Not applicable" in md and "| missing capability reader | 1: `cs-na` |" in md
    assert "`sp-xfail`" in md and "bug #7" in md


def test_json_round_trip(written: tuple[Path, dict[str, Any]]) -> None:
    _, data = written
    summary = data["summary"]
    assert summary["cases"] == {
        "total": 5, "passed": 2, "failed": 1, "error": 0, "not_applicable": 1,
        "xfailed": 1, "xpassed": 0,
    }
    assert summary["requirements"] == {
        # ST-001: passed by st-pass; st-fail, which fails on ST-002, stopped before it
        "total": 6, "passed": 2, "not_exercised": 0, "failed": 2, "interrupted": 0,
        "not_applicable": 1, "untested": 1,
    }
    assert summary["claimed_profile"] == {"name": "skip", "known": True, "certified": False}
    assert data["info"]["seed"] == 1234
    assert [r["id"] for r in data["requirements"]] == sorted(r["id"] for r in data["requirements"])
    assert [(c["suite"], c["id"]) for c in data["cases"]] == sorted(
        (c["suite"], c["id"]) for c in data["cases"]
    )
    failing = next(c for c in data["cases"] if c["id"] == "st-fail")
    failure = failing["failure"]
    assert failure["step"]["index"] == 2
    assert failure["step"]["location"]["text"] == "suites/store.yaml:24:7"
    assert failure["request"]["op"] == "snapshot_persist"
    assert failure["reply"]["result"]["pinned"] is False
    assert failure["allowed"] == "pinned = true with meta >= 5"
    assert failure["requirement"] == "ST-002"
    assert failure["logs_tail"].startswith("line one")
    assert failure["rendered"].startswith("ST-002: st-fail: pointer saved before the pin")
    assert failing["root_cause"] == {
        "requirement": "ST-002", "message": "ST-002: st-fail: pointer saved before the pin",
        "allowed": "pinned = true with meta >= 5", "rule": "check", "consequences": ["ST-001"],
        "superseded": None}
    assert [p["name"] for p in data["profiles"]] == ["baseline", "pinned", "skip"]
    assert "mutants" not in data


def test_output_is_deterministic(tmp_path: Path) -> None:
    results = mixed_results()
    a = write_report(results, small_catalog(), info(), tmp_path / "a")
    b = write_report(list(reversed(results)), small_catalog(), info(), tmp_path / "b")
    for name in ("report.json", "report.md", "junit.xml"):
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name


def test_awkward_text_is_escaped(tmp_path: Path) -> None:
    case = make_case('we|rd"<case>&', ("ST-001",), suite="odd")
    failure = Failure(
        message='bad "reply" <x> & \x00\x07 ```',
        step=case.steps[0],
        logs="\x1b[0m\ud800 tail",
    )
    paths = write_report(
        [make_result(case, "failed", failure=failure)], small_catalog(), info(), tmp_path
    )
    root = ET.parse(paths.junit).getroot()
    tc = root.find("./testsuite/testcase")
    assert tc is not None and tc.get("name") == 'we|rd"<case>&'
    fail = tc.find("failure")
    assert fail is not None
    assert fail.get("message", "").startswith('bad "reply" <x> & \\x{0}\\x{7}')
    md = paths.markdown.read_text(encoding="utf-8")
    assert "````text\nbad" in md  # fence longer than the backticks inside
    json.loads(paths.json.read_text(encoding="utf-8"))


def test_mutants_matrix(tmp_path: Path) -> None:
    mutants = {
        "skip_pin": {"killed": True, "killed_by": ["sp-pass"], "requirement": "SP-001"},
        "always_skip": {"killed": False, "killed_by": [], "requirement": "CS-001"},
    }
    paths = write_report(all_passing(), small_catalog(), info(), tmp_path, mutants=mutants)
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["mutants"]["total"] == 2 and data["mutants"]["killed"] == 1
    assert data["mutants"]["survived"] == ["always_skip"]
    assert [m["name"] for m in data["mutants"]["matrix"]] == ["always_skip", "skip_pin"]
    md = paths.markdown.read_text(encoding="utf-8")
    assert "## Mutation matrix" in md and "1 of 2 mutants killed." in md
    assert "**CERTIFIED** for the claimed profile `skip`" in md


def test_error_case_and_long_node_log(tmp_path: Path) -> None:
    case = make_case("hang", ("ST-001",), suite="store")
    logs = "\n".join(f"log line {i}" for i in range(80))
    failure = Failure(message="request timed out after 10 s", step=case.steps[1], logs=logs)
    paths = write_report(
        [make_result(case, "error", failure=failure)], small_catalog(), info(), tmp_path
    )
    root = ET.parse(paths.junit).getroot()
    assert root.get("errors") == "1" and root.get("failures") == "0"
    error = root.find("./testsuite/testcase/error")
    assert error is not None and error.get("message") == "request timed out after 10 s"
    md = paths.markdown.read_text(encoding="utf-8")
    assert "Node log (last 50 lines)" in md
    assert "log line 30" in md and "log line 29" not in md
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    tail = data["cases"][0]["failure"]["logs_tail"].splitlines()
    assert len(tail) == 50 and tail[-1] == "log line 79"
    assert data["requirements"][[r["id"] for r in data["requirements"]].index("ST-001")][
        "status"
    ] == "failed"


# --------------------------------------------------------------------------- untested faults

REPO = Path(__file__).resolve().parents[1]
NO_POWER = "the test adapter cannot simulate a power loss"


def power_case(cid: str, reqs: tuple[str, ...], **kw: Any) -> Case:
    return make_case(cid, reqs, caps=("power_loss", *kw.pop("caps", ())), **kw)


def not_injected(case: Case, reason: str = NO_POWER) -> CaseResult:
    """Not applicable only because the harness could not inject a power loss (the runner's
    result for such a case)."""
    return make_result(case, "not_applicable",
                       reason=f"needs power_loss: the harness could not inject it here: {reason}",
                       unavailable_faults={"power_loss": reason})


def test_must_requirement_left_untested_by_an_uninjectable_fault_blocks_the_profile() -> None:
    # ST-001 passed on a process-kill case; a power-loss case citing it too could not run
    results = [*all_passing(), not_injected(power_case("st-power", ("ST-001", "ST-002"),
                                                       suite="store"))]
    verdicts = {v.name: v for v in profile_verdicts(results, small_catalog(),
                                                    ["reader", "writer"])}
    assert requirement_status(results, small_catalog())["ST-001"].status == "passed"
    for v in verdicts.values():  # ST-001 and ST-002 bind every profile
        assert not v.certified
        assert v.failed == () and v.not_applicable == () and v.untested == ()
        # one reason per fault, not one per requirement, and it comes first
        assert v.reasons == (
            "durability under power loss could not be tested: the test adapter cannot simulate"
            " a power loss (requirements ST-001, ST-002)",
        )
        assert v.untested_faults["power_loss"].reason == NO_POWER
        assert v.untested_faults["power_loss"].requirements == ("ST-001", "ST-002")
        assert v.to_dict()["untested_faults"] == {
            "power_loss": {"reason": NO_POWER, "requirements": ["ST-001", "ST-002"]}}


def test_only_the_profiles_requirements_are_named_and_reasons_come_first() -> None:
    results = [*all_passing(), not_injected(power_case("sp-power", ("SP-001",), caps=("writer",))),
               make_result(make_case("st-bad", ("ST-002",), suite="store"), "failed")]
    verdicts = {v.name: v for v in profile_verdicts(results, small_catalog(), ["writer"])}
    assert verdicts["baseline"].untested_faults == {}  # SP-001 is not a baseline requirement
    assert verdicts["baseline"].reasons == ("requirement ST-002 failed by case st-bad",)
    skip = verdicts["skip"]
    assert skip.reasons[0].startswith("durability under power loss could not be tested: ")
    assert skip.reasons[0].endswith(" (requirement SP-001)")
    assert skip.reasons[1:] == ("missing capability reader",
                                "requirement ST-002 failed by case st-bad")


def test_a_requirement_whose_only_case_needed_the_fault_is_said_once() -> None:
    # CS-001's only case is the power-loss one: no "had no case run" beside the fault reason
    results = [make_result(make_case("st-1", ("ST-001", "ST-002"), suite="store"), "passed"),
               make_result(make_case("sp-1", ("SP-001",), caps=("writer",)), "passed"),
               not_injected(power_case("cs-power", ("CS-001",), caps=("reader",),
                                       suite="cold_start"))]
    skip = profile_verdicts(results, small_catalog(), ["reader", "writer"])[-1]
    assert skip.not_applicable == ("CS-001",)
    assert skip.reasons == ("durability under power loss could not be tested: the test adapter"
                            " cannot simulate a power loss (requirement CS-001)",)


def test_one_reason_per_fault() -> None:
    kill = make_case("st-kill", ("ST-001",), suite="store", caps=("process_kill",))
    results = [*all_passing(),
               not_injected(power_case("st-power", ("ST-001", "ST-002"), suite="store")),
               make_result(kill, "not_applicable", reason="needs process_kill: ...",
                           unavailable_faults={"process_kill": "no signals here"})]
    v = profile_verdicts(results, small_catalog(), ["reader", "writer"])[0]
    assert list(v.untested_faults) == ["power_loss", "process_kill"]
    assert v.reasons == (
        f"durability under power loss could not be tested: {NO_POWER} (requirements ST-001,"
        " ST-002)",
        "behaviour after a process kill could not be tested: no signals here (requirement"
        " ST-001)",
    )


@pytest.mark.parametrize("node_lacks", ["capability", "unsynced_mode", "without"])
def test_a_case_the_node_could_not_run_anyway_does_not_count(node_lacks: str) -> None:
    """The power-loss case also needs something the node does not have (or must not have):
    it says nothing about what the harness left untested."""
    if node_lacks == "capability":
        case = power_case("st-power", ("ST-001",), caps=("failpoints",), suite="store")
    elif node_lacks == "unsynced_mode":
        case = replace(power_case("st-power", ("ST-001",), suite="store"), durability="unsynced")
    else:
        case = replace(power_case("st-power", ("ST-001",), suite="store"), without=("writer",))
    results = [*all_passing(), not_injected(case)]
    for v in profile_verdicts(results, small_catalog(), ["reader", "writer"]):
        assert v.certified, v.reasons
        assert v.untested_faults == {}


def test_report_files_name_the_unavailable_fault(tmp_path: Path) -> None:
    results = [*all_passing(), not_injected(power_case("st-power", ("ST-001",), suite="store"))]
    run = replace(info(), unavailable_faults={"power_loss": NO_POWER})
    paths = write_report(results, small_catalog(), run, tmp_path)
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["info"]["unavailable_faults"] == {"power_loss": NO_POWER}
    assert data["summary"]["certified_profiles"] == []
    skip = next(p for p in data["profiles"] if p["name"] == "skip")
    assert skip["untested_faults"] == {"power_loss": {"reason": NO_POWER,
                                                      "requirements": ["ST-001"]}}
    md = paths.markdown.read_text(encoding="utf-8")
    assert f"**Harness faults not available**: `power_loss` ({NO_POWER})" in md
    assert "**NOT CERTIFIED** for the claimed profile `skip`" in md
    assert ("- durability under power loss could not be tested: the test adapter cannot"
            " simulate a power loss (requirement ST-001)") in md
    # a run without the field (e.g. the mutation run) still names it, from the cases
    data = json.loads(write_report(results, small_catalog(), info(), tmp_path / "b")
                      .json.read_text(encoding="utf-8"))
    assert data["info"]["unavailable_faults"] == {"power_loss": NO_POWER}


def test_runner_says_the_harness_could_not_inject_the_fault(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an adapter class that can inject the fault elsewhere: unavailable_faults decides."""
    from conformance.adapters.inprocess import InProcessAdapter
    from conformance.loader import load_suites
    from conformance.runner import run_case

    monkeypatch.setattr(InProcessAdapter, "unavailable_faults",
                        lambda self: {"power_loss": NO_POWER})
    cases = {c.id: c for s in load_suites([REPO / "suites"]) for c in s.cases}
    impl = resolve("reference")
    res = run_case(cases["dm-synced-batches-survive-power-loss-drop-all"], impl.factory)
    assert res.status == "not_applicable"
    assert res.unavailable_faults == {"power_loss": NO_POWER}
    assert res.reason == f"needs power_loss: the harness could not inject it here: {NO_POWER}"
    # a case that lacks a node capability too says both, and which is which
    pinned = resolve("reference", profile_capabilities=load_catalog().profile_capabilities(
        "pinned"))  # no reader, no header applier
    res = run_case(cases["co-after-pin-local-synced-power"], pinned.factory)
    assert res.status == "not_applicable" and res.unavailable_faults == {"power_loss": NO_POWER}
    assert res.reason.startswith("needs header_applier, reader; in-process reference does not"
                                 " have it; ")
    assert res.reason.endswith(f"; needs power_loss: the harness could not inject it here: "
                               f"{NO_POWER}")
    # a case needing no fault the adapter lacks runs as before
    assert run_case(cases["xr-kill-at-several-points-synced"], impl.factory).status == "passed"


@pytest.mark.slow
def test_sqlite_node_through_an_adapter_without_power_loss_is_not_certified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: `skip` is not certified, because the power-loss cases citing its MUST
    requirements could not run, whatever the process-kill cases citing them too say. The
    unavailability is forced, so the test holds where the process adapter can inject a power
    loss (the crash-simulating filesystem) as well as where it cannot."""
    from conformance.adapters.process import ProcessAdapter
    from conformance.cli import main

    reason = "forced for the test: no crash-simulating filesystem"
    monkeypatch.setattr(ProcessAdapter, "unavailable_faults",
                        lambda self: {"power_loss": reason})
    impl = " ".join([shlex.quote(sys.executable), shlex.quote(str(REPO / "examples" /
                                                                  "sqlite_node.py")),
                     "--data-dir", "{data_dir}"])
    out = tmp_path / "report"
    # (--explore 0: the verdict here is the suites'; test_certify_explore covers exploration)
    assert main(["certify", "--impl", impl, "--profile", "skip", "--explore", "0",
                 "--out", str(out)]) == 1
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["info"]["unavailable_faults"] == {"power_loss": reason}
    skip = next(p for p in data["profiles"] if p["name"] == "skip")
    assert not skip["certified"]
    assert list(skip["untested_faults"]) == ["power_loss"]
    assert skip["untested_faults"]["power_loss"]["reason"] == reason
    assert {"SP-002", "SP-005", "ST-012"} <= set(skip["untested_faults"]["power_loss"]
                                                 ["requirements"])
    assert skip["reasons"][0].startswith(  # first: never cut off in a summary
        f"durability under power loss could not be tested: {reason} (requirements ")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"`power_loss` ({reason})" in md
    assert "**NOT CERTIFIED** for the claimed profile `skip`" in md
    assert f"- {skip['reasons'][0]}" in md
    printed = capsys.readouterr().out
    assert f"skip                   not certified: {skip['reasons'][0]}" in printed


def test_reference_in_process_is_certified_for_every_profile(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.cli import main

    assert main(["certify", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["summary"]["certified_profiles"] == [p.name for p in load_catalog().profiles]
    assert "power_loss" not in data["info"]["unavailable_faults"]  # the simulated disk
    assert all(p["untested_faults"] == {} for p in data["profiles"])
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert all(f"| `{p.name}` | certified |" in md for p in load_catalog().profiles)
    assert "could not be tested" not in md
    printed = capsys.readouterr().out
    assert all(f"{p.name:<22} CERTIFIED" in printed for p in load_catalog().profiles)
