"""The CI template (examples/ci/github-actions.yml, docs/ci.md) stays runnable: it is a valid
workflow of the shape docs/ci.md describes, and every `conformance ...` command it runs parses
with the CLI's own argument parser, so that renaming an option breaks this test, not the
users' pipelines."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.catalog import load_catalog
from conformance.cli import build_parser
from conformance.impls import POWER_LOSS_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _steps() -> list[dict[str, Any]]:
    [job] = _workflow()["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _commands(program: str) -> list[list[str]]:
    """Each command line of the `run:` scripts that starts with `program`, split as the
    shell would (variables stay as written; a line may continue with a backslash)."""
    found = []
    for step in _steps():
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                found.append(words[1:])
    return found


def _parse(argv: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`conformance {shlex.join(argv)}` in {WORKFLOW.name} does not parse: "
                    f"{err.getvalue().strip()}")


def test_the_workflow_has_the_shape_of_a_github_workflow() -> None:
    data = _workflow()
    # YAML 1.1 reads the key `on` as True
    triggers = data.get("on", data.get(True))
    assert triggers and "push" in triggers
    [job] = data["jobs"].values()
    assert job["runs-on"] and job["timeout-minutes"] > 0
    for step in job["steps"]:
        assert ("uses" in step) != ("run" in step), step
        assert set(step) <= {"name", "uses", "run", "with", "if", "env", "id", "shell"}, step


def test_it_builds_certifies_the_built_image_and_uploads_the_report_always() -> None:
    env = next(iter(_workflow()["jobs"].values()))["env"]
    builds = _commands("docker")
    assert any(words[:1] == ["build"] and "$IMAGE" in words for words in builds), builds
    installs = [step["run"] for step in _steps() if "pip install" in step.get("run", "")]
    assert installs and "[container]" in env["CONFORMANCE_PACKAGE"]

    [certify] = _commands("conformance")
    args = _parse(certify)
    assert args.command == "certify"
    assert args.image == "$IMAGE" and args.profile == "$PROFILE"
    assert str(args.out) == "$REPORT_DIR"
    assert env["PROFILE"] in {p.name for p in load_catalog().profiles}
    assert env["CONFORMANCE_POWER_LOSS"] in POWER_LOSS_SETTINGS

    [upload] = [s for s in _steps() if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"  # a report that fails certification is the one to read
    assert upload["with"]["path"] == "${{ env.REPORT_DIR }}"
    order = [s.get("uses") or s["run"] for s in _steps()]
    assert order.index(upload["uses"]) > next(i for i, s in enumerate(order)
                                             if s.startswith("conformance certify"))


def test_a_wrong_option_would_be_caught() -> None:
    """The check above can fail: an option the CLI does not have does not parse."""
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        _parse(["certify", "--image", "x", "--claim", "baseline"])
