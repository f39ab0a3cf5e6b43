"""An in-memory `Disk` that can lose power, modelled on Pebble's vfs.NewStrictMem and LazyFS.

Two things can be lost in a power loss, and they are tracked separately:

* **content**: each file is an inode holding `durable` bytes (what its last fsync
  made durable), `data` (the current content) and `pending`, the ordered operations
  since that fsync. Replaying a prefix of `pending` on top of `durable` gives every
  content a power loss can leave behind.
* **names**: `_names` maps each current path to its inode; `_durable_names` is what
  the directories say after a power loss. Only `fsync_dir(d)` copies the entries
  whose parent is `d` from one to the other. Two paths may share an inode: after an
  un-synced cross-directory rename where only the destination directory was
  fsynced, both names survive, like a hard link.

Directories are a flat set of paths, created durably by `makedirs` and never removed.
"""

from __future__ import annotations

import copy
import errno
import os
import random
from dataclasses import dataclass, field
from typing import TypeAlias

from .base import Disk, DiskStats, FaultInjector, PowerLossMode, normalize, parent

# unsynced_report() key prefix for a name whose directory entry is not durable yet.
DIRENT_PREFIX = "dirent:"


@dataclass(frozen=True)
class _Append:
    data: bytes


@dataclass(frozen=True)
class _Write:
    """write(): truncate to 0, then write data. One op, so a tear leaves a short file."""

    data: bytes


@dataclass(frozen=True)
class _Truncate:
    size: int


_Op: TypeAlias = _Append | _Write | _Truncate


def _apply(content: bytes, op: _Op) -> bytes:
    if isinstance(op, _Append):
        return content + op.data
    if isinstance(op, _Write):
        return op.data
    return content[: op.size] + bytes(max(0, op.size - len(content)))


def _torn(op: _Append | _Write, keep: int) -> _Op:
    """The op as if only its first `keep` bytes reached the device."""
    return _Append(op.data[:keep]) if isinstance(op, _Append) else _Write(op.data[:keep])


