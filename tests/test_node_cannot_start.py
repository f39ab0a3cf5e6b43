"""A node that cannot start is a result, not a crash (issue 13, item 2): the first cases fail
with the reason and the node's stderr, the rest are reported as not run because the node
never started, no profile is certified, the report is written (this run's, over an older
one), exit status 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.session import START_GIVE_UP

REPO = Path(__file__).resolve().parents[1]
SUITE = "suites/entries.yaml"  # 9 cases, none needing a capability
HELLO = ('{"id": req["id"], "ok": True, "result": {"version": 1, "implementation": '
         '{"name": "n", "version": "0"}, "capabilities": [], "entry_kinds": ["raw"]}}')

NODES = {
    # name: (script, the reason every case gives, a line of the node's stderr)
    "typo": (None, "the node exited during hello", "can't open file"),
    "debug-line": ("""
        import sys
        print("starting with a debug line on stdout", file=sys.stderr, flush=True)
        print("debug: node starting", flush=True)
        for line in sys.stdin:
            pass
        """, "not JSON", "starting with a debug line on stdout"),
    "exits": ("""
        import sys
        print("bad config: /etc/node.toml is missing", file=sys.stderr, flush=True)
        sys.exit(3)
        """, "the node exited during hello", "bad config: /etc/node.toml is missing"),
    "refused": ("""
        import json, sys
        print("refusing every hello", file=sys.stderr, flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            print(json.dumps({"id": req["id"], "ok": False, "error": {
                "code": "unsupported", "message": "no config file"}}), flush=True)
        """, "hello refused: [unsupported] no config file", "refusing every hello"),
    "hangs": ("""
        import sys, time
        print("waiting for a lock that never comes", file=sys.stderr, flush=True)
        time.sleep(300)
        """, "hello (id 1): no reply within the 0.5 s timeout", "waiting for a lock"),
}


def _impl(tmp_path: Path, name: str) -> str:
    script = NODES[name][0]
    path = tmp_path / f"{name}.py"
    if script is not None:
        path.write_text(textwrap.dedent(script))
    return f"{sys.executable} {path} --data-dir {{data_dir}}"


def _old_report(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "report.json").write_text('{"an older report": true}')
    (out / "report.md").write_text("# an older report\n")


@pytest.mark.parametrize("name", list(NODES))
def test_a_node_that_never_starts_is_a_result(name: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    _old_report(out)
    _, reason, stderr_line = NODES[name]
    status = main(["certify", "--impl", _impl(tmp_path, name), "--suites", SUITE,
                   "--profile", "baseline", "--timeout", "0.5", "--out", str(out)])
    printed = capsys.readouterr()
    assert status == 1
    assert "the node never started" in printed.err and reason in printed.err
    assert stderr_line in printed.err  # the log's tail, on the console too
    assert "profile 'baseline' is NOT certified" in printed.err

    report = json.loads((out / "report.json").read_text())
    assert "an older report" not in report
    assert report["info"]["command"].endswith(f"--out {out}")
    cases = report["cases"]
    failed = [c for c in cases if c["status"] == "failed"]
    not_run = [c for c in cases if c["status"] != "failed"]
    assert len(failed) == START_GIVE_UP and len(not_run) == 9 - START_GIVE_UP
    assert all(c["reason"].startswith("not run: the node never started: ") for c in not_run)
    assert all(reason in c["reason"] for c in not_run)
    assert not any(v["certified"] for v in report["profiles"])
    assert "the node never started" in report["info"]["exploration"]["not_run"]
    md = (out / "report.md").read_text()
    assert "never started" in md.splitlines()[0]
    assert all(c["failure"]["message"].startswith("the node did not start: ")
               and reason in c["failure"]["message"] for c in failed)
    assert stderr_line in md
    assert "at the start (the node did not get through hello)" in md
    assert "at the final check" not in md  # no step ran, no final check either


def test_a_node_that_starts_now_and_then_is_not_cut_short(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refuses its first two hellos (a counter beside the data directories), then starts:
    every case runs, and only those two failed at the start."""
    script = tmp_path / "flaky.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        counter = Path(sys.argv[1])
        starts = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(starts + 1))
        for line in sys.stdin:
            req = json.loads(line)
            if req["op"] == "hello" and starts < 2:
                reply = {{"id": req["id"], "ok": False, "error": {{
                    "code": "unsupported", "message": "not yet"}}}}
            elif req["op"] == "hello":
                reply = {HELLO}
            else:
                reply = {{"id": req["id"], "ok": False, "error": {{
                    "code": "unsupported", "message": "nothing else"}}}}
            print(json.dumps(reply), flush=True)
        """))
    impl = f"{sys.executable} {script} {tmp_path / 'starts'} --data-dir {{data_dir}}"
    status = main(["run", SUITE, "--impl", impl, "--timeout", "10", "--out",
                   str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert status == 1
    assert "never started" not in printed.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["cases"]) == 9
    assert not any("not run" in c["reason"] for c in report["cases"])
    at_start = [c["id"] for c in report["cases"] if c["failure"] and c["failure"]["message"]
                == "the node did not start: hello refused: [unsupported] not yet"]
    assert len(at_start) == 2


def test_the_command_line_ends_it_with_exit_1_and_no_traceback(tmp_path: Path) -> None:
    """Through the real entry point, as a user runs it (the issue's example: a typo)."""
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "certify", "--impl",
         f"{sys.executable} nosuchfile.py --data-dir {{data_dir}}", "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr + res.stdout
    assert "the node never started: the node exited during hello" in res.stderr
    assert "can't open file" in res.stderr
    assert (tmp_path / "out" / "report.md").is_file()
