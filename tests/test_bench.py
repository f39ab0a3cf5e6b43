"""A quick run of every benchmark in bench/, so that none can rot silently (issue 14.7: one
divided by zero in every mode, unnoticed).

Every bench/bench_*.py is found by globbing, so a new benchmark fails here until it has a
quick run below (or, for one that needs the Docker engine and images, a test under
tests/container). Each run writes its figures as JSON, and the test asserts that every
figure is there and was measured (counts that must be exact, a timing wrapper that ran);
never a timing threshold: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _crashfs import needs_crashfs, require_crashfs

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py"))
# benchmarks that need more than this test run has, and the test that runs them
ELSEWHERE = {"bench_container.py": "tests/container/test_bench_container.py"}
NEEDS_CRASHFS = {"bench_crashfs.py"}

Figures = dict[str, Any]


def _reference(f: Figures) -> None:
    assert f["checks"] and all(c["ok"] for c in f["checks"]), [
        c for c in f["checks"] if not c["ok"]]
    # the timing wrappers reached the node at every open (an exact-count check of its own)
    assert any(c["name"].startswith("timing wrappers reached the node") for c in f["checks"])
    for mode in ("sim_synced", "sim_unsynced", "real_synced", "real_unsynced"):
        assert f["apply"][mode]["entries_per_s"] > 0, mode
    assert len(f["persist"]) > 0 and all(p["diff"] == 1 for p in f["persist"])
    paths = f["cold_start"]["paths"]
    assert {p["outcome"] for p in paths.values()} == {"skipped", "executed", "fallback"}
    assert all(p["store_recovery"] > 0 for p in paths.values())
    assert all(v is not None for v in f["cold_start"]["ratios"].values())
    assert f["skip_scaling"] and all(s["skip_gate"] > 0 for s in f["skip_scaling"])


def _harness(f: Figures) -> None:
    assert f["errors"] == []
    assert all(v > 0 for v in f["requests"]["us_per_request"].values())
    suite = f["suite"]
    assert suite["cases"] > 0 and suite["requests"] > 0 and suite["steps"] > 0
    assert set(suite["statuses"]) <= {"passed", "not_applicable"}
    assert f["certify"]["inprocess_exit"] == [0] and f["certify"]["inprocess_s"] > 0


def _crashfs(f: Figures) -> None:
    assert f["append_fsync"]["plain_us_per_op"] > 0 and f["append_fsync"]["layer_us_per_op"] > 0
    assert f["sqlite"]["plain_ms_per_txn"] > 0 and f["sqlite"]["layer_ms_per_txn"] > 0
    assert f["mount_ms"] > 0 and f["unmount_ms"] > 0 and f["power_loss_ms"] >= 0


def _explore(f: Figures) -> None:
    [throughput] = f["throughput"]
    assert throughput["steps"] > 0 and throughput["sequences"] > 0
    assert throughput["failures"] == 0  # the reference
    exhaustive = f["exhaustive_reference"]
    assert exhaustive["states"] > 0 and exhaustive["violations"] == 0
    [row] = f["mutants"]
    assert len(row["attempts"]) == 1 and row["shrink"] is not None
    assert row["exhaustive"] is not None


def _adapter_hotpath(f: Figures) -> None:
    assert f["errors"] == []
    assert f["ratio"] > 0 and f["ratio_before"] is None
    assert set(f["us_per_request"]) == {"bare", "poll", "adapter"}
    assert all(v > 0 for v in f["us_per_request"].values())


def _node_lifetimes(f: Figures) -> None:
    assert f["errors"] == []
    for node in ("reference server, forked", "reference server, started anew", "sqlite_node"):
        parts = f["start_parts"]["adapter"][node]
        assert parts["start_s"] > 0 and parts["crash_s"] > 0 and parts["parts_s"]
        cycles = f["cycles"][node]
        assert set(cycles) == {"off", "auto"} and all(v > 0 for v in cycles["off"].values())
    certify = f["certify"]["this tree"]
    assert certify["in process"] > 0
    for what in ("reference-process", "sqlite_node", "reference-process, spares off",
                 "sqlite_node, spares off", "reference-process, fork server off",
                 "sqlite_node, fork server off"):
        assert certify[f"{what} / in process"] > 0, what


def _explore_jobs(f: Figures) -> None:
    assert f["errors"] == []
    for spec in ("reference", "reference-process"):
        t = f["throughput"][spec]
        assert t["same_results"] and [r["jobs"] for r in t["rows"]] == [1, 2], t
        assert all(r["steps"] > 0 and r["campaigns"] == 2 for r in t["rows"]), t
        assert [b["jobs"] for b in f["budget"][spec]] == [1, 2]
        assert all(b["generation_s"] > 0 and b["sequences"] > 0 for b in f["budget"][spec])


# script -> (arguments of its quickest run that still measures every part, the check)
QUICK: dict[str, tuple[list[str], Callable[[Figures], None]]] = {
    "bench_reference.py": (["--quick", "--keys", "2000"], _reference),
    "bench_adapter_hotpath.py": (["--quick", "--requests", "200"], _adapter_hotpath),
    "bench_node_lifetimes.py": (["--quick", "--cycles", "1", "--suites", "suites/entries.yaml"],
                                _node_lifetimes),
    "bench_harness.py": (["--quick", "--no-process", "--requests", "200", "--suites",
                          "suites/entries.yaml", "--explore", "0"], _harness),
    "bench_crashfs.py": (["--quick"], _crashfs),
    "bench_explore_jobs.py": (["--quick", "--jobs", "2"], _explore_jobs),
    "bench_explore.py": (["--seeds", "1", "--budget", "10", "--throughput-s", "1", "--depth",
                          "1", "--only", "pin-error-ignored", "--no-process"], _explore),
}


def test_every_benchmark_has_a_quick_run() -> None:
    assert set(SCRIPTS) == set(QUICK) | set(ELSEWHERE), (
        f"bench/ has {sorted(set(SCRIPTS) - set(QUICK) - set(ELSEWHERE))} without a quick run "
        f"in tests/test_bench.py, and the table names {sorted(set(QUICK) - set(SCRIPTS))} "
        "that bench/ no longer has")
    for script, test in ELSEWHERE.items():
        assert script in (ROOT / test).read_text(encoding="utf-8"), (script, test)


@pytest.mark.parametrize("script", [
    pytest.param(s, marks=needs_crashfs) if s in NEEDS_CRASHFS else s
    for s in SCRIPTS if s not in ELSEWHERE])
def test_benchmark_produces_its_figures(script: str, tmp_path: Path) -> None:
    assert script in QUICK, f"bench/{script} has no quick run in tests/test_bench.py QUICK"
    if script in NEEDS_CRASHFS:
        require_crashfs()  # under CI=true, where FUSE must work
    args, check = QUICK[script]
    figures = tmp_path / "figures.json"
    extra = ["--markdown", str(tmp_path / "table.md")] if script == "bench_explore.py" else []
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(figures),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check(json.loads(figures.read_text(encoding="utf-8")))
