"""Cleanup: nothing the harness creates in the engine outlives its run.

Everything created carries the labels `conformance.managed=true`, `conformance.run=<RUN_ID>`
(one id per harness process), `conformance.pid` and `conformance.host`. `close()` removes the
adapter's containers, its volume and its layer, in the background (Resources.release, on
lifetimes' threads, which are joined before the interpreter's exit handlers run); a
`weakref.finalize` does it if the adapter is dropped, the run's internal network is removed
with the run, an atexit hook removes whatever this run still has (Ctrl-C included), and
the first adapter of a run removes what runs whose process is gone (SIGKILL, power off) left
behind. `python -m conformance.adapters.container [--prune]` lists (or removes) what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

from .engine import API_TIMEOUT, docker_client
from .logs import LOG_LINES

if TYPE_CHECKING:
    import docker

    from ..layer import NodeLayer

RUN_ID = os.environ.get("CONFORMANCE_RUN_ID") or uuid.uuid4().hex[:16]
LABEL_MANAGED = "conformance.managed"
LABEL_RUN = "conformance.run"
LABEL_PID = "conformance.pid"
LABEL_HOST = "conformance.host"


def run_labels(**extra: str) -> dict[str, str]:
    """The labels of everything this run creates (and `extra`)."""
    return {LABEL_MANAGED: "true", LABEL_RUN: RUN_ID, LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(), **extra}


def _containers(client: docker.DockerClient, flt: dict[str, str | list[str] | bool]
                ) -> list[Any]:
    """The containers matching `flt`, stopped ones too. A container removed between the
    listing and its inspection (removals run in the background) is left out, not an error."""
    return list(client.containers.list(all=True, filters=flt, ignore_removed=True))


def remove_labelled(client: docker.DockerClient, label_filter: str,
                    keep: Any = None) -> tuple[int, int, int]:
    """Remove containers, then volumes, then networks matching a label filter.

    `keep(labels) -> bool` spares resources. Returns how many of each were removed.
    """
    removed = [0, 0, 0]
    flt: dict[str, str | list[str] | bool] = {"label": label_filter}
    for c in _containers(client, flt):
        if keep is None or not keep(c.labels):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
                removed[0] += 1
    for v in client.volumes.list(filters=flt):
        if keep is None or not keep(v.attrs.get("Labels") or {}):
            with contextlib.suppress(Exception):
                v.remove(force=True)
                removed[1] += 1
    for n in client.networks.list(filters=flt):
        if keep is None or not keep(n.attrs.get("Labels") or {}):
            with contextlib.suppress(Exception):
                n.remove()
                removed[2] += 1
    return removed[0], removed[1], removed[2]


def remove_run(run_id: str = RUN_ID, client: docker.DockerClient | None = None) -> tuple[int, int, int]:
    """Remove every container, volume and network labelled with this run id."""
    own = client is None
    client = client or docker_client()
    try:
        return remove_labelled(client, f"{LABEL_RUN}={run_id}")
    finally:
        if own:
            client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(client: docker.DockerClient | None = None) -> tuple[int, int, int]:
    """Remove what runs on this host left behind when their harness process is gone."""
    host = socket.gethostname()

    def keep(labels: dict[str, str]) -> bool:
        if labels.get(LABEL_HOST) != host or labels.get(LABEL_RUN) == RUN_ID:
            return True
        pid = labels.get(LABEL_PID, "")
        return not pid.isdigit() or _pid_alive(int(pid))

    own = client is None
    client = client or docker_client()
    try:
        return remove_labelled(client, f"{LABEL_MANAGED}=true", keep)
    finally:
        if own:
            client.close()


def list_run(run_id: str = RUN_ID, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """Names of the containers, volumes and networks that still carry this run id."""
    own = client is None
    client = client or docker_client()
    flt: dict[str, str | list[str] | bool] = {"label": f"{LABEL_RUN}={run_id}"}
    try:
        return {"containers": [str(c.name) for c in _containers(client, flt)],
                "volumes": [str(v.name) for v in client.volumes.list(filters=flt)],
                "networks": [str(n.name) for n in client.networks.list(filters=flt)]}
    finally:
        if own:
            client.close()


_run_lock = threading.Lock()
_run_started = False


def first_adapter_of_run(client: docker.DockerClient) -> None:
    """Once per run: reap what dead runs left behind, and remove this run's leftovers at exit."""
    global _run_started
    with _run_lock:
        if _run_started:
            return
        _run_started = True
    with contextlib.suppress(Exception):
        reap_orphans(client)
    atexit.register(_remove_run_at_exit)


def _remove_run_at_exit() -> None:
    with contextlib.suppress(Exception):
        remove_run()


