"""The reply schemas (conformance/wire/schemas/): what they reject, where the runner blames it,
and that every reply the reference gives across all suites passes them.

The runner-level tests play a short case on the scripted node (tests/_scripted_node.py)
through the process adapter, with one reply rewritten as a broken node would write it: each
must fail the case at the step that got the reply, naming the field, the value and the rule.
Before the schemas, `pinned: "no"`, `present: "false"`, `index: "6"`, `ceiling: "0"`, `6.0`
and `1e308` passed, NaN and a missing field were harness errors with no step, deep nesting
a RecursionError, a duplicate reply was blamed on the next step, a closed stdout read "the
node died", and a malformed digest was XR-001 with "first differences: []".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _scripted_node import CLOSE, Script, scripted, scripted_adapter

from conformance.adapters import inprocess
from conformance.cases import ERROR_CODES, Case, CaseResult
from conformance.catalog import load_catalog
from conformance.impls import resolve
from conformance.loader import load_suites
from conformance.runner import CaseRunner
from conformance.session import SUITES_DIR, run_all
from conformance.wire import ReplyViolation, check_event, check_reply
from conformance.wire.validate import RESULT_SCHEMAS, schema_text, validator

REPO = Path(__file__).resolve().parents[1]

CASE = """
suite: wire_steps
description: one step per reply under test
cases:
  - id: wire-steps
    description: open, applies, a snapshot, then one read per step
    requirements: [SP-001]
    capabilities: [reader, writer, header_applier]
    steps:
      - open: {}
      - apply: {generate: {kind: add, key: n, count: 2}}
      - snapshot: {site: local}
      - last_applied_index: {}
      - hlc: {}
      - get: {key: n}
      - digest: {}
"""
OPEN, APPLY, SNAPSHOT, LAST_APPLIED, HLC, GET, DIGEST = range(1, 8)  # step numbers


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    path = tmp_path_factory.mktemp("suite") / "wire_steps.yaml"
    path.write_text(CASE)
    return load_suites([path], load_catalog())[0].cases[0]


def run(case: Case, script: Script, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CaseResult:
    scripted(monkeypatch, script)
    adapter = scripted_adapter(tmp_path / "node")
    try:
        return CaseRunner(case, adapter).run()
    finally:
        adapter.close()


def set_field(field: str, raw: str) -> Any:
    """A rewrite: the result's `field` becomes the JSON text `raw` (written as it is)."""
    def rewrite(line: bytes) -> list[bytes]:
        head, sep, text = line.decode().partition('"result":{')
        new, n = re.subn(rf'"{field}":(?:"[^"]*"|[^,}}]*)', f'"{field}":{raw}', text, count=1)
        assert sep and n == 1, (field, line)
        return [(head + sep + new).encode()]
    return rewrite


def drop_field(field: str) -> Any:
    def rewrite(line: bytes) -> list[bytes]:
        obj = json.loads(line)
        del obj["result"][field]
        return [json.dumps(obj).encode() + b"\n"]
    return rewrite


