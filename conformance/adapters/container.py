"""The container adapter: a node under test shipped as a Docker image (docs/protocol.md, TCP).

Built on testcontainers-python (`DockerContainer` creates and starts the container) and the
Docker SDK where testcontainers stops (kill, start again, networks, volumes, logs, removal).

    adapter = ContainerAdapter("applied-index-conformance/reference:latest")
    hello = adapter.start("synced")      # network + volume + container, wait for TCP + hello
    adapter.request("open")
    adapter.crash()                      # docker kill (SIGKILL)
    adapter.start("synced")              # the SAME container again, its /data volume intact
    adapter.close()                      # removes the container, the volume and the network

What the faults mean for a container:

- **crash** = `docker kill` (SIGKILL to the container's PID 1; the kernel then kills every
  process of the container's PID namespace). The page cache belongs to the host kernel, so
  writes the node made survive, synced or not: exactly a process crash. A crash failpoint
  is the node exiting at the named point; the container stops with it.
- **restart** = `docker start` of the same container: same image, same arguments, same
  named volume at /data (its content intact). Its address is read again after every start:
  with `network="published"` the host port can change, with `network="internal"` the IP can.
- **power loss** is NOT simulated: the volume lives on the engine's filesystem, and dropping
  its unsynced writes would need a filesystem that keeps them apart (LazyFS under FUSE, or a
  dm-log-writes/dm-flakey device on the engine host), i.e. privileges on the engine host the
  harness does not take. `power_loss()` raises PowerLossUnsupported (the base class), the
  adapter does not advertise `power_loss`, and cases that need it are not applicable.

Hardening for untrusted images, all on by default: an `internal` user-defined bridge network
of the adapter's own (no route out of it: no internet, no other container, no DNS; the
harness reaches the node at its IP on that bridge, which works only where the harness runs on
the engine's host; see `network` below for the trade-off), a non-root user, a read-only root
filesystem with the /data volume writable and a 16 MiB tmpfs on /tmp (noexec), memory and
pids limits, every capability dropped, no-new-privileges, a bounded json-file log.

Everything created carries the labels `conformance.managed=true`, `conformance.run=<RUN_ID>`
(one id per harness process), `conformance.pid` and `conformance.host`. `close()` removes the
container, the volume and the network; a `weakref.finalize` does it if the adapter is
dropped, an atexit hook removes whatever this run still has (Ctrl-C included), and the first
adapter of a run removes what runs whose process is gone (SIGKILL, power off) left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

from .base import Adapter, AdapterError, Exchange, Hello, ProtocolViolation, RequestTimeout
from .process import PROTOCOL_VERSIONS, HelloRefused, parse_hello

if TYPE_CHECKING:
    from docker.models.containers import Container

    import docker

PORT = 7070  # the port the node listens on inside the container (docs/protocol.md)
DATA_DIR = "/data"
DEFAULT_USER = "10001:10001"  # who runs an image whose own USER is root
RUN_ID = os.environ.get("CONFORMANCE_RUN_ID") or uuid.uuid4().hex[:16]
LABEL_MANAGED = "conformance.managed"
LABEL_RUN = "conformance.run"
LABEL_PID = "conformance.pid"
LABEL_HOST = "conformance.host"
LABEL_SWITCHES = "conformance.capability-switches"  # value "reference-server": see impls.py
VOLUME_INIT_REPO = "applied-index-conformance/volume-init"
NetworkMode = Literal["internal", "published"]
NETWORK_MODES: tuple[NetworkMode, ...] = ("internal", "published")
QUOTE_LIMIT = 300
MAX_LINE = 64 * 1024 * 1024  # bytes in one protocol line before it is a violation
LOG_LINES = 2000  # container log lines kept for the report
API_TIMEOUT = 60  # seconds for one Docker API call


class EngineUnavailable(AdapterError):
    """No Docker engine could be reached (or the docker/testcontainers packages are missing)."""


class ImageNotFound(AdapterError):
    """The image is not in the engine (and no registry is assumed to be reachable)."""


def _labels(**extra: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_RUN: RUN_ID, LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(), **extra}


def docker_client() -> docker.DockerClient:
    """A Docker SDK client from the environment (DOCKER_HOST, ...); EngineUnavailable if none."""
    try:
        import testcontainers  # noqa: F401 - needed to start containers; fail early

        import docker
    except ImportError as exc:
        raise EngineUnavailable(f"{exc.name} is not installed: pip install "
                                "'applied-index-conformance[container]'") from exc
    try:
        client = docker.from_env(timeout=API_TIMEOUT)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises many kinds here
        raise EngineUnavailable(f"no Docker engine is reachable: {exc}") from exc
    return client


def engine_problem() -> str | None:
    """Why containers cannot run here (None when an engine answers)."""
    try:
        docker_client().close()
    except EngineUnavailable as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class ImageInfo:
    name: str
    id: str
    user: str
    labels: dict[str, str]

    @property
    def runs_as_root(self) -> bool:
        user = self.user.strip()
        return user in ("", "root", "0") or user.startswith(("root:", "0:"))

    @property
    def reference_switches(self) -> bool:
        """The image takes the reference server's capability switches as arguments."""
        return self.labels.get(LABEL_SWITCHES) == "reference-server"


