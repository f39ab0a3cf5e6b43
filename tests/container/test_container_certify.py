"""Certification through the container path: the CLI (--image) and pytest (--impl image:).

The reference image must pass exactly what the in-process reference passes, the cases that
need a power loss or a crash point included (its /data is the crash-simulating filesystem);
mutant images must be rejected with reports that show the step, the requirement and the
container's log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _images import MUTANT_SUITES, REFERENCE_IMAGE, ROOT, mutant_image

from reference_impl.mutants import get as get_mutant

pytestmark = pytest.mark.container


def _conformance(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _cases(report_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((report_dir / "report.json").read_text())
    return {c["id"]: c for c in data["cases"]}


def test_reference_image_passes_what_the_in_process_reference_passes(
        images: dict[str, str], tmp_path: Path) -> None:
    # (--explore 0: the suites' cases are compared here; exploring through containers costs
    # a container start per node lifetime, and test_certify_explore covers the budget)
    in_process = _conformance("certify", "--explore", "0", "--out", str(tmp_path / "in-process"))
    assert in_process.returncode == 0, in_process.stdout[-3000:]
    container = _conformance("certify", "--image", REFERENCE_IMAGE, "--explore", "0",
                             "--out", str(tmp_path / "image"))
    assert container.returncode == 0, container.stdout[-5000:] + container.stderr[-2000:]
    ref, img = _cases(tmp_path / "in-process"), _cases(tmp_path / "image")
    assert set(ref) == set(img)
    differences = [f"{cid}: in process {r['status']}, image {img[cid]['status']} "
                   f"({img[cid]['reason']})"
                   for cid, r in sorted(ref.items()) if img[cid]["status"] != r["status"]]
    assert not differences, "\n".join(differences)
    n_power = sum("power_loss" in r["capabilities"] for r in ref.values())
    assert n_power and all(img[c]["status"] == "passed" for c, r in ref.items()
                           if "power_loss" in r["capabilities"])
    print(f"{len(ref)} cases with the same status in the image as in process, "
          f"{n_power} of them with a power loss")
    assert "container: " + REFERENCE_IMAGE in container.stderr


@pytest.mark.parametrize("mutant", sorted(MUTANT_SUITES))
def test_mutant_images_are_rejected_with_readable_reports(
        images: dict[str, str], tmp_path: Path, mutant: str) -> None:
    suite = ROOT / "suites" / f"{MUTANT_SUITES[mutant]}.yaml"
    proc = _conformance("run", str(suite), "--image", mutant_image(mutant),
                        "--out", str(tmp_path))
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-2000:]
    cases = _cases(tmp_path)
    failed = [c for c in cases.values() if c["status"] == "failed"]
    assert failed, out[-3000:]
    requirement = get_mutant(mutant).requirement
    assert any(requirement in c["violations"] or requirement in c["requirements"]
               for c in failed), f"no failed case cites {requirement}"
    # the rendered failure: where, what was asked and answered, and the container's log
    assert "\nFAILED " in out and "  at step " in out and "  request: " in out
    assert "  node log (tail):" in out
    assert "reference_impl: listening on 0.0.0.0:7070" in out
    assert f"--- start #1: {mutant_image(mutant)}" in out or "--- start #" in out
    # the case reports in report.json carry the same log
    assert any("reference_impl:" in (c["failure"] or {}).get("rendered", "") for c in failed)


def test_replay_a_fixture_through_an_image(images: dict[str, str], tmp_path: Path) -> None:
    fixture = ROOT / "fixtures" / "regressions" / "effective-snap-on-skip.yaml"
    killed = _conformance("replay", str(fixture), "--image",
                          mutant_image("effective-snap-on-skip"), "--out", str(tmp_path / "m"))
    assert killed.returncode == 1 and "\nCS-006: " in killed.stdout  # named by its root cause
    passed = _conformance("replay", str(fixture), "--image", REFERENCE_IMAGE,
                          "--out", str(tmp_path / "r"))
    assert passed.returncode == 0, passed.stdout[-3000:]


def test_image_and_impl_are_exclusive_and_a_missing_image_is_a_usage_error(
        images: dict[str, str], tmp_path: Path) -> None:
    both = _conformance("run", "suites", "--image", REFERENCE_IMAGE, "--impl",
                        "reference-process", "--out", str(tmp_path))
    assert both.returncode == 2 and "not both" in both.stderr
    missing = _conformance("run", "suites", "--image", "applied-index-conformance/nope:0",
                           "--out", str(tmp_path))
    assert missing.returncode == 2 and "build it first" in missing.stderr


def test_pytest_plugin_runs_suites_against_an_image(images: dict[str, str]) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "suites/entries.yaml",
         "--impl", f"image:{REFERENCE_IMAGE}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert ok.returncode == 0, ok.stdout[-3000:]
    assert "passed" in ok.stdout and "container: " not in ok.stdout.split("passed")[0][-200:]
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "fixtures/regressions/effective-snap-on-skip.yaml",
         "--impl", f"image:{mutant_image('effective-snap-on-skip')}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert bad.returncode == 1, bad.stdout[-3000:]
    assert "violates CS-006" in bad.stdout and "node log (tail):" in bad.stdout
