"""Nothing escapes (issue 13, item 3): SIGINT, SIGTERM and SIGHUP of `conformance` stop every
node and remove every temporary directory; a node's processes that left its process group are
killed with it; what a harness killed with SIGKILL left is removed by the next run.

Leaks are found by a marker in the environment (every process a harness starts inherits it)
and by the `conformance-` directories in a private TMPDIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from _crashfs import UNAVAILABLE, needs_crashfs
from _leaks import (
    ESCAPING_NODE,
    MARK_ENV,
    Harness,
    marked,
    new_mark,
    temp_leftovers,
    wait_marked,
)

from conformance import interrupts, leftovers
from conformance.adapters import reaper
from conformance.adapters.process import ProcessAdapter

TRIALS = 20  # per signal
WORKERS = 4  # harnesses at once (most of a trial is waiting)
RUN_STARTED = "cases against"  # the harness's banner: it is about to start the first node


@pytest.fixture
def escaping_node(tmp_path: Path) -> Path:
    path = tmp_path / "escaping_node.py"
    path.write_text(ESCAPING_NODE)
    return path


def _kill_marked(mark: str) -> None:
    """Clean up after a test that shows a leak (the processes are ours to reap)."""
    for line in marked(mark):
        pid = int(line.split()[0])
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


# -- a node's processes that left its group ------------------------------------------------


def _started_escapees(escaping_node: Path, mark: str) -> ProcessAdapter:
    adapter = ProcessAdapter([sys.executable, str(escaping_node), "--data-dir", "{data_dir}"],
                             env={MARK_ENV: mark}, timeout=10, use_layer=False)
    adapter.start("synced")
    deadline = time.monotonic() + 30
    while len(marked(mark)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # the node, its setsid child, its double-forked daemon
    assert len(marked(mark)) == 3, marked(mark)
    return adapter


def test_a_crash_kills_what_left_the_process_group(escaping_node: Path) -> None:
    mark = new_mark()
    adapter = _started_escapees(escaping_node, mark)
    try:
        adapter.crash()
        assert wait_marked(mark) == []
    finally:
        adapter.close()
        _kill_marked(mark)


def test_the_process_group_alone_lets_them_escape(escaping_node: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The leak the reaper closes: SIGKILL to the node's group (the kill before it) leaves
    the setsid child and the daemon running."""

    def group_only(leader: int, token: str, start: int = 0) -> dict[int, reaper.ProcInfo]:
        os.killpg(leader, signal.SIGKILL)
        return {}

    monkeypatch.setattr(reaper, "kill_node", group_only)
    monkeypatch.setattr(reaper, "finish_node", lambda *args: None)
    mark = new_mark()
    adapter = _started_escapees(escaping_node, mark)
    try:
        adapter.crash()
        time.sleep(0.5)
        assert len(marked(mark)) == 2, marked(mark)
    finally:
        adapter.close()
        _kill_marked(mark)


# -- signals at random moments -------------------------------------------------------------


@dataclass
class Trial:
    signum: int
    delay: float
    node: str  # "reference" or "escaping"


@dataclass
class Outcome:
    trial: Trial
    status: int
    interrupted: bool
    processes: list[str]
    temp: list[str]
    output: str


def _run_trial(trial: Trial, tmp: Path, escaping_node: Path) -> Outcome:
    mark = new_mark()
    if trial.node == "reference":  # two cases, one of them on the crash-simulating filesystem
        args = ["certify", "--impl", "reference-process", "--suites",
                "suites/crash_ordering.yaml", "-k", "co-before-pin-local-synced", "--explore", "0"]
    else:  # hangs at its first request after hello: a 2 s timeout per case
        args = ["run", "suites/bad_input.yaml", "-k", "bi-index-must-be-next", "--timeout", "2",
                "--impl", f"{sys.executable} {escaping_node} --data-dir {{data_dir}}"]
    harness = Harness([*args, "--out", str(tmp / "out")], tmp / "tmp", mark)
    started = harness.wait_for(RUN_STARTED)
    if started:
        time.sleep(trial.delay)
        if harness.proc.poll() is None:
            harness.proc.send_signal(trial.signum)
    status = harness.finish()
    left = temp_leftovers(tmp / "tmp")
    # what is inside a leftover says which part of the harness left it
    temp = [f"{name}: {sorted(str(p.relative_to(tmp)) for p in (tmp / 'tmp' / name).rglob('*'))}"
            for name in left]
    return Outcome(trial, status, status == 128 + trial.signum, wait_marked(mark), temp,
                   harness.output)


