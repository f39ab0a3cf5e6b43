"""The FUSE operations: a passthrough to the backing root that reports to the journal.

Written against mfusepy's high-level (path) API on libfuse3. Details that matter for
a node under test, each found the hard way:

* the backing file is opened without O_APPEND (the kernel already turned an append
  into a write at the end; with O_APPEND, pwrite would ignore that offset), and
  without O_TRUNC (a truncating open is journaled as a truncate to 0);
* O_SYNC / O_DSYNC handles make each write durable; fsync and fdatasync arrive as
  `fsync`, a directory fsync as `fsyncdir`, RWF_DSYNC writes and msync(MS_SYNC) as an
  fsync; `sync_file_range` never reaches the daemon (correctly: it is not durable),
  nor do `sync()` and `syncfs()` (durable on real Linux; a FUSE limitation);
* fallocate is implemented (an EOPNOTSUPP breaks glibc's posix_fallocate fallback);
* hard links share an inode and so its journal (`use_ino`, keyed by backing inode);
* no kernel attribute, entry or page caching across opens (timeouts 0, no
  kernel_cache), so what the node reads after a power loss is what survived;
* files and directories are owned by whoever created them through the mount, so a
  node running as another uid (a container's user) can use them.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mfusepy

from .journal import Journal, JournalError, open_backing

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


@dataclass
class Handle:
    fd: int
    ino: int
    sync: bool  # opened with O_SYNC / O_DSYNC: every write is durable


def _fail(exc: OSError) -> mfusepy.FuseOSError:
    return mfusepy.FuseOSError(exc.errno or errno.EIO)


class CrashOps(mfusepy.Operations):
    """mfusepy operations over `journal.root`. `on_crash_point(pid, reason)` stops the node
    whose request hit an armed crash point (default: SIGKILL to its process group)."""

    use_ns = True
    flag_nullpath_ok = True  # an open file that lost its name is still reachable by handle

    def __init__(self, journal: Journal,
                 on_crash_point: Callable[[int, str], None] | None = None) -> None:
        self.j = journal
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, int] = {}  # directory handle -> fd
        self._ids = itertools.count(1)
        self._hlock = threading.Lock()
        self._as_root = os.geteuid() == 0
        self._on_crash_point = on_crash_point or kill_requester
        self.mounted = threading.Event()

    # -- plumbing ------------------------------------------------------------------------------

    def _rel(self, path: str) -> str:
        return path.lstrip("/")

    def _full(self, path: str) -> str:
        rel = self._rel(path)
        return str(self.j.root / rel) if rel else str(self.j.root)

    def _owner(self) -> tuple[int, int] | None:
        if not self._as_root:
            return None
        uid, gid, _ = mfusepy.fuse_get_context()
        return uid, gid

    def _handle(self, fh: int) -> Handle:
        h = self._handles.get(fh)
        if h is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return h

    def _add(self, fd: int, flags: int) -> int:
        h = Handle(fd, os.fstat(fd).st_ino, bool(flags & os.O_DSYNC))
        with self._hlock:
            fh = next(self._ids)
            self._handles[fh] = h
        return fh

    def open_handles(self) -> int:
        """Files and directories open through the mount."""
        with self._hlock:
            return len(self._handles) + len(self._dirs)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run a journal mutation; a crash point that fires stops the requesting node."""
        was = self.j.frozen
        try:
            return fn()
        except JournalError as exc:
            if was is None and self.j.frozen is not None:
                _, _, pid = mfusepy.fuse_get_context()
                self._on_crash_point(pid, self.j.frozen)
            raise _fail(exc) from None
        except OSError as exc:
            raise _fail(exc) from None

    # -- lifecycle -------------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
            config.attr_timeout = 0.0
            config.kernel_cache = 0
            config.auto_cache = 0
            config.use_ino = 1
            config.hard_remove = 1
            config.nullpath_ok = 1
        self.mounted.set()

    # -- metadata --------------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.fstat(self._handle(fh).fd) if fh else os.lstat(self._full(path))
        except OSError as exc:
            raise _fail(exc) from None
        return {"st_mode": st.st_mode, "st_ino": st.st_ino, "st_nlink": st.st_nlink,
                "st_uid": st.st_uid, "st_gid": st.st_gid, "st_size": st.st_size,
                "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
                "st_ctime": st.st_ctime_ns, "st_blocks": st.st_blocks,
                "st_blksize": st.st_blksize, "st_rdev": st.st_rdev}

    def opendir(self, path: str) -> int:
        """A directory handle holds an fd: with nullpath_ok, readdir and fsyncdir get no
        path, and the fd follows the directory through renames."""
        try:
            fd = os.open(self._full(path), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _fail(exc) from None
        with self._hlock:
            fh = next(self._ids)
            self._dirs[fh] = fd
        return fh

    def releasedir(self, path: str | None, fh: int) -> None:
        with self._hlock:
            fd = self._dirs.pop(fh, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _dir_rel(self, fh: int) -> str | None:
        """The directory's current path under the root; None once it is removed."""
        fd = self._dirs.get(fh)
        if fd is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        target = os.readlink(f"/proc/self/fd/{fd}")
        root = str(self.j.root)
        if target.endswith(" (deleted)") or not (target == root or target.startswith(root + "/")):
            return None
        return target[len(root) + 1:]

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        # with use_ino, an entry without its inode number reads as d_ino 0, which glibc's
        # readdir skips: give every entry its mode and inode
        try:
            fd = self._dirs[fh]
            here = os.fstat(fd)
            out = [(".", {"st_mode": here.st_mode, "st_ino": here.st_ino}, 0),
                   ("..", {"st_mode": here.st_mode, "st_ino": 1}, 0)]
            with os.scandir(fd) as it:
                for de in it:
                    st = de.stat(follow_symlinks=False)
                    out.append((de.name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
            return out
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None
        except OSError as exc:
            raise _fail(exc) from None

    def readlink(self, path: str) -> str:
        try:
            return os.readlink(self._full(path))
        except OSError as exc:
            raise _fail(exc) from None

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.j.root)
        return {k: getattr(sv, k) for k in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree",
            "f_favail", "f_flag", "f_namemax")}

    def chmod(self, path: str, mode: int, fh: int | None = None) -> None:
        try:
            if fh:
                os.fchmod(self._handle(fh).fd, mode)
            else:
                os.chmod(self._full(path), mode)
        except OSError as exc:
            raise _fail(exc) from None

    def chown(self, path: str, uid: int, gid: int, fh: int | None = None) -> None:
        try:
            os.lchown(self._full(path), uid, gid)
        except OSError as exc:
            raise _fail(exc) from None

    def utimens(self, path: str, times: tuple[int, int] | None = None,
                fh: int | None = None) -> None:
        try:
            target: int | str = self._handle(fh).fd if fh else self._full(path)
            if times is not None and (UTIME_NOW in times or UTIME_OMIT in times):
                # libfuse passes "now" and "leave as is" as the timespec {0, UTIME_NOW /
                # UTIME_OMIT}, which mfusepy turns into that bare number of nanoseconds
                st = os.stat(target, follow_symlinks=False) if isinstance(target, str) \
                    else os.fstat(target)
                now = time.time_ns()
                a, m = (now if t == UTIME_NOW else old if t == UTIME_OMIT else t
                        for t, old in zip(times, (st.st_atime_ns, st.st_mtime_ns), strict=True))
                times = (a, m)
            ns: dict[str, Any] = {} if times is None else {"ns": times}  # None: now
            if isinstance(target, int):
                os.utime(target, **ns)
            else:
                os.utime(target, follow_symlinks=False, **ns)
        except OSError as exc:
            raise _fail(exc) from None

    # -- files -------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        try:
            fd = open_backing(self._full(path),
                              flags & ~(os.O_APPEND | os.O_TRUNC | os.O_CREAT | os.O_EXCL
                                        | os.O_SYNC | os.O_DSYNC | os.O_NOCTTY))
        except OSError as exc:
            raise _fail(exc) from None
        fh = self._add(fd, flags)
        if flags & os.O_TRUNC:
            h = self._handles[fh]
            try:
                self._call(lambda: self.j.open_trunc(h.fd, h.ino))
            except mfusepy.FuseOSError:
                self.release(path, fh)
                raise
        return fh

    def create(self, path: str, mode: int, flags: int) -> int:
        fd = self._call(lambda: self.j.create(self._rel(path), flags & ~(os.O_SYNC | os.O_DSYNC),
                                              mode, self._owner()))
        return self._add(fd, flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        try:
            return os.pread(self._handle(fh).fd, size, offset)
        except OSError as exc:
            raise _fail(exc) from None

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        h = self._handle(fh)
        n: int = self._call(lambda: self.j.write(h.fd, h.ino, offset, data, h.sync))
        return n

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        if fh:
            h = self._handle(fh)
            self._call(lambda: self.j.truncate(h.fd, h.ino, length))
            return
        try:
            fd = os.open(self._full(path), os.O_RDWR)  # the journal reads what it replaces
        except OSError as exc:
            raise _fail(exc) from None
        try:
            ino = os.fstat(fd).st_ino
            self._call(lambda: self.j.truncate(fd, ino, length))
        finally:
            os.close(fd)

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> None:
        h = self._handle(fh)
        self._call(lambda: self.j.fallocate(h.fd, h.ino, mode, offset, size))

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        h = self._handle(fh)
        self._call(lambda: self.j.fsync(h.ino, bool(datasync)))

    def flush(self, path: str, fh: int) -> None:
        return None

    def release(self, path: str, fh: int) -> None:
        with self._hlock:
            h = self._handles.pop(fh, None)
        if h is not None:
            with contextlib.suppress(OSError):
                os.close(h.fd)

    # -- directories and names ---------------------------------------------------------------------

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> None:
        rel = self._dir_rel(fh)
        self._call(lambda: self.j.fsyncdir(rel))

    def mkdir(self, path: str, mode: int) -> None:
        self._call(lambda: self.j.mkdir(self._rel(path), mode, self._owner()))

    def rmdir(self, path: str) -> None:
        self._call(lambda: self.j.rmdir(self._rel(path)))

    def unlink(self, path: str) -> None:
        self._call(lambda: self.j.unlink(self._rel(path)))

    def symlink(self, target: str, source: str) -> None:
        # mfusepy passes (link name, target) as (target, source): `target` is the new name
        self._call(lambda: self.j.symlink(source, self._rel(target), self._owner()))

    def link(self, target: str, source: str) -> None:
        # as for symlink: `target` is the new name, `source` the existing file
        self._call(lambda: self.j.link(self._rel(source), self._rel(target)))

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if flags & RENAME_EXCHANGE or flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise mfusepy.FuseOSError(errno.EINVAL)
        self._call(lambda: self.j.rename(self._rel(old), self._rel(new),
                                         bool(flags & RENAME_NOREPLACE)))


def kill_requester(pid: int, reason: str) -> None:
    """Stop the node whose request hit a crash point: SIGKILL to its process group (the
    adapters start every node in a session of its own), or to the process alone when
    the group is the daemon's own."""
    if pid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        pgid = os.getpgid(pid)
        if pgid not in (os.getpgid(0), os.getpgid(os.getppid()), 0, 1):
            os.killpg(pgid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
