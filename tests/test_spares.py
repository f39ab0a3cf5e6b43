"""Node processes started ahead of need (conformance/adapters/spares.py): the faults stay what
they are (a crash kills the lifetime's process; a restart is a new process on the same data
directory), the node sees the data directory it would have seen, and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _leaks import MARK_ENV, new_mark, temp_leftovers, wait_marked

from conformance.adapters import spares
from conformance.adapters.base import AdapterError
from conformance.adapters.process import ProcessAdapter
from conformance.wire import ReplyViolation, check_reply

REPO = Path(__file__).resolve().parents[1]
REFERENCE = [sys.executable, "-m", "reference_impl.server", "--data-dir", "{data_dir}"]
AHEAD = "ahead of need"

# A node that logs what its data directory holds when it starts and when it gets hello, and
# says prestart as its argument asks; with a third argument it also appends its pid there
# once it has looked.
LISTING_NODE = textwrap.dedent("""
    import json, os, sys
    data, prestart = sys.argv[1], sys.argv[2] == "yes"
    print(f"at start: {sorted(os.listdir(data))}", file=sys.stderr, flush=True)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "a") as looked:
            looked.write(f"{os.getpid()}\\n")
    for line in sys.stdin:
        req = json.loads(line)
        result = {}
        if req["op"] == "hello":
            print(f"at hello: {sorted(os.listdir(data))}", file=sys.stderr, flush=True)
            result = {"version": 1, "implementation": {"name": "listing"}, "capabilities": [],
                      "entry_kinds": [], "prestart": prestart}
        elif req["op"] == "write":
            open(os.path.join(data, req["name"]), "w").close()
        print(json.dumps({"id": req["id"], "ok": True, "result": result}), flush=True)
""")


@pytest.fixture(autouse=True)
def fresh_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    """What other tests' adapters taught the spares (per command) does not leak in here."""
    monkeypatch.setattr(spares, "FIRST", spares.FirstLifetimes())
    monkeypatch.setattr(spares, "CONTINUATIONS", spares.Continuations())
    monkeypatch.setattr(spares, "PRESTART", spares.Prestart())
    monkeypatch.delenv(spares.SPARES_ENV, raising=False)


@pytest.fixture
def make() -> Iterator[Callable[..., ProcessAdapter]]:
    made: list[ProcessAdapter] = []

    def factory(argv: list[str], **kw: Any) -> ProcessAdapter:
        kw.setdefault("use_layer", False)
        adapter = ProcessAdapter(argv, **kw)
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.close()


def listing(prestart: bool, *more: str) -> list[str]:
    return [sys.executable, "-c", LISTING_NODE, "{data_dir}", "yes" if prestart else "no",
            *more]


