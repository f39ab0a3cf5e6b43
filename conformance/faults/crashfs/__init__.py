"""A crash-simulating filesystem (FUSE): power loss, crash points and sync accounting for
any node, in any language, without its cooperation.

    journal.py   what is not durable yet, and what a power loss leaves (the model)
    ops.py       the FUSE operations: a passthrough that reports to the journal
    control.py   the control channel (JSON lines over a Unix socket) and its client
    daemon.py    the layer's process (python -m conformance.faults.crashfs)
    mount.py     the harness side: mount, drive, always unmount (CrashFS)
"""

from .control import ControlError
from .journal import CRASH_OPS
from .mount import SPARES, CrashFS, LayerError, available

__all__ = ["CRASH_OPS", "SPARES", "ControlError", "CrashFS", "LayerError", "available"]
