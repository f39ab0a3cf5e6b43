"""A node's first lifetime: its storage and its container, created and started; by the adapter
when it starts its node, or ahead of need while the previous case of the same image runs.

Like the process adapter's first-lifetime spares (conformance/adapters/spares.py), a
container is made ahead of need on fresh storage of its own (a new volume, or a newly
mounted crash-simulating filesystem) and started there; nothing touches that storage before
an adapter takes it over, so the node cannot tell it from a container started later: no
protocol addition is needed, and the faults are what they were (a crash is `docker kill` of
that container, a restart `docker start` of the same container on the same storage).

- `Spec`: everything a first lifetime is made from; two adapters with equal specs can take
  each other's spares (the key of `FIRST`).
- `create`: make one (storage, container, started) into a cleanup.Resources.
- `FIRST`: the spares, kept as deep as adapters of one spec were open at once (--jobs),
  made on this module's own threads (`submit`), so that a container's making never waits
  behind the process adapter's work, nor the other way round.
- `reclaim`: an adapter's container, storage and layer removed in the background after its
  close (off the case's path); `settle` waits for that, `drain` also releases the spares
  not taken and the run's network (the container tests call it before they look for
  leftovers). What is in flight is done before the interpreter's exit handlers run (the
  workers are joined), and `cleanup` removes what is still labelled with the run at exit.

`CONFORMANCE_SPARES=off` switches the spares off, as for the process adapter.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .. import spares
from ..base import AdapterError
from ..layer import LayerFailed, NodeLayer
from .cleanup import Resources, remove_run, run_labels
from .engine import API_TIMEOUT, api_version, docker_client
from .hardening import (
    TMP_DIR,
    NetworkMode,
    forget_network,
    forget_networks,
    publish_port,
    run_network,
    run_options,
    tmpfs_options,
)
from .logs import now
from .volume import DATA_DIR, create_volume, mount_data, prepare_volume

if TYPE_CHECKING:
    from docker.models.containers import Container

T = TypeVar("T")
WORKERS = 4  # making (mostly waiting on the engine) and removing, for --jobs 2 and more
THREAD_PREFIX = "container-ahead"
Note = Callable[[str], None]


@dataclass(frozen=True)
class Spec:
    """What a first lifetime is made from (hashable: the key of its spares)."""

    image: str
    image_id: str  # a tag moved to another image during the run makes another key
    name: str
    command: tuple[str, ...] | None
    network_mode: NetworkMode
    publish_host: str
    user: str  # who runs the node (hardening.run_user)
    image_user: str  # the image's own USER: a volume needs no preparing for it
    memory: str
    pids_limit: int
    tmpfs_size: str
    layered: bool  # /data is the crash-simulating filesystem
    layer_timeout: float


@dataclass
class Storage:
    """A node's /data for all its lifetimes, and the network its containers are on."""

    data: str  # the source mounted at /data: a volume name, or the layer's mountpoint
    layer: NodeLayer | None
    network: str | None  # the internal network (None: published)
    what: str  # what /data is, for the markers


@dataclass
class Lifetime:
    """A created (and started) container of a Spec, on its Storage."""

    tc: Any  # the testcontainers DockerContainer
    container: Container
    storage: Storage


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "node"


def _name(spec: Spec) -> str:
    return f"conformance-{_safe(spec.name.rsplit('/', 1)[-1])}-{uuid.uuid4().hex[:10]}"


def create(spec: Spec, res: Resources, seed: int, note: Note) -> Lifetime:
    """A first lifetime: fresh storage, then the container, created and started, every
    resource recorded in `res` as soon as it exists. AdapterError when the container cannot
    be started; LayerFailed when the layer cannot be mounted (nothing was created then)."""
    name = _name(spec)
    labels = run_labels(**{"conformance.image": spec.image})
    layer = None
    if spec.layered:
        layer = res.layer = _mount_layer(spec.user, seed, note, spec.layer_timeout)
        res.release_before_layers_at_exit()
        data = str(layer.mountpoint)
        what = f"the crash-simulating filesystem at {data}"
    else:
        data = res.volume = create_volume(res.client, name, labels)
        if spec.user != spec.image_user:  # the image's user owns its /data: nothing to do
            prepare_volume(res.client, data, spec.user)
        what = f"volume {data}"
    network = run_network(res.client, labels) if spec.network_mode == "internal" else None
    note(f"start #1: {spec.image} as {spec.user or 'image user'}, {spec.network_mode} "
         f"network, {what} at {DATA_DIR}")
    return _container(spec, res, name, Storage(data, layer, network, what))


