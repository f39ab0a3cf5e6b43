"""Suite files: YAML in, validated `cases.Suite` out, every problem with a file:line:column.

A suite file is parsed with a safe YAML loader that remembers where every node
starts, so any JSON path inside the document maps back to the YAML a person
wrote. The document is then validated against the packaged JSON Schema
(`conformance/schema/suite.schema.json`, draft-07, the same file editors use
through the yaml-language-server modeline) and checked for what a schema
cannot say: the suite name matches the file, requirement IDs exist in the
catalog, `snapshot_persist` names a pending `snapshot_begin`, case IDs are
unique, steps that need a capability are in a case that declares it. All
problems of a file are reported together. The format is documented in
docs/suites.md.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from conformance.cases import STEP_KINDS, Case, Location, Step, Suite

__all__ = [
    "CatalogLike",
    "Document",
    "SuiteError",
    "SuiteYamlLoader",
    "discover",
    "load_document",
    "load_schema",
    "load_suite",
    "load_suites",
    "validate_paths",
]

JsonPath = tuple[str | int, ...]
Problem = tuple[Location, str]

SCHEMA_PACKAGE = "conformance"
SCHEMA_RESOURCE = "schema/suite.schema.json"

# A document whose alias expansion walks more nodes than this is rejected ("billion laughs").
MAX_NODES = 1_000_000

# Steps that need a capability the case must declare (unless the step expects `unsupported`).
STEP_CAPABILITY: Mapping[str, str] = {
    "failpoint": "failpoints",
    "crash_point": "crash_points",
    "tamper": "tamper_hooks",
    "install_snapshot": "install_snapshot",
    "last_applied_index": "reader",
    "set_durable_applied_index": "writer",
}

# Defaults the loader fills into step args, so the runner sees them explicitly.
STEP_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "snapshot": {"site": "local"},
    "snapshot_persist": {"site": "local"},
    "failpoint": {"action": "crash", "skip": 0},
    "crash_point": {"nth": 1},
}

_EXPECTATIONS = ("expect", "expect_error", "expect_crash")


class CatalogLike(Protocol):
    """What the loader needs from a catalog: `conformance.catalog.Catalog` is one."""

    def by_id(self, id: str) -> object:  # raises KeyError for an unknown ID
        ...


# --------------------------------------------------------------------------- errors


class SuiteError(Exception):
    """One or more problems in suite files; str() is one "FILE:LINE:COL: message" per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        unique = list(dict.fromkeys(problems))
        if not unique:
            raise ValueError("SuiteError needs at least one problem")
        unique.sort(key=lambda p: (p[0].file, p[0].line, p[0].column))
        self.problems: list[Problem] = unique
        self.location: Location = unique[0][0]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{loc}: {message}" for loc, message in self.problems)

    def __reduce__(self) -> tuple[type[SuiteError], tuple[list[Problem]]]:
        return (SuiteError, (self.problems,))


# --------------------------------------------------------------------------- YAML


class _MarkedDict(dict[Any, Any]):
    """A mapping that remembers where it, each of its keys and each of its values start."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[Any, yaml.Mark] = {}
        self.value_marks: dict[Any, yaml.Mark] = {}


class _MarkedList(list[Any]):
    """A sequence that remembers where it and each of its items start."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[yaml.Mark] = []


_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_TAG = "tag:yaml.org,2002:"


# libyaml's parser when PyYAML has it (4x faster on the suites); same nodes and marks.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SuiteYamlLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A SafeLoader that records the start mark of every mapping, sequence, key and value.

    Scalars resolve as in YAML 1.2's core schema, as yaml-language-server does:
    only true/false are booleans (`yes`, `no`, `on`, `off` stay strings), `017` is
    17, and dates stay strings. Mappings with a repeated key are reported in
    `duplicate_keys` rather than silently keeping the last value. Only the plain
    data tags of the safe loader construct anything; `!!python/...` is an error.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[yaml.Mark, str]] = []


SuiteYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in (_TAG + "bool", _TAG + "int", _TAG + "float", _TAG + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SuiteYamlLoader.add_implicit_resolver(_TAG + "bool", _BOOL_RE, list("tTfF"))
SuiteYamlLoader.add_implicit_resolver(_TAG + "int", _INT_RE, list("-+0123456789"))
SuiteYamlLoader.add_implicit_resolver(_TAG + "float", _FLOAT_RE, list("-+0123456789."))


def _construct_int(loader: SuiteYamlLoader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text, 0) if text[:2] in ("0o", "0x", "0b") else int(text, 10)
    except ValueError:
        raise ConstructorError(None, None, f"invalid integer {text!r}", node.start_mark) from None


def _construct_map(loader: SuiteYamlLoader, node: MappingNode) -> Iterator[_MarkedDict]:
    data = _MarkedDict(node.start_mark)
    yield data
    seen: dict[tuple[str, str], yaml.Mark] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag != _TAG + "merge":
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                first = seen[ident]
                loader.duplicate_keys.append(
                    (key_node.start_mark,
                     f"duplicate key {key_node.value!r} (first at line {first.line + 1})"))
            else:
                seen[ident] = key_node.start_mark
    data.update(loader.construct_mapping(node))  # also flattens `<<` merge keys into node.value
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        try:
            data.key_marks[key] = key_node.start_mark
            data.value_marks[key] = value_node.start_mark
        except TypeError:  # unhashable key: construct_mapping has already refused it
            pass


def _construct_seq(loader: SuiteYamlLoader, node: SequenceNode) -> Iterator[_MarkedList]:
    data = _MarkedList(node.start_mark)
    yield data
    data.extend(loader.construct_sequence(node))
    data.item_marks = [child.start_mark for child in node.value]


SuiteYamlLoader.add_constructor(_TAG + "int", _construct_int)
SuiteYamlLoader.add_constructor(_TAG + "map", _construct_map)
SuiteYamlLoader.add_constructor(_TAG + "seq", _construct_seq)


# --------------------------------------------------------------------------- documents


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


@dataclass
class Document:
    """A parsed suite file: plain JSON-like data plus where each node of it came from."""

    file: str
    data: Any
    node_locations: dict[JsonPath, Location] = field(default_factory=dict)
    key_locations: dict[JsonPath, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def location(self, path: Sequence[str | int]) -> Location:
        """Where the node at `path` starts (or its nearest ancestor that exists)."""
        p = tuple(path)
        while p not in self.node_locations and p:
            p = p[:-1]
        return self.node_locations.get(p, Location(self.file, 1, 1))

    def key_location(self, path: Sequence[str | int]) -> Location:
        """Where the key of the mapping entry at `path` starts (the node itself if no key)."""
        return self.key_locations.get(tuple(path)) or self.location(path)


class _TooLarge(Exception):
    pass


class _Plainer:
    """Turns the marked YAML tree into plain dicts and lists, recording locations."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0

    def loc(self, mark: yaml.Mark) -> Location:
        return _location(self.doc.file, mark)

    def run(self, obj: Any, path: JsonPath, mark: yaml.Mark) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge
        self.doc.node_locations[path] = self.loc(mark)
        if isinstance(obj, _MarkedDict):
            out: dict[str, Any] = {}
            for key, value in obj.items():
                key_mark = obj.key_marks.get(key, obj.mark)
                if not isinstance(key, str):
                    self.doc.problems.append(
                        (self.loc(key_mark), f"mapping keys must be strings, got {key!r}; quote it"))
                    continue
                self.doc.key_locations[(*path, key)] = self.loc(key_mark)
                out[key] = self.run(value, (*path, key), obj.value_marks.get(key, key_mark))
            return out
        if isinstance(obj, _MarkedList):
            marks = obj.item_marks
            return [self.run(item, (*path, i), marks[i] if i < len(marks) else mark)
                    for i, item in enumerate(obj)]
        if obj is None or isinstance(obj, str | bool | int):
            return obj
        if isinstance(obj, float):
            if not math.isfinite(obj):
                self.doc.problems.append((self.loc(mark), f"{obj} is not a JSON number"))
            return obj
        self.doc.problems.append(
            (self.loc(mark), f"not a JSON value ({type(obj).__name__}); use a string"))
        return str(obj)


def _yaml_problem(file: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        tag = re.search(r"constructor for the tag '([^']*)'", problem)
        if tag:
            message = (f"YAML tag {tag.group(1)!r} is not allowed: "
                       "suite files hold plain data only")
        else:
            message = f"invalid YAML: {problem}"
            if exc.context and exc.context_mark is not None and exc.problem:
                message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        if mark is not None:
            return _location(file, mark), message
        return Location(file, 1, 1), message
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        before = text[:position]
        line = before.count("\n") + 1
        column = position - (before.rfind("\n") + 1) + 1
        return Location(file, line, column), f"invalid YAML: {exc}"
    return Location(file, 1, 1), f"invalid YAML: {exc}"


def load_document(path: Path) -> Document:
    """Parse a suite file into a `Document`; raises `SuiteError` for unreadable or bad YAML.

    Non-JSON values and duplicate keys do not raise; they are in `Document.problems`.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError([(Location(file, 1, 1), f"not UTF-8 text: {exc.reason}")]) from None
    except OSError as exc:
        raise SuiteError([(Location(file, 1, 1), f"cannot read: {exc.strerror or exc}")]) from None
    loader = SuiteYamlLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise SuiteError([_yaml_problem(file, exc, text)]) from None
    finally:
        loader.dispose()
    doc = Document(file=file, data=None)
    doc.problems += [(_location(file, mark), msg) for mark, msg in loader.duplicate_keys]
    if root is None:
        doc.node_locations[()] = Location(file, 1, 1)
        return doc
    try:
        doc.data = _Plainer(doc).run(data, (), root.start_mark)
    except _TooLarge:
        doc.data = None
        doc.problems.append(
            (Location(file, 1, 1), f"document too large: more than {MAX_NODES} nodes "
                                   "after expanding aliases"))
    return doc


# --------------------------------------------------------------------------- schema


def load_schema() -> dict[str, Any]:
    """The suite JSON Schema (draft-07), from the installed package."""
    res = resources.files(SCHEMA_PACKAGE)
    for part in SCHEMA_RESOURCE.split("/"):
        res = res.joinpath(part)
    schema: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}
_SCHEMA_TYPES = {"object": "a mapping", "array": "a list", "string": "a string",
                 "boolean": "a boolean", "integer": "an integer", "number": "a number",
                 "null": "null"}


def _describe_value(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} ({text})" if value is not None else kind


def _render_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _get(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        found = (isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data)) \
            or (isinstance(part, str) and isinstance(data, dict) and part in data)
        if not found:
            return None
        data = data[part]
    return data


def _where(data: Any, path: Sequence[str | int]) -> tuple[str, JsonPath, str | None]:
    """Split a path into a human context ("case 'x' step 3 (apply)"), the rest, the step kind."""
    rest = tuple(path)
    parts: list[str] = []
    kind: str | None = None
    if len(rest) >= 2 and rest[0] == "cases" and isinstance(rest[1], int):
        case = _get(data, rest[:2])
        cid = case.get("id") if isinstance(case, dict) else None
        parts.append(f"case {cid!r}" if isinstance(cid, str) else f"case {rest[1] + 1}")
        rest = rest[2:]
        if len(rest) >= 2 and rest[0] == "steps" and isinstance(rest[1], int):
            step = f"step {rest[1] + 1}"
            if len(rest) >= 3 and rest[2] in STEP_KINDS:
                kind = str(rest[2])
                step += f" ({kind})"
                rest = rest[3:]
            else:
                value = _get(case, rest[:2])
                if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in STEP_KINDS:
                    step += f" ({next(iter(value))})"
                rest = rest[2:]
            parts.append(step)
    return " ".join(parts), rest, kind


def _did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    if not isinstance(word, str):
        return ""
    options = [c for c in choices if isinstance(c, str)]
    folded = [c for c in options if c.casefold() == word.casefold() and c != word]
    close = folded or difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_of(values: Sequence[Any]) -> str:
    return ", ".join(str(v) if isinstance(v, str) else json.dumps(v) for v in values)


@dataclass(frozen=True)
class _Explained:
    path: JsonPath
    message: str  # without the case/step context
    at_key: bool = False


def _explain(err: ValidationError) -> list[_Explained]:
    """Turn one jsonschema error into messages a person can act on."""
    path: JsonPath = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    custom = schema.get("errorMessage")
    inst = err.instance
    validator = err.validator
    value: Any = err.validator_value  # the keyword's value in the schema
    _, rel, kind = _where(None, path)
    if kind == "check":
        rel = ("invariants", *rel)
    subject = _render_path(rel) if rel else ""
    what = subject or (f"the arguments of {kind}" if kind else "the value")
    where_in = f" in {subject}" if subject else ""

    if validator == "additionalProperties" and isinstance(inst, dict):
        allowed = list(schema.get("properties", {}))
        out = []
        for key in inst:
            if key in allowed:
                continue
            if schema.get("title") == "step":
                msg = f"unknown step kind {key!r}{_did_you_mean(key, allowed)}"
                if not _did_you_mean(key, allowed):
                    msg += f" (step kinds: {_one_of(allowed)})"
            else:
                msg = f"unknown field {key!r}{where_in}{_did_you_mean(key, allowed)}"
                if not allowed:
                    msg += " (it takes no fields)"
                elif not _did_you_mean(key, allowed):
                    msg += f" (fields: {_one_of(allowed)})"
            out.append(_Explained((*path, key), msg, at_key=True))
        return out
    if custom and validator in ("minProperties", "maxProperties") \
            and schema.get("title") == "step" and isinstance(inst, dict):
        keys = list(inst)
        msg = f"{custom}; this one has {len(keys)}"
        if keys:
            msg += f": {_one_of(keys)}"
        args = [k for k in keys if k not in STEP_KINDS]
        kinds = [k for k in keys if k in STEP_KINDS]
        if len(kinds) == 1 and args:
            msg += (f" (indent {_one_of(args)} under {kinds[0]!r}: "
                    f"'- {kinds[0]}: {{{args[0]}: ...}}')")
        return [_Explained(path, msg)]
    if validator == "type" and schema.get("title") == "step" and isinstance(inst, str) \
            and inst in STEP_KINDS:
        return [_Explained(path, f"a step is a mapping {{kind: args}}, got the string {inst!r}; "
                                 f"write '- {inst}: {{}}'")]
    if custom and validator != "required":
        return [_Explained(path, f"{subject}: {custom}" if subject else str(custom))]
    if validator == "required" and isinstance(inst, dict):
        msgs = [_Explained(path, f"missing required field {name!r}{where_in}")
                for name in value if name not in inst]
        if custom:
            msgs = [_Explained(m.path, f"{m.message} ({custom})") for m in msgs]
        return msgs
    if validator in ("oneOf", "anyOf") and err.context:
        best = best_match(err.context)
        return _explain(best) if best is not None else [_Explained(path, err.message)]
    if validator in ("enum", "const"):
        choices = list(value) if validator == "enum" else [value]
        msg = f"{what} must be one of: {_one_of(choices)}" if validator == "enum" \
            else f"{what} must be {_one_of(choices)}"
        got = repr(inst) if isinstance(inst, str) else _describe_value(inst)
        msg += f" (got {got}){_did_you_mean(inst, choices)}"
        return [_Explained(path, msg)]
    if validator == "type":
        names = [value] if isinstance(value, str) else list(value)
        want = " or ".join(_SCHEMA_TYPES.get(n, n) for n in names)
        msg = f"{what} must be {want}, got {_describe_value(inst)}"
        return [_Explained(path, msg)]
    if validator == "minItems":
        n = value
        msg = f"{what} must not be empty" if n == 1 else f"{what} needs at least {n} items"
        return [_Explained(path, msg)]
    if validator == "uniqueItems" and isinstance(inst, list):
        seen: list[Any] = []
        dups: list[Any] = []
        for item in inst:
            if item in seen and item not in dups:
                dups.append(item)
            seen.append(item)
        return [_Explained(path, f"{what} lists {_one_of(dups) or 'an item'} more than once")]
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
              "exclusiveMaximum": "<"}[validator]
        return [_Explained(path, f"{what} must be {op} {value}, got {inst}")]
    if validator == "minLength":
        return [_Explained(path, f"{what} must not be empty")]
    if validator == "pattern":
        return [_Explained(path, f"{what} {inst!r} does not match {value}")]
    return [_Explained(path, f"{subject}: {err.message}" if subject else err.message)]


