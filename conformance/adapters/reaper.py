"""Every process a node started, found through /proc and killed with it: never by name.

A node runs in a session of its own, so SIGKILL to its process group reaches what it
starts, unless a descendant leaves the group (setsid, setpgid). Three things find those:

- the harness is a child subreaper (prctl PR_SET_CHILD_SUBREAPER, Linux): an orphan is
  re-parented to the harness rather than to init, so it stays within reach;
- the node's descendants by ppid chains, read before the kill and again after it (for what
  forked meanwhile);
- a marker in the environment of every node, `CONFORMANCE_NODE=<owner>:<n>`, which its
  descendants inherit: a child of the harness carrying it is an orphan of that node.

`Owner` names a harness process (host, boot, pid namespace, pid, start time): the node markers and the
temporary directories' marker files (conformance/leftovers.py) use it, so the next run can
tell the leftovers of a dead harness from those of a live one.

Without /proc (not Linux) only the process group is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

NODE_ENV = "CONFORMANCE_NODE"
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
PROC = Path("/proc")
REAP_POLL = 0.005  # seconds between checks while waiting for killed processes to be reaped


@dataclass(frozen=True)
class ProcInfo:
    """One process as /proc/<pid>/stat shows it."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str  # R, S, D, Z (zombie), ...
    start: int  # clock ticks after boot: with the pid, the process's identity

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X", "x")


def stat(pid: int) -> ProcInfo | None:
    """The process `pid`, None when there is none (or no /proc)."""
    # os.open/os.read, not pathlib: a scan of /proc reads every process's stat, twice per
    # node kill, and this is 3x faster (docs/performance.md)
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY)
        try:
            text = os.read(fd, 4096)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')'
    fields = text[text.rindex(b")") + 2:].split()
    return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0].decode(),
                    int(fields[19]))


def processes() -> dict[int, ProcInfo]:
    """Every process this harness can see, by pid."""
    out: dict[int, ProcInfo] = {}
    try:
        entries = os.listdir(PROC)
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit() and (info := stat(int(entry))) is not None:
            out[info.pid] = info
    return out


def env_value(pid: int, name: str) -> str | None:
    """The value of `name` in the environment `pid` was started with, None when absent or
    unreadable (another user's process, a zombie)."""
    try:  # os calls, as in stat(): a scan reads the environment of each of our children
        fd = os.open(f"{PROC}/{pid}/environ", os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError:
        return None
    data = b"".join(chunks)
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


@cache
def boot_id() -> str:
    """This boot's id (a reboot makes every recorded pid meaningless), "" when unknown."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@cache
def pid_namespace() -> str:
    """This process's pid namespace (pids mean something only within one), "" when unknown."""
    try:
        return os.readlink(PROC / "self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return ""


@dataclass(frozen=True)
class Owner:
    """A harness process, by what stays unique across pid reuse: host, boot, pid namespace,
    pid and start time."""

    host: str
    boot: str
    pid: int
    start: int
    ns: str = ""

    @classmethod
    def current(cls) -> Owner:
        return _owner_of(os.getpid())

    def token(self) -> str:
        # the host goes last: it is the one field that may hold anything but a colon
        return f"{self.pid}:{self.start}:{self.boot}:{self.ns}:{self.host}"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        parts = token.split(":", 4)
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        return cls(parts[4], parts[2], int(parts[0]), int(parts[1]), parts[3])

    def local(self) -> bool:
        """Whether this owner ran on this host and in this pid namespace, so that its pid
        means something here."""
        return self.host == socket.gethostname() and self.ns == pid_namespace()

    def gone(self) -> bool:
        """True only when this owner surely no longer runs: same host, and another boot or
        no live process with its pid and start time. Another host's owner is never gone."""
        if not self.local():
            return False
        if self.boot and boot_id() and self.boot != boot_id():
            return True
        info = stat(self.pid)
        return info is None or info.dead or info.start != self.start


@cache
def _owner_of(pid: int) -> Owner:
    info = stat(pid)
    return Owner(socket.gethostname(), boot_id(), pid, info.start if info else 0,
                 pid_namespace())


_counter = itertools.count(1)


def node_token() -> str:
    """A fresh marker for one node lifetime: this harness's token and a serial number."""
    return f"{Owner.current().token()}:{next(_counter)}"


def owner_of_node(token: str) -> Owner | None:
    """The harness that started the node carrying `token` (node_token)."""
    head, _, serial = token.rpartition(":")
    return Owner.parse(head) if serial.isdigit() else None


_subreaper_lock = threading.Lock()
_subreaper_for: int | None = None


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux), once per process: orphans of its
    descendants are re-parented to it, where the node kill finds and reaps them."""
    global _subreaper_for
    if not sys.platform.startswith("linux"):
        return False
    with _subreaper_lock:
        if _subreaper_for == os.getpid():  # the flag is not inherited across fork
            return True
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
        except (OSError, AttributeError):
            ok = False
        if ok:
            _subreaper_for = os.getpid()
        return ok


def is_subreaper() -> bool:
    return _subreaper_for == os.getpid()


def _reused(leader: int, start: int, table: dict[int, ProcInfo]) -> bool:
    """Whether the leader's pid now names another process (the leader was reaped, and its
    pid given to a new one): then neither the pid nor the group id is the node's."""
    now = table.get(leader)
    return bool(start) and now is not None and now.start != start


