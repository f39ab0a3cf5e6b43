"""What a harness killed with SIGKILL leaves behind, removed by the next run.

Every temporary directory the harness makes (`make_temp_dir`, prefix `conformance-`) holds
a marker file, `.conformance-owner`, naming the harness process that owns it (host, boot,
pid and start time: conformance/adapters/reaper.py `Owner`). A normal run removes its own
directories (an adapter's close, its finalizer, atexit, an interrupt). A harness killed
with SIGKILL cannot: `sweep()`, run once at the start of every run, removes

- the node processes of dead harnesses (found by the `CONFORMANCE_NODE` marker in their
  environment, never by name),
- the crash-simulating filesystem mounts inside their directories (unmounted lazily), and
- the directories whose owner is gone.

A directory without a readable marker, of another user, of another host, or whose owner
still runs is never touched; containers are swept the same way by their labels
(conformance/adapters/container/cleanup.py).
"""

from __future__ import annotations

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

PREFIX = "conformance-"
MARKER = ".conformance-owner"
UNMOUNT_WAIT = 10.0  # seconds for fusermount3
_OCTAL = re.compile(r"\\([0-7]{3})")


def make_temp_dir(prefix: str = PREFIX) -> Path:
    """A fresh temporary directory with this harness's marker in it (written atomically:
    a sweep that sees no marker yet leaves the directory alone)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    owner = Owner.current()
    record = {"host": owner.host, "boot": owner.boot, "pid": owner.pid, "start": owner.start}
    tmp = path / (MARKER + ".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, path / MARKER)
    return path


def owner_of(path: Path) -> Owner | None:
    """The harness that made `path` (make_temp_dir), None without a readable marker."""
    try:
        data = json.loads((path / MARKER).read_text())
        return Owner(str(data["host"]), str(data["boot"]), int(data["pid"]), int(data["start"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        if not path.name.startswith(PREFIX):
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != me:
                continue
        except OSError:
            continue
        owner = owner_of(path)
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
