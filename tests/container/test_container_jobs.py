"""`--jobs` against images (issue 15): cases run two at a time through the container adapter
give a serial run's report, leave nothing behind in the engine nor a FUSE mount, and a
mutant image is still rejected, by the same cases.

(Ctrl-C and SIGTERM in the middle of a --jobs 2 run: test_container_adapter.py,
test_nothing_leaks_after_ctrl_c_during_a_certification.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from _images import MUTANT_SUITES, REFERENCE_IMAGE, ROOT, mutant_image

from conformance.adapters.container import list_run
from conformance.report import without_timing

pytestmark = pytest.mark.container

# 8 cases over 4 suites: first lifetimes and restarts, on a volume and on the
# crash-simulating filesystem (power losses), so spares of two kinds are made and taken
SUBSET = "torn"


def _run(tmp_path: Path, name: str, image: str, *args: str) -> tuple[int, Path, str]:
    """`conformance run` in a process of its own, with a run id of its own: what it leaves
    in the engine is found by that id once it has exited, its FUSE mounts by its pid."""
    run_id = f"test-jobs-{uuid.uuid4().hex[:8]}"
    out = tmp_path / name
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "run", *args, "--image", image,
         "--out", str(out)],
        cwd=ROOT, env={**os.environ, "CONFORMANCE_RUN_ID": run_id}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=1800)
    assert list_run(run_id) == {"containers": [], "volumes": [], "networks": []}, name
    assert _layer_mounts_of(proc.pid) == [], name
    return proc.returncode, out, stdout[-3000:] + stderr[-3000:]


def _layer_mounts_of(pid: int) -> list[str]:
    """The crash-simulating filesystems harness `pid` mounted that are still mounted."""
    from conformance.leftovers import owner_of

    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if " fuse.crashfs " in line]
    return [m for m in mounts if (o := owner_of(Path(m).parent)) is not None and o.pid == pid]


def _report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(without_timing(
        "report.json", (out / "report.json").read_text(encoding="utf-8")))
    data["info"].pop("command")  # the command line names --jobs and --out
    return data


def test_jobs_2_against_the_reference_image_gives_the_serial_report(
        images: dict[str, str], tmp_path: Path) -> None:
    rc1, serial, out1 = _run(tmp_path, "serial", REFERENCE_IMAGE, "suites", "-k", SUBSET,
                             "--jobs", "1")
    rc2, parallel, out2 = _run(tmp_path, "parallel", REFERENCE_IMAGE, "suites", "-k", SUBSET,
                               "--jobs", "2")
    assert (rc1, rc2) == (0, 0), out1 + out2
    a, b = _report(serial), _report(parallel)
    assert len(a["cases"]) == 8 and len({c["suite"] for c in a["cases"]}) > 1
    assert any("power_loss" in c["capabilities"] for c in a["cases"])
    assert b == a


def test_a_mutant_image_is_still_rejected_under_jobs(images: dict[str, str],
                                                     tmp_path: Path) -> None:
    mutant = "effective-snap-on-skip"
    suite = str(ROOT / "suites" / f"{MUTANT_SUITES[mutant]}.yaml")
    rc1, serial, _ = _run(tmp_path, "serial", mutant_image(mutant), suite, "--jobs", "1")
    rc2, parallel, out = _run(tmp_path, "parallel", mutant_image(mutant), suite, "--jobs", "2")
    assert (rc1, rc2) == (1, 1), out
    a, b = _report(serial), _report(parallel)

    def outcome(report: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
        return [(c["id"], c["status"], c["violations"]) for c in report["cases"]]

    # the same cases fail for the same requirements (the failures' logs carry the
    # containers' names and times, so they are not compared)
    assert [c for c in outcome(a) if c[1] == "failed"], "the mutant was not caught"
    assert outcome(b) == outcome(a)
    assert "\nFAILED " in out and "node log (tail):" in out
