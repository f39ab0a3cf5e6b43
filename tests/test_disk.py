"""The filesystem layer: both backends behave alike, and SimDisk loses what POSIX allows."""

from __future__ import annotations

import errno
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_impl.disk import (
    DIRENT_PREFIX,
    Disk,
    DiskStats,
    OSDisk,
    PowerLossMode,
    SimDisk,
    atomic_write,
    parent,
)

EIO = OSError(errno.EIO, "injected EIO")


@pytest.fixture(params=["os", "sim"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OSDisk | SimDisk]:
    d: OSDisk | SimDisk = OSDisk(tmp_path / "root") if request.param == "os" else SimDisk()
    yield d
    d.close()


# -- both backends -------------------------------------------------------------------


def test_both_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(OSDisk(tmp_path), Disk)
    assert isinstance(SimDisk(), Disk)


def test_paths() -> None:
    assert parent("a/b") == "a"
    assert parent("a") == ""
    assert parent("a//b/") == "a"
    for bad in ("/etc/passwd", "..", "a/../../b"):
        with pytest.raises(ValueError):
            parent(bad)


def test_round_trip(disk: OSDisk | SimDisk) -> None:
    disk.makedirs("store")
    assert not disk.exists("store/f")
    disk.write("store/f", b"hello")
    assert disk.exists("store/f")
    assert disk.read("store/f") == b"hello"
    disk.append("store/f", b" world")
    assert disk.read("store/f") == b"hello world"
    assert disk.size("store/f") == 11
    disk.write("store/f", b"xy")  # write truncates
    assert disk.read("store/f") == b"xy"
    disk.truncate("store/f", 1)
    assert disk.read("store/f") == b"x"
    disk.truncate("store/f", 3)  # extending pads with zeros
    assert disk.read("store/f") == b"x\0\0"
    disk.append("store/g", b"new")  # append creates
    assert disk.read("store/g") == b"new"
    assert disk.listdir("store") == ["f", "g"]

    disk.rename("store/g", "store/f")  # replaces dst
    assert disk.read("store/f") == b"new"
    assert not disk.exists("store/g")
    disk.remove("store/f")
    assert not disk.exists("store/f")
    assert disk.listdir("store") == []


def test_missing_files_and_dirs(disk: OSDisk | SimDisk) -> None:
    for call in (
        lambda: disk.read("nope"),
        lambda: disk.size("nope"),
        lambda: disk.truncate("nope", 0),
        lambda: disk.fsync("nope"),
        lambda: disk.remove("nope"),
        lambda: disk.rename("nope", "other"),
        lambda: disk.listdir("nodir"),
        lambda: disk.write("nodir/f", b"x"),
        lambda: disk.append("nodir/f", b"x"),
    ):
        with pytest.raises(FileNotFoundError):
            call()


def test_makedirs_is_idempotent_and_listdir_shows_subdirs(disk: OSDisk | SimDisk) -> None:
    disk.makedirs("a/b/c")
    disk.makedirs("a/b/c")
    disk.makedirs("a")
    assert disk.exists("a/b") and disk.exists("a/b/c")
    disk.write("a/z", b"")
    assert disk.listdir("") == ["a"]
    assert disk.listdir("a") == ["b", "z"]
    assert disk.listdir("a/b/c") == []
    disk.fsync_dir("a/b/c")
    disk.fsync_dir("")
    with pytest.raises(FileExistsError):
        disk.makedirs("a/z")


def test_stats_count_bytes_and_fsyncs(disk: OSDisk | SimDisk) -> None:
    disk.write("f", b"abc")
    disk.append("f", b"de")
    disk.truncate("f", 1)  # not a write
    disk.fsync("f")
    disk.fsync_dir("")
    disk.fsync("f")
    assert disk.stats == DiskStats(fsyncs=2, dir_fsyncs=1, bytes_written=5)
    assert disk.stats.total_fsyncs() == 3
    before = disk.stats.copy()
    disk.append("f", b"x")
    assert before.bytes_written == 5 and disk.stats.bytes_written == 6


def test_atomic_write_costs_two_fsyncs(disk: OSDisk | SimDisk) -> None:
    disk.makedirs("snapshots")
    disk.write("snapshots/pointer", b"old")
    before = disk.stats.copy()
    atomic_write(disk, "snapshots/pointer", b"new")
    assert disk.read("snapshots/pointer") == b"new"
    assert disk.listdir("snapshots") == ["pointer"]  # no .tmp left behind
    assert disk.stats.fsyncs - before.fsyncs == 1
    assert disk.stats.dir_fsyncs - before.dir_fsyncs == 1
    assert disk.stats.total_fsyncs() - before.total_fsyncs() == 2
    assert disk.stats.bytes_written - before.bytes_written == 3


def test_fail_next_raises_once_then_works(disk: OSDisk | SimDisk) -> None:
    disk.makedirs("store")
    disk.append("store/log", b"a")
    disk.write("other", b"o")
    disk.fail_next("fsync", "store/", EIO)
    disk.fsync("other")  # another path: not armed for it
    disk.append("store/log", b"b")  # another op: not armed for it
    with pytest.raises(OSError) as info:
        disk.fsync("store/log")
    assert info.value is EIO
    assert disk.stats.fsyncs == 1  # the failed fsync did nothing
    disk.fsync("store/log")
    assert disk.stats.fsyncs == 2


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("append", lambda d: d.append("store/log", b"zz")),
        ("write", lambda d: d.write("store/log", b"zz")),
        ("truncate", lambda d: d.truncate("store/log", 0)),
        ("rename", lambda d: d.rename("store/log", "store/log2")),
        ("remove", lambda d: d.remove("store/log")),
        ("read", lambda d: d.read("store/log")),
    ],
)
def test_failed_op_changes_nothing(
    disk: OSDisk | SimDisk, op: str, call: Callable[[OSDisk | SimDisk], object]
) -> None:
    disk.makedirs("store")
    disk.write("store/log", b"abc")
    disk.fail_next(op, "store", EIO)
    with pytest.raises(OSError):
        call(disk)
    assert disk.listdir("store") == ["log"]
    assert disk.read("store/log") == b"abc"
    assert disk.stats.bytes_written == 3
    call(disk)  # disarmed: works now


