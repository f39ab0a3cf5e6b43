"""The entry point of one exploration worker: `python -m conformance.explore.worker_process`.

A module of its own, which the package never imports, so that running it does not import
it twice (workers.py holds both ends of the exchange; the run imports that one).
"""

from __future__ import annotations

import sys

from .workers import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
