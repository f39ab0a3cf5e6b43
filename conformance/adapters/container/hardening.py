"""Hardening for untrusted images, all on by default.

- no network at all (`network="none"`, the default where the harness runs as root on the
  engine's host): the node's network namespace has only its loopback interface, and the
  harness connects to 127.0.0.1:7070 from inside that namespace (transport.connect_in_netns,
  setns(2)). No route anywhere, no other container, no host service, and no network
  endpoint for the engine to set up and tear down at every start and kill (~0.25 s of
  engine CPU per lifetime here, docs/performance.md, "Containers");
- elsewhere, an `internal` user-defined bridge network: no route out of it (no internet, no DNS), and
  no other container: one network per run (`run_network`), shared by the run's nodes, with
  inter-container communication off (`enable_icc=false`: the engine drops traffic between
  two containers of the bridge, so a node reaches no other node, of this case or of a case
  running beside it under --jobs; tests/container/test_container_adapter.py checks it with a
  second container). The harness reaches the node at its IP on that bridge, which works only
  where the harness runs on the engine's host. Its interface is named `conf-<suffix>`, so one
  host firewall rule (`-i conf-+`) can also close the host's wildcard listeners to every
  node. (A network per case cost ~0.15 s of engine time to create and remove, for isolation
  that icc=false gives as well.) `network="published"` instead publishes the port on one host
  address, on the default bridge (for remote engines or Docker Desktop), which gives the node
  the default bridge's outbound access: not hardened;
- a non-root user: the image's USER, or DEFAULT_USER when that is root (its /data volume is
  given to that user: volume.prepare_volume);
- a read-only root filesystem, with the /data volume writable (volume.py) and a 16 MiB tmpfs
  on /tmp (noexec, nosuid, nodev);
- memory (swap included) and pids limits, every capability dropped, no-new-privileges;
- a bounded json-file log.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any, Literal, cast

from .transport import PORT

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    import docker

    from .engine import ImageInfo

DEFAULT_USER = "10001:10001"  # who runs an image whose own USER is root
NetworkMode = Literal["none", "internal", "published"]
NETWORK_MODES: tuple[NetworkMode, ...] = ("none", "internal", "published")
INTERFACE_PREFIX = "conf-"  # bridge interfaces of internal networks: a firewall can match "conf-+"
TMP_DIR = "/tmp"


def run_user(info: ImageInfo, user: str | None) -> str:
    """Who runs the node: `user` when given, else the image's USER, or DEFAULT_USER when root."""
    return user or (DEFAULT_USER if info.runs_as_root else info.user)


def create_internal_network(client: docker.DockerClient, name: str, suffix: str,
                            labels: dict[str, str]) -> str:
    """A fresh internal bridge network (no route out, no traffic between its containers);
    returns its name."""
    net = client.networks.create(
        name, driver="bridge", internal=True, labels=labels, check_duplicate=True,
        # a recognizable interface name: a host firewall rule can match "conf-+"
        options={"com.docker.network.bridge.name": f"{INTERFACE_PREFIX}{suffix}",
                 "com.docker.network.bridge.enable_icc": "false"})
    return str(net.name)


_networks: dict[str, str] = {}  # engine address -> this run's internal network there
_networks_lock = threading.Lock()


def run_network(client: docker.DockerClient, labels: dict[str, str]) -> str:
    """This run's internal network on the engine of `client`, created at its first need and
    shared by the run's nodes (removed at the run's end: cleanup.remove_run, at exit, or
    `forget_networks`)."""
    url = str(getattr(client.api, "base_url", ""))
    with _networks_lock:
        name = _networks.get(url)
        if name is None:
            suffix = uuid.uuid4().hex[:10]
            name = _networks[url] = create_internal_network(
                client, f"conformance-run-{suffix}", suffix, labels)
        return name


def forget_network(client: docker.DockerClient, name: str) -> None:
    """`name` is gone (removed by a cleanup): the next `run_network` creates a new one."""
    url = str(getattr(client.api, "base_url", ""))
    with _networks_lock:
        if _networks.get(url) == name:
            del _networks[url]


def forget_networks() -> list[str]:
    """Forget the run's networks (the caller removes them); returns their names."""
    with _networks_lock:
        names = list(_networks.values())
        _networks.clear()
    return names


def publish_port(tc: DockerContainer, host: str) -> None:
    """Publish the node's PORT on a random port of `host` only (testcontainers would bind
    every address)."""
    cast(dict[str, Any], tc.ports)[f"{PORT}/tcp"] = (host, None)


def tmpfs_options(size: str) -> str:
    """The mount options of the writable TMP_DIR under the read-only root."""
    return f"size={size},mode=1777,noexec,nosuid,nodev"


def run_options(*, labels: dict[str, str], user: str, memory: str,
                pids_limit: int) -> dict[str, Any]:
    """The container's create options: the labels, the user, the read-only root filesystem, no
    capabilities, no-new-privileges, the limits and the bounded log."""
    from docker.types import LogConfig

    return dict(
        labels=labels, user=user, read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"], mem_limit=memory,
        memswap_limit=memory, pids_limit=pids_limit, hostname="node",
        restart_policy={"Name": "no"},
        log_config=LogConfig(type="json-file", config={"max-size": "16m", "max-file": "1"}))
