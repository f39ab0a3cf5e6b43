"""Fork servers (conformance/forkserver/): the reference node's lifetimes are forked
from a process that imported it once. What must hold, so that this changes no verdict:

- each lifetime is a new process, in a session of its own, that starts from freshly
  imported modules (nothing of an earlier lifetime reaches it), with the arguments,
  environment, working directory and stdio it was given;
- it exits with what `python -m MODULE` would, and a SIGKILL is a SIGKILL;
- a zygote that cannot serve is not used: the process is started from its command line,
  which reports the program's own error;
- nothing outlives the harness, even one killed with SIGKILL;
- the certification of the reference process is the same, forked or not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _crashfs import UNAVAILABLE, needs_crashfs
from _leaks import MARK_ENV, new_mark, wait_marked

from conformance import forkserver, leftovers
from conformance.adapters.child import Child, StderrSink
from conformance.adapters.process import ProcessAdapter
from conformance.cli import main as cli_main
from conformance.forkserver import Forked, ForkServer, Program
from conformance.impls import REFERENCE_ARGV, REFERENCE_PROGRAM
from conformance.report import without_timing

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FORKABLE = Program.module_run("_forkable")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForkServer]:
    """A zygote of tests/_forkable.py (found through PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    zygote = ForkServer(FORKABLE)
    yield zygote
    zygote.close()


def _report(proc: Forked) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    report: dict[str, object] = json.loads(line)
    return report


def test_each_lifetime_is_a_new_process_from_freshly_imported_modules(
        server: ForkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    seen = []
    for n in range(3):
        proc = server.spawn(["echo", str(n)], env={**os.environ, "FORKABLE_MARK": f"m{n}"})
        assert proc.stdin is not None
        proc.stdin.write(b"a line on stdin\n")
        report = _report(proc)
        assert proc.wait(10) == 0
        assert report["lifetimes"] == 1  # the zygote's modules, untouched by earlier ones
        assert report["sid"] == report["pid"]  # a session of its own: killpg reaches it all
        assert report["argv"] == ["echo", str(n)]
        assert report["mark"] == f"m{n}"
        assert report["cwd"] == str(tmp_path)
        assert report["stdin"] == "a line on stdin\n"
        seen.append(report["pid"])
    assert len(set(seen)) == 3


@pytest.mark.parametrize(("what", "status", "stderr"), [
    ("0", 0, ""), ("3", 3, ""),
    ("raise", 1, "RuntimeError: the program failed"),
    ("message", 1, "a message to stderr"),
])
def test_it_exits_as_python_m_would(server: ForkServer, what: str, status: int,
                                    stderr: str) -> None:
    proc = server.spawn([what])
    _report(proc)
    assert proc.wait(10) == status
    assert proc.stderr is not None
    assert stderr in proc.stderr.read().decode()
    # what the same program started as `python -m` gives
    plain = subprocess.run([*FORKABLE.prefix, what], capture_output=True, timeout=60,
                           check=False, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert plain.returncode == status
    assert stderr in plain.stderr.decode()


def test_a_kill_is_a_sigkill(server: ForkServer) -> None:
    proc = server.spawn(["hang"])
    _report(proc)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL
    proc.kill()  # a second kill of an ended process is nothing


def test_a_zygote_that_cannot_import_its_program_is_not_used(tmp_path: Path) -> None:
    broken = Program.module_run("no_such_module_here")
    assert forkserver.server_for(broken) is None
    # a node of that "program" is started from its command line, which reports the error
    child = Child([*broken.prefix, "--data-dir", str(tmp_path)], None, StderrSink(4096),
                  program=broken)
    assert isinstance(child.proc, subprocess.Popen)
    assert child.proc.wait(30) == 1
    child.kill()


def test_the_reference_node_is_forked_and_restarts_on_its_data() -> None:
    """Through the adapter: a write, a crash (SIGKILL), a new process that reads it back."""
    adapter = ProcessAdapter(REFERENCE_ARGV, program=REFERENCE_PROGRAM)
    try:
        adapter.start("synced")
        first = adapter._res.child
        assert first is not None and isinstance(first.proc, Forked)
        assert adapter.request("open").reply["ok"]  # type: ignore[index]
        entry = {"kind": "raw", "ts": 1, "ops": [{"op": "put", "key": "k", "value": "v"}]}
        assert adapter.request("apply", index=1, entry=entry).reply["ok"]  # type: ignore[index]
        adapter.crash()
        assert first.proc.returncode == -signal.SIGKILL
        adapter.start("synced")
        assert adapter.pid != first.pid
        assert adapter.request("open").reply["ok"]  # type: ignore[index]
        reply = adapter.request("get", key="k").reply
        assert reply is not None and reply["result"] == {"value": "v"}
    finally:
        adapter.close()


HARNESS = textwrap.dedent("""
    import sys, time
    from conformance.forkserver import ForkServer, Program
    server = ForkServer(Program.module_run("_forkable"))
    proc = server.spawn(["hang"])
    print(proc.stdout.readline().decode(), end="", flush=True)
    time.sleep(300)
""")


def test_nothing_outlives_a_harness_killed_with_sigkill(tmp_path: Path) -> None:
    mark = new_mark()
    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS], stdout=subprocess.PIPE, cwd=REPO,
        env={**os.environ, MARK_ENV: mark, "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                                          str(REPO)])})
    try:
        assert harness.stdout is not None
        report = json.loads(harness.stdout.readline())
        assert len(wait_marked(mark, within=0.0)) == 3  # the harness, its zygote, the child
        assert report["ppid"] != harness.pid  # the zygote's child, not the harness's
    finally:
        harness.kill()
        harness.wait(10)
    assert wait_marked(mark, within=20.0) == []  # the zygote saw its end close, and the child


def _certify(where: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> Path:
    monkeypatch.setenv(forkserver.FORKSERVER_ENV, setting)
    where.mkdir()
    monkeypatch.chdir(where)
    # crashes, restarts, failpoints and a power loss on the crash-simulating filesystem
    assert cli_main(["certify", "--seed", "3", "--explore", "0", "--impl",
                     "reference-process", "--suites", str(REPO / "suites" / "crash_ordering.yaml")]) == 0
    return where / "reports" / "latest"


def test_the_certificate_is_the_same_forked_or_not(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    forked = _certify(tmp_path / "forked", monkeypatch, "auto")
    started = _certify(tmp_path / "started", monkeypatch, "off")
    report = json.loads((forked / "report.json").read_text())
    assert len(report["cases"]) > 20
    for name in ("report.json", "report.md", "junit.xml"):
        assert without_timing(name, (forked / name).read_text()) == without_timing(
            name, (started / name).read_text()), name


def test_the_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forkserver.FORKSERVER_ENV, "sometimes")
    with pytest.raises(ValueError, match="expected one of auto, off"):
        forkserver.enabled()
    monkeypatch.setenv(forkserver.FORKSERVER_ENV, "off")
    assert forkserver.server_for(REFERENCE_PROGRAM) is None


def test_a_zygote_killed_mid_run_is_replaced_by_plain_starts(tmp_path: Path) -> None:
    program = Program.module_run("reference_impl.server")
    server = forkserver.server_for(program)
    assert server is not None
    server._proc.kill()
    server._proc.wait(10)
    time.sleep(0.1)
    assert forkserver.server_for(program) is None  # not asked again in this process
    child = Child([*program.prefix, "--data-dir", str(tmp_path)], None, StderrSink(4096),
                  program=program)
    try:
        assert isinstance(child.proc, subprocess.Popen)
    finally:
        child.kill()


LAYER_HARNESS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from conformance.faults.crashfs.mount import CrashFS
    layer = CrashFS.create(Path(sys.argv[1]))
    print(type(layer._res.proc).__name__, layer.mountpoint, flush=True)
    time.sleep(300)
""")


@needs_crashfs
def test_a_filesystem_daemon_is_forked_and_unmounts_when_the_harness_dies(
        tmp_path: Path) -> None:
    """The crash-simulating filesystem's daemon comes from a fork server too; a harness
    killed with SIGKILL leaves no mount: the zygote sees its end close and sends the daemon
    SIGTERM, on which it unmounts."""
    if UNAVAILABLE is not None:
        pytest.fail(f"CI=true, and the crash-simulating filesystem cannot run: {UNAVAILABLE}")
    mark = new_mark()
    harness = subprocess.Popen([sys.executable, "-c", LAYER_HARNESS, str(tmp_path / "layer")],
                               stdout=subprocess.PIPE, cwd=REPO, env={**os.environ,
                                                                      MARK_ENV: mark})
    try:
        assert harness.stdout is not None
        kind, mountpoint = harness.stdout.readline().decode().split()
        assert kind == "Forked"
        assert os.path.ismount(mountpoint)
    finally:
        harness.kill()
        harness.wait(10)
    assert wait_marked(mark, within=20.0) == []
    assert leftovers.mounts_under(tmp_path) == []  # not even a dead one


def test_the_process_group_exists_when_the_spawn_returns(server: ForkServer) -> None:
    """A spare released at once is killed through its process group (reaper.kill_node):
    the group must exist by then, or the kill misses the process."""
    for _ in range(40):
        proc = server.spawn(["hang"])
        os.killpg(proc.pid, signal.SIGKILL)  # ProcessLookupError: no such group yet
        assert proc.wait(10) == -signal.SIGKILL