def create_next(spec: Spec, res: Resources, storage: Storage) -> Lifetime:
    """A next lifetime's container: the same image, arguments and options, on the same
    storage and network, created and started (for a node that said prestart)."""
    return _container(spec, res, _name(spec), storage)


def _container(spec: Spec, res: Resources, name: str, storage: Storage) -> Lifetime:
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    # Ryuk (testcontainers' reaper) is an image pulled from a registry; this adapter
    # removes what it creates itself (close, finalize, atexit, orphan reaping).
    testcontainers_config.ryuk_disabled = True
    labels = run_labels(**{"conformance.image": spec.image})
    for attempt in (1, 2):
        # (its own client, told the API version: no /version call)
        tc = DockerContainer(spec.image, name=name,
                             docker_client_kw={"version": api_version(res.client),
                                               "timeout": API_TIMEOUT})
        if spec.command is not None:
            tc.with_command(list(spec.command))
        mount_data(tc, storage.data)
        tc.with_tmpfs_mount(TMP_DIR, tmpfs_options(spec.tmpfs_size))
        kwargs: dict[str, Any] = {}
        if spec.network_mode == "none":  # loopback only: the harness enters the namespace
            kwargs["network_mode"] = "none"
        elif storage.network is not None:
            kwargs["network"] = storage.network
        else:
            publish_port(tc, spec.publish_host)
        tc.with_kwargs(**run_options(labels=labels, user=spec.user, memory=spec.memory,
                                     pids_limit=spec.pids_limit), **kwargs)
        res.other_clients.append(tc.get_docker_client().client)
        try:
            tc.start()
        except Exception as exc:  # noqa: BLE001 - docker raises many kinds here
            if tc._container is not None:  # created, not started: the resources' still
                _record(res, tc)
            elif (attempt == 1 and storage.network is not None
                  and "network" in str(exc) and "not found" in str(exc)):
                # removed under the run (a cleanup): a new one, once
                forget_network(res.client, storage.network)
                storage.network = run_network(res.client, labels)
                continue
            raise AdapterError(f"cannot start a container of {spec.image}: {exc}") from exc
        _record(res, tc)
        return Lifetime(tc, tc.get_wrapped_container(), storage)
    raise AssertionError("unreachable")


def _record(res: Resources, tc: Any) -> None:
    """The container is the resources' from its creation on (removed with them); one made
    after they were released is nobody's: removed at once."""
    if not res.add_container(str(tc._container.id)):
        with contextlib.suppress(Exception):
            tc._container.remove(force=True, v=True)
        raise AdapterError("the adapter was closed while its container was being made")


def _mount_layer(user: str, seed: int, note: Note, timeout: float) -> NodeLayer:
    # mode 0o755: the engine and the run user traverse the layer's directory to the mount
    layer = NodeLayer.take(seed, note, prefix="conformance-layer-", allow_other=True,
                           mode=0o755, timeout=timeout)
    try:
        m = re.fullmatch(r"(\d+)(?::(\d+))?", user or "")
        root = layer.backing_root
        if m is not None:  # the mount's root is what the node sees as /data
            os.chown(root, int(m.group(1)), int(m.group(2) or m.group(1)))
            root.chmod(0o700)
        else:  # a named user of the image: its uid is not known here
            root.chmod(0o777)
    except BaseException:
        layer.close()
        raise
    return layer


# -- the threads of this module: spares made, containers removed ----------------------------

_executor: tuple[int, ThreadPoolExecutor] | None = None
_executor_lock = threading.Lock()
_pending: set[Future[Any]] = set()


