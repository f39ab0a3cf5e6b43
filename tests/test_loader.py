"""The suite format: schema, loader, locations, and the problems it reports."""

from __future__ import annotations

import json
import pickle
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance import cases, loader
from conformance.cases import Location
from conformance.loader import (
    SuiteError,
    discover,
    load_schema,
    load_suite,
    load_suites,
    semantics,
    validate_paths,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "suites"
VALID = DATA / "valid.yaml"
INVALID = DATA / "invalid"
SCHEMA_FILE = ROOT / "conformance" / "schema" / "suite.schema.json"


class FakeCatalog:
    """Just enough of conformance.catalog.Catalog for the loader."""

    def __init__(self, *ids: str) -> None:
        self.ids = set(ids)

    def by_id(self, id: str) -> object:
        if id not in self.ids:
            raise KeyError(id)
        return id


CATALOG = FakeCatalog("SP-001", "SP-002", "CO-001", "EN-001", "CS-001")


def problems_of(path: Path, catalog: Any = CATALOG) -> list[tuple[int, int, str]]:
    with pytest.raises(SuiteError) as info:
        load_suite(path, catalog)
    for loc, _ in info.value.problems:
        assert loc.file == str(path)
    return [(loc.line, loc.column, msg) for loc, msg in info.value.problems]


def write_suite(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def one_case(steps: str, *, capabilities: str = "[]") -> str:
    return f"""
suite: t
description: t
cases:
  - id: c
    description: c
    requirements: [SP-001]
    capabilities: {capabilities}
    steps:
{textwrap.indent(textwrap.dedent(steps).strip(), "      ")}
"""


# --------------------------------------------------------------------------- valid


def test_valid_file_loads_with_locations() -> None:
    suite = load_suite(VALID, CATALOG)
    assert suite.name == "valid"
    assert suite.path == str(VALID)
    assert suite.fixture is None
    assert [c.id for c in suite.cases] == ["loader-valid-pin-before-save", "loader-valid-entries"]

    first, second = suite.cases
    assert first.location == Location(str(VALID), 5, 5)
    assert first.suite == "valid"
    assert first.requirements == ("SP-001", "CO-001")
    assert first.capabilities == ("writer", "failpoints")
    assert first.durability == "synced"
    assert first.tags == ("fast",)
    assert [s.kind for s in first.steps] == [
        "open", "apply", "failpoint", "snapshot", "restart", "open", "replay", "check"]
    assert [s.location.line for s in first.steps] == list(range(11, 19))
    assert all(s.location.column == 9 for s in first.steps)
    assert [s.index for s in first.steps] == list(range(8))
    assert first.steps[3].describe() == f"step 4 (snapshot) at {VALID}:14:9"

    assert second.location == Location(str(VALID), 20, 5)
    assert second.capabilities == ()
    assert second.tags == ()
    assert [s.location.line for s in second.steps] == [25, 26, 28, 38, 40, 41, 42, 43, 44, 45, 46]


def test_step_args_are_normalized() -> None:
    first, second = load_suite(VALID, CATALOG).cases
    open_, apply, failpoint, snapshot, restart, open2, replay, check = first.steps
    assert open_.args == {}
    assert restart.args == {}  # `restart:` (null) is {}
    assert apply.args == {"generate": {"kind": "add", "key": "n", "count": 5}}
    assert failpoint.args == {"name": "after_pin", "action": "crash", "skip": 0}
    assert snapshot.args == {"expect_crash": True, "site": "local"}
    assert open2.args["expect"] == {"outcome": "skipped", "have": {">=": 5}, "reason": None}
    assert check.args == {"invariants": ["state_matches_model", "p5_pairs"]}
    # plain containers, not the loader's marked ones
    for step in first.steps + second.steps:
        assert type(step.args) is dict
        json.dumps(step.args)
    raw = second.steps[3]
    assert raw.args["raw_entry"] == {"kind": "bogus", "anything": [1, 2.5, "yes"]}
    assert raw.args["index"] == 0
    assert second.steps[5].args == {"name": "s1", "site": "config", "expect": {"pinned": False}}
    assert second.steps[10].args == {"expect_error": {"code": "snapshot_verify", "kind": "file_crc"}}


def test_valid_file_against_the_real_catalog() -> None:
    pytest.importorskip("conformance.catalog")
    assert len(load_suite(VALID).cases) == 2


@pytest.mark.parametrize("value", [
    "null", "5", "-1", "'text'", "true", "[]", "[1, {a: null}, [x]]", "{}",
    "{kind: bogus, ts: -5, ops: nope}", "{kind: raw, ts: 99999999999999999999999, ops: []}",
])
def test_raw_entry_accepts_anything(tmp_path: Path, value: str) -> None:
    path = write_suite(tmp_path, "t", one_case(f"- apply: {{raw_entry: {value}, index: 3}}"))
    step = load_suite(path, CATALOG).cases[0].steps[0]
    assert "raw_entry" in step.args
    assert step.args["index"] == 3


def test_fixture_block(tmp_path: Path) -> None:
    body = one_case("- open: {}").replace(
        "cases:", "fixture:\n  catches: [etcd-20426]\n  guards: [SP-001]\n  seed: 7\n"
        "  implementation: ref 0.1\n  hypothesis_version: 6.100.0\n  notes: found by Hypothesis\n"
        "cases:")
    suite = load_suite(write_suite(tmp_path, "t", body), CATALOG)
    assert suite.fixture == {"catches": ["etcd-20426"], "guards": ["SP-001"], "seed": 7,
                             "implementation": "ref 0.1", "hypothesis_version": "6.100.0",
                             "notes": "found by Hypothesis"}


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    """Like yaml-language-server: yes/no/on stay strings, dates stay strings, 017 is 17."""
    path = write_suite(tmp_path, "t", one_case("""
        - get: {key: no, expect: {value: yes}}
        - get: {key: 2024-01-01, expect: {value: on}}
        - replay: {to: 017}
        - get: {key: k, expect: {value: True, n: 1e3}}
    """))
    steps = load_suite(path, CATALOG).cases[0].steps
    assert steps[0].args == {"key": "no", "expect": {"value": "yes"}}
    assert steps[1].args == {"key": "2024-01-01", "expect": {"value": "on"}}
    assert steps[2].args == {"to": 17}
    assert steps[3].args["expect"] == {"value": True, "n": 1000.0}


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = write_suite(tmp_path, "t", one_case("""
        - open: &o {expect: {outcome: executed}}
        - open: *o
        - get: {<<: {key: k}, expect: {value: null}}
    """))
    steps = load_suite(path, CATALOG).cases[0].steps
    assert steps[0].args == steps[1].args == {"expect": {"outcome": "executed"}}
    assert steps[2].args == {"key": "k", "expect": {"value": None}}


# --------------------------------------------------------------------------- invalid files


def test_unknown_step_kind() -> None:
    path = INVALID / "unknown_step_kind.yaml"
    assert problems_of(path) == [(9, 9, "case 'loader-bad-step-kind' step 2: unknown step kind "
                                        "'snapshoot'; did you mean 'snapshot'?")]


def test_field_typo() -> None:
    problems = problems_of(INVALID / "field_typo.yaml")
    assert (10, 11, "case 'loader-field-typo' step 2 (apply): unknown field 'entires'; "
                    "did you mean 'entries'?") in problems
    assert {line for line, _, _ in problems} == {10}


def test_power_crash_needs_loss() -> None:
    problems = problems_of(INVALID / "power_crash_without_loss.yaml")
    assert len(problems) == 1
    line, _, message = problems[0]
    assert line == 12
    assert "step 3 (crash): missing required field 'loss'" in message


def test_unknown_requirement_id() -> None:
    problems = problems_of(INVALID / "unknown_requirement.yaml")
    assert problems == [(8, 9, "case 'loader-unknown-requirement': unknown requirement ID "
                               "'SP-999' (not in the catalog)")]


def test_unknown_requirement_id_real_catalog() -> None:
    pytest.importorskip("conformance.catalog")
    problems = problems_of(INVALID / "unknown_requirement.yaml", None)
    assert [(line, "'SP-999'" in msg) for line, _, msg in problems] == [(8, True)]


def test_persist_of_unknown_snapshot() -> None:
    problems = problems_of(INVALID / "persist_unknown_snapshot.yaml")
    assert len(problems) == 1
    line, column, message = problems[0]
    assert (line, column) == (10, 34)
    assert "step 3 (snapshot_persist): snapshot 's2' was not begun" in message


def test_yaml_syntax_error_points_at_the_error() -> None:
    problems = problems_of(INVALID / "yaml_syntax.yaml")
    assert len(problems) == 1
    line, column, message = problems[0]
    assert (line, column) == (7, 10)  # where the parser gave up ...
    assert message.startswith("invalid YAML: ")
    assert "at line 6" in message  # ... and where the unclosed list began


def test_unsafe_tag_is_rejected_not_executed(tmp_path: Path) -> None:
    problems = problems_of(INVALID / "unsafe_tag.yaml")
    assert len(problems) == 1
    line, column, message = problems[0]
    assert (line, column) == (5, 18)
    assert "python/object/apply:os.system" in message
    assert "not allowed" in message

    marker = tmp_path / "pwned"
    path = write_suite(tmp_path, "t", one_case("- open: {}").replace(
        "description: c", f"description: !!python/object/apply:os.system ['touch {marker}']"))
    with pytest.raises(SuiteError):
        load_suite(path, CATALOG)
    assert not marker.exists()


def test_all_problems_of_a_file_are_reported() -> None:
    path = INVALID / "many_problems.yaml"
    problems = problems_of(path)
    assert [(line, col) for line, col, _ in problems] == [
        (1, 8), (9, 49), (9, 67), (10, 16), (11, 9), (12, 9), (16, 9)]
    messages = [m for _, _, m in problems]
    assert "must equal the file name 'many_problems'" in messages[0]
    assert "missing required field 'value' in entry.ops[0]" in messages[1]
    assert "unknown field 'vale' in entry.ops[0]; did you mean 'value'?" in messages[2]
    assert "loss is allowed only with mode: power" in messages[3]
    assert "failpoint needs capability 'failpoints'" in messages[4]
    assert f"duplicate case id 'loader-many' (first defined at {path}:4:9)" in messages[5]
    assert "got the string 'restart'; write '- restart: {}'" in messages[6]

    with pytest.raises(SuiteError) as info:
        load_suite(path, CATALOG)
    err = info.value
    assert err.location == Location(str(path), 1, 8)
    lines = str(err).splitlines()
    assert len(lines) == 7
    assert all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S", ln) for ln in lines)
    assert lines[0].startswith(f"{path}:1:8: ")


def test_duplicate_case_id_across_files() -> None:
    folder = INVALID / "duplicate_ids"
    first, second = folder / "first.yaml", folder / "second.yaml"
    # each file is valid on its own
    load_suite(first, CATALOG)
    load_suite(second, CATALOG)
    with pytest.raises(SuiteError) as info:
        load_suites([folder], CATALOG)
    assert len(info.value.problems) == 1
    loc, message = info.value.problems[0]
    assert loc == Location(str(second), 4, 5)
    assert f"{first}:10:5" in message
    assert "'loader-dup-shared'" in message

    errors = validate_paths([second, first], CATALOG)
    assert [str(e) for e in errors] == [str(info.value)]


# --------------------------------------------------------------------------- smaller checks


@pytest.mark.parametrize("steps, line, expected", [
    ("- open: {}\n- apply: {entry: {kind: noop}, entries: [{kind: noop}]}", 10,
     "apply needs exactly one of entry, entries, generate, raw_entry"),
    ("- apply:", 9, "apply needs exactly one of"),
    ("- apply: {entries: [{kind: noop}], index: 4}", 9,
     "index is allowed only with entry or raw_entry"),
    ("- apply: {entry: {kind: rawr}}", 9, "entry.kind must be one of: raw, txn"),
    ("- apply: {entry: {kind: raw, ts: -1, ops: []}}", 9, "entry.ts must be >= 0, got -1"),
    ("- apply: {entry: {kind: txn, start_ts: 1, ops: []}}", 9,
     "missing required field 'commit_ts' in entry"),
    ("- apply: {generate: {kind: add, count: 0}}", 9, "generate.count must be >= 1"),
    ("- apply: {entry: {kind: noop}}\n  expect: {result: ok}", 9,
     "indent expect under 'apply'"),
    ("- crash: {mode: process, loss: torn_last}", 9, "loss is allowed only with mode: power"),
    ("- failpoint: {name: before_pn}", 9, "did you mean 'before_pin'?"),
    ("- tamper: {kind: torn}", 9, "kind must be one of: torn_meta"),
    ("- open: {expect_error: not_opn}", 9, "did you mean 'not_open'?"),
    ("- open: {expect_error: {code: snapshot_verify, knd: x}}", 9, "unknown field 'knd'"),
    ("- open: {expect: {have: {'>=': 1, '<=': 3}}}", 9, "exactly one operator"),
    ("- open: {expect: {have: {'>=': x}}}", 9, "must be a number"),
    ("- open: {expect: {a: 1}, expect_error: not_open}", 9, "exclude each other"),
    ("- check: []", 9, "invariants must not be empty"),
    ("- check: [meta_invisble]", 9, "did you mean 'meta_invisible'?"),
    ("- snapshot: {site: remote}", 9, "site must be one of: local, config"),
    ("- get: {key: 5}", 9, "key must be a string, got an integer (5)"),
    ("- get: {}", 9, "missing required field 'key'"),
    ("- replay\n", 9, "got the string 'replay'"),
    ("- set_durable_applied_index: {index: 3}", 9, "needs capability 'writer'"),
    ("- install_snapshot: {raw: {}, ceiling: 2}\n", 9, "needs capability 'install_snapshot'"),
    ("- open: {}\n- open:\n    expect: {a: 1}\n    expect: {a: 2}", 12, "duplicate key 'expect'"),
    ("- snapshot_begin: {name: s}\n- snapshot_persist: {name: s}\n- snapshot_persist: {name: s}",
     11, "snapshot 's' is no longer pending: step 2 already persisted it"),
    ("- snapshot_begin: {name: s}\n- crash: {mode: process}\n- restart: {}\n- open: {}\n"
     "- snapshot_persist: {name: s}", 13, "the crash at step 2 discarded it"),
    ("- open: {exercises: {CS-002: {outcome: executed}}}", 9,
     "exercises names 'CS-002', which the case does not cite"),
    ("- open: {exercises: {cs-002: {outcome: executed}}}", 9, "does not match"),
])
def test_single_problem(tmp_path: Path, steps: str, line: int, expected: str) -> None:
    path = write_suite(tmp_path, "t", one_case(steps))
    problems = problems_of(path)
    assert any(ln == line and expected in msg for ln, _, msg in problems), problems


def test_capability_not_needed_when_expecting_unsupported(tmp_path: Path) -> None:
    path = write_suite(tmp_path, "t", one_case(
        "- set_durable_applied_index: {index: 3, expect_error: unsupported}"))
    load_suite(path, CATALOG)


def test_unsynced_needs_its_capability(tmp_path: Path) -> None:
    body = one_case("- open: {}").replace("    steps:", "    durability: unsynced\n    steps:")
    problems = problems_of(write_suite(tmp_path, "t", body))
    assert [(ln, "unsynced_mode" in m) for ln, _, m in problems] == [(8, True)]
    ok = body.replace("capabilities: []", "capabilities: [unsynced_mode]")
    assert load_suite(write_suite(tmp_path, "t", ok), CATALOG).cases[0].durability == "unsynced"


def test_top_level_problems(tmp_path: Path) -> None:
    empty = write_suite(tmp_path, "empty", "")
    assert [ln for ln, _, _ in problems_of(empty)] == [1]
    path = write_suite(tmp_path, "t", "suite: t\ndescriptoin: x\ncases: []\n")
    messages = {(ln, m) for ln, _, m in problems_of(path)}
    assert (2, "unknown field 'descriptoin'; did you mean 'description'?") in messages
    assert (1, "missing required field 'description'") in messages
    assert (3, "cases must not be empty") in messages


def test_non_json_values_are_rejected(tmp_path: Path) -> None:
    path = write_suite(tmp_path, "t", one_case("- get: {key: !!binary aGk=, expect: {1: x}}"))
    messages = [(ln, m) for ln, _, m in problems_of(path)]
    assert any(ln == 9 and "not a JSON value" in m for ln, m in messages)
    assert any(ln == 9 and "mapping keys must be strings" in m for ln, m in messages)


def test_missing_catalog_module_skips_requirement_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "conformance.catalog", None)  # import now fails
    semantics._default_catalog.cache_clear()
    try:
        suite = load_suite(INVALID / "unknown_requirement.yaml")
    finally:
        semantics._default_catalog.cache_clear()
    assert suite.cases[0].requirements == ("SP-001", "SP-999")


def test_discover_and_load_suites(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    names = ["z", "b/c/y", "a"]
    for name in names:
        stem = name.rsplit("/", 1)[-1]
        body = one_case("- open: {}").replace("suite: t", f"suite: {stem}") \
            .replace("id: c", f"id: case-{stem}")
        write_suite(tmp_path, name, body)
    (tmp_path / "notes.txt").write_text("not a suite")
    found = discover(tmp_path)
    assert found == sorted(found)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.yaml", "b/c/y.yaml",
                                                                   "z.yaml"]
    assert discover(tmp_path / "a.yaml") == [tmp_path / "a.yaml"]
    assert discover(tmp_path / "missing") == []
    suites = load_suites([tmp_path, tmp_path / "a.yaml"], CATALOG)  # a file counted once
    assert [s.name for s in suites] == ["a", "y", "z"]
    assert validate_paths([tmp_path], CATALOG) == []
    missing = validate_paths([tmp_path / "missing.yaml"], CATALOG)
    assert [str(e) for e in missing] == [f"{tmp_path / 'missing.yaml'}:1:1: no such file or "
                                         "directory"]


def test_validate_paths_reports_every_bad_file() -> None:
    errors = validate_paths([INVALID], CATALOG)
    files = sorted({e.location.file for e in errors})
    expected = sorted(str(p) for p in INVALID.glob("*.yaml")) \
        + [str(INVALID / "duplicate_ids" / "second.yaml")]
    assert files == sorted(expected)


def test_suite_error_renders_one_line_per_problem() -> None:
    a, b = Location("f.yaml", 3, 1), Location("f.yaml", 1, 2)
    err = SuiteError([(a, "second"), (b, "first"), (a, "second")])
    assert err.location == b
    assert err.problems == [(b, "first"), (a, "second")]
    assert str(err) == "f.yaml:1:2: first\nf.yaml:3:1: second"
    with pytest.raises(ValueError):
        SuiteError([])
    copy = pickle.loads(pickle.dumps(err))
    assert copy.problems == err.problems and str(copy) == str(err)


# --------------------------------------------------------------------------- the schema


NEWER_THAN_DRAFT7 = {
    "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    "$vocabulary", "dependentRequired", "dependentSchemas", "unevaluatedProperties",
    "unevaluatedItems", "prefixItems", "minContains", "maxContains", "contentSchema",
}
DRAFT7_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "readOnly",
    "writeOnly", "examples", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "additionalItems", "items",
    "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties",
    "required", "additionalProperties", "definitions", "properties", "patternProperties",
    "dependencies", "propertyNames", "const", "enum", "type", "format", "contentMediaType",
    "contentEncoding", "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
}
# annotation understood by yaml-language-server / VS Code; ignored by validators
EXTENSIONS = {"errorMessage"}


