"""How large a suite file may be: bounds that keep loading and running a suite finite.

A suite file is read one case at a time (yaml_doc.read_suite), so the loader's memory
grows with the largest case, not with the file; these bounds make that true of any
input, including a hostile one ("billion laughs" aliases, a file of 100,000 cases,
`generate: {count: 1000000000}`). Each is far above what the suites and fixtures use
(docs/suites.md, "Limits", gives the largest use of each and the margin):

- the file's size, checked before it is parsed;
- YAML nodes in the file and in one case, each use of an alias counting every node it
  repeats, and how deeply they nest: checked while the file is parsed, so an alias bomb
  is rejected at the alias that crosses the bound, before anything is expanded;
- cases in a file (the schema's `cases.maxItems`): checked as each case is read, so a
  file with too many is rejected at the first case over, without reading the rest;
- what the generators of one case produce in all (the schema bounds each generator's
  `count` and `value_bytes`): checked with the semantic checks.
"""

from __future__ import annotations

import functools

# A suite file is at most this many bytes (the largest today: 57 kB).
MAX_FILE_BYTES = 8 * 1024 * 1024
# YAML nodes (mappings, lists, scalars; an alias counts the nodes it repeats) in one file
# (the largest today: 7,247) and in one case (358), and how deeply they nest (12).
MAX_NODES = 250_000
MAX_CASE_NODES = 25_000
MAX_DEPTH = 64
# Entries all the `generate` steps of one case produce (the largest today: 42), and the
# bytes of their `value_bytes` values (4 MiB): the runner keeps every entry of a case.
MAX_CASE_ENTRIES = 100_000
MAX_CASE_VALUE_BYTES = 64 * 1024 * 1024


@functools.cache
def max_cases() -> int:
    """Cases in one file: `cases.maxItems` of the packaged schema."""
    from .schema_errors import load_schema

    return int(load_schema()["properties"]["cases"]["maxItems"])


@functools.cache
def generator_maximum(field: str) -> int:
    """The schema's `maximum` of a generator field (`count`, `value_bytes`)."""
    from .schema_errors import load_schema

    return int(load_schema()["definitions"]["generator"]["properties"][field]["maximum"])