def inspect_image(image: str, client: docker.DockerClient | None = None) -> ImageInfo:
    """The image's id, user and labels; ImageNotFound when the engine does not have it."""
    import docker.errors

    own = client is None
    client = client or docker_client()
    try:
        img = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ImageNotFound(
            f"image {image!r} is not in the Docker engine, and no registry is assumed to be "
            "reachable: build it first (the reference and mutant images: docker/build-images.sh) "
            "or `docker load` it") from None
    finally:
        if own:
            client.close()
    config = img.attrs.get("Config") or {}
    return ImageInfo(image, str(img.id), str(config.get("User") or ""),
                     {str(k): str(v) for k, v in (config.get("Labels") or {}).items()})


# -- cleanup of everything a run created --------------------------------------------------


def _remove_labelled(client: docker.DockerClient, label_filter: str,
                     keep: Any = None) -> tuple[int, int, int]:
    """Remove containers, then volumes, then networks matching a label filter.

    `keep(labels) -> bool` spares resources. Returns how many of each were removed.
    """
    removed = [0, 0, 0]
    flt: dict[str, str | list[str] | bool] = {"label": label_filter}
    for c in client.containers.list(all=True, filters=flt):
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
        return _remove_labelled(client, f"{LABEL_RUN}={run_id}")
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
        return _remove_labelled(client, f"{LABEL_MANAGED}=true", keep)
    finally:
        if own:
            client.close()


