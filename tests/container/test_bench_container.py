"""A quick run of bench/bench_container.py against the reference image, so that the container
benchmark cannot rot either (tests/test_bench.py runs the others and checks this file names
it). Its figures are asserted to be there and measured, never against a threshold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _images import REFERENCE_IMAGE, ROOT

pytestmark = pytest.mark.container


def test_bench_container_produces_its_figures(images: dict[str, str], tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_container.py"),
                           "--image", REFERENCE_IMAGE, "--cycles", "2", "--no-suite",
                           "--json", str(figures)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cycles = json.loads(figures.read_text(encoding="utf-8"))["cycles"]
    for variant in ("adapter", "bare_cli", "bare_sdk", "bare_sdk_ready"):
        assert cycles[variant]["n"] == 2 and cycles[variant]["median_ms"] > 0, variant
    assert all(v > 0 for v in cycles["lifetime_ms"].values())
    assert cycles["ratio_adapter_over_bare_cli"] > 0
