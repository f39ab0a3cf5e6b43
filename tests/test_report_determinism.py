"""Deterministic reports (issue 13.5): the same seed gives the same four report files byte
for byte, once the timing fields are dropped (conformance.report.timing), through the
local-process adapter, whose node logs carry temp paths and pids, for a passing and for a
failing node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.report import without_timing

FILES = ("report.json", "report.md", "junit.xml", "report.html")


def certify(where: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, Path]:
    """`conformance certify ARGS` from the directory `where` (the default report directory,
    so that the two runs' command lines are the same)."""
    where.mkdir()
    monkeypatch.chdir(where)
    return main(["certify", "--seed", "7", "--explore", "0", *args]), where / "reports" / "latest"


@pytest.mark.parametrize(("impl", "pattern", "status"), [
    # crashes, a power loss on the crash-simulating filesystem, restarts: logs with pids
    ("reference-process", "co-mid-restore-install", 0),
    # a failing node: failures with node logs in every format
    ("mutant-process:effective-snap-on-skip", "cs-skip", 1),
])
def test_same_seed_same_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str,
                               pattern: str, status: int) -> None:
    first_rc, first = certify(tmp_path / "a", monkeypatch, "--impl", impl, "-k", pattern)
    second_rc, second = certify(tmp_path / "b", monkeypatch, "--impl", impl, "-k", pattern)
    assert first_rc == second_rc == status
    for name in FILES:
        a = (first / name).read_text(encoding="utf-8")
        b = (second / name).read_text(encoding="utf-8")
        assert without_timing(name, a) == without_timing(name, b), name
    data = json.loads((first / "report.json").read_text(encoding="utf-8"))
    text = json.dumps(data)
    assert "/conformance-" not in text.replace("<tmp>/conformance-*", "")  # no temp path
    if status:
        tails = [c["failure"]["logs_tail"] for c in data["cases"] if c["status"] == "failed"]
        assert tails and all("pid <pid>" in t for t in tails)  # there were pids, scrubbed


def test_timing_fields_are_the_only_ones_dropped() -> None:
    report = {"info": {"seed": 7, "started": "x", "duration_s": 1.0},
              "cases": [{"id": "c", "duration_s": 0.2, "steps": 3}]}
    assert json.loads(without_timing("report.json", json.dumps(report))) == {
        "info": {"seed": 7}, "cases": [{"id": "c", "steps": 3}]}
    xml = '<testcase name="c" time="0.25" timestamp="t">\n'
    assert without_timing("junit.xml", xml) == '<testcase name="c">\n'
    md = "- **Seed**: 7\n- **Started**: t\n- **Duration**: 1.00 s\n- **Command**: x\n"
    assert without_timing("report.md", md) == "- **Seed**: 7\n- **Command**: x\n"
    html = '<tr><th>Seed</th></tr>\n<tr class="timing"><th>Started</th></tr>\n'
    assert without_timing("report.html", html) == "<tr><th>Seed</th></tr>\n"
    with pytest.raises(ValueError, match="not a report file"):
        without_timing("notes.txt", "")
