"""What a run may leave behind, for the tests that check it leaves nothing: processes found
by a marker in their environment (every process a harness starts inherits it), and the
harness's temporary directories (prefix `conformance-`) in a private TMPDIR."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK_ENV = "CONFORMANCE_TEST_MARK"

# A node that escapes its process group twice, then hangs at the first request after hello:
# a child in a session of its own (setsid), and a daemon (double fork + setsid) whose parent
# exits at once, so that it is re-parented away from the node. Both exist before it reads
# its first request.
ESCAPING_NODE = """
import json, os, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.waitpid(middle, 0)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] != "hello":
        time.sleep(300)
    print(json.dumps({"id": req["id"], "ok": True, "result": {
        "version": 1, "implementation": {"name": "escaping", "version": "0"},
        "capabilities": [], "entry_kinds": ["raw"]}}), flush=True)
"""


def new_mark() -> str:
    return uuid.uuid4().hex


def marked(mark: str) -> list[str]:
    """Live processes (zombies are dead) whose environment carries MARK_ENV=mark."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2:].split()[0]
        if needle in env.split(b"\0") and state not in ("Z", "X"):
            found.append(f"{entry} {state} {cmd.decode(errors='replace')[:120]}")
    return found


def wait_marked(mark: str, within: float = 20.0) -> list[str]:
    """What is still marked once none is, or `within` seconds passed (a bounded wait for
    processes that are exiting, e.g. a layer unmounting after its harness left)."""
    deadline = time.monotonic() + within
    left = marked(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked(mark)
    return left


def temp_leftovers(tmp: Path) -> list[str]:
    """The harness's directories in `tmp`, its staging ones (`.conformance-...`) included."""
    return sorted(p.name for p in tmp.iterdir()
                  if p.name.startswith(("conformance-", ".conformance-")))


def default_sigint() -> None:
    """preexec_fn: SIGINT as a terminal would deliver it. A test command started from a
    background job inherits SIGINT ignored, and a harness honours an ignored SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Harness:
    """`python -m conformance.cli ARGS` with a marker and a private TMPDIR; its stderr is
    collected by a thread, so that a test can wait for a line of it."""

    def __init__(self, args: list[str], tmp: Path, mark: str,
                 env: dict[str, str] | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conformance.cli", *args], cwd=REPO,
            env={**os.environ, **(env or {}), "TMPDIR": str(tmp), MARK_ENV: mark},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=default_sigint, start_new_session=True)  # killpg(pid) reaches its group
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, within: float = 120.0) -> bool:
        """Whether a stderr line containing `text` came before the harness ended."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            if text in line:
                return True
        return False

    def finish(self, within: float = 120.0) -> int:
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"the harness did not exit within {within:g} s:\n"
                                 + "".join(self.stderr)[-3000:]) from None
        self._reader.join(30)
        return code

    @property
    def output(self) -> str:
        return "".join(self.stderr)
