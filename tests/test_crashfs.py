"""The crash-simulating filesystem (conformance/faults/crashfs) through a real mount.

One behaviour per test: which requests make data and names durable (and which do not),
what a power loss takes back, crash points, bounded memory, ownership for another uid,
determinism of the seeded modes, and the harness side (refusals, a dying layer, close).
The model they check is the strict POSIX one of `reference_impl/disk/simdisk.py`;
tests/test_crashfs_differential.py checks the layer against it on random sequences.

Without FUSE they are skipped with the reason, except under CI=true, where they fail:
the product must not lose this coverage silently.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import mmap
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _crashfs import needs_crashfs, require_crashfs

from conformance.faults.crashfs import CRASH_OPS, ControlError, CrashFS, LayerError, available
from conformance.faults.crashfs.journal import Journal

OTHER_UID = 10001
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
CHILD_TIMEOUT = 30.0


pytestmark = needs_crashfs


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[CrashFS]:
    """A fresh layer per test (mounting takes ~0.2 s): its counters start at zero."""
    require_crashfs()
    with CrashFS.create(tmp_path / "layer") as layer:
        yield layer


# -- helpers ---------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable(path: Path, data: bytes) -> Path:
    """Create (or replace) `path` through the mount with `data`, durable with its name."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync(path.parent)
    return path


def _pwrite(path: Path, data: bytes, offset: int, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | flags)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


def _errno(fn: Callable[[], object]) -> int | None:
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return None