def _context_message(data: Any, path: JsonPath, message: str) -> str:
    context, _, _ = _where(data, path)
    return f"{context}: {message}" if context else message


def _schema_problems(doc: Document) -> list[Problem]:
    problems: list[Problem] = []
    if doc.data is None:
        if doc.problems:  # e.g. too large: the data was dropped, the reason is already there
            return []
        return [(Location(doc.file, 1, 1),
                 "the file is empty; a suite is a mapping with suite, description and cases")]
    for err in _validator().iter_errors(doc.data):
        for ex in _explain(err):
            loc = doc.key_location(ex.path) if ex.at_key else doc.location(ex.path)
            problems.append((loc, _context_message(doc.data, ex.path, ex.message)))
    return problems


# --------------------------------------------------------------------------- semantics


@functools.cache
def _default_catalog() -> CatalogLike | None:
    try:
        from conformance.catalog import load_catalog
    except ImportError:  # the catalog module is optional while the tree is being built
        return None
    return load_catalog()


def _known_requirement(catalog: CatalogLike, rid: str) -> bool:
    try:
        catalog.by_id(rid)
    except KeyError:
        return False
    return True


def _catalog_ids(catalog: CatalogLike) -> list[str]:
    reqs = getattr(catalog, "requirements", ())
    return [r.id for r in reqs if isinstance(getattr(r, "id", None), str)]


