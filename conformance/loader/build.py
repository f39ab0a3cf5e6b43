"""Building: validated cases become a `Suite` of `Case`s and `Step`s.

Step arguments are normalized on the way (`check` takes its invariant list, a process
crash drops `loss`, and the defaults of `STEP_DEFAULTS` are filled in), so the runner
sees every argument explicitly; every case and step keeps its location in the file.
The loader keeps a `CaseSource` of each case as it reads it (the case's locations go with
its `Document`), and builds the suite once the file is read and found valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.cases import Case, Location, Step, Suite

from .yaml_doc import Document

# Defaults the loader fills into step args, so the runner sees them explicitly.
STEP_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "snapshot": {"site": "local"},
    "snapshot_persist": {"site": "local"},
    "failpoint": {"action": "crash", "skip": 0},
    "crash_point": {"nth": 1},
}


def _step_args(kind: str, raw: Any) -> dict[str, Any]:
    if kind == "check":
        return {"invariants": list(raw)}
    args: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    if kind == "crash" and args.get("mode") == "process":
        args.pop("loss", None)
    for key, value in STEP_DEFAULTS.get(kind, {}).items():
        args.setdefault(key, value)
    return args


@dataclass(frozen=True)
class CaseSource:
    """What building needs of a case once its `Document` is gone: the data, where it starts
    and where each of its steps starts."""

    raw: dict[str, Any]
    location: Location
    step_locations: tuple[Location, ...]


def case_source(doc: Document, i: int) -> CaseSource:
    """Case `i` of `doc` (schema-valid) as building needs it."""
    raw = doc.data["cases"][i]
    return CaseSource(raw, doc.location(("cases", i)),
                      tuple(doc.location(("cases", i, "steps", j))
                            for j in range(len(raw["steps"]))))


def _case(src: CaseSource, suite: str) -> Case:
    raw = src.raw
    steps = []
    for j, (step, location) in enumerate(zip(raw["steps"], src.step_locations, strict=True)):
        ((kind, args),) = step.items()
        steps.append(Step(kind=kind, args=_step_args(kind, args), location=location, index=j))
    return Case(
        id=raw["id"],
        description=raw["description"],
        requirements=tuple(raw["requirements"]),
        capabilities=tuple(raw.get("capabilities", ())),
        durability=raw.get("durability", "synced"),
        steps=tuple(steps),
        location=src.location,
        suite=suite,
        tags=tuple(raw.get("tags", ())),
        without=tuple(raw.get("without", ())),
    )


def _build(top: Document, cases: list[CaseSource], path: Path) -> Suite:
    """The suite of a valid file: `top` its top level, `cases` each of its cases."""
    data = top.data
    name: str = data["suite"]
    return Suite(name=name, description=data["description"], path=str(path),
                 cases=tuple(_case(c, name) for c in cases), fixture=data.get("fixture"))