def submit(fn: Callable[[], T]) -> Future[T] | None:
    """`fn` on this module's threads; None when the interpreter is shutting down."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():  # a fork has no workers
            _executor = (os.getpid(), ThreadPoolExecutor(WORKERS,
                                                         thread_name_prefix=THREAD_PREFIX))
        pool = _executor[1]
    try:
        done = pool.submit(fn)
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        return None
    with _executor_lock:
        _pending.add(done)
    done.add_done_callback(_forget)
    return done


def _forget(done: Future[Any]) -> None:
    with _executor_lock:
        _pending.discard(done)


def reclaim(release: Callable[[], object]) -> None:
    """`release` in the background (at once when it cannot be: interpreter shutdown)."""
    if submit(release) is None:
        release()


def settle(timeout: float = 120.0) -> bool:
    """Wait until every removal, and every spare's making, so far is done; False when
    `timeout` passed first."""
    with _executor_lock:
        pending = list(_pending)
    return not wait(pending, timeout=timeout).not_done


# -- spares ----------------------------------------------------------------------------------


@dataclass
class Counts:
    """What the spares did over the run (for the benchmark)."""

    made: int = 0  # first lifetimes made ahead of need
    failed: int = 0
    taken: int = 0
    next_made: int = 0  # next lifetimes' containers made ahead of need (prestart)
    next_taken: int = 0


COUNTS = Counts()
_counts_lock = threading.Lock()


class Made:
    """A first lifetime made ahead of need, until an adapter takes it (or it is released:
    by its finalizer, at exit at the latest)."""

    def __init__(self, client: Any) -> None:
        self.res = Resources(client)
        self.notes: list[tuple[str, str]] = []
        self.lifetime: Lifetime | None = None
        # before anything is made: nothing below is left behind, even at exit
        self.finalizer = weakref.finalize(self, self.res.release)

    @classmethod
    def make(cls, spec: Spec) -> Made | None:
        try:
            client = docker_client()
        except AdapterError:
            return None
        made = cls(client)
        try:
            made.lifetime = create(spec, made.res, 0, made.note)
        except (AdapterError, LayerFailed, OSError):  # the adapter makes its own, and says why
            made.release()
            count("failed")
            return None
        except BaseException:
            made.release()
            raise
        count("made")
        # and the second lifetime's container, for a node that said prestart, where first
        # lifetimes are usually followed by a second
        if (next_enabled() and spares.PRESTART.says(spec)
                and spares.CONTINUATIONS.likely(spec, 1)):
            with contextlib.suppress(AdapterError, OSError):
                made.res.ahead.append(create_next(spec, made.res, made.lifetime.storage))
                count("next_made")
        return made

    def note(self, text: str) -> None:
        self.notes.append((now(), text))

    def release(self) -> None:
        """Removed in the background (a spare evicted, or cleared, is nobody's wait)."""
        if self.finalizer.detach() is not None:
            reclaim(self.res.release)


NEXT_ENV = "CONFORMANCE_CONTAINER_NEXT"


def next_enabled() -> bool:
    """Whether next lifetimes' containers are made ahead of need (CONFORMANCE_CONTAINER_NEXT:
    auto, the default, or off: every restart is then `docker start` of the same container;
    for measuring)."""
    return os.environ.get(NEXT_ENV, "auto") != "off"


def count(what: str, n: int = 1) -> None:
    with _counts_lock:
        setattr(COUNTS, what, getattr(COUNTS, what) + n)


def make_next(spec: Spec, res: Resources, storage: Storage) -> Future[Lifetime] | None:
    """A next lifetime's container, made in the background (None at interpreter shutdown)."""
    def make() -> Lifetime:
        got = create_next(spec, res, storage)
        count("next_made")
        return got
    return submit(make)


FIRST = spares.FirstLifetimes(submit)


def take(spec: Spec) -> Made | None:
    """A first lifetime of `spec` made ahead of need (None when there is none); the next is
    put in the making. The caller calls `FIRST.closed(spec)` when its adapter is done."""
    made = FIRST.take(spec, lambda: Made.make(spec))
    if made is None or made.finalizer.detach() is None:  # released meanwhile
        return None
    count("taken")
    return made


def drain(timeout: float = 120.0) -> bool:
    """Release the spares not taken, wait for every removal in flight, and remove the run's
    networks (call it when no adapter is open any more: the container tests do, before they
    look for leftovers). False when `timeout` passed first."""
    makings = FIRST.clear()
    settled = settle(timeout) and not wait(makings, timeout=timeout).not_done
    forget_networks()
    # a spare released by its making's completion may still be under way: what the run
    # still has in the engine is no adapter's any more
    with contextlib.suppress(Exception):
        remove_run()
    return settled
