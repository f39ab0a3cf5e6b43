"""Hypothesis' example database for `conformance explore`: a directory, or Redis to share.

    open_database(None)                         -> None (no database: --no-database)
    open_database(".hypothesis/conformance")    -> DirectoryBasedExampleDatabase (the default)
    open_database("redis://redis:6379/0")       -> RedisExampleDatabase, shared by every worker

The example database is where Hypothesis keeps the failing sequences of earlier runs (and a
few interesting ones); the first campaign of a run replays them before generating anything
(run.py, campaign.py). A directory is private to a machine. A Redis server makes it one database
for every worker of a campaign spread over many machines: what one worker found, the next
worker to start replays first (docs/scale-out.md). The YAML fixtures each worker writes stay
the record; the database is a cache (entries expire after `EXPIRE_AFTER` unused).

A spec is `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for TLS, `unix://` for
a socket: anything `redis.Redis.from_url` takes); any other `scheme://` is refused; anything
else is a directory. `open_database` checks what it can at once, so that a campaign never
starts on a database it cannot use: the `redis` package is there (the `scale` extra), the
server answers a PING within `timeout` seconds, the directory can be created. Otherwise it
raises `DatabaseUnavailable` (a ValueError: a usage error, exit status 2), naming the spec
and what to do.

Every key this module's Redis database writes starts with `KEY_PREFIX`, so that a Redis
server shared with other users keeps them apart (`redis-cli --scan --pattern
'conformance-explore:*'` lists them).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

REDIS_SCHEMES = ("redis", "rediss", "unix")
KEY_PREFIX = b"conformance-explore:"
# Hypothesis' own default: a week's gap between two runs keeps the examples
EXPIRE_AFTER = timedelta(days=8)
PING_TIMEOUT = 3.0  # seconds
INSTALL_HINT = "pip install 'applied-index-conformance[scale]'"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class DatabaseUnavailable(ValueError):
    """The example database a spec names cannot be used: the message names the spec and why."""


def is_redis(spec: str) -> bool:
    m = _SCHEME.match(spec)
    return m is not None and m.group(1).lower() in REDIS_SCHEMES


def redacted(spec: str) -> str:
    """`spec` with the password of a Redis URL replaced by `***` (for messages and logs)."""
    if not is_redis(spec):
        return spec
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe(spec: str | None) -> str:
    """The database as the command's log line names it."""
    if spec is None:
        return "no example database"
    if is_redis(spec):
        return f"example database {redacted(spec)} (Redis, shared)"
    return f"example database {spec} (a directory)"


def open_database(spec: str | None, *, timeout: float = PING_TIMEOUT) -> ExampleDatabase | None:
    """The example database `spec` names (module doc); None for None. Raises
    `DatabaseUnavailable` when it cannot be used, saying why and what to do."""
    if spec is None:
        return None
    if not spec.strip():
        raise DatabaseUnavailable("--database: empty; give a directory or redis://host[:port][/db]")
    m = _SCHEME.match(spec)
    if m and m.group(1).lower() in REDIS_SCHEMES:
        return _open_redis(spec, timeout)
    if m:
        raise DatabaseUnavailable(
            f"--database {spec}: unknown scheme {m.group(1)!r}; give a directory or "
            f"redis://host[:port][/db] (also {', '.join(s + '://' for s in REDIS_SCHEMES[1:])})")
    path = Path(spec)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"--database {spec}: cannot use it as a directory: {exc.strerror or exc}") from None
    return DirectoryBasedExampleDatabase(str(path))


def _open_redis(spec: str, timeout: float) -> ExampleDatabase:
    shown = redacted(spec)
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseUnavailable(
            f"--database {shown}: the Python package 'redis' is not installed; "
            f"{INSTALL_HINT}") from None
    try:
        client = redis.Redis.from_url(spec, socket_connect_timeout=timeout,
                                      socket_timeout=timeout)
    except ValueError as exc:  # a malformed URL (port, db)
        raise DatabaseUnavailable(f"--database {shown}: not a Redis URL: {exc}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise DatabaseUnavailable(
            f"--database {shown}: the Redis server does not answer a PING within {timeout:g} s "
            f"({type(exc).__name__}: {exc}); is it running and reachable from here?") from None
    return RedisExampleDatabase(client, expire_after=EXPIRE_AFTER, key_prefix=KEY_PREFIX)