def _step_needs(kind: str, args: Mapping[str, Any]) -> str | None:
    if kind == "crash":
        return "power_loss" if args.get("mode") == "power" else None
    if kind == "check":
        invariants = args.get("invariants")
        if isinstance(invariants, list) and "no_extra_sync" in invariants:
            return "sync_accounting"
        return None
    return STEP_CAPABILITY.get(kind)


def _expects_unsupported(args: Mapping[str, Any]) -> bool:
    err = args.get("expect_error")
    code = err.get("code") if isinstance(err, dict) else err
    return code == "unsupported"


def _semantic_problems(doc: Document, stem: str, catalog: CatalogLike | None) -> list[Problem]:
    """Checks the schema cannot express. Defensive: runs even on a document with schema errors."""
    problems: list[Problem] = []
    data = doc.data

    def add(path: JsonPath, message: str, *, at_key: bool = False) -> None:
        loc = doc.key_location(path) if at_key else doc.location(path)
        problems.append((loc, _context_message(data, path, message)))

    if not isinstance(data, dict):
        return problems
    name = data.get("suite")
    if isinstance(name, str) and name != stem:
        add(("suite",), f"suite name {name!r} must equal the file name {stem!r} "
                        "(rename the file or the suite)")
    cases = data.get("cases")
    if not isinstance(cases, list):
        return problems
    known_ids = _catalog_ids(catalog) if catalog is not None else []
    first_id: dict[str, JsonPath] = {}
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            continue
        cpath: JsonPath = ("cases", i)
        cid = case.get("id")
        if isinstance(cid, str):
            if cid in first_id:
                add((*cpath, "id"), f"duplicate case id {cid!r} "
                                    f"(first defined at {doc.location(first_id[cid])})")
            else:
                first_id[cid] = (*cpath, "id")
        reqs = case.get("requirements")
        if catalog is not None and isinstance(reqs, list):
            for k, rid in enumerate(reqs):
                if isinstance(rid, str) and not _known_requirement(catalog, rid):
                    add((*cpath, "requirements", k),
                        f"unknown requirement ID {rid!r} (not in the catalog)"
                        f"{_did_you_mean(rid, known_ids)}")
        raw_caps = case.get("capabilities")
        caps = {c for c in raw_caps if isinstance(c, str)} if isinstance(raw_caps, list) else set()
        if case.get("durability") == "unsynced" and "unsynced_mode" not in caps:
            add((*cpath, "durability"),
                "durability: unsynced needs capability 'unsynced_mode'; "
                "add it to the case's capabilities")
        steps = case.get("steps")
        if not isinstance(steps, list):
            continue
        # Snapshot names, as the runner keeps them: a persist consumes its name; a crash,
        # restart or successful open forgets every pending one (their ids are gone).
        pending: dict[str, int] = {}  # name -> step number of its snapshot_begin
        gone: dict[str, str] = {}  # name -> why it is no longer pending
        for j, step in enumerate(steps):
            if not (isinstance(step, dict) and len(step) == 1):
                continue
            ((kind, raw_args),) = step.items()
            if kind not in STEP_KINDS:
                continue
            args: Mapping[str, Any] = raw_args if isinstance(raw_args, dict) else {}
            spath: JsonPath = ("cases", i, "steps", j)
            snap = args.get("name")
            if kind == "snapshot_begin" and isinstance(snap, str):
                pending[snap] = j + 1
                gone.pop(snap, None)
            elif kind == "snapshot_persist" and isinstance(snap, str):
                if snap in pending:
                    gone[snap] = f"step {j + 1} already persisted it"
                    del pending[snap]
                elif snap in gone:
                    add((*spath, kind, "name"), f"snapshot {snap!r} is no longer pending: "
                                                f"{gone[snap]}; begin it again first")
                else:
                    hint = f" (pending: {_one_of(list(pending))})" if pending else ""
                    add((*spath, kind, "name"),
                        f"snapshot {snap!r} was not begun: no earlier snapshot_begin in this "
                        f"case names it{hint}{_did_you_mean(snap, pending)}")
            elif kind in ("crash", "restart") or (kind == "open" and "expect_error" not in args):
                for name, begun_at in pending.items():
                    gone[name] = (f"it was begun at step {begun_at}, and the {kind} at "
                                  f"step {j + 1} discarded it")
                pending.clear()
            given = [k for k in _EXPECTATIONS if k in args and args[k] is not False]
            if len(given) > 1:
                add((*spath, kind, given[1]),
                    f"{' and '.join(given)} exclude each other: a request either replies, "
                    "fails or crashes", at_key=True)
            if kind == "install_snapshot" and "raw" in args:
                extra = [k for k in ("entries", "generate", "ceiling", "cutover") if k in args]
                if extra:
                    add((*spath, kind, "raw"),
                        f"raw is sent as is; it cannot be combined with {_one_of(extra)}",
                        at_key=True)
            needs = _step_needs(kind, args)
            if needs and needs not in caps and not _expects_unsupported(args):
                add(spath, f"{kind} needs capability {needs!r}; "
                           "add it to the case's capabilities")
    return problems