class Resources:
    """One adapter's engine resources, which must be removed even if the adapter is never closed
    (weakref.finalize, atexit): its containers (one per lifetime it started, and those made
    ahead of need for its next lifetimes), its storage (a volume, or a layer), a network of
    its own if any.

    Holds no reference to the adapter, so the finalizer does not keep it alive. `release`
    may run on another thread than the adapter's (close() hands it to the background, an
    interrupt closes from the main thread); a container made ahead of need is recorded with
    `add_container` under the lock, and one made after the release is removed by its maker.
    """

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.released = False
        self.sock: socket.socket | None = None
        self.containers: list[str] = []  # ids, oldest first
        self.logged: list[str] = []  # the containers whose log is the node's (its lifetimes)
        self.ahead: list[Any] = []  # the next lifetimes' containers (or their makings)
        self.volume: str | None = None
        self.network: str | None = None  # a network of the adapter's own (none by default)
        self.other_clients: list[docker.DockerClient] = []  # testcontainers' own
        self.layer: NodeLayer | None = None  # the crash-simulating filesystem at /data
        self.keep_log = False  # take the lifetimes' log before removing them (into `log`)
        self.log: str | None = None
        self.spare_key: Any = None  # the lifetimes.FIRST key the adapter took spares by

    @property
    def container_id(self) -> str | None:
        """The newest container (None before the first)."""
        return self.containers[-1] if self.containers else None

    def add_container(self, cid: str) -> bool:
        """Record a container just created; False when released meanwhile (then the caller
        removes it)."""
        with self.lock:
            if self.released:
                return False
            self.containers.append(cid)
            return True

    def release_before_layers_at_exit(self) -> None:
        """At exit, `release` before the layers' own exit handlers run (they were
        registered earlier: atexit runs the last one first): a layer is unmounted only once
        no container uses it, else its unmount waits for its timeout."""
        atexit.register(self.release)

    def release(self) -> None:
        atexit.unregister(self.release)
        with self.lock:
            self.released = True
            containers, self.containers = self.containers, []
            ahead, self.ahead = self.ahead, []
        key, self.spare_key = self.spare_key, None
        if key is not None:
            from .lifetimes import FIRST

            FIRST.closed(key)
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        # a next lifetime not started yet is never made; one being made is waited for (it
        # records its container, or, finding this released, removes it itself)
        # (a making never waits for anything else: waiting on a worker is safe)
        makings = [m for m in ahead if isinstance(m, Future) and not m.cancel()]
        if makings:
            wait(makings, timeout=API_TIMEOUT)
        if self.keep_log and self.logged:
            parts = []
            for cid in self.logged:
                with contextlib.suppress(Exception):
                    raw = self.client.api.logs(cid, stdout=True, stderr=True, timestamps=True,
                                               tail=LOG_LINES)
                    parts.append(raw.decode("utf-8", errors="replace"))
            self.log = "".join(p if p.endswith("\n") or not p else p + "\n" for p in parts)
        for cid in containers:
            with contextlib.suppress(Exception):
                self.client.api.remove_container(cid, force=True, v=True)
        layer, self.layer = self.layer, None
        if layer is not None:  # after the containers: nothing holds a file open any more
            with contextlib.suppress(Exception):
                layer.close()
        volume, self.volume = self.volume, None
        if volume is not None:
            with contextlib.suppress(Exception):
                self.client.api.remove_volume(volume, force=True)
        network, self.network = self.network, None
        if network is not None:
            with contextlib.suppress(Exception):
                self.client.api.remove_network(network)
        for client in [self.client, *self.other_clients]:
            with contextlib.suppress(Exception):
                client.close()
        self.other_clients.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m conformance.adapters.container [--prune]`: list (or remove) what runs left."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m conformance.adapters.container",
                                 description="containers, volumes and networks the harness "
                                             "created and that are still there")
    ap.add_argument("--prune", action="store_true",
                    help="remove them all (also those of runs still in progress)")
    args = ap.parse_args(argv)
    client = docker_client()
    try:
        flt: dict[str, str | list[str] | bool] = {"label": f"{LABEL_MANAGED}=true"}
        for kind, items in (("container", _containers(client, flt)),
                            ("volume", client.volumes.list(filters=flt)),
                            ("network", client.networks.list(filters=flt))):
            for item in items:
                print(f"{kind:<9} {item.name}")
        if args.prune:
            n = remove_labelled(client, f"{LABEL_MANAGED}=true")
            print(f"removed {n[0]} container(s), {n[1]} volume(s), {n[2]} network(s)")
    finally:
        client.close()
    return 0