def schemas(schema: Any, *, conditions: bool = True) -> Iterator[dict[str, Any]]:
    """Every (sub)schema object in a draft-07 schema; `if` conditions only if `conditions`."""
    if not isinstance(schema, dict):
        return
    yield schema
    subs: list[Any] = []
    for key in ("properties", "patternProperties", "definitions"):
        subs += schema.get(key, {}).values()
    subs += schema.get("dependencies", {}).values()
    for key in ("allOf", "anyOf", "oneOf"):
        subs += schema.get(key, [])
    items = schema.get("items")
    subs += items if isinstance(items, list) else [items]
    subs += [schema.get(key) for key in ("not", "then", "else", "additionalProperties",
                                         "additionalItems", "contains")]
    if conditions:
        subs += [schema.get("if"), schema.get("propertyNames")]
    for sub in subs:
        yield from schemas(sub, conditions=conditions)


def test_schema_is_valid_draft7() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema == load_schema()  # what the package ships is the file in the tree
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    used = {key for sub in schemas(schema) for key in sub}
    assert not used & NEWER_THAN_DRAFT7
    assert used <= DRAFT7_KEYWORDS | EXTENSIONS, used - DRAFT7_KEYWORDS - EXTENSIONS
    for sub in schemas(schema):
        if "$ref" in sub:  # draft-07 ignores siblings of $ref
            assert set(sub) == {"$ref"}, sub