# --------------------------------------------------------------------------- building


def _step_args(kind: str, raw: Any) -> dict[str, Any]:
    if kind == "check":
        return {"invariants": list(raw)}
    args: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    if kind == "crash" and args.get("mode") == "process":
        args.pop("loss", None)
    for key, value in STEP_DEFAULTS.get(kind, {}).items():
        args.setdefault(key, value)
    return args


def _build(doc: Document, path: Path) -> Suite:
    data = doc.data
    name: str = data["suite"]
    cases: list[Case] = []
    for i, raw in enumerate(data["cases"]):
        steps: list[Step] = []
        for j, step in enumerate(raw["steps"]):
            ((kind, args),) = step.items()
            steps.append(Step(kind=kind, args=_step_args(kind, args),
                              location=doc.location(("cases", i, "steps", j)), index=j))
        cases.append(Case(
            id=raw["id"],
            description=raw["description"],
            requirements=tuple(raw["requirements"]),
            capabilities=tuple(raw.get("capabilities", ())),
            durability=raw.get("durability", "synced"),
            steps=tuple(steps),
            location=doc.location(("cases", i)),
            suite=name,
            tags=tuple(raw.get("tags", ())),
            without=tuple(raw.get("without", ())),
        ))
    return Suite(name=name, description=data["description"], path=str(path),
                 cases=tuple(cases), fixture=data.get("fixture"))