def _trials(signum: int) -> list[Trial]:
    rng = random.Random(f"interrupts:{signum}")
    return [Trial(signum, round(rng.uniform(0.0, 2.0), 3), ("reference", "escaping")[i % 2])
            for i in range(TRIALS)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_at_a_random_moment_leaves_nothing(signum: int, tmp_path: Path,
                                                    escaping_node: Path) -> None:
    trials = _trials(signum)
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda it: _run_trial(it[1], tmp_path / f"t{it[0]}",
                                                       escaping_node), enumerate(trials)))
    for o in outcomes:
        where = f"{o.trial} exit {o.status}:\n{o.output[-2000:]}"
        assert o.processes == [], f"processes left: {o.processes}; {where}"
        assert o.temp == [], f"temporary directories left: {o.temp}; {where}"
        assert "Traceback" not in o.output, where
        assert o.status in (0, 1, 128 + signum), where
        if o.interrupted:
            name = signal.Signals(signum).name
            assert f"interrupted by {name}; every node was stopped" in o.output, where
    # most signals must land while the run is going, or the test shows little
    assert sum(o.interrupted for o in outcomes) >= TRIALS // 2, [
        (o.trial.delay, o.status) for o in outcomes]


def test_an_ignored_sigint_stays_ignored() -> None:
    """A harness started with SIGINT ignored (nohup, a background job) keeps it ignored,
    as every well-behaved command does; the others are handled."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.handled():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_inside_a_critical_section_waits_for_its_end() -> None:
    done = []
    with pytest.raises(interrupts.Interrupted) as info, interrupts.handled():
        with interrupts.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs here, and holds it
            done.append("the critical section finished")
        done.append("not reached")
    assert done == ["the critical section finished"]
    assert info.value.exit_status == 143


# -- SIGKILL: the next run removes what was left -------------------------------------------


def _next_run(tmp: Path) -> Harness:
    return Harness(["run", "suites/entries.yaml", "-k", "en-occ-conflict-writes-nothing",
                    "--out", str(tmp / "out2")], tmp / "tmp", new_mark())


def test_the_next_run_removes_what_a_sigkilled_harness_left(tmp_path: Path,
                                                            escaping_node: Path) -> None:
    mark = new_mark()
    harness = Harness(["run", "suites/bad_input.yaml", "-k", "bi-index-must-be-next",
                       "--timeout", "60", "--out", str(tmp_path / "out"), "--impl",
                       f"{sys.executable} {escaping_node} --data-dir {{data_dir}}"],
                      tmp_path / "tmp", mark)
    assert harness.wait_for(RUN_STARTED)
    deadline = time.monotonic() + 60
    while len(marked(mark)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the harness, the node, its setsid child and its daemon
    harness.proc.kill()
    harness.finish()
    time.sleep(0.2)
    # no finalizer ran: what the node started is left (the node too, unless it saw its
    # stdin close before the harness sent it a request it hangs on)
    assert len(marked(mark)) >= 2, marked(mark)
    assert len(temp_leftovers(tmp_path / "tmp")) == 1
    try:
        after = _next_run(tmp_path)
        assert after.finish() == 0, after.output
        # (other runs' strays on this machine may be counted too)
        assert re.search(r"removed what dead runs left: \d+ node process\(es\), \d+ "
                         r"temporary dir\(s\)", after.output), after.output
        assert wait_marked(mark) == []
        assert temp_leftovers(tmp_path / "tmp") == []
    finally:
        _kill_marked(mark)


@needs_crashfs
def test_the_next_run_unmounts_what_a_sigkilled_harness_left(tmp_path: Path) -> None:
    """The harness and its layers killed at once (every process of the run: the harness, its
    fork servers, their nodes and filesystem daemons): the mounts stay, dead; the next run
    unmounts them and removes their directories."""
    if UNAVAILABLE is not None:
        pytest.fail(f"CI=true, and the crash-simulating filesystem cannot run: {UNAVAILABLE}")
    mark = new_mark()
    tmp = tmp_path / "tmp"
    # every power-loss case (73, a few seconds): a mount exists for most of the run
    harness = Harness(["run", "suites", "-k", "power", "--impl", "reference-process", "--jobs",
                       "1", "--out", str(tmp_path / "out")], tmp, mark)
    assert harness.wait_for(RUN_STARTED)
    deadline = time.monotonic() + 60
    while (not leftovers.mounts_under(tmp) and time.monotonic() < deadline
           and harness.proc.poll() is None):
        time.sleep(0.02)
    assert leftovers.mounts_under(tmp), f"no mount seen during the run: {harness.output}"
    # frozen first, so that none sees another die (a daemon would unmount on its SIGTERM)
    run = [int(line.split()[0]) for line in marked(mark)]
    for pid in run:
        os.kill(pid, signal.SIGSTOP)
    for pid in run:
        os.kill(pid, signal.SIGKILL)
    harness.finish()
    after = _next_run(tmp_path)
    assert after.finish() == 0, after.output
    assert "mount(s)" in after.output
    assert leftovers.mounts_under(tmp) == []
    assert temp_leftovers(tmp) == []
    assert wait_marked(mark) == []


# -- the sweep never touches what is not a dead run's --------------------------------------


@pytest.fixture
def tmp_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    yield tmp_path


def _marker(path: Path, **fields: object) -> None:
    me = reaper.Owner.current()
    record = {"host": me.host, "boot": me.boot, "ns": me.ns, "pid": me.pid, "start": me.start}
    (path / leftovers.MARKER).write_text(json.dumps({**record, **fields}))


def test_a_sweep_removes_only_the_directories_of_dead_owners(tmp_dirs: Path) -> None:
    live = leftovers.make_temp_dir()
    dead = tmp_dirs / "conformance-dead"
    other_host = tmp_dirs / "conformance-elsewhere"
    unmarked = tmp_dirs / "conformance-unmarked"
    not_ours = tmp_dirs / "unrelated-dir"
    for path in (dead, other_host, unmarked, not_ours):
        path.mkdir()
    me = reaper.Owner.current()
    _marker(dead, start=me.start + 1)  # this pid, another start: a process that is gone
    _marker(other_host, host="another-host", start=me.start + 1)
    _marker(not_ours, start=me.start + 1)
    swept = leftovers.sweep(tmp_dirs)
    assert swept.dirs == [dead]
    assert not dead.exists()
    assert live.exists() and other_host.exists() and unmarked.exists() and not_ours.exists()


def test_a_directory_killed_before_its_marker_is_swept_by_its_name(tmp_dirs: Path) -> None:
    """A harness killed between making a directory and writing its marker (other threads
    may run in between: seen once in a loaded CI run) leaves its staging directory, with no
    marker; the staging name says whose it was. Before, such a directory had the final name
    and no marker, and nothing ever removed it."""
    me = reaper.Owner.current()
    gone = tmp_dirs / f".conformance-{me.pid}.{me.start + 1}.abcdefgh"  # this pid, another start
    gone_layer = tmp_dirs / f".conformance-layer-{me.pid}.{me.start + 1}.abcdefgh"
    alive = tmp_dirs / f".conformance-{me.pid}.{me.start}.abcdefgh"  # this process: being made
    marked_alive = tmp_dirs / f".conformance-{me.pid}.{me.start + 1}.marked"
    unmarked_final = tmp_dirs / "conformance-abcdefgh"  # no marker, no owner: never touched
    for path in (gone, gone_layer, alive, marked_alive, unmarked_final):
        path.mkdir()
    _marker(marked_alive)  # the marker wins over the name
    made = leftovers.make_temp_dir()
    assert leftovers.owner_of(made) == me and not made.name.startswith(".")
    assert not any(p.name.startswith(f".conformance-{me.pid}.{me.start}.") and p != alive
                   for p in tmp_dirs.iterdir())  # the staging name is gone once it is made
    swept = leftovers.sweep(tmp_dirs)
    assert sorted(swept.dirs) == sorted([gone, gone_layer])
    assert alive.exists() and marked_alive.exists() and unmarked_final.exists() and made.exists()


def test_a_sweep_kills_the_nodes_of_dead_harnesses_only(tmp_dirs: Path) -> None:
    import subprocess

    me = reaper.Owner.current()
    gone = reaper.Owner(me.host, me.boot, me.pid, me.start + 1, me.ns).token()
    sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
    stray = subprocess.Popen(sleep, env={**os.environ, reaper.NODE_ENV: f"{gone}:1"})
    alive = subprocess.Popen(sleep, env={**os.environ, reaper.NODE_ENV: reaper.node_token()})
    try:
        killed = reaper.kill_strays([stray.pid, alive.pid])
        assert killed == [stray.pid]
        # killed and reaped (by the sweep: Popen can no longer tell its status)
        stray.wait(timeout=30)
        assert reaper.stat(stray.pid) is None
        assert alive.poll() is None
    finally:
        for p in (stray, alive):
            p.kill()
            p.wait(timeout=30)


def test_a_directory_never_handed_to_its_owner_is_removed_at_exit(tmp_path: Path) -> None:
    """A maker interrupted between making a directory and giving it to its owner (who would
    remove it) leaves it to the exit hook."""
    import subprocess

    res = subprocess.run([sys.executable, "-c", "from conformance.leftovers import "
                          "make_temp_dir; print(make_temp_dir())"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    made = Path(res.stdout.strip())
    assert res.returncode == 0 and made.parent == tmp_path, res.stderr
    assert not made.exists()
