"""Plumbing of the container tests (every module is marked `container`; tox -e container).

They need a reachable Docker engine. Without one they are skipped, each with the reason,
except under CI=true, where a missing engine fails them. The images they use are built by
docker/build-images.sh (the tox env runs it first; the `images` fixture runs it when an
image is missing). At the end of the session nothing labelled with this run may be left.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from _images import BASE_IMAGE, MUTANT_SUITES, REFERENCE_IMAGE, ROOT, mutant_image

from conformance.adapters.container import RUN_ID, engine_problem, list_run


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, and the container tests cannot run: {problem}", pytrace=False)
    pytest.skip(f"container tests need a reachable Docker engine: {problem}")


def _missing(images: list[str]) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        missing = []
        for image in images:
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                missing.append(image)
        return missing
    finally:
        client.close()


@pytest.fixture(scope="session")
def images(engine: None) -> dict[str, str]:
    """The reference, base and mutant images; built (docker/build-images.sh) if missing."""
    wanted = {"reference": REFERENCE_IMAGE, "base": BASE_IMAGE}
    wanted |= {m: mutant_image(m) for m in MUTANT_SUITES}
    missing = _missing(list(wanted.values()))
    if missing:
        t0 = time.monotonic()
        env = {**os.environ, "MUTANTS": " ".join(MUTANT_SUITES)}
        proc = subprocess.run(["bash", str(ROOT / "docker" / "build-images.sh")], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0 or _missing(list(wanted.values())):
            pytest.fail(f"docker/build-images.sh could not build {missing}:\n"
                        f"{proc.stderr[-3000:]}", pytrace=False)
        print(f"built the missing images {missing} in {time.monotonic() - t0:.0f}s")
    return wanted


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(engine: None) -> Iterator[None]:
    """Every container, volume and network of this run is gone when the session ends."""
    yield
    # what is removed in the background is removed, the spares not taken and the run's
    # network too (conformance/adapters/container/lifetimes.py): what is left then leaked
    from conformance.adapters.container.lifetimes import drain

    assert drain(), "removals still under way after 120 s"
    left = list_run(RUN_ID)
    assert not any(left.values()), f"the container tests left resources behind: {left}"
