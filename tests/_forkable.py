"""A program for tests/test_forkserver.py to start through a fork server: it reports what a
lifetime sees (its process, session, parent, working directory, arguments, one environment
variable, and a module global it increments: 1 in every lifetime if nothing of an earlier
one reaches it), then does what its first argument says."""

from __future__ import annotations

import json
import os
import sys
import time

LIFETIMES = 0  # incremented by each lifetime: the zygote's copy stays 0


def main() -> int:
    global LIFETIMES
    LIFETIMES += 1
    print(json.dumps({"pid": os.getpid(), "sid": os.getsid(0), "ppid": os.getppid(),
                      "cwd": os.getcwd(), "argv": sys.argv[1:], "lifetimes": LIFETIMES,
                      "mark": os.environ.get("FORKABLE_MARK"),
                      "stdin": sys.stdin.readline() if sys.argv[1:2] == ["echo"] else None}),
          flush=True)
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "hang":
        time.sleep(300)
    if what == "raise":
        raise RuntimeError("the program failed")
    if what == "message":
        sys.exit("a message to stderr")
    return int(what) if what.isdigit() else 0


if __name__ == "__main__":
    sys.exit(main())
