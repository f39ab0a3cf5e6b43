"""What is not durable yet, and how a power loss takes it away.

The journal sits between the FUSE operations (`ops.py`) and the backing directory.
Every change goes to the backing files at once (reads need no merging), and the
journal keeps what it takes to *undo* it, following the same strict POSIX rules as
the simulated disk (`reference_impl/disk/simdisk.py`):

* **content**, per inode (hard links share it): the writes, truncates and allocations
  since the inode's last fsync, each with the bytes and size it replaced. A power loss
  undoes a suffix of them, newest first, leaving a prefix that a real disk could keep.
* **names**, per directory: the directory's durable entry table. It is taken from the
  backing directory the first time a create, unlink, rename, link, mkdir or rmdir
  touches that directory, and again at each fsync of the directory; until then the
  directory is unchanged, so its current entries are its durable ones. A file whose
  last name goes away while a durable table still names it is kept alive by a hard
  link in the attic, so a power loss can bring it back.

A power loss settles every surviving file's content (`PowerLossMode`, a seeded rng,
files visited in sorted path order, as the simulated disk does), rebuilds the tree
from the durable tables (hard links to the settled inodes), swaps it in, and forgets
the journal: afterwards everything on the backing store is durable.

File metadata (mode, owner, times, xattrs) is not modelled: it is durable at once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import shutil
import stat
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reference_impl.disk import PowerLossMode

# Kinds of operation a crash point can count (`Journal.arm`).
CRASH_OPS = ("write", "fsync", "fsyncdir", "rename", "create", "unlink", "truncate")
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where the kernel, the C
    library or the filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


class JournalError(OSError):
    """An operation the layer refuses; carries the errno the node sees."""


class Overflow(JournalError):
    """More unsynced data than the layer bounds: the node never syncs, or syncs too rarely."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what the journal keeps in memory (a node that never syncs hits them)."""

    pending_ops: int = 1_000_000     # content operations not yet fsynced, all files
    undo_bytes: int = 256 << 20      # overwritten bytes kept to undo them, all files


@dataclass(slots=True)
class _Undo:
    """One content change: undo = truncate to `old_size`, then write `old` at `offset`."""

    kind: Literal["write", "truncate"]
    offset: int       # where the change starts (a truncate: the new size)
    length: int       # bytes written at offset (0 for a truncate)
    old_size: int     # the file size before the change
    old: bytes        # the bytes the change replaced, within old_size


@dataclass
class _Content:
    """The unsynced changes of one inode, oldest first."""

    ops: list[_Undo] = field(default_factory=list)
    undo_bytes: int = 0


# A durable directory entry: a file (its inode), a directory (its key) or a symlink (target).
Entry = tuple[Literal["f", "d", "l"], int | str]


@dataclass
class Counters:
    """What the node did through the layer since mount (sync accounting, crash points)."""

    writes: int = 0
    bytes_written: int = 0
    fsyncs: int = 0          # fsync and fdatasync of files
    fdatasyncs: int = 0      # of which fdatasync
    sync_writes: int = 0     # writes through an O_SYNC / O_DSYNC handle
    fsyncdirs: int = 0
    renames: int = 0
    creates: int = 0
    unlinks: int = 0
    truncates: int = 0

    def syncs(self) -> int:
        """Every request that made data or names durable. Not `sync_writes`: the kernel
        follows each write through an O_SYNC / O_DSYNC handle with an fsync request (its
        generic_write_sync), already counted in `fsyncs`."""
        return self.fsyncs + self.fsyncdirs

    def as_dict(self) -> dict[str, int]:
        d = {k: int(v) for k, v in vars(self).items()}
        d["syncs"] = self.syncs()
        return d


@dataclass
class Armed:
    """A crash point: the `nth` (1-based, counted from arming) operation of kind `op`."""

    op: str
    nth: int
    seen: int = 0


