"""Whether the crash-simulating filesystem can run here, for the tests that need it.

Where FUSE cannot run, those tests are skipped with the reason; under CI=true they run,
and fail with it (CI must not silently lose this coverage).
"""

from __future__ import annotations

import os

import pytest

from conformance.faults.crashfs import available

UNAVAILABLE = available()
IN_CI = os.environ.get("CI", "").lower() == "true"
needs_crashfs = pytest.mark.skipif(
    UNAVAILABLE is not None and not IN_CI,
    reason=f"the crash-simulating filesystem (FUSE) is not available here: {UNAVAILABLE}")


def require_crashfs() -> None:
    if UNAVAILABLE is not None:
        pytest.fail(f"CI=true, and the crash-simulating filesystem cannot run: {UNAVAILABLE}",
                    pytrace=False)