def list_run(run_id: str = RUN_ID, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """Names of the containers, volumes and networks that still carry this run id."""
    own = client is None
    client = client or docker_client()
    flt: dict[str, str | list[str] | bool] = {"label": f"{LABEL_RUN}={run_id}"}
    try:
        return {"containers": [str(c.name) for c in client.containers.list(all=True, filters=flt)],
                "volumes": [str(v.name) for v in client.volumes.list(filters=flt)],
                "networks": [str(n.name) for n in client.networks.list(filters=flt)]}
    finally:
        if own:
            client.close()


_run_lock = threading.Lock()
_run_started = False


def _first_adapter_of_run(client: docker.DockerClient) -> None:
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


# -- one adapter's resources ----------------------------------------------------------------


class _Resources:
    """What must be removed even if the adapter is never closed (weakref.finalize, atexit).

    Holds no reference to the adapter, so the finalizer does not keep it alive.
    """

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.sock: socket.socket | None = None
        self.container_id: str | None = None
        self.volume: str | None = None
        self.network: str | None = None
        self.other_clients: list[docker.DockerClient] = []  # testcontainers' own

    def release(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        cid, self.container_id = self.container_id, None
        if cid is not None:
            with contextlib.suppress(Exception):
                self.client.api.remove_container(cid, force=True, v=True)
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


class _Conn:
    """One TCP connection to the node: line reads and writes with deadlines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes, deadline: float) -> bool:
        """False when the peer is gone; TimeoutError when it does not read in time."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise
        except OSError:
            return False
        return True

    def readline(self, deadline: float) -> bytes | None:
        """The next line; b"" at EOF (a partial last line counts as EOF); None on timeout."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl + 1])
                del self.buf[:nl + 1]
                return line
            if self.eof:
                return b""
            if len(self.buf) > MAX_LINE:
                raise ProtocolViolation(f"a line longer than {MAX_LINE} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""  # reset by the peer: it is gone
            if chunk:
                self.buf += chunk
            else:
                self.eof = True


def _quote(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return repr(text[:QUOTE_LIMIT] + ("..." if len(text) > QUOTE_LIMIT else ""))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts_key(ts: str) -> str:
    """An RFC 3339 UTC timestamp with its fraction padded to 9 digits, for sorting."""
    head, _, frac = ts.rstrip("Z").partition(".")
    return f"{head}.{frac:0<9}"


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:40] or "node"


class ContainerAdapter(Adapter):
    """A node under test as a container of `image`, one container and one volume per adapter.

    `command` replaces the image's CMD (arguments to its ENTRYPOINT). `timeout` bounds every
    request; `ready_timeout` bounds each start (until the port accepts and `hello` answers).
    `network="internal"` (default): a fresh internal bridge network, the node reached at its
    IP (the harness must run on the engine's host). `network="published"`: the default bridge
    with the port published on `publish_host` (for remote engines or Docker Desktop), which
    gives the node the default bridge's outbound access: not hardened. `user` overrides who
    runs the node ("uid:gid"); by default the image's USER, or DEFAULT_USER when it is root.
    """

    fault_capabilities = frozenset({"process_kill"})

    def __init__(self, image: str, *, timeout: float = 10.0, ready_timeout: float = 60.0,
                 name: str | None = None, command: Sequence[str] | None = None,
                 network: NetworkMode | None = None, publish_host: str = "127.0.0.1",
                 user: str | None = None, memory: str = "512m", pids_limit: int = 256,
                 tmpfs_size: str = "16m") -> None:
        if not timeout > 0 or not ready_timeout > 0:
            raise ValueError("timeout and ready_timeout must be > 0")
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
        self._res = _Resources(self._client)
        # Runs on close(), on garbage collection, or at interpreter exit, whichever is first.
        self._finalizer = weakref.finalize(self, self._res.release)
        _first_adapter_of_run(self._client)
        self.info = inspect_image(image, self._client)
        self._tc: Any = None  # the testcontainers DockerContainer
        self._container: Container | None = None
        self._conn: _Conn | None = None
        self._addr: tuple[str, int] | None = None
        self._next_id = 1
        self._starts = 0
        self._closed = False
        self._notes: list[tuple[str, str]] = []  # (timestamp, text): the adapter's own markers
        self._log_snapshot = ""  # the container's log, kept when the container is removed
        self.start_durations: list[float] = []  # seconds from start() to the hello reply

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
        entries: list[tuple[str, str]] = []
        for line in self._log_snapshot.splitlines():
            ts, _, text = line.partition(" ")
            entries.append((_ts_key(ts), f"{ts[11:23]} {text}"))
        entries += [(_ts_key(ts), f"{ts[11:23]} --- {text} ---") for ts, text in self._notes]
        entries.sort(key=lambda e: e[0])  # stable: equal stamps keep their order
        return "\n".join(text for _, text in entries) + ("\n" if entries else "")

    def _note(self, text: str) -> None:
        self._notes.append((_now(), text))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, durability: str) -> Hello:
        if self._closed:
            raise AdapterError("the adapter is closed")
        t0 = time.monotonic()
        self._starts += 1
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
        from docker.types import LogConfig
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        # Ryuk (testcontainers' reaper) is an image pulled from a registry; this adapter
        # removes what it creates itself (close, finalize, atexit, orphan reaping).
        testcontainers_config.ryuk_disabled = True
        client = self._client
        suffix = uuid.uuid4().hex[:10]
        base = f"conformance-{_safe(self.name.rsplit('/', 1)[-1])}-{suffix}"
        labels = _labels(**{"conformance.image": self.image})
        user = self._user or (DEFAULT_USER if self.info.runs_as_root else self.info.user)

        kwargs: dict[str, Any] = {}
        if self.network_mode == "internal":
            net = client.networks.create(
                base, driver="bridge", internal=True, labels=labels, check_duplicate=True,
                # a recognizable interface name: a host firewall rule can match "conf-+"
                options={"com.docker.network.bridge.name": f"conf-{suffix}"})
            self._res.network = str(net.name)
            kwargs["network"] = net.name
        vol = client.volumes.create(name=base, labels=labels)
        self._res.volume = str(vol.name)
        if user != self.info.user:  # the image's own user owns its /data: nothing to prepare
            self._prepare_volume(vol.name, user)

        tc = DockerContainer(self.image, name=base)
        if self.command is not None:
            tc.with_command(self.command)
        tc.with_volume_mapping(vol.name, DATA_DIR, mode="rw")
        tc.with_tmpfs_mount("/tmp", f"size={self.tmpfs_size},mode=1777,noexec,nosuid,nodev")
        if self.network_mode == "published":
            # a random host port on publish_host only (testcontainers would bind every address)
            cast(dict[str, Any], tc.ports)[f"{PORT}/tcp"] = (self.publish_host, None)
        tc.with_kwargs(
            labels=labels, user=user, read_only=True, cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"], mem_limit=self.memory,
            memswap_limit=self.memory, pids_limit=self.pids_limit, hostname="node",
            restart_policy={"Name": "no"},
            log_config=LogConfig(type="json-file", config={"max-size": "16m", "max-file": "1"}),
            **kwargs)
        self._tc = tc
        self._note(f"start #{self._starts}: {self.image} as {user or 'image user'}, "
                   f"{self.network_mode} network, volume {vol.name} at {DATA_DIR}")
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

    def _prepare_volume(self, volume: str, user: str) -> None:
        """Make the fresh volume's root owned by a numeric `user` (uid[:gid]), running nothing.

        The engine copies an image's directory, with its owner, into an empty volume when a
        container is *created* with the volume there; a 0-byte image made of one `data/`
        directory owned by the user is enough, and its container is never started. An image
        whose own /data has another owner still wins: its copy-up happens when its container
        is created.
        """
        m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
        if m is None:
            return  # a user name: the image has to own /data itself
        uid, gid = int(m.group(1)), int(m.group(2) or m.group(1))
        tag = f"{VOLUME_INIT_REPO}:{uid}-{gid}"
        import docker.errors

        try:
            self._client.images.get(tag)
        except docker.errors.ImageNotFound:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                ti = tarfile.TarInfo("data")
                ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, 0o700, uid, gid
                tf.addfile(ti)
            self._client.api.import_image_from_data(
                buf.getvalue(), repository=VOLUME_INIT_REPO, tag=f"{uid}-{gid}",
                changes=[f"LABEL {LABEL_MANAGED}=volume-init"])
        init = self._client.containers.create(
            tag, ["/none"], network_mode="none", labels=_labels(),
            volumes={volume: {"bind": DATA_DIR, "mode": "rw"}})
        init.remove(force=True)

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

    def _retire(self, why: str, *, grace: float = 0.0) -> None:
        """The node is not running afterwards: SIGKILL (after `grace` s for it to exit by
        itself) and wait until the engine sees the container stopped."""
        self._drop_conn()
        c = self._container
        assert c is not None
        status = None
        if grace > 0:
            with contextlib.suppress(Exception):
                status = c.wait(timeout=grace, condition="not-running").get("StatusCode")
        if status is None:
            with contextlib.suppress(Exception):
                c.kill()  # SIGKILL; a 409 when it is not running any more
            with contextlib.suppress(Exception):
                status = c.wait(timeout=API_TIMEOUT, condition="not-running").get("StatusCode")
        self._note(f"{why} (exit status {status})")

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
            self._conn = _Conn(sock)
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
        events: list[dict[str, Any]] = []
        try:
            delivered = conn.send(data, deadline)
        except TimeoutError:
            self._timeout(op, rid, "the node did not read the request")
        if not delivered:
            if probing:
                return None
            self._retire(f"the connection closed; {op} (id {rid}) not delivered", grace=2.0)
            return Exchange(req, None, events)
        while True:
            try:
                raw = conn.readline(deadline)
            except ProtocolViolation as exc:
                self._retire(f"protocol violation during {op} (id {rid}), killed")
                raise ProtocolViolation(f"{op} (id {rid}): {exc}") from None
            if raw is None:
                self._timeout(op, rid, "no reply")
            if raw == b"":  # EOF: the node died (or closed the connection) with it in flight
                if probing and not events:
                    return None
                self._retire(f"the node exited with {op} (id {rid}) in flight", grace=2.0)
                return Exchange(req, None, events)
            msg = self._decode(op, rid, raw)
            if msg is None:
                continue
            if "id" not in msg:
                if not isinstance(msg.get("event"), str):
                    self._violation(op, rid, "neither a reply (id) nor an event", raw)
                events.append(msg)
                continue
            self._check_reply(op, rid, msg, raw)
            if op == "shutdown" and msg["ok"]:
                self._retire("clean shutdown" if self._await_exit() else
                             f"shutdown: still running {self.timeout:g} s after its reply, killed")
            return Exchange(req, msg, events)

    def _await_exit(self) -> bool:
        """After a successful shutdown the node must exit; True if it did in time."""
        c = self._container
        assert c is not None
        try:
            c.wait(timeout=self.timeout, condition="not-running")
        except Exception:  # noqa: BLE001 - a read timeout of the wait call
            return False
        return True

    def _decode(self, op: str, rid: int, raw: bytes) -> dict[str, Any] | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._violation(op, rid, "line is not UTF-8", raw)
        if not text.strip():
            return None
        try:
            msg = json.loads(text)
        except ValueError:
            self._violation(op, rid, "line is not JSON", raw)
        if not isinstance(msg, dict):
            self._violation(op, rid, "line is not a JSON object", raw)
        return msg

    def _check_reply(self, op: str, rid: int, msg: dict[str, Any], raw: bytes) -> None:
        got = msg["id"]
        if isinstance(got, bool) or got != rid:
            self._violation(op, rid, f"reply id {got!r} does not match request id {rid}", raw)
        ok = msg.get("ok")
        if not isinstance(ok, bool):
            self._violation(op, rid, "reply without a boolean 'ok'", raw)
        if ok and not isinstance(msg.get("result"), dict):
            self._violation(op, rid, "ok reply without a 'result' object", raw)
        if not ok:
            err = msg.get("error")
            if not isinstance(err, dict) or not isinstance(err.get("code"), str):
                self._violation(op, rid, "error reply without an 'error' object with a "
                                "string 'code'", raw)

    def _violation(self, op: str, rid: int, what: str, raw: bytes) -> NoReturn:
        self._retire(f"protocol violation during {op} (id {rid}), killed")
        raise ProtocolViolation(f"{op} (id {rid}): {what}: {_quote(raw)}")

    def _timeout(self, op: str, rid: int, what: str) -> NoReturn:
        self._retire(f"timeout during {op} (id {rid}), killed")
        raise RequestTimeout(f"{op} (id {rid}): {what} within the {self.timeout:g} s timeout; "
                             "the container was killed")


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
        for kind, items in (("container", client.containers.list(all=True, filters=flt)),
                            ("volume", client.volumes.list(filters=flt)),
                            ("network", client.networks.list(filters=flt))):
            for item in items:
                print(f"{kind:<9} {item.name}")
        if args.prune:
            n = _remove_labelled(client, f"{LABEL_MANAGED}=true")
            print(f"removed {n[0]} container(s), {n[1]} volume(s), {n[2]} network(s)")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
