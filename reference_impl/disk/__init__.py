"""The filesystem layer: a `Disk` protocol with a real and a simulated backend.

The simulated one is imported on first use: the server (a real disk) starts without it.
"""

from typing import TYPE_CHECKING, Any

from .base import (
    DISK_OPS,
    Disk,
    DiskStats,
    FaultInjector,
    PowerLossMode,
    atomic_write,
    normalize,
    parent,
)
from .osdisk import OSDisk

if TYPE_CHECKING:
    from .simdisk import DIRENT_PREFIX, PowerLossReport, SimDisk

_LAZY = frozenset({"DIRENT_PREFIX", "PowerLossReport", "SimDisk"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import simdisk

        return getattr(simdisk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DIRENT_PREFIX",
    "DISK_OPS",
    "Disk",
    "DiskStats",
    "FaultInjector",
    "OSDisk",
    "PowerLossMode",
    "PowerLossReport",
    "SimDisk",
    "atomic_write",
    "normalize",
    "parent",
]