def test_fail_next_rejects_unknown_ops(disk: OSDisk | SimDisk) -> None:
    with pytest.raises(ValueError):
        disk.fail_next("fsycn", "", EIO)


def test_rename_fails_if_either_path_matches(disk: OSDisk | SimDisk) -> None:
    disk.makedirs("snapshots")
    disk.write("tmp", b"x")
    disk.fail_next("rename", "snapshots/", EIO)
    with pytest.raises(OSError):
        disk.rename("tmp", "snapshots/s")
    disk.rename("tmp", "snapshots/s")
    assert disk.read("snapshots/s") == b"x"


def test_fresh_content_is_empty_not_missing(disk: OSDisk | SimDisk) -> None:
    disk.write("empty", b"")
    assert disk.read("empty") == b"" and disk.size("empty") == 0


# -- OSDisk handle cache -----------------------------------------------------------------


def test_osdisk_reuses_its_append_handle(tmp_path: Path) -> None:
    disk = OSDisk(tmp_path)
    disk.append("log", b"a")
    handle = disk._handles["log"]  # white-box: the hot path must not reopen
    disk.append("log", b"b")
    disk.fsync("log")
    assert disk._handles["log"] is handle
    assert (tmp_path / "log").read_bytes() == b"ab"


@pytest.mark.parametrize(
    ("between", "expected"),
    [
        (lambda d: d.write("log", b"W"), b"W+"),
        (lambda d: d.truncate("log", 1), b"a+"),
        (lambda d: d.remove("log"), b"+"),
        (lambda d: d.rename("log", "moved"), b"+"),
        (lambda d: (d.write("other", b"O"), d.rename("other", "log")), b"O+"),
        (lambda d: d.close(), b"abc+"),
    ],
    ids=["write", "truncate", "remove", "rename-away", "rename-over", "close"],
)
def test_osdisk_append_handle_is_never_stale(
    tmp_path: Path, between: Callable[[OSDisk], object], expected: bytes
) -> None:
    disk = OSDisk(tmp_path)
    disk.append("log", b"abc")
    between(disk)
    disk.append("log", b"+")
    assert disk.read("log") == expected
    assert (tmp_path / "log").read_bytes() == expected
    disk.fsync("log")
    disk.close()
    assert disk._handles == {}