@dataclass
class LossReport:
    """What a power loss took away (JSON-able through `as_dict`)."""

    mode: str
    seed: int
    files: dict[str, dict[str, int | None]] = field(default_factory=dict)
    bytes_lost: int = 0
    names_lost: list[str] = field(default_factory=list)
    names_restored: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "seed": self.seed, "files": self.files,
                "bytes_lost": self.bytes_lost, "names_lost": self.names_lost,
                "names_restored": self.names_restored}

    def summary(self) -> str:
        parts = [f"power loss ({self.mode}, seed {self.seed})"]
        if self.files:
            parts.append("unsynced content in " + ", ".join(
                f"{p} (kept {f['ops_kept']} of {f['ops_pending']} ops"
                + (f", torn at {f['torn_bytes']} bytes" if f.get("torn_bytes") is not None
                   else "") + ")" for p, f in sorted(self.files.items())))
        parts.append(f"{self.bytes_lost} bytes lost")
        if self.names_lost:
            parts.append("names lost: " + ", ".join(self.names_lost))
        if self.names_restored:
            parts.append("names back: " + ", ".join(self.names_restored))
        return "; ".join(parts)


def open_backing(path: str, flags: int, mode: int = 0o777) -> int:
    """Open a backing file; write-only becomes read-write, because the journal reads the
    bytes a write replaces (the kernel already checked the node's own access mode)."""
    if flags & os.O_ACCMODE == os.O_WRONLY:
        try:
            return os.open(path, (flags & ~os.O_ACCMODE) | os.O_RDWR, mode)
        except PermissionError:
            pass
    return os.open(path, flags, mode)


def _err(code: int, what: str) -> JournalError:
    return JournalError(code, f"{os.strerror(code)}: {what}")


