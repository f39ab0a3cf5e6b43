"""Suite files: YAML in, validated `cases.Suite` out, every problem with a file:line:column.

A suite file is parsed with a safe YAML loader that remembers where every node
starts, so any JSON path inside the document maps back to the YAML a person
wrote. It is read a case at a time, within bounds (limits.py), so that memory
grows with the largest case, not with the file, and a hostile file (an alias
bomb, 100,000 cases) stops where it crosses a bound. Each case, then the top
level, is validated against the packaged JSON Schema
(`conformance/schema/suite.schema.json`, draft-07, the same file editors use
through the yaml-language-server modeline) and checked for what a schema
cannot say: the suite name matches the file, requirement IDs exist in the
catalog, `snapshot_persist` names a pending `snapshot_begin`, case IDs are
unique, steps that need a capability are in a case that declares it. All
problems of a file are reported together. The format is documented in
docs/suites.md.

The package, in the order a file travels through it:

    problems.py       Problem (a location and a message), SuiteError, JsonPath
    limits.py         how large a file, a case, a generator may be, and why
    yaml_doc.py       SuiteYamlLoader, Document: YAML with locations, counted
    reader.py         SuiteReader: a file read a case at a time; load_document
    messages.py       how problems are phrased: case/step context, "did you mean"
    schema_errors.py  load_schema, validation, jsonschema errors explained
    semantics.py      CatalogLike, the checks a schema cannot express
    build.py          validated cases as Suite, Case and Step
    load.py           load_suite, discover, load_suites, validate_paths
"""

from __future__ import annotations

from .load import discover, load_suite, load_suites, validate_paths
from .problems import SuiteError
from .reader import SuiteReader, load_document
from .schema_errors import load_schema
from .semantics import STEP_CAPABILITY, CatalogLike
from .yaml_doc import Document, SuiteYamlLoader

__all__ = [
    "STEP_CAPABILITY",
    "CatalogLike",
    "Document",
    "SuiteError",
    "SuiteReader",
    "SuiteYamlLoader",
    "discover",
    "load_document",
    "load_schema",
    "load_suite",
    "load_suites",
    "validate_paths",
]
