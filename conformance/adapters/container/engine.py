"""Docker engine access: the SDK client, and what the engine knows of an image.

The docker and testcontainers packages are optional (`pip install
'applied-index-conformance[container]'`): they are imported when an engine is first asked for,
and their absence is an EngineUnavailable, like an engine that does not answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base import AdapterError

if TYPE_CHECKING:
    import docker

API_TIMEOUT = 60  # seconds for one Docker API call
LABEL_SWITCHES = "conformance.capability-switches"  # value "reference-server": see impls.py


class EngineUnavailable(AdapterError):
    """No Docker engine could be reached (or the docker/testcontainers packages are missing)."""


class ImageNotFound(AdapterError):
    """The image is not in the engine (and no registry is assumed to be reachable)."""


def docker_client() -> docker.DockerClient:
    """A Docker SDK client from the environment (DOCKER_HOST, ...); EngineUnavailable if none."""
    try:
        import testcontainers  # noqa: F401 - needed to start containers; fail early

        import docker
    except ImportError as exc:
        raise EngineUnavailable(f"{exc.name} is not installed: pip install "
                                "'applied-index-conformance[container]'") from exc
    where = os.environ.get("DOCKER_HOST", "")
    try:
        # the API version the engine gave the first client (one /version call less each)
        client = docker.from_env(timeout=API_TIMEOUT, version=_versions.get(where))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - docker raises many kinds here
        raise EngineUnavailable(f"no Docker engine is reachable: {exc}") from exc
    _versions[where] = str(client.api.api_version)
    return client


_versions: dict[str, str] = {}  # DOCKER_HOST -> the API version its engine speaks


def api_version(client: docker.DockerClient) -> str:
    """The API version `client` speaks (for another client of the same engine)."""
    return str(client.api.api_version)


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