class _Inode:
    """A file: current content, durable content, and the ops since the last fsync.

    Appends are the hot path (the store appends a record per batch and may fsync after
    each), so both must stay O(bytes appended): `data` grows in place, and while every
    op since the last fsync is an append the durable content is just a prefix of
    `data` (`_durable is None`, `_durable_len` bytes) rather than a copy.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.pending: list[_Op] = []
        self._durable: bytes | None = b""
        self._durable_len = 0

    @property
    def durable(self) -> bytes:
        if self._durable is None:
            return bytes(self.data[: self._durable_len])
        return self._durable

    def do(self, op: _Op) -> None:
        if isinstance(op, _Append):
            self.data += op.data
        else:
            if self._durable is None:  # data is about to stop extending the durable prefix
                self._durable = bytes(self.data[: self._durable_len])
            self.data = bytearray(_apply(bytes(self.data), op))
        self.pending.append(op)

    def sync(self) -> None:
        self._durable = None
        self._durable_len = len(self.data)
        self.pending.clear()

    def reset(self, content: bytes) -> None:
        """After a power loss: this content is all there is, and it is durable."""
        self.data = bytearray(content)
        self.sync()


@dataclass
class PowerLossReport:
    """What a power loss did.

    files_affected: per surviving path whose inode had unsynced ops,
    (ops_pending, ops_kept, torn_bytes_kept). ops_kept counts ops kept whole;
    torn_bytes_kept is the number of bytes kept of the next op (TORN_LAST only,
    when that op is a byte write), else None.
    names_lost: current names gone after the power loss.
    names_restored: names back after the power loss (a remove or rename-away that
    was not dir-fsynced).
    names_reverted: names that survive but are bound to another file than before
    (a rename over an existing name that was not dir-fsynced).
    """

    mode: PowerLossMode
    files_affected: dict[str, tuple[int, int, int | None]] = field(default_factory=dict)
    names_lost: list[str] = field(default_factory=list)
    names_restored: list[str] = field(default_factory=list)
    names_reverted: list[str] = field(default_factory=list)


def _enoent(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


class SimDisk(FaultInjector, Disk):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.stats = DiskStats()
        self._dirs: set[str] = {""}
        self._names: dict[str, _Inode] = {}
        self._durable_names: dict[str, _Inode] = {}
        # Owned by the disk so that a run is reproducible from its seed alone.
        self._rng = random.Random(seed)

    # -- lookups ---------------------------------------------------------------

    def _file(self, path: str) -> _Inode:
        inode = self._names.get(path)
        if inode is None:
            if path in self._dirs:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            raise _enoent(path)
        return inode

    def _require_dir(self, path: str) -> None:
        if path not in self._dirs:
            if path in self._names:
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            raise _enoent(path)

    def _file_or_new(self, path: str) -> _Inode:
        """The file at `path`, created empty if missing (its name not durable yet)."""
        if path in self._dirs:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        inode = self._names.get(path)
        if inode is None:
            self._require_dir(parent(path))
            inode = self._names[path] = _Inode()
        return inode

    # -- the Disk protocol -----------------------------------------------------

    def makedirs(self, path: str) -> None:
        path = normalize(path)
        self._inject("makedirs", path)
        while path not in self._dirs:
            if path in self._names:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            self._dirs.add(path)
            path = parent(path)

    def exists(self, path: str) -> bool:
        path = normalize(path)
        self._inject("exists", path)
        return path in self._names or path in self._dirs

    def _exists_quietly(self, path: str) -> bool:
        path = normalize(path)
        return path in self._names or path in self._dirs

    def listdir(self, path: str) -> list[str]:
        path = normalize(path)
        self._inject("listdir", path)
        self._require_dir(path)
        children = [p for p in (*self._names, *self._dirs) if p and parent(p) == path]
        return sorted(p.rsplit("/", 1)[-1] for p in children)

    def read(self, path: str) -> bytes:
        path = normalize(path)
        self._inject("read", path)
        return bytes(self._file(path).data)

    def size(self, path: str) -> int:
        path = normalize(path)
        self._inject("size", path)
        return len(self._file(path).data)

    def write(self, path: str, data: bytes) -> None:
        path = normalize(path)
        self._inject("write", path)
        self._file_or_new(path).do(_Write(bytes(data)))
        self.stats.bytes_written += len(data)

    def append(self, path: str, data: bytes) -> None:
        path = normalize(path)
        self._inject("append", path)
        self._file_or_new(path).do(_Append(bytes(data)))
        self.stats.bytes_written += len(data)

    def truncate(self, path: str, size: int) -> None:
        path = normalize(path)
        self._inject("truncate", path)
        if size < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        self._file(path).do(_Truncate(size))

    def fsync(self, path: str) -> None:
        path = normalize(path)
        self._inject("fsync", path)
        self._file(path).sync()
        self.stats.fsyncs += 1

    def fsync_dir(self, path: str) -> None:
        path = normalize(path)
        self._inject("fsync_dir", path)
        self._require_dir(path)
        for name in {*self._names, *self._durable_names}:
            if parent(name) != path:
                continue
            if name in self._names:
                self._durable_names[name] = self._names[name]
            else:
                del self._durable_names[name]
        self.stats.dir_fsyncs += 1

    def rename(self, src: str, dst: str) -> None:
        """Files only: directories are never renamed in this model."""
        src, dst = normalize(src), normalize(dst)
        self._inject("rename", src, dst)
        inode = self._file(src)
        if dst in self._dirs:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dst)
        self._require_dir(parent(dst))
        if src != dst:
            del self._names[src]
            self._names[dst] = inode

    def remove(self, path: str) -> None:
        path = normalize(path)
        self._inject("remove", path)
        self._file(path)
        # Only the name goes: the inode lives on while the durable namespace
        # still references it, and comes back if the removal is not dir-fsynced.
        del self._names[path]

    def close(self) -> None:
        """Nothing is cached in memory."""

    # -- simulation ------------------------------------------------------------

    def power_loss(self, mode: PowerLossMode, rng: random.Random | None = None) -> PowerLossReport:
        """Replace the disk by what survives a power loss (or, KEEP_ALL, a process crash).

        Afterwards everything is durable: no pending ops, durable names = names.
        Files are visited in sorted path order, so the result depends only on the
        rng state and the operations done.
        """
        mode = PowerLossMode(mode)
        rng = self._rng if rng is None else rng
        report = PowerLossReport(mode=mode)
        survivors = dict(self._names if mode is PowerLossMode.KEEP_ALL else self._durable_names)

        for name in sorted(self._names):
            if name not in survivors:
                report.names_lost.append(name)
            elif survivors[name] is not self._names[name]:
                report.names_reverted.append(name)
        report.names_restored = sorted(set(survivors) - set(self._names))

        # An inode reachable by two names is decided once; each name reports it.
        outcome: dict[int, tuple[int, int, int | None]] = {}
        for name in sorted(survivors):
            inode = survivors[name]
            if not inode.pending:
                continue
            if id(inode) not in outcome:
                outcome[id(inode)] = self._settle(inode, mode, rng)
            report.files_affected[name] = outcome[id(inode)]

        self._names = survivors
        self._durable_names = dict(survivors)
        for inode in survivors.values():
            inode.sync()
        return report

    def allowed_after_power_loss(self, mode: PowerLossMode | str) -> dict[str, list[bytes]]:
        """Every outcome `power_loss(mode)` may have, without doing it (read-only).

        Returns surviving path -> each content that path may hold afterwards (no
        duplicates): KEEP_ALL the current names and contents; DROP_ALL the durable names
        and contents; RANDOM_PREFIX the durable names, each with its durable content plus
        any prefix (0..n) of its pending ops; TORN_LAST the durable names, each with all
        pending ops but the last, plus a strict byte prefix of the last (a truncate kept
        or dropped whole). Names sharing an inode settle together in `power_loss` (one
        draw per inode); this per-path view does not express that coupling.
        """
        mode = PowerLossMode(mode)
        survivors = self._names if mode is PowerLossMode.KEEP_ALL else self._durable_names
        out: dict[str, list[bytes]] = {}
        for name in sorted(survivors):
            inode = survivors[name]
            ops = inode.pending
            content = inode.durable
            options: list[bytes]
            if mode is PowerLossMode.KEEP_ALL:
                options = [bytes(inode.data)]
            elif mode is PowerLossMode.DROP_ALL or not ops:
                options = [content]
            elif mode is PowerLossMode.RANDOM_PREFIX:
                options = [content]
                for op in ops:
                    content = _apply(content, op)
                    options.append(content)
            else:  # TORN_LAST, as _settle draws it
                for op in ops[:-1]:
                    content = _apply(content, op)
                last = ops[-1]
                if isinstance(last, _Truncate):
                    options = [content, _apply(content, last)]
                else:
                    options = [_apply(content, _torn(last, k)) for k in range(max(1, len(last.data)))]
            out[name] = list(dict.fromkeys(options))
        return out

    @staticmethod
    def _settle(
        inode: _Inode, mode: PowerLossMode, rng: random.Random
    ) -> tuple[int, int, int | None]:
        """Set inode.data to what survives of its pending ops; returns the report tuple."""
        ops = inode.pending
        n = len(ops)
        kept: list[_Op]
        torn: int | None = None
        if mode is PowerLossMode.DROP_ALL:
            kept = []
        elif mode is PowerLossMode.KEEP_ALL:
            kept = list(ops)
        elif mode is PowerLossMode.RANDOM_PREFIX:
            kept = ops[: rng.randint(0, n)]
        else:  # TORN_LAST
            kept = ops[:-1]
            last = ops[-1]
            if isinstance(last, _Truncate):
                # Not a byte write: kept or dropped whole.
                if rng.random() < 0.5:
                    kept.append(last)
            else:
                # A strict prefix: randrange(0) would fail, and an empty op has no tear.
                torn = rng.randrange(len(last.data)) if last.data else 0
                kept.append(_torn(last, torn))
        content = inode.durable
        for op in kept:
            content = _apply(content, op)
        inode.reset(content)
        ops_kept = len(kept) - (1 if torn is not None else 0)
        return n, ops_kept, torn

    def unsynced_report(self) -> dict[str, int]:
        """What a power loss could lose now, like lazyfs::unsynced-data-report.

        `path -> n`: the current file `path` has n content ops not yet fsynced.
        `"dirent:" + path -> 1`: the directory entry `path` is not durable yet (a
        create or rename-in, a rename over another file, or a remove or rename-away).
        """
        report = {name: len(inode.pending) for name, inode in self._names.items() if inode.pending}
        for name in {*self._names, *self._durable_names}:
            if self._names.get(name) is not self._durable_names.get(name):
                report[DIRENT_PREFIX + name] = 1
        return dict(sorted(report.items()))

    def clone(self) -> SimDisk:
        """A deep, independent copy: same files, names, pending ops, stats, armed
        faults and rng state. deepcopy's memo keeps inodes shared between the two
        namespaces shared in the copy too."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return f"SimDisk(files={len(self._names)}, unsynced={len(self.unsynced_report())})"
