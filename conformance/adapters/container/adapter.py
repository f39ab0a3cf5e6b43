"""The ContainerAdapter: a node under test as a container of an image, over TCP.

What the faults mean for a container:

- **crash** = `docker kill` (SIGKILL to the container's PID 1; the kernel then kills every
  process of the container's PID namespace). The page cache belongs to the host kernel, so
  writes the node made survive, synced or not: exactly a process crash. A crash failpoint
  is the node exiting at the named point; the container stops with it.
- **restart** = `docker start` of the same container: same image, same arguments, same
  named volume at /data (its content intact). Its address is read again after every start:
  with `network="published"` the host port can change, with `network="internal"` the IP can.
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
import json
import os
import re
import socket
import time
import uuid
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ...wire import MAX_DEPTH, MAX_LINE, ReplyViolation, read_reply
from ..base import Adapter, AdapterError, Exchange, Hello, ProtocolViolation, RequestTimeout
from ..layer import LAYER_FAULTS, LayerFailed, LayerFaults, NodeLayer, unavailable
from ..process import PROTOCOL_VERSIONS, HelloRefused, parse_hello
from .cleanup import Resources, first_adapter_of_run, run_labels
from .engine import API_TIMEOUT, docker_client, inspect_image
from .hardening import (
    NETWORK_MODES,
    TMP_DIR,
    NetworkMode,
    create_internal_network,
    publish_port,
    run_options,
    run_user,
    tmpfs_options,
)
from .logs import LOG_LINES, now
from .logs import merge as merge_log
from .transport import PORT, Connection
from .volume import DATA_DIR, create_volume, mount_data, prepare_volume

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


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "node"


class ContainerAdapter(LayerFaults, Adapter):
    """A node under test as a container of `image`, one container and one volume per adapter.

    `command` replaces the image's CMD (arguments to its ENTRYPOINT). `timeout` bounds every
    request; `ready_timeout` bounds each start (until the port accepts and `hello` answers).
    `network="internal"` (default): a fresh internal bridge network, the node reached at its
    IP (the harness must run on the engine's host). `network="published"`: the default bridge
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
        network = network or os.environ.get("CONFORMANCE_CONTAINER_NETWORK") or "internal"  # type: ignore[assignment]
        if network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {NETWORK_MODES}, got {network!r}")
        if isinstance(command, str):
            raise ValueError("command must be a sequence of arguments (not one string)")
        self.image = image
        self.timeout = float(timeout)
        self.ready_timeout = float(ready_timeout)
        self.name = name or image
        self.command: list[str] | None = list(command) if command is not None else None
        self.network_mode: NetworkMode = network
        self.publish_host = publish_host
        self.memory = memory
        self.pids_limit = pids_limit
        self.tmpfs_size = tmpfs_size
        self._user = user
        self._client = docker_client()
        self._res = Resources(self._client)
        # Runs on close(), on garbage collection, or at interpreter exit, whichever is first.
        self._finalizer = weakref.finalize(self, self._res.release)
        first_adapter_of_run(self._client)
        self.info = inspect_image(image, self._client)
        self._tc: Any = None  # the testcontainers DockerContainer
        self._container: Container | None = None
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
        return self._res.network

    def alive(self) -> bool:
        if self._conn is None or self._container is None:
            return False
        try:
            self._container.reload()
        except Exception:  # noqa: BLE001
            return False
        return bool(self._container.status == "running")

    def logs(self) -> str:
        """The container's log (every lifetime, newest LOG_LINES lines) with the adapter's
        markers (start, crash, exit) merged in by time."""
        if self._container is not None and self._res.container_id is not None:
            with contextlib.suppress(Exception):
                raw = self._container.logs(stdout=True, stderr=True, timestamps=True,
                                           tail=LOG_LINES)
                self._log_snapshot = raw.decode("utf-8", errors="replace")
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
            self._container.reload()
            if self._container.status in ("running", "restarting"):
                raise AdapterError("the node is already running: crash() or shut it down first")
            self._note(f"start #{self._starts}: docker start (same container, same volume)")
            try:
                self._container.start()
            except Exception as exc:  # noqa: BLE001
                raise AdapterError(f"docker start failed: {exc}") from exc
        hello = self._connect_and_hello(durability, t0 + self.ready_timeout)
        self.start_durations.append(time.monotonic() - t0)
        return hello

    def _create_and_start(self) -> None:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        # Ryuk (testcontainers' reaper) is an image pulled from a registry; this adapter
        # removes what it creates itself (close, finalize, atexit, orphan reaping).
        testcontainers_config.ryuk_disabled = True
        client = self._client
        suffix = uuid.uuid4().hex[:10]
        base = f"conformance-{_safe(self.name.rsplit('/', 1)[-1])}-{suffix}"
        labels = run_labels(**{"conformance.image": self.image})
        user = run_user(self.info, self._user)

        kwargs: dict[str, Any] = {}
        if self.network_mode == "internal":
            self._res.network = create_internal_network(client, base, suffix, labels)
            kwargs["network"] = self._res.network
        volume = self._setup_data(base, labels, user)

        tc = DockerContainer(self.image, name=base)
        if self.command is not None:
            tc.with_command(self.command)
        mount_data(tc, volume)
        tc.with_tmpfs_mount(TMP_DIR, tmpfs_options(self.tmpfs_size))
        if self.network_mode == "published":
            publish_port(tc, self.publish_host)
        tc.with_kwargs(**run_options(labels=labels, user=user, memory=self.memory,
                                     pids_limit=self.pids_limit), **kwargs)
        self._tc = tc
        self._note(f"start #{self._starts}: {self.image} as {user or 'image user'}, "
                   f"{self.network_mode} network, volume {volume} at {DATA_DIR}")
        self._res.other_clients.append(tc.get_docker_client().client)
        try:
            tc.start()
        except Exception as exc:  # noqa: BLE001 - docker raises many kinds here
            raise AdapterError(f"cannot start a container of {self.image}: {exc}") from exc
        finally:
            # created (even if not started): from here on it is the wrapped SDK container's
            if tc._container is not None:
                self._res.container_id = str(tc._container.id)
                self._container = tc.get_wrapped_container()

    def _setup_data(self, name: str, labels: dict[str, str], user: str) -> str:
        """The node's /data storage, owned by `user`: the crash-simulating filesystem when it
        can be used, else a fresh named volume (volume.py); both removed by close(). Returns
        the source (a host path or a volume name) that `mount_data` mounts."""
        if self._use_layer and self._no_layer is None:
            try:
                return self._mount_layer(user)
            except LayerFailed as exc:
                self._no_layer = str(exc)
                self.fault_capabilities = self.fault_capabilities - LAYER_FAULTS
        volume = create_volume(self._client, name, labels)
        self._res.volume = volume
        if user != self.info.user:  # the image's own user owns its /data: nothing to prepare
            prepare_volume(self._client, volume, user)
        return volume

    def _mount_layer(self, user: str) -> str:
        # mode 0o755: the engine and the run user traverse the layer's directory to the mount
        layer = self._layer = self._res.layer = NodeLayer.take(
            self._seed, self._note, prefix="conformance-layer-", allow_other=True, mode=0o755,
            timeout=self.timeout + 20)
        m = re.fullmatch(r"(\d+)(?::(\d+))?", user or "")
        root = layer.backing_root
        if m is not None:  # the mount's root is what the node sees as /data
            os.chown(root, int(m.group(1)), int(m.group(2) or m.group(1)))
            root.chmod(0o700)
        else:  # a named user of the image: its uid is not known here
            root.chmod(0o777)
        self._note(f"/data: the crash-simulating filesystem at {layer.mountpoint}")
        return str(layer.mountpoint)

    def _kill_for_power_loss(self, mode: str) -> None:
        if self._container is not None:
            self._retire(f"power loss ({mode}): docker kill (SIGKILL)")

    def crash(self) -> None:
        if self._container is None:
            return
        self._retire("crash: docker kill (SIGKILL)")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._container is not None and self._res.container_id is not None:
                self.logs()  # keep the log: the container is about to be removed
                self._note("close: container, volume and network removed")
        self._conn = None
        self._finalizer()  # runs _Resources.release at most once

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
        self._note(f"{why} (exit status {status})")
        return exited

    # -- connection ---------------------------------------------------------------------

    def _resolve_address(self) -> tuple[str, int]:
        """Where the node listens, read again after every start."""
        c = self._container
        assert c is not None
        c.reload()
        settings = c.attrs.get("NetworkSettings") or {}
        if self.network_mode == "internal":
            nets = settings.get("Networks") or {}
            ip = (nets.get(self._res.network) or {}).get("IPAddress")
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
        is retried; a container that exited is an error at once."""
        delay, last_error, attempts, last_status_check = 0.005, "", 0, 0.0
        c = self._container
        assert c is not None
        while True:
            now = time.monotonic()
            if now >= deadline:
                self._retire("not ready in time, killed")
                raise AdapterError(
                    f"the node was not ready within {self.ready_timeout:g} s (port {PORT} "
                    f"accepting and hello answered; last error: {last_error or 'none'})"
                    f"{self._log_hint()}")
            if now - last_status_check > 0.25 or attempts == 0:
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
                self._addr = self._resolve_address()
                sock = socket.create_connection(self._addr, timeout=max(
                    0.05, min(1.0, deadline - time.monotonic())))
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
            self._note(f"ready at {self._addr[0]}:{self._addr[1]} after {attempts} attempt(s)")
            return self._check_hello(ex)

    def _check_hello(self, ex: Exchange) -> Hello:
        assert ex.reply is not None
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