def test_osdisk_rename_moves_the_file_not_the_handle(tmp_path: Path) -> None:
    disk = OSDisk(tmp_path)
    disk.append("log", b"abc")
    disk.rename("log", "moved")
    disk.append("moved", b"d")
    assert disk.read("moved") == b"abcd"
    assert not disk.exists("log")


# -- SimDisk power loss ------------------------------------------------------------------


def _durable_file(disk: SimDisk, path: str, data: bytes) -> None:
    """A file whose content and name are both durable."""
    disk.write(path, data)
    disk.fsync(path)
    disk.fsync_dir(parent(path))


def test_fsynced_content_survives_and_unsynced_appends_do_not() -> None:
    disk = SimDisk()
    disk.makedirs("store")
    _durable_file(disk, "store/log", b"synced")
    disk.append("store/log", b"+lost1")
    disk.append("store/log", b"+lost2")
    report = disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("store/log") == b"synced"
    assert report.files_affected == {"store/log": (2, 0, None)}
    assert report.names_lost == [] and report.names_restored == []


def test_new_file_without_dir_fsync_vanishes_even_if_its_content_was_fsynced() -> None:
    disk = SimDisk()
    disk.makedirs("store")
    disk.write("store/new", b"data")
    disk.fsync("store/new")
    disk.fsync_dir("")  # the wrong directory
    report = disk.power_loss(PowerLossMode.DROP_ALL)
    assert not disk.exists("store/new")
    assert disk.listdir("store") == []
    assert report.names_lost == ["store/new"]
    assert disk.exists("store")  # makedirs is durable at once


def test_dir_fsync_without_content_fsync_leaves_an_empty_file() -> None:
    disk = SimDisk()
    disk.write("f", b"data")
    disk.fsync_dir("")
    disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("f") == b""


def test_rename_without_dir_fsync_reverts() -> None:
    disk = SimDisk()
    disk.makedirs("d")
    _durable_file(disk, "d/old", b"old content")
    disk.rename("d/old", "d/new")
    disk.write("d/new", b"changed")  # not fsynced either
    report = disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.listdir("d") == ["old"]
    assert disk.read("d/old") == b"old content"
    assert report.names_lost == ["d/new"]
    assert report.names_restored == ["d/old"]


def test_rename_over_without_dir_fsync_reverts_to_the_old_file() -> None:
    disk = SimDisk()
    _durable_file(disk, "ptr", b"v1")
    disk.write("ptr.tmp", b"v2")
    disk.fsync("ptr.tmp")
    disk.rename("ptr.tmp", "ptr")  # atomic_write without its final fsync_dir
    report = disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("ptr") == b"v1"
    assert disk.listdir("") == ["ptr"]
    assert report.names_reverted == ["ptr"]


def test_atomic_write_is_durable() -> None:
    disk = SimDisk()
    _durable_file(disk, "ptr", b"v1")
    atomic_write(disk, "ptr", b"v2")
    assert disk.unsynced_report() == {}
    disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("ptr") == b"v2"
    assert disk.listdir("") == ["ptr"]


