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

The package, in the order a file travels through it:

    problems.py       Problem (a location and a message), SuiteError, JsonPath
    yaml_doc.py       SuiteYamlLoader, Document, load_document: YAML with locations
    messages.py       how problems are phrased: case/step context, "did you mean"
    schema_errors.py  load_schema, validation, jsonschema errors explained
    semantics.py      CatalogLike, the checks a schema cannot express
    build.py          a validated document as Suite, Case and Step
    load.py           load_suite, discover, load_suites, validate_paths
"""

from __future__ import annotations

from .load import discover, load_suite, load_suites, validate_paths
from .problems import SuiteError
from .schema_errors import load_schema
from .semantics import STEP_CAPABILITY, CatalogLike
from .yaml_doc import Document, SuiteYamlLoader, load_document

__all__ = [
    "STEP_CAPABILITY",
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
