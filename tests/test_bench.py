"""A quick run of every benchmark, so that none can rot (figures are not asserted: they are
measured by the benchmarks themselves, on a shared machine, never by timed tests).

The container benchmark runs in tests/container (it needs the engine and the images).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _crashfs import needs_crashfs, require_crashfs

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH.parent,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("script, args, expect", [
    ("bench_reference.py", ["--quick"], "passed"),
    ("bench_harness.py", ["--quick", "--no-process"], "conformance certify"),
])
def test_benchmark_runs(script: str, args: list[str], expect: str) -> None:
    proc = _run(script, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert expect in proc.stdout


@needs_crashfs
def test_crashfs_benchmark_runs(tmp_path: Path) -> None:
    require_crashfs()
    out = tmp_path / "figures.json"
    proc = _run("bench_crashfs.py", "--quick", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "append+fsync" in proc.stdout and out.is_file()