def test_remove_without_dir_fsync_comes_back() -> None:
    disk = SimDisk()
    _durable_file(disk, "f", b"kept")
    disk.remove("f")
    report = disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("f") == b"kept"
    assert report.names_restored == ["f"]


def test_remove_with_dir_fsync_is_durable() -> None:
    disk = SimDisk()
    _durable_file(disk, "f", b"gone")
    disk.remove("f")
    disk.fsync_dir("")
    disk.power_loss(PowerLossMode.DROP_ALL)
    assert not disk.exists("f")


def test_cross_directory_rename_needs_both_dir_fsyncs() -> None:
    disk = SimDisk()
    disk.makedirs("a")
    disk.makedirs("b")
    _durable_file(disk, "a/f", b"x")
    disk.rename("a/f", "b/f")
    disk.fsync_dir("b")  # but not "a": both names survive, sharing one inode
    disk.power_loss(PowerLossMode.DROP_ALL)
    assert disk.read("a/f") == disk.read("b/f") == b"x"


def _unsynced_chunks(seed: int) -> tuple[SimDisk, list[bytes]]:
    disk = SimDisk(seed=seed)
    _durable_file(disk, "log", b"D")
    chunks = [b"a1", b"b22", b"c333", b"d4444"]
    for c in chunks:
        disk.append("log", c)
    return disk, chunks


def test_random_prefix_keeps_a_prefix_of_the_ops() -> None:
    kept_counts = set()
    for seed in range(200):
        disk, chunks = _unsynced_chunks(seed)
        report = disk.power_loss(PowerLossMode.RANDOM_PREFIX)
        pending, kept, torn = report.files_affected["log"]
        assert (pending, torn) == (4, None)
        assert disk.read("log") == b"D" + b"".join(chunks[:kept])
        kept_counts.add(kept)
    assert kept_counts == {0, 1, 2, 3, 4}  # sometimes none, sometimes all


def test_torn_last_keeps_all_but_a_strict_prefix_of_the_last_op() -> None:
    torn_sizes = set()
    for seed in range(200):
        disk, chunks = _unsynced_chunks(seed)
        report = disk.power_loss(PowerLossMode.TORN_LAST)
        pending, kept, torn = report.files_affected["log"]
        assert (pending, kept) == (4, 3)
        assert torn is not None and 0 <= torn < len(chunks[-1])
        assert disk.read("log") == b"D" + b"".join(chunks[:-1]) + chunks[-1][:torn]
        torn_sizes.add(torn)
    assert torn_sizes == set(range(len(chunks[-1])))


def test_torn_write_leaves_a_short_file() -> None:
    # write() truncates then writes: a tear leaves a prefix of the new data, not the old.
    disk = SimDisk(seed=3)
    _durable_file(disk, "f", b"old old old")
    disk.write("f", b"new data")
    disk.power_loss(PowerLossMode.TORN_LAST)
    assert b"new data".startswith(disk.read("f"))
    assert len(disk.read("f")) < len(b"new data")


def test_torn_last_keeps_or_drops_a_truncate_whole() -> None:
    outcomes = set()
    for seed in range(50):
        disk = SimDisk(seed=seed)
        _durable_file(disk, "f", b"0123456789")
        disk.append("f", b"ab")
        disk.truncate("f", 4)
        report = disk.power_loss(PowerLossMode.TORN_LAST)
        _, kept, torn = report.files_affected["f"]
        assert torn is None
        outcomes.add(disk.read("f"))
        assert disk.read("f") == (b"0123" if kept == 2 else b"0123456789ab")
    assert outcomes == {b"0123", b"0123456789ab"}


