"""The example database a `--database` spec names (conformance/explore/database.py).

A directory, or Redis: against a real `redis-server` (Debian's package) started on a free
port in a temporary directory, a Hypothesis run saves its failure there and a second run,
with generation switched off, replays it from there: the sharing a campaign over many
workers relies on (docs/scale-out.md). Without the `redis-server` binary or the `redis`
package those tests are skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.explore.database import (
    INSTALL_HINT,
    KEY_PREFIX,
    DatabaseUnavailable,
    describe,
    open_database,
    redacted,
)

CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(why: str) -> None:
    if CI:
        pytest.fail(f"CI=true, and the Redis tests cannot run: {why}", pytrace=False)
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of its own (no persistence), on a free port; stopped after."""
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None)
    if binary is None:
        _unavailable("no redis-server binary (Debian: apt-get install -y redis-server)")
    try:
        import redis
    except ImportError:
        _unavailable(f"the Python package 'redis' is missing ({INSTALL_HINT})")
    assert binary is not None
    port = _free_port()
    log = (tmp_path / "redis.log").open("wb")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start: {(tmp_path / 'redis.log').read_text()}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _keys(url: str) -> dict[bytes, int]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {k: int(client.scard(k)) for k in client.scan_iter(match=KEY_PREFIX + b"*")}
    finally:
        client.close()


def test_none_is_no_database() -> None:
    assert open_database(None) is None
    assert describe(None) == "no example database"


def test_a_directory(tmp_path: Path) -> None:
    db = open_database(str(tmp_path / "a" / "b"))
    assert isinstance(db, DirectoryBasedExampleDatabase)
    assert (tmp_path / "a" / "b").is_dir()
    db.save(b"k", b"v")
    assert list(db.fetch(b"k")) == [b"v"]
    assert describe(str(tmp_path)) == f"example database {tmp_path} (a directory)"


@pytest.mark.parametrize(("spec", "why"), [
    ("", "empty"),
    ("   ", "empty"),
    ("s3://bucket/db", "unknown scheme 's3'"),
    ("redis://localhost:notaport/0", "not a Redis URL"),
])
def test_usage_errors(spec: str, why: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=why):
        open_database(spec)


def test_a_directory_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseUnavailable, match=r"file/db: cannot use it as a directory"):
        open_database(str(tmp_path / "file" / "db"))


def test_the_redis_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(DatabaseUnavailable) as err:
        open_database("redis://localhost:6379/0")
    assert str(err.value) == ("--database redis://localhost:6379/0: the Python package 'redis' "
                              f"is not installed; {INSTALL_HINT}")
    assert isinstance(err.value, ValueError)  # a usage error


def test_a_server_that_does_not_answer() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable(f"the Python package 'redis' is missing ({INSTALL_HINT})")
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=(
            rf"--database redis://127.0.0.1:{port}/0: the Redis server does not answer a PING "
            r"within 0.5 s \(ConnectionError")):
        open_database(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    assert time.monotonic() - t0 < 10


def test_passwords_stay_out_of_messages() -> None:
    assert redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis://me:s3cret@host/1") == "redis://me:***@host/1"
    assert redacted("redis://host") == "redis://host"
    assert describe("redis://:s3cret@host:6379/0") == (
        "example database redis://:***@host:6379/0 (Redis, shared)")


def test_redis_round_trip(redis_url: str) -> None:
    db = open_database(redis_url)
    assert db is not None and type(db).__name__ == "RedisExampleDatabase"
    db.save(b"key", b"one")
    db.save(b"key", b"two")
    assert sorted(db.fetch(b"key")) == [b"one", b"two"]
    assert _keys(redis_url) == {KEY_PREFIX + b"key": 2}


def test_a_hypothesis_run_saves_to_and_replays_from_redis(redis_url: str) -> None:
    """Worker 1 finds a failure and saves it to the shared database; worker 2, another
    process in real life (here another test function object and another database
    object), replays it from there without generating anything."""
    calls: list[int] = []

    def make(database: Any, phases: list[Phase]) -> Any:
        @settings(database=database, phases=phases, max_examples=500, print_blob=False)
        @given(st.integers(min_value=0, max_value=10_000))
        def prop(x: int) -> None:
            calls.append(x)
            assert x < 5_000

        return prop  # the same source and name: the same database key in both "workers"

    first = make(open_database(redis_url), [Phase.generate, Phase.shrink])
    with pytest.raises(AssertionError):
        first()
    assert calls and max(calls) >= 5_000
    saved = _keys(redis_url)
    assert saved and sum(saved.values()) >= 1, saved
    calls.clear()
    second = make(open_database(redis_url), [Phase.reuse])  # no generation at all
    with pytest.raises(AssertionError):
        second()
    assert calls[0] == 5_000  # the shrunk failure, replayed first from Redis


def test_explore_workers_share_their_failures_through_redis(redis_url: str, tmp_path: Path) -> None:
    """`conformance explore --database redis://...` in process: a worker's failures land in
    Redis; another worker, with another seed and ONE generated sequence of its own, finds
    them first thing, which the same worker without the database does not."""
    from conformance.explore import explore

    spec = "mutant:delete-prefix-not-bundling-meta"
    first = explore(spec, max_examples=200, seed=1, out=tmp_path / "w1", database=redis_url,
                    verify=False, stop_at_first=True, shrink=False)
    assert first.findings, "the mutant falls within seconds (docs/exploration.md)"
    assert sum(_keys(redis_url).values()) >= 1
    alone = explore(spec, max_examples=1, seed=4242, out=tmp_path / "alone", database=None,
                    verify=False)
    late = explore(spec, max_examples=1, seed=4242, out=tmp_path / "late", database=redis_url,
                   verify=False)
    assert not alone.findings and alone.examples == 1
    assert {f.requirement for f in late.findings} >= {f.requirement for f in first.findings}
    assert late.examples > 1  # the saved failures, replayed before its own sequence
