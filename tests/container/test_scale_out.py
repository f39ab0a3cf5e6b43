"""docker/scale-out/run.sh, short: one campaign over three workers in containers with the
shared Redis example database, their findings collected into one place (docs/scale-out.md).

The images (a Redis server from Debian's package, a worker with this tree's package) are
built FROM the project's base image when absent or when the tree changed (run.sh). The
figures are asserted to hold together, never against a threshold of speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from _images import ROOT

from conformance.explore.collect import read_fixture

pytestmark = pytest.mark.container

RUN = ROOT / "docker" / "scale-out" / "run.sh"
IMPL = "mutant:delete-prefix-not-bundling-meta"


def _left(project: str) -> list[str]:
    out = []
    for what, args in (("container", ["ps", "-aq", "--filter",
                                      f"label=com.docker.compose.project={project}"]),
                       ("volume", ["volume", "ls", "-q", "--filter", f"name={project}"]),
                       ("network", ["network", "ls", "-q", "--filter", f"name={project}"])):
        ids = subprocess.run(["docker", *args], capture_output=True, text=True,
                             check=True).stdout.split()
        out += [f"{what} {i}" for i in ids]
    return out


def test_a_campaign_over_three_workers_lands_in_one_place(engine: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    project = f"conformance-scaleout-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TIME": "8", "IMPL": IMPL, "OUT": str(out), "PROJECT": project}
    proc = subprocess.run(["bash", str(RUN)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert not _left(project), "run.sh left its compose project behind"

    s = json.loads((out / "summary.json").read_text())
    assert s["impl"] == IMPL and sorted(s["workers"]) == ["worker-0", "worker-1", "worker-2"]
    seeds = [w["seed"] for w in s["workers"].values()]
    assert len(set(seeds)) == 3  # distinct seeds
    assert all(w["sequences"] > 0 for w in s["workers"].values())
    assert s["sequences"] == sum(w["sequences"] for w in s["workers"].values())

    # every worker's fixtures, one per violated requirement, in merged/
    worker_files = {p.name for w in s["workers"] for p in (out / w).glob("*.yaml")}
    merged = sorted(p.name for p in (out / "merged").glob("*.yaml"))
    assert s["fixtures_before_collect"] == len(
        [p for w in s["workers"] for p in (out / w).glob("*.yaml")])
    assert merged, proc.stderr[-3000:]  # the mutant falls within seconds (docs/exploration.md)
    assert merged == sorted(s["collect"]["kept_files"]) and set(merged) <= worker_files
    guards = {read_fixture(p).guards for w in s["workers"] for p in (out / w).glob("*.yaml")}
    assert len(merged) == len(guards)  # one per requirement: one implementation here
    assert s["collect"]["kept"] + s["collect"]["dropped"] == s["fixtures_before_collect"]
    assert not (out / "merged" / "not-green").exists() or s["collect"]["not_green"] > 0

    # copied out, each replays red on the mutant and green on the reference
    assert sorted(r["fixture"] for r in s["replays"]) == merged
    assert all(r["red_on_impl"] and r["green_on_reference"] for r in s["replays"])

    # the database was shared: empty before, the workers' failures in it after, and one
    # more worker of ONE generated sequence finds with it what it does not find without
    assert s["redis"]["keys_before"] == 0 and s["redis"]["keys_after"] >= 1
    assert sum(s["redis"]["examples_by_key"].values()) >= 1
    assert all(k.startswith("conformance-explore:") for k in s["redis"]["examples_by_key"])
    # (the same file names: the workers' own shrunk sequences, replayed from Redis)
    late = s["late_worker_with_database"]
    assert late["findings"] >= 1
    assert {p.name for p in (out / "late").glob("*.yaml")} & worker_files
    assert late["sequences"] > s["late_worker_without_database"]["sequences"] == 1