def test_keep_all_changes_nothing() -> None:
    disk = SimDisk()
    disk.makedirs("d")
    _durable_file(disk, "d/a", b"a")
    disk.append("d/a", b"+")
    disk.write("d/new", b"n")  # neither name nor content durable
    disk.remove("d/a")
    disk.write("d/a", b"replaced")
    before = {name: disk.read(f"d/{name}") for name in disk.listdir("d")}
    report = disk.power_loss(PowerLossMode.KEEP_ALL)
    assert {name: disk.read(f"d/{name}") for name in disk.listdir("d")} == before
    assert report.names_lost == [] and report.names_restored == []
    assert report.names_reverted == []
    assert report.files_affected == {"d/a": (1, 1, None), "d/new": (1, 1, None)}


@pytest.mark.parametrize("mode", list(PowerLossMode))
def test_everything_is_durable_after_a_power_loss(mode: PowerLossMode) -> None:
    disk, _ = _unsynced_chunks(seed=7)
    disk.write("new", b"n")
    disk.fsync_dir("")
    disk.power_loss(mode)
    assert disk.unsynced_report() == {}
    state = {name: disk.read(name) for name in disk.listdir("")}
    disk.power_loss(PowerLossMode.DROP_ALL)
    assert {name: disk.read(name) for name in disk.listdir("")} == state


def test_power_loss_accepts_the_mode_value() -> None:
    disk, _ = _unsynced_chunks(seed=0)
    report = disk.power_loss(PowerLossMode("drop_all"))
    assert report.mode is PowerLossMode.DROP_ALL
    assert str(PowerLossMode.DROP_ALL) == "drop_all"


def _scripted_run(
    disk: SimDisk, mode: PowerLossMode, rng: random.Random | None
) -> dict[str, bytes]:
    disk.makedirs("s")
    for i in range(5):
        _durable_file(disk, f"s/f{i}", b"base")
        for j in range(6):
            disk.append(f"s/f{i}", bytes([j]) * (j + 1))
    disk.power_loss(mode, rng)
    return {name: disk.read(f"s/{name}") for name in disk.listdir("s")}


@pytest.mark.parametrize("mode", [PowerLossMode.RANDOM_PREFIX, PowerLossMode.TORN_LAST])
def test_same_seed_same_ops_same_bytes(mode: PowerLossMode) -> None:
    assert _scripted_run(SimDisk(seed=42), mode, None) == _scripted_run(
        SimDisk(seed=42), mode, None
    )
    assert _scripted_run(SimDisk(), mode, random.Random(9)) == _scripted_run(
        SimDisk(), mode, random.Random(9)
    )
    outcomes = {tuple(_scripted_run(SimDisk(seed=s), mode, None).values()) for s in range(10)}
    assert len(outcomes) > 1  # the seed matters


def test_clone_is_independent() -> None:
    disk = SimDisk(seed=5)
    disk.makedirs("d")
    _durable_file(disk, "d/f", b"durable")
    disk.append("d/f", b"+pending")
    disk.write("d/g", b"g")

    twin = disk.clone()
    twin.append("d/f", b"+twin")
    twin.makedirs("twin-only")
    twin.fsync("d/f")
    twin.power_loss(PowerLossMode.DROP_ALL)
    assert twin.read("d/f") == b"durable+pending+twin"
    assert not twin.exists("d/g")

    assert disk.read("d/f") == b"durable+pending"
    assert disk.exists("d/g") and not disk.exists("twin-only")
    assert disk.stats.fsyncs == 1 and twin.stats.fsyncs == 2
    assert disk.unsynced_report() == {"d/f": 1, "d/g": 1, DIRENT_PREFIX + "d/g": 1}


def test_clone_copies_the_rng_state_and_shared_inodes() -> None:
    disk, _ = _unsynced_chunks(seed=11)
    twin = disk.clone()
    disk.power_loss(PowerLossMode.TORN_LAST)
    twin.power_loss(PowerLossMode.TORN_LAST)
    assert disk.read("log") == twin.read("log")

    disk = SimDisk()
    disk.makedirs("a")
    disk.makedirs("b")
    _durable_file(disk, "a/f", b"x")
    disk.rename("a/f", "b/f")
    disk.fsync_dir("b")
    twin = disk.clone()
    twin.power_loss(PowerLossMode.DROP_ALL)
    twin.append("a/f", b"y")  # one inode behind both names, as in the original
    assert twin.read("b/f") == b"xy"


