"""Hardening for untrusted images, all on by default.

- an `internal` user-defined bridge network of the adapter's own: no route out of it (no
  internet, no other container, no DNS); the harness reaches the node at its IP on that bridge,
  which works only where the harness runs on the engine's host. Its interface is named
  `conf-<suffix>`, so one host firewall rule (`-i conf-+`) can also close the host's wildcard
  listeners to every node. `network="published"` instead publishes the port on one host
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

from typing import TYPE_CHECKING, Any, Literal, cast

from .transport import PORT

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    import docker

    from .engine import ImageInfo

DEFAULT_USER = "10001:10001"  # who runs an image whose own USER is root
NetworkMode = Literal["internal", "published"]
NETWORK_MODES: tuple[NetworkMode, ...] = ("internal", "published")
INTERFACE_PREFIX = "conf-"  # bridge interfaces of internal networks: a firewall can match "conf-+"
TMP_DIR = "/tmp"


def run_user(info: ImageInfo, user: str | None) -> str:
    """Who runs the node: `user` when given, else the image's USER, or DEFAULT_USER when root."""
    return user or (DEFAULT_USER if info.runs_as_root else info.user)


def create_internal_network(client: docker.DockerClient, name: str, suffix: str,
                            labels: dict[str, str]) -> str:
    """A fresh internal bridge network (no route out) for one node; returns its name."""
    net = client.networks.create(
        name, driver="bridge", internal=True, labels=labels, check_duplicate=True,
        # a recognizable interface name: a host firewall rule can match "conf-+"
        options={"com.docker.network.bridge.name": f"{INTERFACE_PREFIX}{suffix}"})
    return str(net.name)


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