# --------------------------------------------------------------------------- public API


def load_suite(path: Path, catalog: CatalogLike | None = None) -> Suite:
    """Load and validate one suite file; raise `SuiteError` with every problem found.

    Requirement IDs are checked against `catalog`, by default the packaged
    catalog (`conformance.catalog.load_catalog()`); if that module cannot be
    imported, requirement IDs are not checked.
    """
    path = Path(path)
    doc = load_document(path)
    problems = list(doc.problems)
    problems += _schema_problems(doc)
    problems += _semantic_problems(doc, path.stem,
                                   catalog if catalog is not None else _default_catalog())
    if problems:
        raise SuiteError(problems)
    return _build(doc, path)


def discover(root: Path) -> list[Path]:
    """The suite files at `root`: itself if it is a file, else `**/*.yaml` under it, sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*.yaml") if p.is_file())
    return []


def _load_all(paths: Iterable[Path], catalog: CatalogLike | None
              ) -> tuple[list[Suite], list[SuiteError]]:
    errors: list[SuiteError] = []
    files: dict[Path, Path] = {}  # resolved -> as given
    for p in paths:
        p = Path(p)
        if not p.exists():
            errors.append(SuiteError([(Location(str(p), 1, 1), "no such file or directory")]))
        for f in discover(p):
            files.setdefault(f.resolve(), f)
    cat = catalog if catalog is not None else _default_catalog()
    suites: list[Suite] = []
    for f in sorted(files.values()):
        try:
            suites.append(load_suite(f, cat))
        except SuiteError as exc:
            errors.append(exc)
    first: dict[str, Case] = {}
    duplicates: list[Problem] = []
    for suite in suites:
        for case in suite.cases:
            seen = first.setdefault(case.id, case)
            if seen is not case:
                duplicates.append((case.location, f"case {case.id!r}: duplicate case id; "
                                                  f"also defined at {seen.location}"))
    if duplicates:
        errors.append(SuiteError(duplicates))
    return suites, errors


def load_suites(paths: Iterable[Path], catalog: CatalogLike | None = None) -> list[Suite]:
    """Load every suite under `paths` (files, or directories searched for `**/*.yaml`).

    Files are loaded in sorted path order, each once. Case IDs must be unique across all
    of them. Raises one `SuiteError` holding the problems of every file.
    """
    suites, errors = _load_all(paths, catalog)
    if errors:
        raise SuiteError([p for e in errors for p in e.problems])
    return suites


def validate_paths(paths: Iterable[Path], catalog: CatalogLike | None = None
                   ) -> list[SuiteError]:
    """Validate suites for `conformance validate`: one `SuiteError` per bad file, plus one
    for case IDs repeated across files. An empty list means everything is valid."""
    return _load_all(paths, catalog)[1]
