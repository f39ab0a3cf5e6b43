"""The harness side: mount the layer over a directory, drive it, and always unmount.

    with CrashFS.create(Path("/tmp/x")) as fs:   # x/store (backing), x/mnt (the mount)
        ... a node uses fs.mountpoint ...
        fs.wait_closed()                         # the node is gone: no file open
        report = fs.power_loss("drop_all", seed=3)

`available()` says whether FUSE can be used here at all, with the reason when not; the
adapters use it to decide whether `power_loss` is a fault they can inject.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ...forkserver import Forked, Program, fork
from .control import ControlError, CrashFSClient

MOUNT_WAIT = 15.0   # seconds for the daemon to mount
UNMOUNT_WAIT = 10.0  # seconds for it to exit after the unmount
CLOSED_WAIT = 10.0  # seconds for a killed node's files to be released
NOISE = ("Ignoring invalid max threads value",)


class LayerError(Exception):
    """The crash-simulating filesystem failed (an infrastructure error, not the node's)."""


def fusermount() -> str | None:
    return shutil.which("fusermount3")


def available() -> str | None:
    """None when the layer can be mounted here, else why not (in words)."""
    if not sys.platform.startswith("linux"):
        return f"FUSE power loss needs Linux (this is {sys.platform})"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not usable by this user"
    if fusermount() is None:
        return "fusermount3 is missing (Debian: apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) == "mfusepy":
            return "the Python package mfusepy is not installed (pip install mfusepy)"
        return f"mfusepy cannot load libfuse3 ({exc}); Debian: apt-get install fuse3"
    except OSError as exc:
        return f"mfusepy cannot load libfuse3 ({exc}); Debian: apt-get install fuse3"
    return None


def _unmount(mountpoint: Path, lazy: bool = False) -> bool:
    cmd = [fusermount() or "fusermount3", "-u", *(["-z"] if lazy else []), str(mountpoint)]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=UNMOUNT_WAIT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


# The daemon is forked from a process that imported it once (conformance/forkserver/): its
# imports (mfusepy, the journal) are ~80 ms of CPU of each mount, and a run mounts one per
# case or explored sequence that may lose power.
DAEMON = Program((sys.executable, "-m", "conformance.faults.crashfs"),
                 "conformance.faults.crashfs.daemon")


def _start_daemon(argv: list[str], log: int) -> subprocess.Popen[bytes] | Forked:
    """The daemon's process, its output to `log`: forked from the zygote when one serves,
    otherwise started from `argv`. On the harness's death it gets SIGTERM (it unmounts)."""
    forked = fork(DAEMON, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                  new_session=False, end_signal=signal.SIGTERM)
    if forked is not None:
        return forked
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


@dataclass
class _Resources:
    """What must be released even if CrashFS is never closed (finalizer, atexit)."""

    mountpoint: Path
    proc: subprocess.Popen[bytes] | Forked | None = None
    remove: Path | None = None  # a directory of ours to delete after the unmount

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if not _unmount(self.mountpoint):
                _unmount(self.mountpoint, lazy=True)
            try:
                proc.wait(timeout=UNMOUNT_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=UNMOUNT_WAIT)
                _unmount(self.mountpoint, lazy=True)
        if self.remove is not None and not os.path.ismount(self.mountpoint):
            shutil.rmtree(self.remove, ignore_errors=True)
            self.remove = None


class CrashFS:
    """One mounted layer: `store/root` is the backing tree, `mountpoint` what the node sees."""

    def __init__(self, store: Path, mountpoint: Path, *, allow_other: bool = False,
                 owned: Path | None = None, timeout: float = 30.0,
                 extra_args: list[str] | None = None) -> None:
        why = available()
        if why is not None:
            raise LayerError(why)
        self.store = store
        self.mountpoint = mountpoint
        self.allow_other = allow_other
        self.timeout = timeout
        self.extra_args = list(extra_args or [])
        store.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self._res = _Resources(mountpoint, remove=owned)
        self._finalizer = weakref.finalize(self, self._res.release)
        atexit.register(self._finalizer)
        self._log = store / "daemon.log"
        self.client = CrashFSClient(store / "control.sock", timeout)
        self.mount()

    @classmethod
    def create(cls, base: Path, **kw: Any) -> CrashFS:
        """A layer in `base` (created), removed with everything in it on close."""
        base.mkdir(parents=True, exist_ok=True)
        return cls(base / "store", base / "mnt", owned=base, **kw)

    # -- lifecycle --------------------------------------------------------------------------

    def mount(self) -> None:
        if self._res.proc is not None:
            return
        argv = [sys.executable, "-m", "conformance.faults.crashfs", "--store", str(self.store),
                "--mount", str(self.mountpoint), *self.extra_args]
        if self.allow_other:
            argv.append("--allow-other")
        with open(self._log, "ab") as log:
            self._res.proc = _start_daemon(argv, log.fileno())
        deadline = time.monotonic() + MOUNT_WAIT
        while True:
            proc = self._res.proc
            if proc.poll() is not None:
                self._res.proc = None
                raise LayerError(f"the crash-simulating filesystem exited with status "
                                 f"{proc.returncode} before mounting: {self.log_tail()}")
            if os.path.ismount(self.mountpoint):
                with contextlib.suppress(ControlError):
                    if self.client.call("ping").get("mounted"):
                        return
            if time.monotonic() > deadline:
                self.close()
                raise LayerError(f"the crash-simulating filesystem did not mount "
                                 f"{self.mountpoint} within {MOUNT_WAIT:g} s: {self.log_tail()}")
            time.sleep(0.02)

    def unmount(self) -> None:
        self.client.close()
        proc = self._res.proc
        self._res.proc = None
        if proc is None:
            return
        temp = _Resources(self.mountpoint, proc)
        temp.release()

    def close(self) -> None:
        self.client.close()
        self._finalizer()

    def __enter__(self) -> CrashFS:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def alive(self) -> bool:
        proc = self._res.proc
        return proc is not None and proc.poll() is None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        # libfuse 3.14 warns about the thread limit mfusepy leaves unset: noise, not a cause
        lines = [ln for ln in text.splitlines() if not ln.startswith(NOISE)]
        return "\n".join(lines)[-limit:].strip() or "(no output)"

    # -- control ----------------------------------------------------------------------------

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        if not self.alive():
            raise LayerError(f"the crash-simulating filesystem is not running: {self.log_tail()}")
        try:
            return self.client.call(op, **fields)
        except ControlError as exc:
            if not self.alive():
                raise LayerError(f"the crash-simulating filesystem died: {self.log_tail()}") \
                    from exc
            raise

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def counters(self) -> dict[str, int]:
        return dict(self.status()["counters"])

    def wait_closed(self, timeout: float = CLOSED_WAIT) -> None:
        """Wait until no file is open through the mount (a killed node's files are released
        by the kernel shortly after it is reaped)."""
        deadline = time.monotonic() + timeout
        while (n := int(self.status()["open_handles"])) > 0:
            if time.monotonic() > deadline:
                raise LayerError(f"{n} file(s) still open through the mount {timeout:g} s after "
                                 "the node was killed (a process of the node survived?)")
            time.sleep(0.005)

    def power_loss(self, mode: str, seed: int) -> dict[str, Any]:
        """Drop what is not durable (the node must be gone); returns the layer's report."""
        self.wait_closed()
        return self.call("power_loss", mode=mode, seed=seed)

    def arm(self, on: str, nth: int) -> None:
        self.call("arm", on=on, nth=nth)

    def disarm(self) -> None:
        self.call("disarm")


def _fresh(prefix: str, allow_other: bool, mode: int) -> CrashFS:
    from conformance.leftovers import make_temp_dir  # its owner marker: swept if we are killed

    base = make_temp_dir(prefix)
    base.chmod(mode)
    try:
        return CrashFS(base / "store", base / "data", allow_other=allow_other, owned=base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


class SpareLayers:
    """Fresh layers mounted one ahead of need, in the background: a mount costs ~0.1 s, and
    a run mounts one for every case that needs it. Each is an empty layer in a temporary
    directory of its own (`store/` and the mount `data/`), removed when it is closed; a
    spare never taken is unmounted at exit like any other layer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, bool, int], Future[CrashFS]] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crashfs-spare")

    def take(self, prefix: str = "conformance-", *, allow_other: bool = False,
             mode: int = 0o700, timeout: float = 30.0) -> CrashFS:
        """A mounted, empty layer (LayerError when one cannot be mounted)."""
        key = (prefix, allow_other, mode)
        with self._lock:
            ready = self._pending.pop(key, None)
            self._pending[key] = self._pool.submit(_fresh, prefix, allow_other, mode)
        fs: CrashFS | None = None
        if ready is not None:
            with contextlib.suppress(Exception):  # a failed spare: mount again, for the reason
                fs = ready.result(timeout=MOUNT_WAIT + UNMOUNT_WAIT)
        if fs is None or not fs.alive():
            if fs is not None:
                fs.close()
            fs = _fresh(prefix, allow_other, mode)
        fs.timeout = fs.client.timeout = timeout
        return fs


SPARES = SpareLayers()
