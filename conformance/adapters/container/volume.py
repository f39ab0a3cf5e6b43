"""The node's durable storage: /data, a named volume of its own (one per adapter).

The volume outlives the container's lifetimes: a crash (`docker kill`) and a restart (`docker
start` of the same container) find it intact, and `close()` removes it with the container
(cleanup.Resources). It lives on the engine's filesystem: dropping its unsynced writes (a power
loss) would need a filesystem that keeps them apart, mounted on the engine host (see adapter.py);
`mount_data` takes a host path as well as a volume name, so such a mount can take its place.
"""

from __future__ import annotations

import io
import re
import tarfile
from typing import TYPE_CHECKING

from .cleanup import LABEL_MANAGED, run_labels

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    import docker

DATA_DIR = "/data"
VOLUME_INIT_REPO = "applied-index-conformance/volume-init"


def create_volume(client: docker.DockerClient, name: str, labels: dict[str, str]) -> str:
    """A fresh named volume; returns its name (the volume spec for `mount_data`)."""
    return str(client.volumes.create(name=name, labels=labels).name)


def prepare_volume(client: docker.DockerClient, volume: str, user: str) -> None:
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
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("data")
            ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, 0o700, uid, gid
            tf.addfile(ti)
        client.api.import_image_from_data(
            buf.getvalue(), repository=VOLUME_INIT_REPO, tag=f"{uid}-{gid}",
            changes=[f"LABEL {LABEL_MANAGED}=volume-init"])
    init = client.containers.create(
        tag, ["/none"], network_mode="none", labels=run_labels(),
        volumes={volume: {"bind": DATA_DIR, "mode": "rw"}})
    init.remove(force=True)


def mount_data(tc: DockerContainer, volume: str) -> None:
    """Mount the node's storage at DATA_DIR, read-write (the only writable place besides /tmp).

    `volume` is the volume spec's source: the name of a named volume (`create_volume`); an
    absolute path on the engine host would make the same mapping a bind mount.
    """
    tc.with_volume_mapping(volume, DATA_DIR, mode="rw")
