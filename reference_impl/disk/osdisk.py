"""`Disk` on the real filesystem, under a root directory.

It cannot simulate a power loss; what a real fsync guarantees is up to the OS and
the device. It exists so the node runs for real and so benchmarks count real
fsyncs. Not thread-safe: one node owns one disk.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from .base import Disk, DiskStats, FaultInjector, normalize


def _write_all(f: io.FileIO, data: bytes) -> None:
    # An unbuffered FileIO.write is one write(2): it may write fewer bytes than asked.
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None:  # only for non-blocking files, which these are not
            raise BlockingIOError(f"write to {f.name!r} would block")
        view = view[n:]


def _fsync_dir_at(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OSDisk(FaultInjector, Disk):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stats = DiskStats()
        # Open append handles by normalized path: the store's hot path is
        # append + fsync many times, and reopening the file each call is a syscall
        # pair per entry. Unbuffered, so every append reaches the OS at once and
        # survives a process crash (KEEP_ALL) like any other write.
        self._handles: dict[str, io.FileIO] = {}

    def _abs(self, path: str) -> Path:
        rel = normalize(path)
        return self.root / rel if rel else self.root

    def _drop_handle(self, path: str) -> None:
        # Called before anything that replaces or moves the inode behind a name, so
        # a later append never goes to a stale inode.
        handle = self._handles.pop(path, None)
        if handle is not None:
            handle.close()

    def makedirs(self, path: str) -> None:
        path = normalize(path)
        self._inject("makedirs", path)
        # Create one level at a time and fsync the parent of each new directory, so
        # that directory creation really is durable immediately, as the Disk
        # contract says. These fsyncs are setup, not protocol, so they are not
        # counted in stats (SimDisk does not count them either).
        current = self.root
        for part in Path(path).parts:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                if not current.is_dir():
                    raise
                continue
            _fsync_dir_at(current.parent)

    def exists(self, path: str) -> bool:
        path = normalize(path)
        self._inject("exists", path)
        return self._abs(path).exists()

    def _exists_quietly(self, path: str) -> bool:
        path = normalize(path)
        return self._abs(path).exists()

    def listdir(self, path: str) -> list[str]:
        path = normalize(path)
        self._inject("listdir", path)
        return sorted(os.listdir(self._abs(path)))

    def read(self, path: str) -> bytes:
        path = normalize(path)
        self._inject("read", path)
        return self._abs(path).read_bytes()

    def size(self, path: str) -> int:
        path = normalize(path)
        self._inject("size", path)
        return os.stat(self._abs(path)).st_size

    def write(self, path: str, data: bytes) -> None:
        path = normalize(path)
        self._inject("write", path)
        self._drop_handle(path)
        with open(self._abs(path), "wb", buffering=0) as f:
            _write_all(f, data)
        self.stats.bytes_written += len(data)

    def append(self, path: str, data: bytes) -> None:
        path = normalize(path)
        self._inject("append", path)
        handle = self._handles.get(path)
        if handle is None:
            handle = open(self._abs(path), "ab", buffering=0)  # noqa: SIM115 - cached
            self._handles[path] = handle
        _write_all(handle, data)
        self.stats.bytes_written += len(data)

    def truncate(self, path: str, size: int) -> None:
        path = normalize(path)
        self._inject("truncate", path)
        self._drop_handle(path)
        os.truncate(self._abs(path), size)

    def fsync(self, path: str) -> None:
        path = normalize(path)
        self._inject("fsync", path)
        handle = self._handles.get(path)
        if handle is not None:
            os.fsync(handle.fileno())
        else:
            # fsync flushes the inode whatever the fd's access mode; read-only will do.
            fd = os.open(self._abs(path), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.stats.fsyncs += 1

    def fsync_dir(self, path: str) -> None:
        path = normalize(path)
        self._inject("fsync_dir", path)
        _fsync_dir_at(self._abs(path))
        self.stats.dir_fsyncs += 1

    def rename(self, src: str, dst: str) -> None:
        src, dst = normalize(src), normalize(dst)
        self._inject("rename", src, dst)
        self._drop_handle(src)
        self._drop_handle(dst)
        os.replace(self._abs(src), self._abs(dst))

    def remove(self, path: str) -> None:
        path = normalize(path)
        self._inject("remove", path)
        self._drop_handle(path)
        os.remove(self._abs(path))

    def close(self) -> None:
        for path in list(self._handles):
            self._drop_handle(path)

    def __repr__(self) -> str:
        return f"OSDisk({str(self.root)!r})"
