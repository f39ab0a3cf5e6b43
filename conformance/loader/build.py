"""Building: a validated `Document` becomes a `Suite` of `Case`s and `Step`s.

Step arguments are normalized on the way (`check` takes its invariant list, a process
crash drops `loss`, and the defaults of `STEP_DEFAULTS` are filled in), so the runner
sees every argument explicitly; every case and step keeps its location in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance.cases import Case, Step, Suite

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
