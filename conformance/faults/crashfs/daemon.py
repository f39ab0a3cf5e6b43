"""The layer's own process: `python -m conformance.faults.crashfs --store S --mount M`.

It mounts the filesystem at M (libfuse3, foreground, multithreaded), serves the control
socket `S/control.sock`, and unmounts when it gets SIGTERM, SIGINT or SIGHUP, or when
its parent process dies (a watcher thread polls for it: PR_SET_PDEATHSIG would fire when
the harness *thread* that started it ends), so a harness that is killed leaves no mount.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mfusepy

from .control import serve
from .journal import Journal, Limits
from .ops import CrashOps

PARENT_POLL = 0.5  # seconds between checks that the harness is still there


class _FUSE(mfusepy.FUSE):
    """mfusepy drops the flags of rename and the file handle of truncate under libfuse3;
    the layer needs both (RENAME_NOREPLACE; truncating a file that lost its name)."""

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        ops: Any = self.operations
        return int(ops.rename(old.decode(self.encoding, self.errors),
                              new.decode(self.encoding, self.errors), flags) or 0)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        ops: Any = self.operations
        fh = fip.contents.fh if fip else None
        return int(ops.truncate(None if path is None else path.decode(self.encoding, self.errors),
                                length, fh) or 0)


def _watch_parent(parent: int) -> None:
    """Unmount (SIGTERM to ourselves: libfuse's handler exits the loop) once `parent` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="crashfs-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.faults.crashfs",
                                description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, required=True, help="backing store (root/ is mounted)")
    p.add_argument("--mount", type=Path, required=True, help="mount point")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users (a container's) use the mount")
    p.add_argument("--max-pending-ops", type=int, default=Limits.pending_ops)
    p.add_argument("--max-undo-bytes", type=int, default=Limits.undo_bytes)
    args = p.parse_args(argv)
    _watch_parent(os.getppid())
    journal = Journal(args.store, Limits(args.max_pending_ops, args.max_undo_bytes))
    ops = CrashOps(journal)
    sock = args.store / "control.sock"
    sock.unlink(missing_ok=True)
    server = serve(sock, journal, ops)
    options: dict[str, Any] = {"foreground": True, "fsname": "crashfs", "subtype": "crashfs",
                               "default_permissions": True}
    if args.allow_other:
        options["allow_other"] = True
    # the kernel already applied the creating process's umask to the mode it passes on:
    # the layer's own must not mask it again (a node asking for 0o666 under umask 0 gets it)
    os.umask(0)
    try:
        _FUSE(ops, str(args.mount), **options)
    except RuntimeError as exc:
        print(f"crashfs: mount of {args.mount} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        server.shutdown()
        sock.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
