"""The filesystem layer the reference node is written against.

Everything durable the node does goes through a `Disk`, so the same code runs on a
real filesystem (`OSDisk`) and on a simulated one that can lose power (`SimDisk`).

Paths are posix-style strings relative to the disk root ("store/store.log"); the
root directory is "". Durability follows POSIX, strictly:

* `write`/`append`/`truncate` change a file's content but nothing is durable yet;
* `fsync(path)` makes that file's *content* durable, not its name;
* `fsync_dir(dir)` makes the *names* in `dir` durable (creates, renames, removes);
* `makedirs` is the one exception: directory creation is durable immediately,
  because directories are set up once and modelling them would add nothing.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from ..errors import SimulatedCrash


class PowerLossMode(enum.StrEnum):
    """What survives of the writes that were not yet fsynced.

    A StrEnum (a `str` and an `enum.Enum`, as ruff's UP042 asks), so modes compare
    equal to, and print as, their values ("drop_all").
    """

    DROP_ALL = "drop_all"  # every unsynced write is lost
    # per file, a random prefix (0..n) of its unsynced writes survives
    RANDOM_PREFIX = "random_prefix"
    # per file, all unsynced writes survive except the last, which survives only as a
    # random byte prefix (possibly empty)
    TORN_LAST = "torn_last"
    KEEP_ALL = "keep_all"  # process crash: everything written survives (OS buffers survive SIGKILL)


@dataclass
class DiskStats:
    """Counters a test or benchmark reads to check the cost of a protocol."""

    fsyncs: int = 0  # file fsyncs
    dir_fsyncs: int = 0  # directory fsyncs
    bytes_written: int = 0  # sum of len(data) over write() and append()

    def total_fsyncs(self) -> int:
        return self.fsyncs + self.dir_fsyncs

    def copy(self) -> DiskStats:
        return replace(self)


@runtime_checkable
class Disk(Protocol):
    """A flat, durability-explicit filesystem. See the module docstring for the rules."""

    stats: DiskStats

    def makedirs(self, path: str) -> None:
        """Create `path` and its parents; idempotent; durable immediately."""
        ...

    def exists(self, path: str) -> bool:
        """True if `path` is a file or a directory."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Sorted names (files and directories) directly under directory `path`."""
        ...

    def read(self, path: str) -> bytes:
        """The whole current content; FileNotFoundError if absent."""
        ...

    def size(self, path: str) -> int:
        """Current size in bytes; FileNotFoundError if absent."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Create or truncate, then write `data`. Not synced."""
        ...

    def append(self, path: str, data: bytes) -> None:
        """Append `data`, creating the file if missing. Not synced."""
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut (or zero-extend) the file to `size` bytes. Not synced."""
        ...

    def fsync(self, path: str) -> None:
        """Make the file's content durable (not its name: see `fsync_dir`)."""
        ...

    def fsync_dir(self, path: str) -> None:
        """Make the names (creates, renames, removes) in directory `path` durable."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace `dst` by `src`; durable only after fsync_dir of the parent(s)."""
        ...

    def remove(self, path: str) -> None:
        """Remove a file; durable only after fsync_dir of its parent."""
        ...

    def close(self) -> None:
        """Release cached handles; the disk stays usable (handles reopen lazily)."""
        ...


def normalize(path: str) -> str:
    """Canonical form of a disk path, so "a//b" and "a/b" name the same file.

    Absolute paths and paths escaping the root are refused: a bug there would touch
    files outside the disk.
    """
    if path in ("", "."):
        return ""
    if path.startswith("/"):
        raise ValueError(f"disk paths are relative to the disk root, got {path!r}")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"disk path escapes the disk root: {path!r}")
    return "" if norm == "." else norm


def parent(path: str) -> str:
    """The directory holding `path` ("" for a name at the root)."""
    return posixpath.dirname(normalize(path))


def atomic_write(disk: Disk, path: str, data: bytes) -> None:
    """Replace `path` by `data` so that a crash leaves either the old or the new file.

    write path+'.tmp', fsync it, rename over path, fsync_dir(parent): 2 fsyncs in
    total (1 file + 1 dir). The tmp file's own name never needs to be durable: only
    the renamed name does, and the final fsync_dir covers it.
    """
    tmp = path + ".tmp"
    disk.write(tmp, data)
    disk.fsync(tmp)
    disk.rename(tmp, path)
    disk.fsync_dir(parent(path))


# The Disk methods fail_next can target (the method names).
DISK_OPS = frozenset(
    {
        "makedirs",
        "exists",
        "listdir",
        "read",
        "size",
        "write",
        "append",
        "truncate",
        "fsync",
        "fsync_dir",
        "rename",
        "remove",
    }
)


# Disk methods -> the crash-point operation kinds they count as; the same kinds the
# crash-simulating filesystem counts for an external node (conformance/faults/crashfs),
# so one suite step (`crash_point`) means the same thing for both.
CRASH_POINT_KINDS = {"write": "write", "append": "write", "truncate": "truncate",
                     "fsync": "fsync", "fsync_dir": "fsyncdir", "rename": "rename",
                     "remove": "unlink"}


class FaultInjector:
    """One-shot injected I/O errors and crash points, shared by both backends.

    Each backend method calls `_inject(op, *paths)` before doing anything, so an
    armed error fires *instead of* the operation: no state change, no stats. A crash
    point raises `SimulatedCrash` the same way: the operation does not happen.
    """

    def __init__(self) -> None:
        self._armed: list[tuple[str, str, OSError]] = []
        self._crash_points: list[list[Any]] = []  # [kind, nth, seen]

    def arm_crash_point(self, on: str, nth: int) -> None:
        """Crash (SimulatedCrash) at the `nth` operation of kind `on` from now: write (write,
        append), create (a write or append to a missing file, counted before its write),
        truncate, fsync, fsyncdir, rename, unlink (remove)."""
        kinds = {*CRASH_POINT_KINDS.values(), "create"}
        if on not in kinds or nth < 1:
            raise ValueError(f"crash point {on!r} #{nth}: expected one of {sorted(kinds)}, nth >= 1")
        self._crash_points.append([on, nth, 0])

    def disarm_crash_points(self) -> None:
        self._crash_points.clear()

    def _exists_quietly(self, path: str) -> bool:
        """exists() without injection (backends override it with a direct lookup)."""
        raise NotImplementedError

    def _tick(self, kind: str, what: str) -> None:
        for point in self._crash_points:
            if point[0] == kind:
                point[2] += 1
                if point[2] == point[1]:
                    self._crash_points.remove(point)
                    raise SimulatedCrash(f"crash point {kind} #{point[1]} ({what})")

    def fail_next(self, op: str, path_prefix: str, error: OSError) -> None:
        """The next call of method `op` on a path starting with `path_prefix` raises `error`.

        For `rename` either path may match. Several errors may be armed at once;
        each fires once, in the order armed.
        """
        if op not in DISK_OPS:
            raise ValueError(f"unknown disk operation {op!r}; expected one of {sorted(DISK_OPS)}")
        self._armed.append((op, path_prefix, error))

    def _inject(self, op: str, *paths: str) -> None:
        if self._crash_points and op in CRASH_POINT_KINDS:
            if op in ("write", "append") and not self._exists_quietly(paths[0]):
                self._tick("create", paths[0])
            self._tick(CRASH_POINT_KINDS[op], " ".join(paths))
        for i, (armed_op, prefix, error) in enumerate(self._armed):
            if armed_op == op and any(p.startswith(prefix) for p in paths):
                del self._armed[i]
                raise error