def wait_for(condition: Callable[[], bool], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_prestart_node_restarts_on_a_process_started_before_the_crash(
        make: Callable[..., ProcessAdapter]) -> None:
    a = make(REFERENCE)
    a.start("synced")
    assert a.request("open").reply is not None
    assert a.request("apply", index=1, entry={"kind": "raw", "ts": 1, "ops": [
        {"op": "add", "key": "n", "delta": 5}]}).reply is not None
    first = a.pid
    assert first is not None
    assert wait_for(lambda: len(a.pids) == 2)  # the reference said prestart: one is ahead
    spare = a.pids[1]
    assert alive(first) and alive(spare)
    a.crash()
    assert not alive(first)  # the crash is a SIGKILL of the lifetime's process
    assert f"crash: SIGKILL to the process group (pid {first}, exit status -9)" in a.logs()
    a.start("synced")
    assert a.pid == spare  # the new lifetime is the process started ahead
    assert AHEAD in a.logs().split("start #2")[1]
    opened = a.request("open").reply
    assert opened is not None and opened["result"]["have"] == 1  # the same data directory
    assert a.request("get", key="n").reply["result"] == {"value": "5"}  # type: ignore[index]
    a.close()
    assert wait_for(lambda: not any(alive(p) for p in a.pids), 5)


def test_a_node_without_prestart_is_started_after_the_crash(
        make: Callable[..., ProcessAdapter]) -> None:
    a = make(listing(prestart=False))
    a.start("synced")
    a.request("write", name="before-crash")
    time.sleep(0.3)  # time enough for a spare to have been started, were there one
    assert len(a.pids) == 1
    a.crash()
    a.start("synced")
    second = a.logs().split("start #2")[1]
    assert AHEAD not in second
    # its process started after the crash: it saw the file the first lifetime wrote
    assert "at start: ['before-crash']" in second


def test_a_prestart_spare_sees_at_hello_what_the_lifetime_before_wrote(
        make: Callable[..., ProcessAdapter], tmp_path: Path) -> None:
    looked = tmp_path / "looked"
    looked.touch()
    a = make(listing(True, str(looked)))
    a.start("synced")
    assert wait_for(lambda: len(a.pids) == 2)  # started while the first lifetime runs
    assert wait_for(lambda: f"{a.pids[1]}\n" in looked.read_text())  # it has looked
    a.request("write", name="late")  # after the spare's start, before the crash
    a.crash()
    a.start("synced")
    second = a.logs().split("start #2")[1]
    assert AHEAD in second
    assert "at start: []" in second  # what it read at its start (what prestart forbids)
    assert "at hello: ['late']" in second  # its first request came after the crash


def test_a_third_adapter_of_a_command_takes_a_process_started_on_a_fresh_directory(
        make: Callable[..., ProcessAdapter]) -> None:
    argv = listing(prestart=False)
    for n in range(3):
        a = make(argv)
        a.start("synced")
        a.request("write", name=f"from-adapter-{n}")
        log = a.logs()
        # the first of a command gets none; the second puts one in the making for the third
        assert (AHEAD in log) == (n == 2), log
        assert "at start: []" in log and "at hello: []" in log  # a fresh, empty directory
        a.close()


def test_spares_off_starts_every_process_when_needed(
        make: Callable[..., ProcessAdapter], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(spares.SPARES_ENV, "off")
    for _ in range(3):
        a = make(REFERENCE)
        a.start("synced")
        a.crash()
        a.start("synced")
        assert AHEAD not in a.logs()
        assert len(a.pids) == 2
        a.close()
    monkeypatch.setenv(spares.SPARES_ENV, "sometimes")
    with pytest.raises(AdapterError, match="CONFORMANCE_SPARES='sometimes': expected one of "
                                           "auto, off"):
        ProcessAdapter(REFERENCE)


def test_spares_never_taken_are_gone_when_the_harness_exits(tmp_path: Path) -> None:
    """Spares of both kinds left at exit (the pool's next first lifetime, and a restart
    spare of an adapter never closed): no process and no directory outlives the harness."""
    mark = new_mark()
    script = textwrap.dedent(f"""
        from conformance.adapters.process import ProcessAdapter
        argv = {REFERENCE!r}
        for _ in range(2):
            a = ProcessAdapter(argv, env={{{MARK_ENV!r}: {mark!r}}}, use_layer=False)
            a.start("synced")
        print(len(a.pids), flush=True)
    """)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=REPO, env={**os.environ, "TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 1
    assert wait_marked(mark) == []
    assert temp_leftovers(tmp) == []


def test_a_stray_line_after_a_reply_blames_the_request_it_follows(
        make: Callable[..., ProcessAdapter]) -> None:
    """Read in the calling thread: the stray second reply, which came in the same write as
    the first, waits in the reader until the next request, which refuses it."""
    script = textwrap.dedent("""
        import json, sys
        for line in sys.stdin:
            req = json.loads(line)
            result = ({"version": 1, "implementation": {}, "capabilities": [],
                       "entry_kinds": []} if req["op"] == "hello" else {})
            reply = json.dumps({"id": req["id"], "ok": True, "result": result})
            sys.stdout.write(reply + "\\n" + (reply + "\\n" if req["op"] == "twice" else ""))
            sys.stdout.flush()
    """)
    a = make([sys.executable, "-c", script])
    a.start("synced")
    first = a.request("twice")
    assert first.reply is not None
    with pytest.raises(ReplyViolation, match="answering nothing") as info:
        a.request("once")
    assert info.value.culprit_id == first.request["id"]
    assert not a.alive()


def test_prestart_must_be_a_boolean() -> None:
    request = {"id": 1, "op": "hello"}
    hello = {"version": 1, "implementation": {}, "capabilities": [], "entry_kinds": []}
    check_reply(request, {"id": 1, "ok": True, "result": {**hello, "prestart": True}})
    with pytest.raises(ReplyViolation, match="result.prestart = 'yes': must be boolean"):
        check_reply(request, {"id": 1, "ok": True, "result": {**hello, "prestart": "yes"}})


def test_restart_spares_follow_what_usually_happens() -> None:
    seen = spares.Continuations()
    assert seen.likely("cmd", 1)  # nothing known yet: a first lifetime is followed
    for _ in range(10):  # ten cases of two lifetimes
        seen.started("cmd", 1)
        seen.started("cmd", 2)
    assert seen.likely("cmd", 1)
    assert not seen.likely("cmd", 2)  # no case went on to a third
    assert seen.likely("other", 1)


def test_the_reference_says_prestart_and_reads_nothing_before_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.run(
        [*REFERENCE[:-1], str(data)], cwd=REPO, capture_output=True, text=True, timeout=60,
        input=json.dumps({"id": 1, "op": "hello", "versions": [1]}) + "\n")
    reply = json.loads(proc.stdout)
    assert reply["result"]["prestart"] is True
    assert list(data.iterdir()) == []  # hello (and the start before it) made nothing


class _Made:
    """A stand-in spare: counts how many were made and released."""

    made = 0

    def __init__(self) -> None:
        _Made.made += 1
        self.released = False

    def release(self) -> None:
        self.released = True


def test_first_lifetimes_keep_as_many_spares_as_adapters_were_open_at_once() -> None:
    pool = spares.FirstLifetimes()
    _Made.made = 0
    assert pool.take("cmd", _Made) is None  # the first of a command: none made
    pool.closed("cmd")
    assert _Made.made == 0
    assert pool.take("cmd", _Made) is None  # the second: one put in the making
    pool.closed("cmd")
    for _ in range(3):  # serial: one taken, one made
        got = pool.take("cmd", _Made)
        assert isinstance(got, _Made) and not got.released
        pool.closed("cmd")
    assert wait_for(lambda: _Made.made == 4)
    # two open at once (--jobs 2): from then on two are kept in the making
    first, second = pool.take("cmd", _Made), pool.take("cmd", _Made)
    assert isinstance(first, _Made) and isinstance(second, _Made)
    assert wait_for(lambda: _Made.made == 7)  # 4 + one for the first + two for depth 2
    pool.closed("cmd")
    pool.closed("cmd")
    assert isinstance(pool.take("cmd", _Made), _Made)
    assert isinstance(pool.take("cmd", _Made), _Made)


def test_nothing_is_started_for_an_adapter_closed_from_another_thread(
        make: Callable[..., ProcessAdapter]) -> None:
    """An interrupted --jobs run closes the adapters from the main thread while each case's
    thread may still be in start(): what it would start after that is never started (it
    would outlive the close, and recreate the removed data directory)."""
    a = make(REFERENCE)
    a.start("synced")
    assert wait_for(lambda: len(a.pids) == 2)
    a.close()  # as the main thread does
    a._start_restart_spare()  # what the case's thread did next, after its hello
    with pytest.raises(AdapterError, match="closed"):
        a.start("synced")
    time.sleep(0.3)
    assert len(a.pids) == 2 and not any(alive(p) for p in a.pids)
    assert spares.settle(30) and not a.data_dir.exists()
