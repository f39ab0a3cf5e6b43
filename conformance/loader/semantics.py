"""The checks a schema cannot express, run on the parsed document, a case at a time.

The suite name matches the file (`_file_problems`); and for each case (`_case_problems`):
case IDs are unique within the file, requirement IDs exist in the catalog,
`snapshot_persist` names a pending `snapshot_begin`, a step gives at most one expectation,
a raw `install_snapshot` takes nothing else, a step (or an unsynced durability) that needs
a capability is in a case that declares it, and what the case's generators produce in all
stays within limits.py. The checks are defensive: they also run on a document with schema
errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from conformance.cases import STEP_KINDS, Location

from . import limits
from .messages import _context_message, _did_you_mean, _one_of
from .problems import JsonPath, Problem
from .yaml_doc import Document

# Steps that need a capability the case must declare (unless the step expects `unsupported`).
STEP_CAPABILITY: Mapping[str, str] = {
    "failpoint": "failpoints",
    "crash_point": "crash_points",
    "tamper": "tamper_hooks",
    "install_snapshot": "install_snapshot",
    "last_applied_index": "reader",
    "set_durable_applied_index": "writer",
}


_EXPECTATIONS = ("expect", "expect_error", "expect_crash")


class CatalogLike(Protocol):
    """What the loader needs from a catalog: `conformance.catalog.Catalog` is one."""

    def by_id(self, id: str) -> object:  # raises KeyError for an unknown ID
        ...


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


class _Generated:
    """What the `generate` steps of one case produce in all: the runner keeps every entry
    of a case (its log), so the sum is bounded too (limits.MAX_CASE_ENTRIES,
    MAX_CASE_VALUE_BYTES); each generator's own bounds are the schema's."""

    def __init__(self, add: Callable[..., None]) -> None:
        self.add = add
        self.entries = self.value_bytes = 0
        self.reported = False

    def step(self, path: JsonPath, args: Mapping[str, Any]) -> None:
        spec = args.get("generate")
        if not isinstance(spec, dict) or self.reported:
            return
        count, size = spec.get("count"), spec.get("value_bytes", 0)
        if not isinstance(count, int) or not isinstance(size, int):
            return
        # a generator over its own bound is the schema's problem: count it at that bound
        count = min(count, limits.generator_maximum("count"))
        size = min(size, limits.generator_maximum("value_bytes"))
        self.entries += count
        self.value_bytes += count * size
        if self.entries > limits.MAX_CASE_ENTRIES:
            self.reported = True
            self.add((*path, "generate", "count"),
                     f"the case's generators produce {self.entries:,} entries up to here; a "
                     f"case may generate {limits.MAX_CASE_ENTRIES:,} in all (docs/suites.md, "
                     "Limits): split it into several cases")
        elif self.value_bytes > limits.MAX_CASE_VALUE_BYTES:
            self.reported = True
            self.add((*path, "generate", "value_bytes"),
                     f"the case's generators produce {self.value_bytes:,} bytes of values up "
                     f"to here; a case may generate {limits.MAX_CASE_VALUE_BYTES:,} in all "
                     "(docs/suites.md, Limits): use fewer or smaller values")


def _adder(doc: Document, problems: list[Problem]) -> Callable[..., None]:
    def add(path: JsonPath, message: str, *, at_key: bool = False) -> None:
        loc = doc.key_location(path) if at_key else doc.location(path)
        problems.append((loc, _context_message(doc.data, path, message)))
    return add


def _file_problems(doc: Document, stem: str) -> list[Problem]:
    """The checks of the top level (`doc`: reader.SuiteReader.top)."""
    problems: list[Problem] = []
    name = doc.data.get("suite") if isinstance(doc.data, dict) else None
    if isinstance(name, str) and name != stem:
        _adder(doc, problems)(("suite",), f"suite name {name!r} must equal the file name "
                                          f"{stem!r} (rename the file or the suite)")
    return problems


def _semantic_problems(doc: Document, stem: str, catalog: CatalogLike | None) -> list[Problem]:
    """Every check of a whole-file `doc` (reader.load_document)."""
    problems = _file_problems(doc, stem)
    cases = doc.data.get("cases") if isinstance(doc.data, dict) else None
    ids: dict[str, Location] = {}
    for i in range(len(cases) if isinstance(cases, list) else 0):
        problems += _case_problems(doc, i, catalog, ids)
    return problems


def _case_problems(doc: Document, i: int, catalog: CatalogLike | None,
                   ids: dict[str, Location]) -> list[Problem]:
    """The checks of case `i` (`doc`: its Document). `ids`: where each case id of the
    file read so far is defined; the case's is added."""
    problems: list[Problem] = []
    add = _adder(doc, problems)
    case = doc.data["cases"][i]
    if not isinstance(case, dict):
        return problems
    cpath: JsonPath = ("cases", i)
    cid = case.get("id")
    if isinstance(cid, str):
        if cid in ids:
            add((*cpath, "id"), f"duplicate case id {cid!r} (first defined at {ids[cid]})")
        else:
            ids[cid] = doc.location((*cpath, "id"))
    reqs = case.get("requirements")
    if catalog is not None and isinstance(reqs, list):
        for k, rid in enumerate(reqs):
            if isinstance(rid, str) and not _known_requirement(catalog, rid):
                add((*cpath, "requirements", k),
                    f"unknown requirement ID {rid!r} (not in the catalog)"
                    f"{_did_you_mean(rid, _catalog_ids(catalog))}")
    raw_caps = case.get("capabilities")
    caps = {c for c in raw_caps if isinstance(c, str)} if isinstance(raw_caps, list) else set()
    if case.get("durability") == "unsynced" and "unsynced_mode" not in caps:
        add((*cpath, "durability"),
            "durability: unsynced needs capability 'unsynced_mode'; "
            "add it to the case's capabilities")
    steps = case.get("steps")
    if not isinstance(steps, list):
        return problems
    # Snapshot names, as the runner keeps them: a persist consumes its name; a crash,
    # restart or successful open forgets every pending one (their ids are gone).
    pending: dict[str, int] = {}  # name -> step number of its snapshot_begin
    gone: dict[str, str] = {}  # name -> why it is no longer pending
    generated = _Generated(add)
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
        exercises = args.get("exercises")
        if isinstance(exercises, dict) and isinstance(reqs, list):
            for rid in exercises:
                if rid not in reqs:
                    add((*spath, kind, "exercises", rid),
                        f"exercises names {rid!r}, which the case does not cite; add it "
                        "to the case's requirements", at_key=True)
        generated.step((*spath, kind), args)
        needs = _step_needs(kind, args)
        if needs and needs not in caps and not _expects_unsupported(args):
            add(spath, f"{kind} needs capability {needs!r}; "
                       "add it to the case's capabilities")
    return problems
