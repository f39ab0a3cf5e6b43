"""Shared test plumbing: the `req` marker must cite IDs that exist in the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CATALOG = Path(__file__).resolve().parents[1] / "conformance" / "requirements.yaml"


def _catalog_ids() -> set[str]:
    if not CATALOG.exists():
        return set()
    data = yaml.safe_load(CATALOG.read_text())
    return {r["id"] for r in data.get("requirements", [])}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    known = _catalog_ids()
    unknown: list[str] = []
    for item in items:
        for mark in item.iter_markers("req"):
            unknown += [f"{item.nodeid}: {rid}" for rid in mark.args if rid not in known]
    if known and unknown:
        raise pytest.UsageError(
            "tests cite requirement IDs missing from conformance/requirements.yaml:\n  "
            + "\n  ".join(unknown)
        )

# Suite files under tests/data are inputs of the loader tests (some invalid on purpose),
# not suites for the conformance plugin to run.
collect_ignore_glob = ["data/*"]
