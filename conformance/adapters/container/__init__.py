"""The container adapter: a node under test shipped as a Docker image (docs/protocol.md, TCP).

Built on testcontainers-python (`DockerContainer` creates and starts the container) and the
Docker SDK where testcontainers stops (kill, start again, networks, volumes, logs, removal).

    adapter = ContainerAdapter("applied-index-conformance/reference:latest")
    hello = adapter.start("synced")      # volume + container (or one made ahead), hello
    adapter.request("open")
    adapter.crash()                      # docker kill (SIGKILL)
    adapter.start("synced")              # a new process on the same /data: docker start of
                                         # the same container, or (prestart) a new one
    adapter.close()                      # removes containers and volume, in the background

One module per job:

- `adapter`: the ContainerAdapter (lifecycle, faults, the hello and the requests);
- `lifetimes`: a first lifetime's storage and container, made by the adapter or ahead of
  need while the previous case runs, next lifetimes' containers made ahead for a node that
  says prestart, and the background removal (`settle`, `drain`);
- `engine`: the Docker client, engine availability, image inspection;
- `hardening`: the network, user, read-only root, limits and log options;
- `volume`: the node's /data storage (a named volume) and how it is mounted;
- `transport`: the TCP JSON-lines connection to the node (from inside the container's
  network namespace with no network);
- `logs`: the container's log merged with the adapter's markers, for the report;
- `cleanup`: labels, run id, the per-adapter resources, removal at close / finalize / atexit,
  reaping of what dead runs left, and `python -m conformance.adapters.container [--prune]`.
"""

from .adapter import ContainerAdapter
from .cleanup import (
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_PID,
    LABEL_RUN,
    RUN_ID,
    list_run,
    main,
    reap_orphans,
    remove_run,
)
from .engine import (
    API_TIMEOUT,
    LABEL_SWITCHES,
    EngineUnavailable,
    ImageInfo,
    ImageNotFound,
    docker_client,
    engine_problem,
    inspect_image,
)
from .hardening import DEFAULT_USER, NETWORK_MODES, NetworkMode
from .logs import LOG_LINES
from .transport import MAX_LINE, PORT
from .volume import DATA_DIR, VOLUME_INIT_REPO

__all__ = [
    "API_TIMEOUT",
    "DATA_DIR",
    "DEFAULT_USER",
    "LABEL_HOST",
    "LABEL_MANAGED",
    "LABEL_PID",
    "LABEL_RUN",
    "LABEL_SWITCHES",
    "LOG_LINES",
    "MAX_LINE",
    "NETWORK_MODES",
    "PORT",
    "RUN_ID",
    "VOLUME_INIT_REPO",
    "ContainerAdapter",
    "EngineUnavailable",
    "ImageInfo",
    "ImageNotFound",
    "NetworkMode",
    "docker_client",
    "engine_problem",
    "inspect_image",
    "list_run",
    "main",
    "reap_orphans",
    "remove_run",
]
