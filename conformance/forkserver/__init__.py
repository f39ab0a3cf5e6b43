"""Fork servers: Python programs the harness starts many times (the reference node's
server, once per lifetime) forked from a process that has imported them once, instead of
each start paying for a new interpreter and its imports (docs/performance.md).

- `zygote.py`: the process that imports the program and forks it on request;
- `client.py`: the harness's side: `fork(program, argv)` (None: start it yourself),
  `server_for(program)`, `ForkServer.spawn`, and `Forked`, used where a `subprocess.Popen`
  would be.

Only programs the harness knows (its own reference server) are started so: a node under
test is always started from its own command line. `CONFORMANCE_FORKSERVER=off` switches
fork servers off (to measure them, or to rule them out).
"""

from .client import (
    FORKSERVER_ENV,
    Forked,
    ForkServer,
    ForkServerUnavailable,
    Program,
    close_all,
    enabled,
    fork,
    server_for,
)

__all__ = ["FORKSERVER_ENV", "ForkServer", "ForkServerUnavailable", "Forked", "Program",
           "close_all", "enabled", "fork", "server_for"]