def _sync_file_range() -> Callable[[int, int, int, int], None] | None:
    """os.sync_file_range, or glibc's through ctypes (Python has no wrapper); None if absent."""
    fn = getattr(os, "sync_file_range", None)
    if fn is not None:
        return fn  # type: ignore[no-any-return]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        c_fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    c_fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    c_fn.restype = ctypes.c_int

    def call(fd: int, offset: int, nbytes: int, flags: int) -> None:
        if c_fn(fd, offset, nbytes, flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    return call


# WAIT_BEFORE | WRITE | WAIT_AFTER: the strongest sync_file_range, still not durable
SYNC_FILE_RANGE_ALL = 1 | 2 | 4


# -- what makes data durable -------------------------------------------------------------------

BASE = b"0123456789"
NEW = b"abc"  # written at offset 2: "01abc56789"


def _write_then(sync: Callable[[int], None]) -> Callable[[Path], None]:
    """Write NEW at offset 2 through a fresh handle, then `sync` it (fsync or fdatasync)."""
    def run(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, NEW, 2)
            sync(fd)
        finally:
            os.close(fd)
    return run


_fsync_after = _write_then(os.fsync)
_fdatasync_after = _write_then(os.fdatasync)


def _rwf_dsync(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwritev(fd, [NEW], 2, os.RWF_DSYNC) == len(NEW)
    finally:
        os.close(fd)


def _msync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(fd, len(BASE)) as m:
            m[2:2 + len(NEW)] = NEW
            m.flush()  # msync(MS_SYNC)
    finally:
        os.close(fd)


SYNCED: dict[str, Callable[[Path], None]] = {
    "fsync": _fsync_after,
    "fdatasync": _fdatasync_after,
    "O_SYNC": lambda p: _pwrite(p, NEW, 2, os.O_SYNC),
    "O_DSYNC": lambda p: _pwrite(p, NEW, 2, os.O_DSYNC),
    "RWF_DSYNC": _rwf_dsync,
    "msync": _msync,
}


@pytest.mark.parametrize("how", list(SYNCED))
def test_synced_write_survives_drop_all(fs: CrashFS, how: str) -> None:
    f = _durable(fs.mountpoint / "f", BASE)
    SYNCED[how](f)
    assert fs.status()["pending_ops"] == 0, f"{how} left the write pending"
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == b"01abc56789"


def test_plain_write_is_lost_by_drop_all(fs: CrashFS) -> None:
    f = _durable(fs.mountpoint / "f", BASE)
    _pwrite(f, NEW, 2)
    assert f.read_bytes() == b"01abc56789"
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == BASE


def test_sync_file_range_is_not_durable(fs: CrashFS) -> None:
    """sync_file_range writes pages back but flushes no metadata nor the device cache: it
    is not a durability barrier (it never reaches a FUSE daemon either)."""
    sfr = _sync_file_range()
    if sfr is None:
        pytest.skip("no sync_file_range on this platform")
    f = _durable(fs.mountpoint / "f", BASE)
    fd = os.open(f, os.O_WRONLY)
    try:
        os.pwrite(fd, NEW, 2)
        sfr(fd, 0, 0, SYNC_FILE_RANGE_ALL)
    finally:
        os.close(fd)
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == BASE


def test_os_sync_does_not_reach_the_layer(fs: CrashFS) -> None:
    """Known FUSE limitation: sync(2) and syncfs(2) make everything durable on a real Linux
    filesystem, but the kernel does not forward them to a FUSE daemon (FUSE_SYNCFS is sent
    only to virtiofs), so through the layer they make nothing durable. A node relying on
    sync() alone is treated as if it never synced: stricter than a real disk, never laxer.
    This test pins the limitation down; it fails the day the kernel starts forwarding it."""
    f = _durable(fs.mountpoint / "f", BASE)
    _pwrite(f, NEW, 2)
    before = fs.counters()["syncs"]
    os.sync()
    assert fs.counters()["syncs"] == before
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == BASE


# -- names --------------------------------------------------------------------------------------


def test_fsynced_file_in_unsynced_directory_is_gone_after_drop_all(fs: CrashFS) -> None:
    """The LazyFS gap: fsync of a new file does not make its name durable; only an fsync
    of its directory does."""
    mnt = fs.mountpoint
    for d in ("lost", "kept"):
        os.mkdir(mnt / d)
    _fsync(mnt)
    for d in ("lost", "kept"):
        fd = os.open(mnt / d / "f", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"data")
        os.fsync(fd)
        os.close(fd)
    _fsync(mnt / "kept")
    fs.power_loss("drop_all", seed=1)
    assert not (mnt / "lost" / "f").exists()
    assert (mnt / "kept" / "f").read_bytes() == b"data"


def _unlink(mnt: Path) -> None:
    os.unlink(mnt / "f")


def _rename_away(mnt: Path) -> None:
    os.rename(mnt / "f", mnt / "g")


def _rename_over(mnt: Path) -> None:
    (mnt / "tmp").write_bytes(b"replacement")
    os.rename(mnt / "tmp", mnt / "f")


@pytest.mark.parametrize("change", [_unlink, _rename_away, _rename_over],
                         ids=["unlink", "rename_away", "rename_over"])
def test_name_change_without_directory_fsync_is_undone(
        fs: CrashFS, change: Callable[[Path], None]) -> None:
    mnt = fs.mountpoint
    f = _durable(mnt / "f", b"durable")
    _pwrite(f, b"DUR", 0)  # unsynced content: lost with the name change
    change(mnt)
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["f"]
    assert f.read_bytes() == b"durable"


def test_name_change_with_directory_fsync_is_durable(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    _durable(mnt / "f", b"f")
    _durable(mnt / "g", b"g")
    os.rename(mnt / "f", mnt / "g")
    _fsync(mnt)
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["g"]
    assert (mnt / "g").read_bytes() == b"f"


def test_mkdir_and_rmdir_durability(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    os.mkdir(mnt / "unsynced")
    os.mkdir(mnt / "synced")
    os.mkdir(mnt / "removed")
    _fsync(mnt)
    os.mkdir(mnt / "late")  # after the fsync of the root: not durable
    _durable(mnt / "synced" / "f", b"inside")
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["removed", "synced", "unsynced"]
    assert (mnt / "synced" / "f").read_bytes() == b"inside"

    os.rmdir(mnt / "removed")  # without an fsync of the root: comes back
    os.rmdir(mnt / "unsynced")
    _fsync(mnt)  # now both removals are durable ...
    os.mkdir(mnt / "removed")
    os.rmdir(mnt / "removed")  # ... and a create + remove cycle leaves nothing
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["synced"]

    os.unlink(mnt / "synced" / "f")
    os.rmdir(mnt / "synced")  # neither removal fsynced: the directory and its file return
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["synced"]
    assert (mnt / "synced" / "f").read_bytes() == b"inside"


def test_directory_rename_durability(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    os.mkdir(mnt / "a")
    _fsync(mnt)
    _durable(mnt / "a" / "f", b"in a")
    os.rename(mnt / "a", mnt / "b")  # not durable: comes back as a, with its file
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["a"]
    assert (mnt / "a" / "f").read_bytes() == b"in a"
    os.rename(mnt / "a", mnt / "b")
    _fsync(mnt)
    fs.power_loss("drop_all", seed=1)
    assert sorted(os.listdir(mnt)) == ["b"]
    assert (mnt / "b" / "f").read_bytes() == b"in a"


def test_a_name_gets_its_durable_type_back(fs: CrashFS) -> None:
    """A durable file replaced by a directory (and the reverse) without a directory fsync:
    the kernel must see the old type again, not a stale inode (EIO)."""
    mnt = fs.mountpoint
    _durable(mnt / "was_file", b"file")
    os.mkdir(mnt / "was_dir")
    _fsync(mnt)
    os.unlink(mnt / "was_file")
    os.mkdir(mnt / "was_file")
    (mnt / "was_file" / "inner").write_bytes(b"x")
    os.rmdir(mnt / "was_dir")
    (mnt / "was_dir").write_bytes(b"now a file")
    fs.power_loss("drop_all", seed=1)
    assert (mnt / "was_file").read_bytes() == b"file"
    assert (mnt / "was_dir").is_dir() and os.listdir(mnt / "was_dir") == []


def test_symlink_durability(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    for d in ("synced", "unsynced"):
        os.mkdir(mnt / d)
    _fsync(mnt)
    for d in ("synced", "unsynced"):
        os.symlink("../target", mnt / d / "link")
    _fsync(mnt / "synced")
    fs.power_loss("drop_all", seed=1)
    assert os.readlink(mnt / "synced" / "link") == "../target"
    assert not os.path.lexists(mnt / "unsynced" / "link")


def test_created_files_and_directories_get_the_mode_their_creator_asked_for(
        fs: CrashFS) -> None:
    """The kernel applies the creator's umask; the layer must not apply its own on top
    (a node, or a container user sharing a group, relies on the modes it asked for)."""
    mnt = fs.mountpoint
    for umask, dir_mode, file_mode in ((0, 0o777, 0o666), (0o027, 0o750, 0o640)):
        old = os.umask(umask)
        try:
            d = mnt / f"umask{umask:o}"
            os.mkdir(d, 0o777)
            os.close(os.open(d / "f", os.O_WRONLY | os.O_CREAT, 0o666))
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(d).st_mode) == dir_mode
        assert stat.S_IMODE(os.stat(d / "f").st_mode) == file_mode


def test_metadata_is_durable_at_once(fs: CrashFS) -> None:
    """The layer models content and names, not metadata: modes and owners set through the
    mount survive a power loss as they are, also when it rebuilds the tree (here: because
    a name changed), so a node running as another uid can still use its directory."""
    mnt = fs.mountpoint
    os.mkdir(mnt / "d", 0o700)
    _durable(mnt / "d" / "f", b"f")
    _fsync(mnt)
    os.chmod(mnt / "d", 0o777)
    os.chmod(mnt / "d" / "f", 0o604)
    os.chown(mnt / "d" / "f", OTHER_UID, OTHER_UID)
    (mnt / "d" / "new").write_bytes(b"not durable")  # a name change: the tree is rebuilt
    fs.power_loss("drop_all", seed=1)
    assert os.listdir(mnt / "d") == ["f"]
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o777
    st = os.stat(mnt / "d" / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o604, OTHER_UID, OTHER_UID)


def _utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    libc = ctypes.CDLL(None, use_errno=True)
    times = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if libc.utimensat(-100, os.fsencode(path), times, 0) != 0:  # AT_FDCWD
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def test_utime_now_and_omit(fs: CrashFS) -> None:
    """touch: UTIME_NOW sets the current time; UTIME_OMIT leaves that time as it is (libfuse
    passes both as special timespecs that must not be taken for times near 1970)."""
    f = _durable(fs.mountpoint / "f", b"x")
    os.utime(f, ns=(10**18, 2 * 10**18))
    assert (os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns) == (10**18, 2 * 10**18)
    _utimensat(f, (0, UTIME_OMIT), (7, 0))  # touch -m -d @7
    assert (os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns) == (10**18, 7 * 10**9)
    before = time.time_ns() - 10**9
    os.utime(f)  # utimensat(NULL): both now
    st = os.stat(f)
    assert st.st_atime_ns >= before and st.st_mtime_ns >= before
    _utimensat(f, (5, 0), (0, UTIME_NOW))
    st = os.stat(f)
    assert st.st_atime_ns == 5 * 10**9 and st.st_mtime_ns >= before


# -- content operations -----------------------------------------------------------------------


def test_o_append_writes_land_at_the_end(fs: CrashFS) -> None:
    """The kernel turns an O_APPEND write into a write at the end; the backing file is
    opened without O_APPEND, so that offset is honoured (and pwrite appends too)."""
    f = _durable(fs.mountpoint / "f", b"abc")
    a = os.open(f, os.O_WRONLY | os.O_APPEND)
    b = os.open(f, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(a, 0, os.SEEK_SET)
        os.write(a, b"1")
        os.write(b, b"22")
        os.write(a, b"333")
        os.pwrite(b, b"4", 0)  # Linux: pwrite on an O_APPEND descriptor appends
    finally:
        os.close(a)
        os.close(b)
    assert f.read_bytes() == b"abc1223334"
    assert (fs.store / "root" / "f").read_bytes() == b"abc1223334"
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == b"abc"


def test_o_trunc_open_is_rolled_back_by_drop_all(fs: CrashFS) -> None:
    f = _durable(fs.mountpoint / "f", b"keep me")
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    assert f.read_bytes() == b""
    _durable(fs.mountpoint / "g", b"and me")
    _pwrite(fs.mountpoint / "g", b"new", 0, os.O_TRUNC)
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == b"keep me"
    assert (fs.mountpoint / "g").read_bytes() == b"and me"


def test_truncate_is_rolled_back_by_drop_all(fs: CrashFS) -> None:
    f = _durable(fs.mountpoint / "f", b"0123456789")
    os.truncate(f, 4)
    os.truncate(f, 20)
    assert f.read_bytes() == b"0123" + bytes(16)
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == b"0123456789"


def test_fallocate_works_and_is_rolled_back(fs: CrashFS) -> None:
    f = _durable(fs.mountpoint / "f", b"abc")
    fd = os.open(f, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 8192)
        assert os.fstat(fd).st_size == 8192
        os.posix_fallocate(fd, 0, 100)  # within the size: no visible change
    finally:
        os.close(fd)
    assert f.read_bytes() == b"abc" + bytes(8189)
    fs.power_loss("drop_all", seed=1)
    assert f.read_bytes() == b"abc"


def test_hard_links_share_content_and_journal(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    a = _durable(mnt / "a", b"one")
    os.link(a, mnt / "b")
    _fsync(mnt)
    _pwrite(mnt / "b", b"two", 0)
    assert a.read_bytes() == b"two"
    assert fs.status()["pending_ops"] == 1
    _fsync(a)  # fsync through the other name: the same inode, the same journal
    assert fs.status()["pending_ops"] == 0
    _pwrite(a, b"333", 0)
    fs.power_loss("drop_all", seed=1)
    assert a.read_bytes() == (mnt / "b").read_bytes() == b"two"
    sa, sb = os.stat(a), os.stat(mnt / "b")
    assert sa.st_ino == sb.st_ino and sa.st_nlink == 2


# -- ownership -----------------------------------------------------------------------------------

CHILD_AS_OTHER = textwrap.dedent("""
    import os, sys
    p = sys.argv[1]
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"mine")
    os.fsync(fd)
    os.close(fd)
    with open(p, "ab") as f:
        f.write(b"+more")
        f.flush()
        os.fsync(f.fileno())
    d = os.open(os.path.dirname(p), os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    print(os.stat(p).st_uid, open(p, "rb").read().decode())
""")


def _python_for(uid: int) -> str | None:
    """A python interpreter `uid` can run (this one may live under root's 0700 home)."""
    for exe in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if not exe:
            continue
        try:
            with_uid = subprocess.run([exe, "-c", "pass"], user=uid, group=uid, extra_groups=[],
                                      cwd="/", capture_output=True, timeout=CHILD_TIMEOUT,
                                      check=False)
        except OSError:
            continue
        if with_uid.returncode == 0:
            return exe
    return None


def test_file_created_by_another_uid_is_owned_and_usable_by_it() -> None:
    require_crashfs()
    if os.geteuid() != 0:
        pytest.skip("needs root (to run a child as another uid)")
    exe = _python_for(OTHER_UID)
    if exe is None:
        pytest.skip(f"no python interpreter is executable by uid {OTHER_UID}")
    base = Path(tempfile.mkdtemp(prefix="crashfs-uid-"))
    os.chmod(base, 0o755)  # the other uid must reach the mount point
    try:
        with CrashFS.create(base / "layer", allow_other=True) as fs:
            os.chmod(base / "layer", 0o755)
            shared = fs.mountpoint / "shared"
            os.mkdir(shared)
            os.chmod(shared, 0o777)
            _fsync(fs.mountpoint)
            for name in ("mine", "after_power_loss"):
                child = subprocess.run([exe, "-c", CHILD_AS_OTHER, str(shared / name)],
                                       user=OTHER_UID, group=OTHER_UID, extra_groups=[],
                                       cwd="/", capture_output=True, text=True,
                                       timeout=CHILD_TIMEOUT, check=False)
                assert child.returncode == 0, child.stderr
                assert child.stdout.split() == [str(OTHER_UID), "mine+more"]
                st = os.stat(shared / name)
                assert (st.st_uid, st.st_gid) == (OTHER_UID, OTHER_UID)
                backing = os.stat(fs.store / "root" / "shared" / name)
                assert (backing.st_uid, backing.st_gid) == (OTHER_UID, OTHER_UID)
                # the other uid's files and the directory it may write survive a power loss
                fs.power_loss("drop_all", seed=1)
                assert (shared / name).read_bytes() == b"mine+more"
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- determinism ---------------------------------------------------------------------------------


def _many_pending(mnt: Path) -> None:
    """Four durable files, each with seven unsynced content changes."""
    for i in range(4):
        f = _durable(mnt / f"f{i}", b"base-%d" % i)
        for k in range(6):
            _pwrite(f, b"<%d:%d>" % (i, k), os.stat(f).st_size)
        os.truncate(f, 20 + i)


@pytest.mark.parametrize("mode", ["random_prefix", "torn_last"])
def test_seed_makes_the_power_loss_deterministic(fs: CrashFS, mode: str) -> None:
    mnt = fs.mountpoint
    outcomes = []
    for seed in (7, 7, 8, 9, 10):
        _many_pending(mnt)
        report = fs.power_loss(mode, seed=seed)["report"]
        outcomes.append(({p.name: p.read_bytes() for p in sorted(mnt.iterdir())}, report))
    assert outcomes[0] == outcomes[1], "same seed, different outcome"
    assert any(o[0] != outcomes[0][0] for o in outcomes[2:]), "the seed changes nothing"


# -- bounded memory --------------------------------------------------------------------------------


@pytest.mark.parametrize("limit,size", [(["--max-pending-ops", "50"], 1),
                                        (["--max-undo-bytes", "4096"], 1000)])
def test_a_writer_that_never_syncs_gets_enospc_not_oom(tmp_path: Path, limit: list[str],
                                                       size: int) -> None:
    require_crashfs()
    with CrashFS.create(tmp_path / "layer", extra_args=limit) as fs:
        f = _durable(fs.mountpoint / "f", bytes(size))
        fd = os.open(f, os.O_WRONLY)
        try:
            written = 0
            for _ in range(200):
                try:
                    os.pwrite(fd, b"x" * size, 0)  # overwrites: each keeps `size` undo bytes
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
                written += 1
            else:
                pytest.fail("200 unsynced writes and no ENOSPC")
            assert 0 < written <= 50
            status = fs.status()
            assert "does not fsync" in (status["overflow"] or ""), status
            assert fs.alive()
            os.fsync(fd)  # syncing frees the journal: writes go through again
            os.pwrite(fd, b"y" * size, 0)
        finally:
            os.close(fd)


def test_unlinked_temp_files_do_not_fill_the_journal(tmp_path: Path) -> None:
    """Writes to a file that has no name left (an unlinked temp file) can never come back
    after a power loss: they must not count against the layer's bounds."""
    require_crashfs()
    with CrashFS.create(tmp_path / "layer", extra_args=["--max-pending-ops", "50"]) as fs:
        tmp = fs.mountpoint / "tmp"
        for _ in range(10):
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.unlink(tmp)
                for k in range(10):
                    os.pwrite(fd, b"spill", 5 * (k % 3))
                os.ftruncate(fd, 2)
            finally:
                os.close(fd)
        assert fs.status()["pending_ops"] == 0


def test_journal_reads_through_a_write_only_handle(tmp_path: Path) -> None:
    """Undoing an overwrite needs the bytes it replaced: the backing file must be readable
    even when the node opened it write-only (a kernel may pass O_WRONLY through as is)."""
    journal = Journal(tmp_path / "store")
    fd = journal.create("f", os.O_WRONLY, 0o644, None)
    try:
        ino = os.fstat(fd).st_ino
        journal.write(fd, ino, 0, b"0123456789")
        journal.fsync(ino, False)
        journal.fsyncdir("")
        journal.write(fd, ino, 2, b"abc")
        journal.truncate(fd, ino, 4)
    finally:
        os.close(fd)
    journal.power_loss("drop_all", seed=0)
    assert (journal.root / "f").read_bytes() == b"0123456789"
    if importlib.util.find_spec("mfusepy") is None or available() is not None:
        return
    from conformance.faults.crashfs.ops import CrashOps

    ops = CrashOps(journal)
    fh = ops.open("/f", os.O_WRONLY)
    try:
        assert ops.write("/f", b"XY", 0, fh) == 2
    finally:
        ops.release("/f", fh)
    journal.power_loss("drop_all", seed=0)
    assert (journal.root / "f").read_bytes() == b"0123456789"


# -- crash points -----------------------------------------------------------------------------------

CHILD_WRITES_AND_FSYNCS = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
    for i in range(1, 4):
        os.write(fd, b"write %d\\n" % i)
        os.fsync(fd)
        print("fsynced", i, flush=True)
""")


def _run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], start_new_session=True,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)


def test_crash_point_kills_the_node_at_its_nth_fsync(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    log = _durable(mnt / "log", b"")
    other = _durable(mnt / "other", b"other")
    fs.arm("fsync", 2)
    child = _run_child(CHILD_WRITES_AND_FSYNCS, str(log))
    assert child.returncode == -signal.SIGKILL, child
    assert child.stdout.split("\n")[:-1] == ["fsynced 1"]
    frozen = fs.status()["frozen"]
    assert frozen and "fsync #2" in frozen
    # the device is stopped: every later mutation fails with EIO
    assert _errno(lambda: _pwrite(other, b"x", 0)) == errno.EIO
    assert _errno(lambda: os.mkdir(mnt / "d")) == errno.EIO
    assert _errno(lambda: os.unlink(other)) == errno.EIO
    assert log.read_bytes() == b"write 1\nwrite 2\n"  # reads still work
    fs.power_loss("drop_all", seed=1)
    assert log.read_bytes() == b"write 1\n", "the 2nd fsync's data must not be durable"
    assert other.read_bytes() == b"other"
    _pwrite(other, b"O", 0)  # the power loss thawed the device
    assert fs.status()["frozen"] is None


def test_disarm_thaws_a_stopped_device(fs: CrashFS) -> None:
    log = _durable(fs.mountpoint / "log", b"")
    fs.arm("fsync", 1)
    child = _run_child(CHILD_WRITES_AND_FSYNCS, str(log))
    assert child.returncode == -signal.SIGKILL
    assert _errno(lambda: _pwrite(log, b"x", 0)) == errno.EIO
    fs.disarm()
    _pwrite(log, b"x", 0)
    assert log.read_bytes() == b"xrite 1\n"


CHILD_EVERY_OP = textwrap.dedent("""
    import os, sys
    d = sys.argv[1]
    def done(op):
        print(op, flush=True)
    fd = os.open(d + "/f", os.O_CREAT | os.O_WRONLY, 0o644); done("create")
    os.write(fd, b"data"); done("write")
    os.fsync(fd); done("fsync")
    dfd = os.open(d, os.O_RDONLY); os.fsync(dfd); os.close(dfd); done("fsyncdir")
    os.ftruncate(fd, 2); done("truncate")
    os.close(fd)
    os.rename(d + "/f", d + "/g"); done("rename")
    os.unlink(d + "/g"); done("unlink")
""")

# what the tree shows when the crash point stopped that operation (it was not performed)
NOT_PERFORMED: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "create": ("keep_all", lambda d: os.listdir(d) == []),
    "write": ("keep_all", lambda d: (d / "f").read_bytes() == b""),
    "fsync": ("drop_all", lambda d: os.listdir(d) == []),  # neither name nor data durable
    "fsyncdir": ("drop_all", lambda d: os.listdir(d) == []),
    "truncate": ("keep_all", lambda d: (d / "f").read_bytes() == b"data"),
    "rename": ("keep_all", lambda d: os.listdir(d) == ["f"]),
    "unlink": ("keep_all", lambda d: os.listdir(d) == ["g"]),
}


@pytest.mark.parametrize("op", list(NOT_PERFORMED))
def test_crash_point_on_each_operation(fs: CrashFS, op: str) -> None:
    assert set(NOT_PERFORMED) == set(CRASH_OPS)
    d = fs.mountpoint / "d"
    os.mkdir(d)
    _fsync(fs.mountpoint)
    fs.arm(op, 1)
    child = _run_child(CHILD_EVERY_OP, str(d))
    assert child.returncode == -signal.SIGKILL, child
    steps = list(NOT_PERFORMED)
    assert child.stdout.split() == steps[:steps.index(op)]
    assert f"crash point: {op} #1" in (fs.status()["frozen"] or "")
    mode, check = NOT_PERFORMED[op]
    fs.power_loss(mode, seed=1)
    assert check(d), sorted(os.listdir(d))


# -- the harness side --------------------------------------------------------------------------------


def test_power_loss_is_refused_while_a_file_is_open(fs: CrashFS) -> None:
    f = _durable(fs.mountpoint / "f", b"data")
    fd = os.open(f, os.O_RDONLY)
    try:
        with pytest.raises(ControlError, match="still open"):
            fs.call("power_loss", mode="drop_all", seed=0)
        with pytest.raises(LayerError, match="still open"):
            fs.wait_closed(timeout=0.2)
    finally:
        os.close(fd)
    fs.power_loss("drop_all", seed=0)


def test_a_dying_layer_gives_layer_error_not_a_hang(fs: CrashFS) -> None:
    proc = fs._res.proc  # the daemon (no public handle: the harness never kills it)
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while fs.alive():
        assert time.monotonic() < deadline, "the daemon survived SIGKILL"
        time.sleep(0.01)
    t0 = time.monotonic()
    with pytest.raises(LayerError, match="not running"):
        fs.status()
    with pytest.raises(LayerError):
        fs.power_loss("drop_all", seed=0)
    # the mount fails fast too (ENOTCONN), checked in a child in case it would hang
    probe = subprocess.run([sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])",
                            str(fs.mountpoint)], capture_output=True, text=True, timeout=10,
                           check=False)
    assert probe.returncode != 0 and "Transport endpoint is not connected" in probe.stderr
    assert time.monotonic() - t0 < 10
    fs.close()
    assert not os.path.ismount(fs.mountpoint)


def test_close_leaves_no_mount_and_no_directory(tmp_path: Path) -> None:
    require_crashfs()
    base = tmp_path / "layer"
    fs = CrashFS.create(base)
    assert os.path.ismount(fs.mountpoint)
    _durable(fs.mountpoint / "f", b"data")
    fs.close()
    assert not os.path.ismount(fs.mountpoint)
    assert not base.exists()
    fs.close()  # idempotent


def test_a_killed_harness_leaves_no_mount(tmp_path: Path) -> None:
    """The daemon watches its parent: SIGKILL of the harness (no finalizer, no atexit)
    still unmounts within a second or so, even when a thread that has ended mounted it."""
    require_crashfs()
    mnt = tmp_path / "mnt"
    code = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pathlib import Path
        from conformance.faults.crashfs import CrashFS
        layers = []
        t = threading.Thread(target=lambda: layers.append(
            CrashFS(Path({str(tmp_path / "store")!r}), Path({str(mnt)!r}))))
        t.start(); t.join()
        print("READY", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        time.sleep(1.0)  # past the end of the thread that mounted it
        assert os.path.ismount(mnt)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while os.path.ismount(mnt) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.ismount(mnt)


def test_sync_counters_are_exact(fs: CrashFS) -> None:
    mnt = fs.mountpoint
    os.mkdir(mnt / "d")
    before = fs.counters()
    fd = os.open(mnt / "d" / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for _ in range(3):
            os.write(fd, b"x")
            os.fsync(fd)
        os.write(fd, b"y")
        os.fdatasync(fd)
        os.write(fd, b"not synced")
    finally:
        os.close(fd)
    _fsync(mnt / "d")
    _fsync(mnt)
    after = fs.counters()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    assert delta["fsyncs"] == 4
    assert delta["fdatasyncs"] == 1
    assert delta["fsyncdirs"] == 2
    assert delta["syncs"] == 6
    assert delta["writes"] == 5
    assert delta["creates"] == 1
    # a write through an O_DSYNC handle is one sync (the kernel's fsync after it), not two
    _pwrite(mnt / "d" / "f", b"z", 0, os.O_DSYNC)
    last = fs.counters()
    assert last["sync_writes"] - after["sync_writes"] == 1
    assert last["syncs"] - after["syncs"] == 1


def test_the_mount_root_stays_a_directory_through_a_power_loss(fs: CrashFS) -> None:
    """A node process started ahead of need (`prestart`, docs/protocol.md) may create its
    data directory, so stat the mount root, while the previous lifetime's power loss
    rebuilds the backing tree. The root must be a directory at every moment: before, the
    tree was swapped by two renames, and a stat between them failed (ENOENT), which made the
    reference server's start fail with FileExistsError (a correct node rejected)."""
    seen: list[str] = []
    stop = threading.Event()

    def stat_root() -> None:
        while not stop.is_set():
            try:
                if not stat.S_ISDIR(os.stat(fs.mountpoint).st_mode):
                    seen.append("not a directory")
            except OSError as exc:
                seen.append(errno.errorcode.get(exc.errno or 0, str(exc)))

    watchers = [threading.Thread(target=stat_root) for _ in range(2)]
    for w in watchers:
        w.start()
    try:
        for n in range(60):  # each loss rebuilds: a directory made and not synced is undone
            (fs.mountpoint / f"d{n}").mkdir()
            (fs.mountpoint / f"d{n}" / "f").write_bytes(b"x" * 100)
            fs.power_loss("drop_all", n)
    finally:
        stop.set()
        for w in watchers:
            w.join()
    assert seen == []


def test_a_layer_in_a_deep_directory_works(tmp_path: Path) -> None:
    """A deep TMPDIR (a CI runner's workspace, pytest -n's tmp paths) makes the control
    socket's path longer than an AF_UNIX path may be (107 bytes): before, the layer failed
    to start there and every power-loss case came out not applicable."""
    require_crashfs()
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / "layer" / "store" / "control.sock")) > 107
    with CrashFS.create(deep / "layer") as layer:
        (layer.mountpoint / "f").write_bytes(b"lost")
        assert layer.power_loss("drop_all", 0)["summary"]
        assert not (layer.mountpoint / "f").exists()
