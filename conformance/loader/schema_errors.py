"""Schema validation: the packaged JSON Schema, and jsonschema errors a person can act on.

A file is validated against `conformance/schema/suite.schema.json` (draft-07) a case at a
time, as reader.py reads it: each case against the schema's `case` definition
(`_case_schema_problems`), then the top level with its cases unchecked
(`_top_schema_problems`); together that is the whole schema. Each jsonschema error is
explained in terms of the suite format (an unknown step kind or field with a "did you
mean", a missing field, a wrong type with the value found, the schema's own
`errorMessage`, ...) and located at the node, or the key, it is about.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from conformance.cases import STEP_KINDS, Location

from .messages import _context_message, _did_you_mean, _one_of, _where
from .problems import JsonPath, Problem
from .yaml_doc import Document

SCHEMA_PACKAGE = "conformance"
SCHEMA_RESOURCE = "schema/suite.schema.json"


def load_schema() -> dict[str, Any]:
    """The suite JSON Schema (draft-07), from the installed package."""
    res = resources.files(SCHEMA_PACKAGE)
    for part in SCHEMA_RESOURCE.split("/"):
        res = res.joinpath(part)
    schema: dict[str, Any] = json.loads(res.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validators() -> tuple[jsonschema.Draft7Validator, jsonschema.Draft7Validator]:
    """The validators of the top level (each case accepted as is) and of one case."""
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    top = copy.deepcopy(schema)
    del top["properties"]["cases"]["items"]
    case = {"$ref": "#/definitions/case", "definitions": schema["definitions"]}
    return jsonschema.Draft7Validator(top), jsonschema.Draft7Validator(case)


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


@dataclass(frozen=True)
class _Explained:
    path: JsonPath
    message: str  # without the case/step context
    at_key: bool = False


def _explain(err: ValidationError, prefix: JsonPath = ()) -> list[_Explained]:
    """Turn one jsonschema error into messages a person can act on; `prefix` is the path
    of the instance validated (a case: `("cases", i)`)."""
    path: JsonPath = (*prefix, *err.absolute_path)
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
        return _explain(best, prefix) if best is not None else [_Explained(path, err.message)]
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
    if validator == "maxItems" and isinstance(inst, list):
        return [_Explained(path, f"{what} has {len(inst):,} items; at most {value:,} are "
                                 "allowed (docs/suites.md, Limits)")]
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
        # a bound of the suite format (not of a protocol field): say where it is explained
        why = " (docs/suites.md, Limits)" if validator == "maximum" and path[-1:] in (
            ("count",), ("value_bytes",)) else ""
        return [_Explained(path, f"{what} must be {op} {value}, got {inst}{why}")]
    if validator == "minLength":
        return [_Explained(path, f"{what} must not be empty")]
    if validator == "pattern":
        return [_Explained(path, f"{what} {inst!r} does not match {value}")]
    return [_Explained(path, f"{subject}: {err.message}" if subject else err.message)]


def _problems(doc: Document, errors: Iterable[ValidationError], prefix: JsonPath
              ) -> list[Problem]:
    problems: list[Problem] = []
    for err in errors:
        for ex in _explain(err, prefix):
            loc = doc.key_location(ex.path) if ex.at_key else doc.location(ex.path)
            problems.append((loc, _context_message(doc.data, ex.path, ex.message)))
    return problems


def _top_schema_problems(doc: Document) -> list[Problem]:
    """The schema's problems with the top level of a file (`doc`: reader.SuiteReader.top)."""
    if doc.data is None:
        return [(Location(doc.file, 1, 1),
                 "the file is empty; a suite is a mapping with suite, description and cases")]
    return _problems(doc, _validators()[0].iter_errors(doc.data), ())


def _case_schema_problems(doc: Document, i: int) -> list[Problem]:
    """The schema's problems with case `i` (`doc`: its Document, from reader.SuiteReader)."""
    return _problems(doc, _validators()[1].iter_errors(doc.data["cases"][i]), ("cases", i))
