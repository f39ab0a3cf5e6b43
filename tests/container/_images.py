"""Names of the images the container tests use (built by docker/build-images.sh)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("IMAGE_PREFIX", "applied-index-conformance")
TAG = os.environ.get("TAG", "latest")
REFERENCE_IMAGE = f"{PREFIX}/reference:{TAG}"
# a root-user image without the protocol, the labels or /data: it stands for a foreign image
BASE_IMAGE = os.environ.get("BASE_IMAGE", "applied-index-conformance/base:bookworm")
# the mutants docker/build-images.sh builds, and the suite that rejects each
MUTANT_SUITES = {
    "pin-after-pointer-save": "snapshot_persist",
    "delete-prefix-not-bundling-meta": "store",
    "effective-snap-on-skip": "cold_start",
    "skip-without-crc-verification": "header_verification",
}


def mutant_image(name: str) -> str:
    return f"{PREFIX}/mutant-{name}:{TAG}"
