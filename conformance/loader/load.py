"""The entry points: load one suite file through every stage, or many with cross-file checks.

`load_suite` reads the file a case at a time (reader.py), validates each case against the
schema and runs its semantic checks as it is read, then the top level, and builds the
`Suite`, reporting every problem of the file together (a file that crosses a bound of
limits.py, or is not YAML, stops at that one problem). `discover` finds the suite
files under a path; `load_suites` and `validate_paths` load many, each file once, and
also check that case IDs are unique across files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from conformance.cases import Case, Location, Suite

from .build import CaseSource, _build, case_source
from .problems import Problem, SuiteError
from .reader import SuiteReader
from .schema_errors import _case_schema_problems, _top_schema_problems
from .semantics import CatalogLike, _case_problems, _default_catalog, _file_problems


def load_suite(path: Path, catalog: CatalogLike | None = None) -> Suite:
    """Load and validate one suite file; raise `SuiteError` with every problem found.

    Requirement IDs are checked against `catalog`, by default the packaged
    catalog (`conformance.catalog.load_catalog()`); if that module cannot be
    imported, requirement IDs are not checked.
    """
    path = Path(path)
    catalog = catalog if catalog is not None else _default_catalog()
    reader = SuiteReader(path)
    problems: list[Problem] = []
    cases: list[CaseSource] = []
    ids: dict[str, Location] = {}
    for i, doc in reader:
        problems += doc.problems
        problems += _case_schema_problems(doc, i)
        problems += _case_problems(doc, i, catalog, ids)
        if not problems:  # (nothing is built once there is a problem)
            cases.append(case_source(doc, i))
    top = reader.top
    problems += top.problems
    problems += _top_schema_problems(top)
    problems += _file_problems(top, path.stem)
    if problems:
        raise SuiteError(problems)
    return _build(top, cases, path)


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
