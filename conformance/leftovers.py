"""What a harness killed with SIGKILL leaves behind, removed by the next run.

Every temporary directory the harness makes (`make_temp_dir`, prefix `conformance-`) holds
a marker file, `.conformance-owner`, naming the harness process that owns it (host, boot,
pid namespace, pid and start time: conformance/adapters/reaper.py `Owner`). A normal run
removes its own directories (an adapter's close, its finalizer, atexit, an interrupt); one
whose maker was interrupted before handing it to its owner is removed at exit (each is
recorded as it is made). A harness killed with SIGKILL cannot: `sweep()`, run once at the
start of every run, removes

- the node processes of dead harnesses (found by the `CONFORMANCE_NODE` marker in their
  environment, never by name),
- the crash-simulating filesystem mounts inside their directories (unmounted lazily), and
- the directories whose owner is gone.

A directory is made under a hidden staging name that carries its maker's pid and start
time (`.conformance-<pid>.<start>.<random>`), gets its marker there, and only then takes
its name (`conformance-<random>`): a harness killed between the two steps (a few ms, other
threads may run in between) leaves a staging directory, which the sweep removes when the
process its name gives (on this host, in this pid namespace) is gone. A directory of
another user, of another host, whose owner still runs, or with neither a readable marker
nor such a name is never touched; containers are swept the same way by their labels
(conformance/adapters/container/cleanup.py).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .adapters.reaper import Owner, kill_strays
from .interrupts import critical

PREFIX = "conformance-"
MARKER = ".conformance-owner"
UNMOUNT_WAIT = 10.0  # seconds for fusermount3
_OCTAL = re.compile(r"\\([0-7]{3})")


# every directory make_temp_dir made -> the pid of the process that made it (a forked child
# must not remove its parent's at its exit)
_made: dict[Path, int] = {}
_made_lock = threading.Lock()
_atexit_for = [0]  # the pid that registered _remove_made
_PRUNE_AT = 256  # entries before those already removed are forgotten


def make_temp_dir(prefix: str = PREFIX) -> Path:
    """A fresh temporary directory with this harness's marker in it (it takes its name only
    once marked: module doc). It is removed at exit if it is still there (its owner was
    interrupted before it took it)."""
    owner = Owner.current()
    record = {"host": owner.host, "boot": owner.boot, "ns": owner.ns, "pid": owner.pid,
              "start": owner.start}
    with critical():  # made, marked and recorded as one (a SIGKILL: the module doc)
        staging = Path(tempfile.mkdtemp(prefix=f".{prefix}{owner.pid}.{owner.start}."))
        (staging / MARKER).write_text(json.dumps(record) + "\n")
        path = staging.with_name(prefix + staging.name.rsplit(".", 1)[1])
        while path.exists():  # (as unlikely as two equal draws of mkdtemp's 8 characters)
            path = staging.with_name(path.name + "x")
        os.rename(staging, path)
        with _made_lock:
            if _atexit_for[0] != os.getpid():
                _atexit_for[0] = os.getpid()
                atexit.register(_remove_made)
            if len(_made) >= _PRUNE_AT:
                for old in [p for p in _made if not p.exists()]:
                    del _made[old]
            _made[path] = os.getpid()
    return path


def _remove_made() -> None:
    """At exit: what this process made and nobody removed (unmounted first)."""
    with _made_lock:
        made = [path for path, pid in _made.items() if pid == os.getpid()]
        _made.clear()
    for path in made:
        if not path.exists():
            continue
        for point in mounts_under(path):
            _unmount(point)
        if not mounts_under(path):
            shutil.rmtree(path, ignore_errors=True)


def owner_of(path: Path) -> Owner | None:
    """The harness that made `path` (make_temp_dir), None without a readable marker."""
    try:
        data = json.loads((path / MARKER).read_text())
        return Owner(str(data["host"]), str(data["boot"]), int(data["pid"]), int(data["start"]),
                     str(data["ns"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


_STAGING = re.compile(rf"^\.{re.escape(PREFIX)}(?:[a-z]+-)*(\d+)\.(\d+)\.")


def owner_by_name(path: Path) -> Owner | None:
    """The maker of a staging directory (make_temp_dir) as its name says, as a process of
    this host and pid namespace; None for any other name."""
    m = _STAGING.match(path.name)
    if m is None:
        return None
    here = Owner.current()
    return Owner(here.host, here.boot, int(m.group(1)), int(m.group(2)), here.ns)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    root = os.path.realpath(path)
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) < 5:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), parts[4])  # a space is \040
        if point == root or point.startswith(root + os.sep):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unmount(point: Path) -> bool:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    for cmd in ([tool, "-u", "-z", str(point)] if tool else [], ["umount", "-l", str(point)]):
        if not cmd:
            continue
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if subprocess.run(cmd, capture_output=True, timeout=UNMOUNT_WAIT,
                              check=False).returncode == 0:
                return True
    return not os.path.ismount(point)


@dataclass
class Swept:
    """What a sweep removed (and what it could not)."""

    processes: list[int] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "<path>: why"

    def summary(self) -> str:
        done = [f"{n} {what}" for n, what in ((len(self.processes), "node process(es)"),
                                              (len(self.mounts), "mount(s)"),
                                              (len(self.dirs), "temporary dir(s)")) if n]
        text = f"removed what dead runs left: {', '.join(done)}" if done else ""
        if self.failed:
            text += ("; " if text else "") + "could not remove " + "; ".join(self.failed)
        return text


def sweep(root: Path | None = None) -> Swept:
    """Remove the leftovers of dead harness runs in `root` (default: the temp directory)."""
    out = Swept(processes=kill_strays())
    root = Path(root or tempfile.gettempdir())
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return out
    me = os.geteuid()
    for path in entries:
        staging = path.name.startswith("." + PREFIX)
        if not path.name.startswith(PREFIX) and not staging:
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != me:
                continue
        except OSError:
            continue
        owner = owner_of(path)
        if owner is None and staging:  # killed before its marker was written
            owner = owner_by_name(path)
        if owner is None or not owner.gone():
            continue
        for point in mounts_under(path):
            if _unmount(point):
                out.mounts.append(point)
        if mounts_under(path):
            out.failed.append(f"{path}: still mounted")
            continue
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            out.failed.append(f"{path}: not removable")
        else:
            out.dirs.append(path)
    return out


_swept_lock = threading.Lock()
_swept_for: int | None = None


def sweep_once() -> Swept | None:
    """`sweep()` once per process (the first adapter of a run); None when already done."""
    global _swept_for
    with _swept_lock:
        if _swept_for == os.getpid():
            return None
        _swept_for = os.getpid()
    return sweep()