def node_processes(leader: int, token: str, table: dict[int, ProcInfo],
                   known: Iterable[int] = (), start: int = 0) -> dict[int, ProcInfo]:
    """The processes of the node whose first process is `leader` (started at `start`, 0:
    unknown): its group and session (the leader's pid names both), the children of the
    harness that carry its `token` (its orphans, re-parented here), the processes in `known`
    still alive, and every descendant of all of those. As a subreaper, only the harness's
    own children need their environment read; otherwise every process's is (an orphan went
    to init)."""
    me = os.getpid()
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    ours = not _reused(leader, start, table)
    roots = {*known, *([leader] if ours else [])}
    scan_all = not is_subreaper()
    for p in table.values():
        in_group = ours and (p.pgid == leader or p.sid == leader)
        if in_group or ((scan_all or p.ppid == me) and p.pid != me
                        and env_value(p.pid, NODE_ENV) == token):
            roots.add(p.pid)
    found: dict[int, ProcInfo] = {}
    stack = [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid in found or pid == me:
            continue
        found[pid] = table[pid]
        stack += children.get(pid, [])
    return found


def _kill(p: ProcInfo) -> None:
    """SIGKILL `p` unless its pid now names another process (start time differs)."""
    now = stat(p.pid)
    if now is not None and now.start == p.start and not now.dead:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)


def kill_node(leader: int, token: str, start: int = 0) -> dict[int, ProcInfo]:
    """SIGKILL a node's process group and every process of it that left the group
    (node_processes), read before the kill; returns them (the leader included)."""
    table = processes()
    found = node_processes(leader, token, table, start=start)
    if not _reused(leader, start, table):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signal.SIGKILL)
    for p in found.values():
        if p.pid != leader:
            _kill(p)
    return found


def finish_node(leader: int, token: str, found: dict[int, ProcInfo], timeout: float,
                start: int = 0) -> None:
    """After kill_node and the leader's reaping: kill what forked meanwhile, and reap the
    node's orphans that were re-parented to the harness, within `timeout` seconds.

    Only those pids are waited for, never any child (waitpid(-1) would steal the exit
    status of processes that other code started and waits for)."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    pending = {pid: p for pid, p in found.items() if pid != leader}
    while True:
        table = processes()
        # what forked between the reading and the kill: descendants of what was found
        for pid, p in node_processes(leader, token, table, pending, start).items():
            if pid != leader and pid not in pending:
                pending[pid] = p
                _kill(p)
        for pid, p in list(pending.items()):
            now = table.get(pid)
            if now is None or now.start != p.start:
                del pending[pid]  # gone: its parent (or init) reaped it
            elif now.ppid == me:
                if not now.dead:
                    _kill(now)
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        del pending[pid]
        if not pending or time.monotonic() > deadline:
            return
        time.sleep(REAP_POLL)


def kill_strays(tokens_of: Iterable[int] | None = None) -> list[int]:
    """SIGKILL every process carrying a node marker (NODE_ENV) of a harness that is gone
    (the leftovers of a harness killed with SIGKILL), and reap those that are ours.
    Returns their pids. `tokens_of`: only these pids are looked at (tests)."""
    table = processes()
    me = os.getpid()
    killed: list[int] = []
    for pid in (tokens_of if tokens_of is not None else table):
        p = table.get(pid)
        if p is None or p.dead or pid == me:
            continue
        token = env_value(pid, NODE_ENV)
        owner = owner_of_node(token) if token else None
        if owner is not None and owner.gone():
            _kill(p)
            killed.append(pid)
    deadline = time.monotonic() + 2.0
    for pid in killed:
        while time.monotonic() < deadline:
            now = stat(pid)
            if now is None or now.ppid != me:
                break
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            time.sleep(REAP_POLL)
    return killed
