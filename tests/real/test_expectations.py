"""The expectations files of examples/real/*: each known failure names its README finding or
limit, and that label exists in the README (no prerequisite: runs without cargo or FUSE)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _shims import REAL, expectations

pytestmark = pytest.mark.real

SHIMS = sorted(p.parent for p in REAL.glob("*/expectations.yaml"))
LABEL = re.compile(r"\b([FLM]\d+[a-z]?)\b")


def test_both_shims_have_an_expectations_file() -> None:
    assert {p.name for p in SHIMS} >= {"openraft_sled", "pysyncobj"}, SHIMS


@pytest.mark.parametrize("shim", SHIMS, ids=[p.name for p in SHIMS])
def test_every_known_failure_names_a_readme_finding(shim: Path) -> None:
    readme = (shim / "README.md").read_text()
    problems = []
    for case, reason in expectations(shim).items():
        labels = LABEL.findall(reason)
        if "\n" in reason.strip() or "README" not in reason or not labels:
            problems.append(f"{case}: {reason!r} (one line, naming a README finding or limit)")
        problems += [f"{case}: {label} is not in {shim.name}/README.md" for label in labels
                     if not re.search(rf"\b{label}\b", readme)]
    assert not problems, "\n".join(problems)