class Journal:
    """The durability model over one backing store (`store/root` is what the node sees).

    Thread-safe: every mutating method holds one lock, so the journal's order is the
    order the backing store saw. Paths are relative to the root ("" is the root).
    """

    def __init__(self, store: Path, limits: Limits | None = None) -> None:
        self.store = store
        self.root = store / "root"
        self.attic = store / "attic"
        self.root.mkdir(parents=True, exist_ok=True)
        self.attic.mkdir(exist_ok=True)
        self.limits = limits or Limits()
        self.lock = threading.RLock()
        self.counters = Counters()
        self._content: dict[int, _Content] = {}
        self._pending_ops = 0
        self._undo_bytes = 0
        # directory key -> its durable entries; only directories changed since the last
        # power loss (or mount) are here, the others are durable as they are
        self._tables: dict[int, dict[str, Entry]] = {}
        self._dir_keys: dict[int, int] = {}   # backing inode of a live directory -> key
        self._dir_modes: dict[int, tuple[int, int, int]] = {}  # key -> (mode, uid, gid)
        self._next_key = 1
        self._dir_keys[os.lstat(self.root).st_ino] = 0
        self._refs: Counter[int] = Counter()  # file inode -> durable names (recorded tables)
        self._attic: set[int] = set()
        self.armed: list[Armed] = []
        self.frozen: str | None = None  # why the device stopped (a crash point fired)
        self.overflow: str | None = None

    # -- helpers ------------------------------------------------------------------------------

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    @staticmethod
    def _parent(rel: str) -> str:
        return rel.rsplit("/", 1)[0] if "/" in rel else ""

    def _dir_key(self, ino: int) -> int:
        key = self._dir_keys.get(ino)
        if key is None:
            key = self._dir_keys[ino] = self._next_key
            self._next_key += 1
        return key

    def _entry(self, full: Path, st: os.stat_result) -> Entry:
        if stat.S_ISDIR(st.st_mode):
            return ("d", self._dir_key(st.st_ino))
        if stat.S_ISLNK(st.st_mode):
            return ("l", os.readlink(full))
        return ("f", st.st_ino)

    def _scan(self, rel: str) -> dict[str, Entry]:
        full = self.path(rel)
        out: dict[str, Entry] = {}
        with os.scandir(full) as it:
            for de in it:
                out[de.name] = self._entry(Path(de.path), de.stat(follow_symlinks=False))
        return out

    def _set_table(self, key: int, table: dict[str, Entry]) -> None:
        for kind, ident in self._tables.get(key, {}).values():
            if kind == "f":
                self._refs[int(ident)] -= 1
                if self._refs[int(ident)] <= 0:
                    del self._refs[int(ident)]
        for kind, ident in table.values():
            if kind == "f":
                self._refs[int(ident)] += 1
        self._tables[key] = table

    def _record(self, rel: str) -> None:
        """Before the first namespace change in directory `rel`: its entries are durable."""
        st = os.lstat(self.path(rel))
        key = self._dir_key(st.st_ino)
        if key not in self._tables:
            self._set_table(key, self._scan(rel))
            self._dir_modes.setdefault(key, (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))

    def _keep(self, full: Path) -> None:
        """`full` is about to lose a name: if that is the last name of a file a durable
        table still names, keep the inode alive in the attic."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_ino in self._refs \
                and st.st_ino not in self._attic:
            os.link(full, self.attic / str(st.st_ino))
            self._attic.add(st.st_ino)
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_ino not in self._refs:
            self._forget(st.st_ino)

    def _forget(self, ino: int) -> None:
        c = self._content.pop(ino, None)
        if c is not None:
            self._pending_ops -= len(c.ops)
            self._undo_bytes -= c.undo_bytes

    # -- crash points --------------------------------------------------------------------------

    def arm(self, op: str, nth: int) -> None:
        if op not in CRASH_OPS:
            raise ValueError(f"unknown crash-point operation {op!r}; expected one of {CRASH_OPS}")
        if nth < 1:
            raise ValueError(f"nth must be >= 1, got {nth}")
        self.armed.append(Armed(op, nth))

    def disarm(self) -> None:
        self.armed.clear()
        self.frozen = None

    def _gate(self, op: str, what: str) -> bool:
        """Called before every mutation. Raises EIO when the device is frozen; returns True
        when this operation is an armed crash point (the caller stops the node)."""
        if self.frozen is not None:
            raise _err(errno.EIO, f"the simulated device stopped ({self.frozen})")
        for a in self.armed:
            if a.op == op:
                a.seen += 1
                if a.seen == a.nth:
                    self.frozen = f"crash point: {op} #{a.nth} ({what})"
                    self.armed.remove(a)
                    return True
        return False

    # -- content ---------------------------------------------------------------------------------

    def _push(self, st: os.stat_result, ino: int, undo: _Undo) -> None:
        """Journal one change; `st` is the file's stat just before it (the caller's own)."""
        if st.st_nlink == 0:
            return  # no name left (an unlinked temp file): nothing a power loss brings back
        lim = self.limits
        if self._pending_ops + 1 > lim.pending_ops or \
                self._undo_bytes + len(undo.old) > lim.undo_bytes:
            self.overflow = (f"more than {lim.pending_ops} unsynced operations or "
                             f"{lim.undo_bytes} bytes of overwritten unsynced data: the node "
                             "does not fsync (the layer bounds what it remembers)")
            raise Overflow(errno.ENOSPC, self.overflow)
        c = self._content.setdefault(ino, _Content())
        c.ops.append(undo)
        c.undo_bytes += len(undo.old)
        self._pending_ops += 1
        self._undo_bytes += len(undo.old)

    def write(self, fd: int, ino: int, offset: int, data: bytes, sync: bool = False) -> int:
        with self.lock:
            if self._gate("write", f"{len(data)} bytes at {offset}"):
                raise _err(errno.EIO, self.frozen or "")
            st = os.fstat(fd)
            size = st.st_size
            old = os.pread(fd, min(len(data), size - offset), offset) if offset < size else b""
            self._push(st, ino, _Undo("write", offset, len(data), size, old))
            n = os.pwrite(fd, data, offset)
            self.counters.writes += 1
            self.counters.bytes_written += n
            if sync:
                self.counters.sync_writes += 1
                self._synced(ino)
            return n

    def truncate(self, fd: int, ino: int, size: int) -> None:
        with self.lock:
            if self._gate("truncate", f"to {size} bytes"):
                raise _err(errno.EIO, self.frozen or "")
            self._truncate(fd, ino, size)

    def _truncate(self, fd: int, ino: int, size: int) -> None:
        st = os.fstat(fd)
        cur = st.st_size
        old = os.pread(fd, cur - size, size) if size < cur else b""
        self._push(st, ino, _Undo("truncate", size, 0, cur, old))
        os.ftruncate(fd, size)
        self.counters.truncates += 1

    def fallocate(self, fd: int, ino: int, mode: int, offset: int, length: int) -> None:
        """mode 0 (may grow the file), KEEP_SIZE (no visible change) and PUNCH_HOLE."""
        keep_size, punch = 0x01, 0x02
        with self.lock:
            if mode & ~(keep_size | punch) or (mode & punch and not mode & keep_size):
                raise _err(errno.EOPNOTSUPP, f"fallocate mode {mode:#x}")
            st = os.fstat(fd)
            size = st.st_size
            if mode & punch:
                end = min(size, offset + length)
                if end > offset:
                    if self._gate("write", f"punch {end - offset} bytes at {offset}"):
                        raise _err(errno.EIO, self.frozen or "")
                    self._push(st, ino, _Undo("write", offset, end - offset, size,
                                          os.pread(fd, end - offset, offset)))
                    os.pwrite(fd, bytes(end - offset), offset)
            elif not mode & keep_size and offset + length > size:
                if self._gate("truncate", f"allocate to {offset + length} bytes"):
                    raise _err(errno.EIO, self.frozen or "")
                self._truncate(fd, ino, offset + length)

    def fsync(self, ino: int, datasync: bool) -> None:
        with self.lock:
            if self._gate("fsync", "fdatasync" if datasync else "fsync"):
                raise _err(errno.EIO, self.frozen or "")
            self.counters.fsyncs += 1
            self.counters.fdatasyncs += int(datasync)
            self._synced(ino)

    def _synced(self, ino: int) -> None:
        self._forget(ino)

    # -- names -------------------------------------------------------------------------------------

    def fsyncdir(self, rel: str | None) -> None:
        """`rel` None: a directory removed while open (nothing left to make durable)."""
        with self.lock:
            if self._gate("fsyncdir", "/" + (rel or "") if rel is not None else "(removed)"):
                raise _err(errno.EIO, self.frozen or "")
            self.counters.fsyncdirs += 1
            if rel is None:
                return
            st = os.lstat(self.path(rel))
            key = self._dir_key(st.st_ino)
            if key in self._tables:
                self._set_table(key, self._scan(rel))

    def create(self, rel: str, flags: int, mode: int, owner: tuple[int, int] | None) -> int:
        """Create (or open, without O_EXCL) `rel`; returns the backing fd."""
        with self.lock:
            full = self.path(rel)
            existed = os.path.lexists(full)
            if not existed:
                if self._gate("create", rel):
                    raise _err(errno.EIO, self.frozen or "")
                self._record(self._parent(rel))
            fd = open_backing(str(full), (flags | os.O_CREAT) & ~(os.O_APPEND | os.O_TRUNC), mode)
            try:
                st = os.fstat(fd)
                if not existed:
                    self.counters.creates += 1
                    self._forget(st.st_ino)  # a recycled inode number starts clean
                    if owner is not None:
                        os.fchown(fd, *owner)
                elif flags & os.O_TRUNC and st.st_size:
                    self.truncate(fd, st.st_ino, 0)
            except BaseException:
                os.close(fd)
                raise
            return fd

    def mkdir(self, rel: str, mode: int, owner: tuple[int, int] | None) -> None:
        with self.lock:
            if self._gate("create", rel + "/"):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(rel))
            full = self.path(rel)
            os.mkdir(full, mode)
            if owner is not None:
                os.chown(full, *owner)
            st = os.lstat(full)
            self._dir_keys.pop(st.st_ino, None)  # a recycled inode number is a new directory
            key = self._dir_key(st.st_ino)
            self._set_table(key, {})  # a new directory holds nothing durable
            self._dir_modes[key] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            self.counters.creates += 1

    def symlink(self, target: str, rel: str, owner: tuple[int, int] | None) -> None:
        with self.lock:
            if self._gate("create", rel):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(rel))
            os.symlink(target, self.path(rel))
            if owner is not None:
                os.lchown(self.path(rel), *owner)
            self.counters.creates += 1

    def unlink(self, rel: str) -> None:
        with self.lock:
            if self._gate("unlink", rel):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(rel))
            full = self.path(rel)
            self._keep(full)
            os.unlink(full)
            self.counters.unlinks += 1

    def rmdir(self, rel: str) -> None:
        with self.lock:
            if self._gate("unlink", rel + "/"):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(rel))
            self._record(rel)  # its durable entries come back with it
            full = self.path(rel)
            ino = os.lstat(full).st_ino
            os.rmdir(full)
            self._dir_keys.pop(ino, None)
            self.counters.unlinks += 1

    def link(self, src: str, dst: str) -> None:
        with self.lock:
            if self._gate("create", dst):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(dst))
            os.link(self.path(src), self.path(dst))
            self.counters.creates += 1

    def rename(self, src: str, dst: str, noreplace: bool = False) -> None:
        with self.lock:
            if self._gate("rename", f"{src} -> {dst}"):
                raise _err(errno.EIO, self.frozen or "")
            self._record(self._parent(src))
            self._record(self._parent(dst))
            s, d = self.path(src), self.path(dst)
            if noreplace and os.path.lexists(d):
                raise _err(errno.EEXIST, dst)
            try:
                dst_st: os.stat_result | None = os.lstat(d)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode) and \
                    os.path.isdir(s) and not os.path.islink(s):
                self._record(dst)  # an empty directory replaced: its durable entries stay
            elif dst_st is not None and os.path.samefile(s, d):
                return  # POSIX: renaming a name onto another name of the same file does nothing
            else:
                self._keep(d)
            os.rename(s, d)
            if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
                self._dir_keys.pop(dst_st.st_ino, None)
            self.counters.renames += 1

    # -- reports ---------------------------------------------------------------------------------

    def open_trunc(self, fd: int, ino: int) -> None:
        """An open with O_TRUNC of an existing file: a truncate to 0, journaled."""
        if os.fstat(fd).st_size:
            self.truncate(fd, ino, 0)

    def unsynced(self) -> dict[str, int]:
        """Like lazyfs's unsynced-data-report: inode -> content ops not yet fsynced, plus the
        directories whose entries changed since their last fsync."""
        with self.lock:
            out = {f"ino:{ino}": len(c.ops) for ino, c in self._content.items() if c.ops}
            out.update({f"dir:{key}": 1 for key in self._tables})
            return out

    def status(self) -> dict[str, object]:
        with self.lock:
            return {"pending_ops": self._pending_ops, "undo_bytes": self._undo_bytes,
                    "dirs_changed": len(self._tables), "frozen": self.frozen,
                    "overflow": self.overflow, "counters": self.counters.as_dict(),
                    "armed": [vars(a) for a in self.armed]}

    # -- power loss --------------------------------------------------------------------------------

    def power_loss(self, mode: PowerLossMode | str, seed: int) -> LossReport:
        """Replace the backing store by what survives; afterwards everything is durable.

        Call only when no file is open through the mount (a handle would keep writing to
        inodes the rebuilt tree no longer names)."""
        mode = PowerLossMode(mode)
        rng = random.Random(seed)
        with self.lock:
            report = LossReport(mode=str(mode), seed=seed)
            if mode is PowerLossMode.KEEP_ALL:
                self._reset()
                return report
            where = self._locations()
            durable = self._durable_tree(where)
            current = {rel for rel, _ in self._walk_current()}
            by_ino: dict[int, list[str]] = {}
            for rel, (kind, ident) in durable.items():
                if kind == "f":
                    by_ino.setdefault(int(ident), []).append(rel)
            for ino in sorted(by_ino, key=lambda i: min(by_ino[i])):
                c = self._content.get(ino)
                if c is None or not c.ops:
                    continue
                src = where.get(ino)
                if src is None:
                    continue
                outcome = self._settle(src, c.ops, mode, rng)
                report.bytes_lost += int(outcome.pop("bytes_lost") or 0)
                for rel in by_ino[ino]:
                    report.files[rel] = outcome
            report.names_lost = sorted(current - set(durable))
            report.names_restored = sorted(set(durable) - current)
            if self._tables or self._attic:
                self._rebuild(durable, where)
            self._reset()
            return report

    def _reset(self) -> None:
        self._content.clear()
        self._pending_ops = self._undo_bytes = 0
        self._set_tables_empty()
        self.armed.clear()
        self.frozen = None
        self.overflow = None
        shutil.rmtree(self.attic, ignore_errors=True)
        self.attic.mkdir(exist_ok=True)
        self._attic.clear()
        self._dir_keys = {}
        self._dir_keys[os.lstat(self.root).st_ino] = 0

    def _set_tables_empty(self) -> None:
        self._tables.clear()
        self._refs.clear()
        self._dir_modes.clear()

    def _walk_current(self) -> list[tuple[str, os.stat_result]]:
        out: list[tuple[str, os.stat_result]] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(self.path(rel)) as it:
                for de in it:
                    child = f"{rel}/{de.name}" if rel else de.name
                    st = de.stat(follow_symlinks=False)
                    out.append((child, st))
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(child)
        return out

    def _locations(self) -> dict[int, Path]:
        """A backing path for every live file inode (current names first, then the attic)."""
        where: dict[int, Path] = {}
        for ino in self._attic:
            where[ino] = self.attic / str(ino)
        for rel, st in self._walk_current():
            if stat.S_ISREG(st.st_mode):
                where[st.st_ino] = self.path(rel)
        return where

    def _durable_tree(self, where: dict[int, Path]) -> dict[str, Entry]:
        """Path -> entry of everything a power loss leaves, from the root's durable table."""
        dir_path: dict[int, str] = {0: ""}
        for rel, st in self._walk_current():
            if stat.S_ISDIR(st.st_mode):
                # a key for every live directory now: scanning an unchanged parent below
                # would otherwise give it a key missing from dir_path (its files lost)
                key = self._dir_key(st.st_ino)
                dir_path[key] = rel
                # metadata is durable at once: a live directory's mode and owner are its
                # current ones (a chmod after its mkdir), not those recorded then
                self._dir_modes[key] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        out: dict[str, Entry] = {}
        stack: list[tuple[str, int]] = [("", 0)]
        while stack:
            rel, key = stack.pop()
            table = self._tables.get(key)
            if table is None:  # unchanged since the last power loss: durable as it is
                table = self._scan(dir_path[key]) if key in dir_path else {}
            for name, (kind, ident) in table.items():
                child = f"{rel}/{name}" if rel else name
                if kind == "f" and int(ident) not in where:
                    continue  # cannot happen while the attic holds every durable inode
                out[child] = (kind, ident)
                if kind == "d":
                    stack.append((child, int(ident)))
        return out

    def _rebuild(self, durable: dict[str, Entry], where: dict[int, Path]) -> None:
        new = self.store / "root.new"
        old = self.store / "root.old"
        for p in (new, old):
            shutil.rmtree(p, ignore_errors=True)
        st = os.lstat(self.root)
        os.mkdir(new)
        os.chmod(new, stat.S_IMODE(st.st_mode))
        os.chown(new, st.st_uid, st.st_gid)
        for rel in sorted(durable):  # parents sort before their children
            kind, ident = durable[rel]
            target = new / rel
            if kind == "d":
                mode, uid, gid = self._dir_modes.get(int(ident), (0o755, st.st_uid, st.st_gid))
                os.mkdir(target)
                os.chmod(target, mode)
                os.chown(target, uid, gid)
            elif kind == "l":
                os.symlink(str(ident), target)
            else:
                os.link(where[int(ident)], target)
        # one atomic swap: the mount root must be a directory at every moment, for a node
        # process started ahead of need may stat it (create its data directory) meanwhile
        if _exchange(new, self.root):
            shutil.rmtree(new, ignore_errors=True)
            return
        os.rename(self.root, old)  # no RENAME_EXCHANGE here: a moment without a root
        os.rename(new, self.root)
        shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _settle(path: Path, ops: list[_Undo], mode: PowerLossMode,
                rng: random.Random) -> dict[str, int | None]:
        """Undo the ops a power loss in `mode` drops, newest first; returns the report row."""
        n = len(ops)
        torn: int | None = None
        if mode is PowerLossMode.DROP_ALL:
            keep = 0
        elif mode is PowerLossMode.RANDOM_PREFIX:
            keep = rng.randint(0, n)
        else:  # TORN_LAST: all but the last; the last survives as a byte prefix (or whole /
            keep = n - 1  # not at all, for a truncate)
        fd = os.open(path, os.O_RDWR)
        try:
            lost = 0
            tail: bytes | None = None
            for i in range(n - 1, keep - 1, -1):
                u = ops[i]
                if mode is PowerLossMode.TORN_LAST and i == n - 1:
                    if u.kind == "truncate":
                        tail = None if rng.random() < 0.5 else b""
                        if tail is None:
                            continue  # the truncate survives whole
                    else:
                        data = os.pread(fd, u.length, u.offset)
                        torn = rng.randrange(u.length) if u.length else 0
                        tail = data[:torn]
                lost += u.length
                os.ftruncate(fd, u.old_size)
                if u.old:
                    os.pwrite(fd, u.old, u.offset)
            if tail:
                os.pwrite(fd, tail, ops[-1].offset)
                lost -= len(tail)
            kept_ops = keep + (1 if mode is PowerLossMode.TORN_LAST and tail is None
                               and ops[-1].kind == "truncate" else 0)
        finally:
            os.close(fd)
        return {"ops_pending": n, "ops_kept": kept_ops, "torn_bytes": torn, "bytes_lost": lost}