# (op whose reply is rewritten, nth such reply, the rewrite, the step it fails, message part)
BROKEN = {
    "pinned-truthy-string": ("snapshot_persist", 1, set_field("pinned", '"no"'), SNAPSHOT,
                             "result.pinned = 'no': must be boolean"),
    "present-truthy-string": ("last_applied_index", 2, set_field("present", '"false"'),
                              LAST_APPLIED, "result.present = 'false': must be boolean"),
    "index-string": ("last_applied_index", 2, set_field("index", '"6"'), LAST_APPLIED,
                     "result.index = '6': must be integer"),
    "ceiling-string": ("hlc", 2, set_field("ceiling", '"0"'), HLC,
                       "result.ceiling = '0': must be integer"),
    "index-1e308": ("last_applied_index", 2, set_field("index", "1e308"), LAST_APPLIED,
                    "result.index: 1e308: a float (the protocol's numbers are integers)"),
    "index-6.0": ("last_applied_index", 2, set_field("index", "6.0"), LAST_APPLIED,
                  "result.index: 6.0: a float"),
    "index-nan": ("last_applied_index", 2, set_field("index", "NaN"), LAST_APPLIED,
                  "result.index: NaN: not a JSON number"),
    "ceiling-infinity": ("hlc", 2, set_field("ceiling", "Infinity"), HLC,
                         "result.ceiling: Infinity: not a JSON number"),
    "index-10000-digits": ("last_applied_index", 2, set_field("index", "9" * 10_000),
                           LAST_APPLIED, "result.index: a 10000-digit integer: integer out of "
                                         "range"),
    "index-2**64": ("last_applied_index", 2, set_field("index", str(2**64)), LAST_APPLIED,
                    "result.index = 18446744073709551616: must be <= 18446744073709551615"),
    "index-negative": ("snapshot_persist", 1, set_field("compacted", "-1"), SNAPSHOT,
                       "result.compacted = -1: must be >= 0"),
    "present-missing": ("last_applied_index", 2, drop_field("present"), LAST_APPLIED,
                        "result: required field 'present' is missing"),
    "open-field-missing": ("open", 1, drop_field("effective"), OPEN,
                           "result: required field 'effective' is missing (schemas/open.json)"),
    "deep-nesting": ("hlc", 2, set_field("ceiling", "[" * 5000 + "]" * 5000), HLC,
                     "levels deep, more than the bound of 64"),
    "duplicate-key": ("hlc", 2, set_field("ceiling", '1,"ceiling":2'), HLC,
                      "result: duplicate key 'ceiling'"),
    "malformed-digest": ("digest", 1, set_field("digest", '"XYZ"'), DIGEST,
                         "result.digest = 'XYZ': must match ^[0-9a-f]{64}$"),
    "apply-result-unknown": ("apply", 1, set_field("result", '"fine"'), APPLY,
                             "result.result = 'fine': must be one of ['ok', 'conflict'"),
    "get-value-number": ("get", 1, set_field("value", "2"), GET,
                         "result.value = 2: must be string or null"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_reply_fails_its_step_naming_field_value_and_rule(
        name: str, case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    op, nth, rewrite, step, message = BROKEN[name]
    result = run(case, Script(rewrite=rewrite, op=op, nth=nth), monkeypatch, tmp_path)
    assert result.status == "failed", result
    failure = result.failure
    assert failure is not None
    assert failure.step is not None and failure.step.index + 1 == step, failure.render()
    assert failure.message.startswith(f"ProtocolViolation: {op} (id "), failure.message
    assert message in failure.message
    assert failure.request is not None and failure.request["op"] == op


def test_the_unbroken_case_passes(case: Case, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    assert run(case, Script(), monkeypatch, tmp_path).status == "passed"


def test_a_second_reply_is_blamed_on_the_step_that_got_it(
        case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the node answers the hlc of step 5 twice: step 5 is at fault, not step 6's get
    result = run(case, Script(rewrite=lambda line: [line, line], op="hlc", nth=2),
                 monkeypatch, tmp_path)
    failure = result.failure
    assert failure is not None and failure.step is not None
    assert failure.step.index + 1 == HLC, failure.render()
    assert "after the reply to request" in failure.message, failure.message


def test_a_late_second_reply_is_still_blamed_on_its_step(tmp_path: Path) -> None:
    # arrives only while the next request waits: recognised by its earlier id
    request = {"id": 9, "op": "get"}
    with pytest.raises(ReplyViolation, match="a reply to the earlier request 8") as info:
        check_reply(request, {"id": 8, "ok": True, "result": {}})
    assert info.value.culprit_id == 8


def test_a_closed_stdout_is_not_a_dead_node(case: Case, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    result = run(case, Script(rewrite=lambda line: [CLOSE], op="get"), monkeypatch, tmp_path)
    failure = result.failure
    assert failure is not None and failure.step is not None and failure.step.index + 1 == GET
    assert "closed its stdout but is still running" in failure.message, failure.message
    assert "died" not in failure.message


def test_a_lone_surrogate_in_an_error_message_prints(
        case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def error(line: bytes) -> list[bytes]:
        rid = json.loads(line)["id"]
        return [b'{"id":%d,"ok":false,"error":{"code":"bad_request","message":"boom \\ud800"}}\n'
                % rid]
    result = run(case, Script(rewrite=error, op="get"), monkeypatch, tmp_path)
    failure = result.failure
    assert failure is not None and failure.step is not None and failure.step.index + 1 == GET
    assert "boom \\ud800" in failure.message
    failure.render().encode("utf-8")  # printable: a raw surrogate would raise here


@pytest.mark.parametrize(("reply", "message"), [
    ({"id": 3, "ok": "true", "result": {}}, "ok = 'true': must be boolean"),
    ({"id": 3, "ok": True}, "the reply: required field 'result' is missing"),
    ({"id": 3, "ok": True, "result": []}, "result = []: must be object"),
    ({"id": 3, "ok": False}, "the reply: required field 'error' is missing"),
    ({"id": 3, "ok": False, "error": {"message": "x"}}, "error: required field 'code' is missing"),
    ({"id": 3, "ok": False, "error": {"code": "oops"}}, "error.code = 'oops': must be one of"),
    ({"id": 3, "ok": False, "error": {"code": "snapshot_verify"}},
     "error: required field 'kind' is missing"),
    ({"id": 3, "ok": False, "error": {"code": "snapshot_verify", "kind": "bad"}},
     "error.kind = 'bad': must be one of ['missing', 'too_small', 'token_crc', 'file_crc']"),
    ({"id": 3, "ok": False, "error": {"code": "bad_index", "message": 5}},
     "error.message = 5: must be string"),
    ({"id": "3", "ok": True, "result": {}}, "reply id '3' does not match request id 3"),
    ({"id": True, "ok": True, "result": {}}, "reply id True does not match request id 3"),
    ({"id": 4, "ok": True, "result": {}}, "reply id 4 does not match request id 3"),
])
def test_the_envelope(reply: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplyViolation) as info:
        check_reply({"id": 3, "op": "tamper"}, reply)
    assert str(info.value) == f"tamper (id 3): {message}" or message in str(info.value)


@pytest.mark.parametrize(("op", "result", "message"), [
    ("hello", {"version": 1, "implementation": {"name": 5}, "capabilities": [],
               "entry_kinds": []}, "result.implementation.name = 5: must be string"),
    ("hello", {"version": 1, "capabilities": [], "entry_kinds": []},
     "result: required field 'implementation' is missing"),
    ("hello", {"version": 1, "implementation": {"name": "x", "version": "1"},
               "capabilities": "reader", "entry_kinds": []},
     "result.capabilities = 'reader': must be array"),
    ("open", {"outcome": "skip", "reason": None, "have": 1, "snap": 1, "effective": 1, "gap": 0,
              "compacted": 0, "last_applied": 1}, "result.outcome = 'skip': must be one of"),
    ("open", {"outcome": "fallback", "reason": "why", "have": None, "snap": 1, "effective": 1,
              "gap": None, "compacted": 0, "last_applied": 1}, "result.reason = 'why'"),
    ("open", {"outcome": "executed", "reason": None, "have": 0, "snap": 1, "effective": 1,
              "gap": -1, "compacted": True, "last_applied": 1}, "result.compacted = True"),
    ("scan", {"items": [["a", "1"], ["b"]]}, "result.items[1] = ['b']: must have at least 2"),
    ("scan", {"items": [["a", "1", "x"]]}, "result.items[0] = ['a', '1', 'x']: must have no more"),
    ("scan", {"items": [["a", None]]}, "result.items[0][1] = None: must be string"),
    ("snapshot_begin", {"snapshot": "h1", "index": 3}, "result.snapshot = 'h1': must be integer"),
    ("set_durable_applied_index", {"written": 1}, "result.written = 1: must be boolean"),
    ("install_snapshot", {}, "result: required field 'index' is missing"),
])
def test_result_schemas(op: str, result: dict[str, Any], message: str) -> None:
    with pytest.raises(ReplyViolation, match=re.escape(message)):
        check_reply({"id": 1, "op": op}, {"id": 1, "ok": True, "result": result})


def test_open_result_with_a_negative_gap_and_nulls_passes() -> None:
    check_reply({"id": 1, "op": "open"}, {"id": 1, "ok": True, "result": {
        "outcome": "fallback", "reason": "missing_meta", "have": None, "snap": 5,
        "effective": 5, "gap": None, "compacted": 5, "last_applied": 5}})
    check_reply({"id": 1, "op": "open"}, {"id": 1, "ok": True, "result": {
        "outcome": "executed", "reason": None, "have": 2, "snap": 2**64 - 1,
        "effective": 2**64 - 1, "gap": 3 - 2**64, "compacted": 0, "last_applied": 2**64 - 1}})


def test_events() -> None:
    request = {"id": 2, "op": "open"}
    check_event(request, {"event": "progress", "anything": [1.5]})  # other names: ignored
    with pytest.raises(ReplyViolation, match="neither a reply"):
        check_event(request, {"evnt": "cold_start"})
    with pytest.raises(ReplyViolation, match="cold_start event: required field 'outcome'"):
        check_event(request, {"event": "cold_start"})


def test_every_op_of_the_protocol_has_a_valid_draft7_schema() -> None:
    table = (REPO / "docs" / "protocol.md").read_text().split("## Operations", 1)[1]
    ops = re.findall(r"^\| `([a-z_]+)` \|", table.split("\n\n", 2)[1], re.M)
    assert len(ops) == 15 and set(ops) == set(RESULT_SCHEMAS), ops
    for name in [*RESULT_SCHEMAS, "reply", "cold_start_event"]:
        schema = json.loads(schema_text(name))  # read as package data
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        validator(name)  # compiles
    reply = json.loads(schema_text("reply"))
    assert reply["definitions"]["error"]["properties"]["code"]["enum"] == list(ERROR_CODES)


def test_every_reply_of_the_reference_across_all_suites_passes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process reference's replies go through the same check: a certify run with zero
    violations proves the schemas admit everything an honest node says."""
    checked: list[str] = []

    def counting(request: dict[str, Any], msg: dict[str, Any], line: bytes | None = None) -> None:
        checked.append(request["op"])
        check_reply(request, msg, line)

    monkeypatch.setattr(inprocess, "check_reply", counting)
    cases = [c for s in load_suites([SUITES_DIR], load_catalog()) for c in s.cases]
    results = run_all(cases, resolve("reference"), 0)
    bad = [r.failure.render() for r in results if r.status != "passed" and r.failure]
    assert not bad, bad[:3]
    assert {r.status for r in results} == {"passed"}
    assert len(checked) > 3000 and set(checked) >= set(RESULT_SCHEMAS) - {"shutdown"}, (
        len(checked), set(RESULT_SCHEMAS) - set(checked))
