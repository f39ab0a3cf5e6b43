"""The crash-simulating filesystem under an adapter's node: mounted, driven, released.

The local-process and container adapters share it: the node's data directory (a local
path, or the host side of the container's /data bind mount) is the mount of
`conformance.faults.crashfs`, which gives any node power loss, crash points at its own
file-system operations and sync accounting. Where it cannot be mounted, `unavailable()`
says why in words, and the adapter reports `power_loss`, `crash_points` and
`sync_accounting` unavailable with that reason (the verdict quotes it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .base import AdapterError, PowerLossUnsupported

if TYPE_CHECKING:
    from conformance.faults.crashfs import CrashFS

T = TypeVar("T")
# Said once per node in its log, where a failing power-loss case shows it.
SYNC_CAVEAT = ("crash-simulating filesystem: fsync, fdatasync, O_SYNC/O_DSYNC writes, "
               "RWF_DSYNC and msync count as syncs; sync() and syncfs() never reach a FUSE "
               "filesystem, so a node that relies on them is judged as if it had not synced")
LAYER_FAULTS = frozenset({"power_loss", "crash_points", "sync_accounting"})


class LayerFailed(AdapterError):
    """The crash-simulating filesystem under the node failed: an infrastructure error."""


def unavailable(wanted: bool | None, why_not_here: str | None = None) -> str | None:
    """None when the layer is to be mounted, else why power loss is not available.

    `wanted`: None (mount it when possible), True (required: AdapterError when it cannot
    be), False (switched off). `why_not_here`: a reason of the adapter's own (a remote
    engine, an explicit data directory), checked before the machine's.
    """
    if wanted is False:
        return "power loss was switched off for this run"
    reason = why_not_here
    if reason is None:
        from conformance.faults.crashfs import available

        reason = available()
    if reason and wanted:
        raise AdapterError(f"power loss was required but cannot be simulated: {reason}")
    return reason


class NodeLayer:
    """One mounted layer under one node; `note` writes adapter markers into the node's log."""

    def __init__(self, fs: CrashFS, seed: int, note: Callable[[str], None]) -> None:
        self.fs = fs
        self._rng = random.Random(f"power:{seed}")
        self._note = note
        self._caveat_noted = False

    @classmethod
    def take(cls, seed: int, note: Callable[[str], None], *, prefix: str = "conformance-",
             allow_other: bool = False, mode: int = 0o700, timeout: float = 30.0) -> NodeLayer:
        """A fresh layer in a temporary directory of its own (removed on close), mounted
        ahead of need (crashfs.SPARES); LayerFailed when it cannot be mounted."""
        from conformance.faults.crashfs import SPARES, LayerError

        try:
            fs = SPARES.take(prefix, allow_other=allow_other, mode=mode, timeout=timeout)
        except LayerError as exc:
            raise LayerFailed(f"the crash-simulating filesystem could not be mounted: "
                              f"{exc}") from exc
        return cls(fs, seed, note)

    @property
    def mountpoint(self) -> Path:
        return self.fs.mountpoint

    @property
    def backing_root(self) -> Path:
        """The backing directory the mount shows (its owner and mode are the mount root's)."""
        return self.fs.store / "root"

    def drop(self, mode: str) -> None:
        """The node is dead: wait until it holds no file open, then drop what it had not
        synced (a seeded choice per power loss). The layer's report goes into the log."""
        seed = self._rng.randrange(1 << 32)
        report = self._call(lambda: self.fs.power_loss(mode, seed))
        self._note(str(report.get("summary", f"power loss ({mode})")))
        if not self._caveat_noted:
            self._caveat_noted = True
            self._note(SYNC_CAVEAT)

    def arm(self, on: str, nth: int) -> None:
        self._call(lambda: self.fs.arm(on, nth))
        self._note(f"crash point armed: {on} #{nth}")

    def thaw(self) -> None:
        """A new lifetime: disarm crash points and restart a device a crash point stopped."""
        self._call(self.fs.disarm)

    def counters(self) -> dict[str, int]:
        return self._call(self.fs.counters)

    def close(self) -> None:
        self.fs.close()

    def _call(self, fn: Callable[[], T]) -> T:
        from conformance.faults.crashfs import ControlError, LayerError

        try:
            return fn()
        except (LayerError, ControlError) as exc:
            raise LayerFailed(f"the crash-simulating filesystem failed (a harness error, not "
                              f"the node's): {exc}") from exc


class LayerFaults:
    """The fault methods of `Adapter` for an adapter whose node may sit on a NodeLayer.

    The adapter sets `_layer` (None when not mounted) and `_no_layer` (None when the layer
    is available on this machine, else the reason), and implements `_kill_for_power_loss`.
    """

    _layer: NodeLayer | None
    _no_layer: str | None

    def _kill_for_power_loss(self, mode: str) -> None:
        raise NotImplementedError

    @property
    def layer(self) -> NodeLayer | None:
        """The crash-simulating filesystem under the node's data, if mounted for it."""
        return self._layer

    def _layer_or_fail(self, fault: str) -> NodeLayer:
        if self._layer is None:
            raise PowerLossUnsupported(self._no_layer or f"{fault}: the crash-simulating "
                                       "filesystem was not mounted for this node (use_layer)")
        return self._layer

    def unavailable_faults(self) -> dict[str, str]:
        if self._no_layer is None:
            return {}  # available on this machine (mounted for the cases that need it)
        return dict.fromkeys(sorted(LAYER_FAULTS), self._no_layer)

    def power_loss(self, mode: str) -> None:
        """Kill the node, wait until it holds no file open, drop what it had not synced."""
        layer = self._layer_or_fail("power_loss")
        self._kill_for_power_loss(mode)
        layer.drop(mode)

    def arm_crash_point(self, on: str, nth: int) -> None:
        """Stop the node (SIGKILL) at its `nth` operation `on` from now (write, fsync,
        fsyncdir, rename, create, unlink, truncate); the operation does not happen."""
        self._layer_or_fail("crash_points").arm(on, nth)

    def sync_counters(self) -> dict[str, int] | None:
        """What the node did through the layer so far (writes, fsyncs, ...), None without it."""
        return self._layer.counters() if self._layer is not None else None
