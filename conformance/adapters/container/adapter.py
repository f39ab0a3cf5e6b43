"""The ContainerAdapter: a node under test as a container of an image, over TCP.

What the faults mean for a container:

- **crash** = `docker kill` (SIGKILL to the container's PID 1; the kernel then kills every
  process of the container's PID namespace). The page cache belongs to the host kernel, so
  writes the node made survive, synced or not: exactly a process crash. A crash failpoint
  is the node exiting at the named point; the container stops with it.
- **restart** = `docker start` of the same container: same image, same arguments, same
  named volume at /data (its content intact). Its address is read again after every start:
  with `network="published"` the host port can change, with `network="internal"` the IP can.
- a first lifetime may have been made ahead of need (lifetimes.py): the container created
  and started on fresh storage of its own while the previous case ran, and taken over by
  the adapter at its first start; nothing touched its storage before, so the node cannot
  tell. `close()` removes the container, the storage and the layer in the background.
- **power loss**: the /data the container sees is a bind mount of the crash-simulating
  filesystem (conformance/faults/crashfs), mounted on the engine host with `allow_other`
  and owned by the run user; every hardening measure stays. A power loss is `docker kill`,
  a wait until no file is open, the drop of what the node had not synced, and `docker
  start` of the same container. The same layer gives crash points and sync counters. It
  needs the harness on the engine's host with FUSE; otherwise (a remote engine, the
  published network mode, no /dev/fuse) /data is a named volume and the cases that need
  a power loss are not applicable, with that reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ...interrupts import critical
from ...wire import MAX_DEPTH, MAX_LINE, ReplyViolation, read_reply
from .. import spares
from ..base import Adapter, AdapterError, Exchange, Hello, ProtocolViolation, RequestTimeout
from ..layer import LAYER_FAULTS, LayerFailed, LayerFaults, NodeLayer, unavailable
from ..process import PROTOCOL_VERSIONS, HelloRefused, parse_hello
from . import lifetimes
from .cleanup import Resources, first_adapter_of_run
from .engine import API_TIMEOUT, docker_client, inspect_image
from .hardening import NETWORK_MODES, NetworkMode, run_user
from .logs import LOG_LINES, now
from .logs import merge as merge_log
from .transport import PORT, Connection, connect_in_netns, netns_problem

if TYPE_CHECKING:
    from docker.models.containers import Container


# seconds a container whose connection closed with a request in flight has to stop by
# itself (a crash failpoint) before it is a node that closed the connection and lingered
EXIT_GRACE = 10.0
_ROOTLESS: dict[str, bool] = {}  # engine address -> rootless, asked once per run


def _rootless(client: Any) -> bool:
    url = str(getattr(client.api, "base_url", ""))
    if url not in _ROOTLESS:
        try:
            options = client.info().get("SecurityOptions") or []
        except Exception:  # noqa: BLE001 - an engine that does not say is taken as rootful
            options = []
        _ROOTLESS[url] = any("rootless" in str(o) for o in options)
    return _ROOTLESS[url]


class ContainerAdapter(LayerFaults, Adapter):
    """A node under test as a container of `image`, one container and one volume per adapter.

    `command` replaces the image's CMD (arguments to its ENTRYPOINT). `timeout` bounds every
    request; `ready_timeout` bounds each start (until the port accepts and `hello` answers).
    `network="none"` (the default where the harness runs as root on the engine's host): no
    network at all, the harness connecting from inside the container's network namespace.
    `network="internal"` (the default elsewhere): the run's internal bridge network (no
    route out, no traffic between its containers), the node reached at its IP (the harness
    must run on the engine's host). `network="published"`: the default bridge
    with the port published on `publish_host` (for remote engines or Docker Desktop), which
    gives the node the default bridge's outbound access: not hardened. `user` overrides who
    runs the node ("uid:gid"); by default the image's USER, or DEFAULT_USER when it is root.
    `power_loss`, `use_layer` and `seed` are as for the process adapter: /data is the
    crash-simulating filesystem where it can be mounted next to the engine. `max_line` and
    `max_depth` bound every line the node sends (docs/protocol.md, "Reply validation").
    """

    fault_capabilities = frozenset({"process_kill"})

    def __init__(self, image: str, *, timeout: float = 10.0, ready_timeout: float = 60.0,
                 name: str | None = None, command: Sequence[str] | None = None,
                 network: NetworkMode | None = None, publish_host: str = "127.0.0.1",
                 user: str | None = None, memory: str = "512m", pids_limit: int = 256,
                 tmpfs_size: str = "16m", power_loss: bool | None = None,
                 use_layer: bool = True, seed: int = 0, max_line: int = MAX_LINE,
                 max_depth: int = MAX_DEPTH) -> None:
        if not timeout > 0 or not ready_timeout > 0:
            raise ValueError("timeout and ready_timeout must be > 0")
        if max_line < 1 or max_depth < 1:
            raise ValueError(f"max_line and max_depth must be >= 1, got {max_line}, {max_depth}")
        self.max_line, self.max_depth = max_line, max_depth
        network = network or os.environ.get("CONFORMANCE_CONTAINER_NETWORK") or None  # type: ignore[assignment]
        if network is not None and network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {NETWORK_MODES}, got {network!r}")
        if isinstance(command, str):
            raise ValueError("command must be a sequence of arguments (not one string)")
        self.image = image
        self.timeout = float(timeout)
        self.ready_timeout = float(ready_timeout)
        self.name = name or image
        self.command: list[str] | None = list(command) if command is not None else None
        self.network_mode: NetworkMode = network or "internal"
        self.publish_host = publish_host
        self.memory = memory
        self.pids_limit = pids_limit
        self.tmpfs_size = tmpfs_size
        self._user = user
        self._client = docker_client()
        local = str(getattr(self._client.api, "base_url", "")).startswith("http+docker://")
        why_not = netns_problem() if local else "the Docker engine is not local"
        if network is None:  # no network at all where the harness can enter the namespace
            self.network_mode = "none" if why_not is None else "internal"
        elif network == "none" and why_not is not None:
            self._client.close()
            raise AdapterError(f"network='none' needs the harness on the engine's host, as "
                               f"root: {why_not}")
        self._netns_pid: int | None = None  # the container's PID 1 ("none": its namespace)
        self._res = Resources(self._client)
        # Runs on close(), on garbage collection, or at interpreter exit, whichever is first.
        self._finalizer = weakref.finalize(self, self._res.release)
        first_adapter_of_run(self._client)
        self.info = inspect_image(image, self._client)
        self._tc: Any = None  # the testcontainers DockerContainer
        self._container: Container | None = None
        self._network: str | None = None  # the run's internal network (not the adapter's)
        self._stopped = False  # the engine said the container stopped (after a kill or exit)
        self._spares = spares.enabled()
        self._spec_: lifetimes.Spec | None = None
        self._storage: lifetimes.Storage | None = None  # /data and the network, every lifetime
        self._prestart = False  # the last hello said prestart (docs/protocol.md)
        self._conn: Connection | None = None
        self._addr: tuple[str, int] | None = None
        self._next_id = 1
        self._starts = 0
        self._closed = False
        self._notes: list[tuple[str, str]] = []  # (timestamp, text): the adapter's own markers
        self._log_snapshot = ""  # the container's log, kept when the container is removed
        self.start_durations: list[float] = []  # seconds from start() to the hello reply
        self._seed = seed
        self._use_layer = use_layer
        self._layer: NodeLayer | None = None
        self._no_layer = unavailable(power_loss, self._layer_not_here())
        if self._no_layer is None:
            self.fault_capabilities = self.fault_capabilities | LAYER_FAULTS

    def _layer_not_here(self) -> str | None:
        """Why the layer cannot serve this engine's containers, None when it can."""
        if self.network_mode == "published":
            return ("the published network mode is for remote engines: the crash-simulating "
                    "filesystem must be mounted on the engine's host")
        base_url = str(getattr(self._client.api, "base_url", ""))
        if not base_url.startswith("http+docker://"):  # not a local unix socket
            return (f"the Docker engine at {base_url} is not local: the crash-simulating "
                    "filesystem must be mounted on the engine's host")
        if _rootless(self._client):
            return ("the Docker engine is rootless: it maps the container's users to other "
                    "host users, so the layer's files would not belong to the node")
        return None

    # -- introspection ------------------------------------------------------------------

    def describe(self) -> str:
        return f"container: {self.image}"

    @property
    def container(self) -> Container | None:
        """The wrapped Docker SDK container (None before the first start)."""
        return self._container

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the harness reaches the node (re-read after every start)."""
        return self._addr

    @property
    def volume_name(self) -> str | None:
        return self._res.volume

    @property
    def network_name(self) -> str | None:
        return self._network

    def alive(self) -> bool:
        if self._conn is None or self._container is None:
            return False
        try:
            self._container.reload()
        except Exception:  # noqa: BLE001
            return False
        return bool(self._container.status == "running")

    def logs(self) -> str:
        """The node's log: every lifetime's container log (the newest LOG_LINES lines of
        each) with the adapter's markers (start, crash, exit) merged in by time. After
        close(), the log the removal kept (it is taken just before the removal)."""
        if self._res.log is None and self._res.logged:
            parts = []
            for cid in list(self._res.logged):
                try:
                    raw = self._client.api.logs(cid, stdout=True, stderr=True, timestamps=True,
                                                tail=LOG_LINES)
                except Exception:  # noqa: BLE001 - being removed: what the removal keeps
                    break
                parts.append(raw.decode("utf-8", errors="replace"))
            else:
                self._log_snapshot = "".join(
                    p if p.endswith("\n") or not p else p + "\n" for p in parts)
        if self._res.log is not None:  # removed (or being removed): what it kept
            self._log_snapshot = self._res.log
        return merge_log(self._log_snapshot, self._notes)

    def _note(self, text: str) -> None:
        self._notes.append((now(), text))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, durability: str) -> Hello:
        if self._closed:
            raise AdapterError("the adapter is closed")
        t0 = time.monotonic()
        self._starts += 1
        if self._layer is not None:  # a crash point that fired left the device stopped
            self._layer.thaw()
        if self._container is None:
            self._create_and_start()
        else:
            if not self._stopped:  # (after a kill, the engine already said it stopped)
                self._container.reload()
                if self._container.status in ("running", "restarting"):
                    raise AdapterError("the node is already running: crash() or shut it down "
                                       "first")
            if not self._take_next():
                self._note(f"start #{self._starts}: docker start (same container, same "
                           "storage)")
                try:
                    self._container.start()
                except Exception as exc:  # noqa: BLE001
                    raise AdapterError(f"docker start failed: {exc}") from exc
        self._stopped = False
        spec = self._spec()
        if self._spares:
            spares.CONTINUATIONS.started(spec, self._starts)
        hello = self._connect_and_hello(durability, t0 + self.ready_timeout)
        self.start_durations.append(time.monotonic() - t0)
        if self._spares:
            spares.PRESTART.heard(spec, self._prestart)
            if (self._prestart and not self._res.ahead and self._storage is not None
                    and lifetimes.next_enabled()
                    and spares.CONTINUATIONS.likely(spec, self._starts)):
                self._make_next(spec, self._storage)
        return hello

    def _make_next(self, spec: lifetimes.Spec, storage: lifetimes.Storage) -> None:
        """The next lifetime's container, made now on the same storage: the node said
        `prestart` (it touches nothing there before its first request, which it gets only
        after this lifetime's end is complete: docs/protocol.md)."""
        with self._res.lock:  # released by another thread meanwhile: nothing to make
            making = None if self._res.released else lifetimes.make_next(
                spec, self._res, storage)
            if making is not None:
                self._res.ahead.append(making)

    def _take_next(self) -> bool:
        """A restart on a container made ahead of need (`_make_next`), if there is one: a
        new process of the same image and arguments on the same storage, the previous
        lifetime's end complete (its container killed and stopped, a power loss's drop
        done). False when there is none (or its making failed)."""
        with self._res.lock:
            ahead = self._res.ahead.pop(0) if self._res.ahead else None
        if ahead is None:
            return False
        if isinstance(ahead, Future):
            try:
                ahead = ahead.result(timeout=spares.TAKE_WAIT)
            except Exception:  # noqa: BLE001 - docker start of the same container instead
                return False
        assert isinstance(ahead, lifetimes.Lifetime)
        lifetimes.count("next_taken")
        self._tc, self._container = ahead.tc, ahead.container
        self._res.logged.append(str(ahead.container.id))
        self._note(f"start #{self._starts}: a new container of the image on the same storage, "
                   f"started ahead of need (the node said prestart): {ahead.container.name}")
        return True

    def _spec(self) -> lifetimes.Spec:
        """What its first lifetime is made of (fixed at the first start)."""
        if self._spec_ is not None:
            return self._spec_
        return lifetimes.Spec(
            image=self.image, image_id=self.info.id, name=self.name,
            command=tuple(self.command) if self.command is not None else None,
            network_mode=self.network_mode, publish_host=self.publish_host,
            user=run_user(self.info, self._user), image_user=self.info.user,
            memory=self.memory, pids_limit=self.pids_limit, tmpfs_size=self.tmpfs_size,
            layered=self._use_layer and self._no_layer is None,
            layer_timeout=self.timeout + 20)

    def _create_and_start(self) -> None:
        """The first lifetime: taken over from the spares (lifetimes.py), else made here."""
        spec = self._spec_ = self._spec()
        if self._spares and self._take_spare(spec):
            return
        try:
            try:
                got = lifetimes.create(spec, self._res, self._seed, self._note)
            except LayerFailed as exc:  # on a named volume, without the layer's faults
                self._no_layer = str(exc)
                self.fault_capabilities = self.fault_capabilities - LAYER_FAULTS
                spec = self._spec_ = dataclasses.replace(spec, layered=False)
                got = lifetimes.create(spec, self._res, self._seed, self._note)
        finally:
            if self._container is None and self._res.container_id is not None:
                # created but not started: the adapter's (logs, alive, the exit status)
                self._res.logged.append(self._res.container_id)
                with contextlib.suppress(Exception):
                    self._container = self._client.containers.get(self._res.container_id)
        self._took(got)

    def _took(self, got: lifetimes.Lifetime) -> None:
        self._tc, self._container = got.tc, got.container
        self._storage, self._layer = got.storage, got.storage.layer
        self._network = got.storage.network
        if str(got.container.id) not in self._res.logged:
            self._res.logged.append(str(got.container.id))

    def _take_spare(self, spec: lifetimes.Spec) -> bool:
        """The first lifetime made ahead of need by a previous adapter of the same spec,
        handed over whole (its resources become this adapter's); the next is put in the
        making. False when there is none."""
        made = lifetimes.take(spec)
        self._res.spare_key = spec  # FIRST.closed(spec) when released
        if made is None:
            return False
        got = made.lifetime
        assert got is not None
        with critical():  # handed over whole: the spare's resources become ours
            own, self._res = self._res, made.res
            own.spare_key, self._res.spare_key = None, spec
            self._client = made.res.client
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, self._res.release)
            if got.storage.layer is not None:  # the adapter's seed drives its power losses
                got.storage.layer = self._res.layer = NodeLayer(got.storage.layer.fs,
                                                                self._seed, self._note)
            self._took(got)
        own.release()  # the adapter's own client, unused
        self._notes += made.notes
        self._note(f"start #1: the container made ahead of need ({got.container.name}), "
                   "taken over")
        return True

    def _kill_for_power_loss(self, mode: str) -> None:
        if self._container is not None:
            self._retire(f"power loss ({mode}): docker kill (SIGKILL)")

    def crash(self) -> None:
        if self._container is None:
            return
        self._retire("crash: docker kill (SIGKILL)")

    def close(self) -> None:
        """The container, its storage and its layer are removed in the background (off the
        case's path: `lifetimes.settle()` waits for it), its log kept first."""
        if not self._closed:
            self._closed = True
            if self._container is not None and self._res.container_id is not None:
                self._note("close: container and its storage removed")
        self._drop_conn()
        # (detached: once the adapter is dropped, its finalizer would run the release at
        # once, in the thread that dropped it)
        if self._finalizer.detach() is not None:
            self._res.keep_log = True
            lifetimes.reclaim(self._res.release)

    def __enter__(self) -> ContainerAdapter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _drop_conn(self) -> None:
        self._conn = None
        sock, self._res.sock = self._res.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _retire(self, why: str, *, grace: float = 0.0) -> bool:
        """The node is not running afterwards: SIGKILL (after `grace` s for it to exit by
        itself) and wait until the engine sees the container stopped. True when it exited
        within the grace, by itself."""
        self._drop_conn()
        c = self._container
        assert c is not None
        status = None
        if grace > 0:
            with contextlib.suppress(Exception):
                status = c.wait(timeout=grace, condition="not-running").get("StatusCode")
        exited = status is not None
        if status is None:
            with contextlib.suppress(Exception):
                c.kill()  # SIGKILL; a 409 when it is not running any more
            with contextlib.suppress(Exception):
                status = c.wait(timeout=API_TIMEOUT, condition="not-running").get("StatusCode")
        self._stopped = status is not None
        self._note(f"{why} (exit status {status})")
        return exited

    # -- connection ---------------------------------------------------------------------

    def _resolve_address(self) -> tuple[str, int]:
        """Where the node listens, from the container's last inspection (read again after
        every start)."""
        c = self._container
        assert c is not None
        settings = c.attrs.get("NetworkSettings") or {}
        if self.network_mode == "none":  # 127.0.0.1 inside the container's own namespace
            pid = (c.attrs.get("State") or {}).get("Pid")
            if not pid:
                raise ConnectionError("the container has no process (yet)")
            self._netns_pid = int(pid)
            return "127.0.0.1", PORT
        if self.network_mode == "internal":
            nets = settings.get("Networks") or {}
            ip = (nets.get(self._network) or {}).get("IPAddress")
            if not ip:
                raise ConnectionError("the container has no IP address (yet)")
            return str(ip), PORT
        bindings = (settings.get("Ports") or {}).get(f"{PORT}/tcp") or []
        if not bindings:
            raise ConnectionError(f"port {PORT}/tcp is not published (yet)")
        host = self.publish_host
        if host in ("0.0.0.0", "::", "") and self._tc is not None:
            # published on every address: testcontainers knows where the engine is (a
            # remote DOCKER_HOST, a gateway); a loopback bind is reached where it is bound
            # (testcontainers would pick the gateway when it believes it runs in a container)
            try:
                host = str(self._tc.get_container_host_ip())
            except Exception:  # noqa: BLE001
                host = "127.0.0.1"
        return host, int(bindings[0]["HostPort"])

    def _connect_and_hello(self, durability: str, deadline: float) -> Hello:
        """Until `deadline`: connect, send hello, and return its result. A refused or closed
        connection (the node is not listening yet, or a port proxy with nothing behind it)
        is retried; a container that exited is an error at once. The container is inspected
        for its state and address at the first attempt, then for its state every 0.25 s
        (and its address until it has one): the attempts in between cost no engine call."""
        delay, last_error, attempts, last_status_check = 0.005, "", 0, 0.0
        c = self._container
        assert c is not None
        self._addr = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                self._retire("not ready in time, killed")
                raise AdapterError(
                    f"the node was not ready within {self.ready_timeout:g} s (port {PORT} "
                    f"accepting and hello answered; last error: {last_error or 'none'})"
                    f"{self._log_hint()}")
            if now - last_status_check > 0.25 or attempts == 0 or self._addr is None:
                last_status_check = now
                with contextlib.suppress(Exception):
                    c.reload()
                if c.status in ("exited", "dead"):
                    code = (c.attrs.get("State") or {}).get("ExitCode")
                    self._note(f"the container exited during startup (exit status {code})")
                    raise AdapterError(f"the container exited during startup (exit status "
                                       f"{code}){self._log_hint()}")
            attempts += 1
            try:
                if self._addr is None:
                    self._addr = self._resolve_address()
                wait = max(0.05, min(1.0, deadline - time.monotonic()))
                if self.network_mode == "none":
                    assert self._netns_pid is not None
                    sock = connect_in_netns(self._netns_pid, PORT, wait)
                else:
                    sock = socket.create_connection(self._addr, timeout=wait)
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                time.sleep(delay)
                delay = min(delay * 2, 0.025)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._res.sock = sock
            self._conn = Connection(sock, self.max_line)
            ex = self._exchange("hello", {"versions": list(PROTOCOL_VERSIONS),
                                          "harness": "conformance",
                                          "config": {"durability": durability}},
                                min(deadline, time.monotonic() + self.timeout), probing=True)
            if ex is None:  # closed before a reply: not ready (or died; checked above)
                last_error = "connection closed before the hello reply"
                self._drop_conn()
                time.sleep(delay)
                delay = min(delay * 2, 0.025)
                continue
            where = (f" in the network namespace of pid {self._netns_pid}"
                     if self.network_mode == "none" else "")
            self._note(f"ready at {self._addr[0]}:{self._addr[1]}{where} after {attempts} "
                       "attempt(s)")
            return self._check_hello(ex)

    def _check_hello(self, ex: Exchange) -> Hello:
        assert ex.reply is not None
        self._prestart = ex.reply["ok"] is True and isinstance(ex.reply.get("result"), dict) \
            and ex.reply["result"].get("prestart") is True
        if not ex.reply["ok"]:
            err = ex.reply["error"]
            self._retire("hello refused, killed")
            raise HelloRefused(str(err.get("code")), str(err.get("message", "")))
        try:
            return parse_hello(ex.reply["result"])
        except ProtocolViolation:
            self._retire("malformed hello, killed")
            raise

    def _log_hint(self) -> str:
        tail = self.logs().strip()[-800:]
        return f"; container log ends with:\n{tail}" if tail else ""

    # -- requests -----------------------------------------------------------------------

    def request(self, op: str, **fields: Any) -> Exchange:
        if self._conn is None:
            raise AdapterError(f"{op}: the node is not running (crashed, exited or never started)")
        if "id" in fields:
            raise TypeError("request(): 'id' is assigned by the adapter")
        ex = self._exchange(op, fields, time.monotonic() + self.timeout)
        assert ex is not None
        return ex

    def _exchange(self, op: str, fields: dict[str, Any], deadline: float,
                  probing: bool = False) -> Exchange | None:
        """One request and its reply. With `probing` (the hello of a start), a connection
        closed before the reply returns None instead of retiring the node."""
        conn = self._conn
        assert conn is not None
        rid = self._next_id
        self._next_id += 1
        req: dict[str, Any] = {"id": rid, "op": op, **fields}
        data = (json.dumps(req, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if not probing and conn.buf.strip():
            self._violation(req, "a line sent after the last reply and before this request, "
                            "answering nothing", bytes(conn.buf), culprit_id=rid - 1)
        try:
            delivered = conn.send(data, deadline)
        except TimeoutError:
            self._timeout(op, rid, "the node did not read the request")
        if not delivered:
            if probing:
                return None
            self._retire(f"the connection closed; {op} (id {rid}) not delivered", grace=2.0)
            return Exchange(req, None, [])
        try:
            got = read_reply(lambda: conn.readline(deadline), req, max_line=self.max_line,
                             max_depth=self.max_depth)
        except ProtocolViolation:
            self._retire(f"protocol violation during {op} (id {rid}), killed")
            raise
        if got.timed_out:
            self._timeout(op, rid, "no reply")
        if got.reply is None:  # EOF: the node died (or closed the connection) with it in flight
            if probing and not got.events:
                return None
            if not self._retire(f"the node exited with {op} (id {rid}) in flight",
                                grace=EXIT_GRACE):
                raise ReplyViolation(req, f"the node closed the connection but was still "
                                     f"running {EXIT_GRACE:g} s later (it was killed): it can "
                                     "send no reply")
            return Exchange(req, None, got.events)
        if op == "shutdown" and got.reply["ok"]:
            self._retire("clean shutdown" if self._await_exit() else
                         f"shutdown: still running {self.timeout:g} s after its reply, killed")
        return Exchange(req, got.reply, got.events)

    def _await_exit(self) -> bool:
        """After a successful shutdown the node must exit; True if it did in time."""
        c = self._container
        assert c is not None
        try:
            c.wait(timeout=self.timeout, condition="not-running")
        except Exception:  # noqa: BLE001 - a read timeout of the wait call
            return False
        return True

    def _violation(self, req: dict[str, Any], what: str, line: bytes | None = None, *,
                   culprit_id: int | None = None) -> NoReturn:
        self._retire(f"protocol violation during {req['op']} (id {req['id']}), killed")
        raise ReplyViolation(req, what, line, culprit_id=culprit_id)

    def _timeout(self, op: str, rid: int, what: str) -> NoReturn:
        self._retire(f"timeout during {op} (id {rid}), killed")
        raise RequestTimeout(f"{op} (id {rid}): {what} within the {self.timeout:g} s timeout; "
                             "the container was killed")