def test_schema_objects_are_closed() -> None:
    """Every object schema that lists properties refuses others, so typos are caught.

    The exceptions dispatch on a field (`kind`, `op`) to closed schemas via if/then.
    """
    for sub in schemas(load_schema(), conditions=False):
        if "properties" not in sub:
            continue
        if sub.get("additionalProperties") is False:
            continue
        assert all("then" in branch for branch in sub["allOf"]), sub
        for branch in sub["allOf"]:
            target = load_schema()["definitions"][branch["then"]["$ref"].rsplit("/", 1)[1]]
            assert target["additionalProperties"] is False


def test_schema_enums_match_the_data_model() -> None:
    d = load_schema()["definitions"]
    assert tuple(d["step"]["properties"]) == cases.STEP_KINDS
    assert tuple(d["step_check"]["items"]["enum"]) == cases.INVARIANTS
    assert tuple(d["step_failpoint"]["properties"]["name"]["enum"]) == \
        cases.CRASH_POINTS + cases.ERROR_POINTS
    assert tuple(d["step_tamper"]["properties"]["kind"]["enum"]) == cases.TAMPER_KINDS
    assert tuple(d["step_crash"]["properties"]["loss"]["enum"]) == cases.POWER_LOSS_MODES
    assert tuple(d["case"]["properties"]["capabilities"]["items"]["enum"]) == cases.CAPABILITIES
    assert tuple(d["error_code"]["enum"]) == cases.ERROR_CODES
    assert set(loader.STEP_CAPABILITY.values()) <= set(cases.CAPABILITIES)


def test_error_codes_match_the_protocol_doc() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    codes = tuple(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    assert codes == cases.ERROR_CODES


def test_docs_cover_every_step_kind_and_invariant() -> None:
    doc = (ROOT / "docs" / "suites.md").read_text(encoding="utf-8")
    for kind in cases.STEP_KINDS:
        assert f"### `{kind}`" in doc, kind
    for name in cases.INVARIANTS:
        assert f"`{name}`" in doc, name


def test_docs_example_is_a_valid_suite(tmp_path: Path) -> None:
    """The full example in docs/suites.md loads, against the real catalog."""
    pytest.importorskip("conformance.catalog")
    doc = (ROOT / "docs" / "suites.md").read_text(encoding="utf-8")
    example = doc.split("<!-- full-example -->", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    name = re.search(r"^suite: (\S+)", example, flags=re.M)
    assert name is not None
    path = tmp_path / f"{name.group(1)}.yaml"
    path.write_text(example, encoding="utf-8")
    suite = load_suite(path)
    assert suite.cases
