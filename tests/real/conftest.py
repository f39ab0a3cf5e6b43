"""Plumbing of the real-library tests (every module is marked `real`; tox -e real).

Session fixtures: the openraft_sled shim's binary (cargo build), and one `conformance certify`
per shim, each in a subprocess (_shims.Certification). pysyncobj's run starts with the
session, so it overlaps the Rust build and the openraft run; each module's finding replays
run in process meanwhile. Without cargo, pysyncobj or FUSE the tests that need them are
skipped with the reason, and fail under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _shims import (
    PSO_DIR,
    REPORTS,
    SLED_DIR,
    Certification,
    build_sled,
    cargo_problem,
    crashfs_problem,
    missing,
    pso_command,
    pysyncobj_problem,
    sled_command,
)

_RUNS: dict[str, Certification] = {}


def _pso_run() -> Certification:
    if "pysyncobj" not in _RUNS:
        _RUNS["pysyncobj"] = Certification("pysyncobj", pso_command(),
                                           PSO_DIR / "expectations.yaml",
                                           REPORTS / "pysyncobj").start()
    return _RUNS["pysyncobj"]


@pytest.fixture(scope="session", autouse=True)
def _certify_runs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start pysyncobj's certification at once when any of its tests is selected (it needs no
    build); kill whatever is still running at the end of the session."""
    wanted = any("pysyncobj_started" in getattr(item, "fixturenames", ())
                 for item in request.session.items)
    if wanted and crashfs_problem() is None and pysyncobj_problem() is None:
        _pso_run()
    yield
    for run in _RUNS.values():
        run.stop()


@pytest.fixture(scope="session")
def crashfs() -> None:
    problem = crashfs_problem()
    if problem is not None:
        missing(problem)


@pytest.fixture(scope="session")
def pysyncobj(crashfs: None) -> str:
    """The pysyncobj shim's command line."""
    problem = pysyncobj_problem()
    if problem is not None:
        missing(problem)
    return pso_command()


@pytest.fixture(scope="session")
def pysyncobj_started(pysyncobj: str) -> Certification:
    return _pso_run()


@pytest.fixture(scope="session")
def pysyncobj_certified(pysyncobj_started: Certification) -> Certification:
    return pysyncobj_started.result()


@pytest.fixture(scope="session")
def sled_binary(crashfs: None) -> Path:
    problem = cargo_problem()
    if problem is not None:
        missing(problem)
    return build_sled()


@pytest.fixture(scope="session")
def sled(sled_binary: Path) -> str:
    """The openraft_sled shim's command line."""
    return sled_command(sled_binary)


@pytest.fixture(scope="session")
def sled_started(sled: str) -> Certification:
    if "openraft_sled" not in _RUNS:
        _RUNS["openraft_sled"] = Certification("openraft_sled", sled,
                                               SLED_DIR / "expectations.yaml",
                                               REPORTS / "openraft_sled").start()
    return _RUNS["openraft_sled"]


@pytest.fixture(scope="session")
def sled_certified(sled_started: Certification) -> Certification:
    return sled_started.result()
