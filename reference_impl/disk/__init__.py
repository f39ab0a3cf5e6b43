"""The filesystem layer: a `Disk` protocol with a real and a simulated backend."""

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
from .simdisk import DIRENT_PREFIX, PowerLossReport, SimDisk

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