def test_clone_keeps_armed_faults() -> None:
    disk = SimDisk()
    disk.write("f", b"")
    disk.fail_next("fsync", "f", EIO)
    twin = disk.clone()
    with pytest.raises(OSError):
        twin.fsync("f")
    with pytest.raises(OSError):
        disk.fsync("f")


def test_unsynced_report() -> None:
    disk = SimDisk()
    disk.makedirs("s")
    _durable_file(disk, "s/durable", b"x")
    _durable_file(disk, "s/old", b"x")
    assert disk.unsynced_report() == {}
    disk.append("s/durable", b"1")
    disk.append("s/durable", b"2")
    disk.truncate("s/durable", 1)
    disk.write("s/new", b"n")
    disk.rename("s/old", "s/moved")
    assert disk.unsynced_report() == {
        "s/durable": 3,
        "s/new": 1,
        DIRENT_PREFIX + "s/new": 1,
        DIRENT_PREFIX + "s/old": 1,
        DIRENT_PREFIX + "s/moved": 1,
    }
    disk.fsync_dir("s")
    assert disk.unsynced_report() == {"s/durable": 3, "s/new": 1}
    disk.fsync("s/durable")
    disk.fsync("s/new")
    assert disk.unsynced_report() == {}


# -- properties ----------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(max_size=6)),
        st.tuples(st.just("write"), st.binary(max_size=6)),
        st.tuples(st.just("truncate"), st.integers(0, 12)),
        st.tuples(st.just("fsync"), st.none()),
    ),
    max_size=25,
)


def _run(disk: Disk, ops: list[tuple[str, object]]) -> list[bytes]:
    """Apply ops to "f"; return the contents since the last fsync (index 0: durable)."""
    atomic_write(disk, "f", b"start")
    history = [b"start"]
    for op, arg in ops:
        if op == "append":
            assert isinstance(arg, bytes)
            disk.append("f", arg)
        elif op == "write":
            assert isinstance(arg, bytes)
            disk.write("f", arg)
        elif op == "truncate":
            assert isinstance(arg, int)
            disk.truncate("f", arg)
        else:
            disk.fsync("f")
            history = []
        history.append(disk.read("f"))
    return history


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_sim_and_os_agree(ops: list[tuple[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        real = OSDisk(Path(root))
        try:
            expected = _run(real, ops)
        finally:
            real.close()
    sim = SimDisk()
    assert _run(sim, ops) == expected
    assert sim.read("f") == expected[-1]


@settings(max_examples=150, deadline=None)
@given(_ops, st.integers(0, 2**32), st.sampled_from(list(PowerLossMode)))
def test_power_loss_leaves_a_state_some_prefix_explains(
    ops: list[tuple[str, object]], seed: int, mode: PowerLossMode
) -> None:
    disk = SimDisk(seed=seed)
    history = _run(disk, ops)
    report = disk.power_loss(mode)
    after = disk.read("f")
    pending, kept, torn = report.files_affected.get("f", (0, 0, None))
    assert pending == len(history) - 1
    if mode is PowerLossMode.DROP_ALL:
        assert after == history[0]
    elif mode is PowerLossMode.KEEP_ALL:
        assert after == history[-1]
    elif torn is None:
        # every surviving state is one the file really had since its last fsync
        assert after == history[kept]
    else:
        # the last op was torn: a strict prefix of its bytes reached the device
        assert mode is PowerLossMode.TORN_LAST and kept == pending - 1
        op, data = ops[-1]
        assert isinstance(data, bytes)
        assert torn < len(data) or torn == 0 == len(data)
        assert after == (history[kept] if op == "append" else b"") + data[:torn]
