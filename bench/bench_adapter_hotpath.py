#!/usr/bin/env python3
"""The local-process adapter's hot path: one request, against a bare JSON echo over a pipe.

    python bench/bench_adapter_hotpath.py [--quick] [--json PATH] [--requests N]
                                          [--before REV]

Both talk to the same tiny Python echo child (bench_harness.ECHO_CHILD). In one run, runs
interleaved (the machine is shared: ratios, not absolute times):

- (a) bare: `json.dumps`, write, flush, `readline`, `json.loads` (bench_harness.BareClient);
- (b) `ProcessAdapter.request` of this tree (target: (b)/(a) <= 1.5, issue 15.4);
- (b0) with `--before REV`: `ProcessAdapter.request` of conformance/adapters/process.py at
  git revision REV, loaded beside this one (the rest of the package is this tree's), for a
  before/after in the same run;
- diag: a bare client that waits for the reply with poll() before reading (no thread):
  the floor of a request that has a deadline.

Exit status 0 whatever the figures; 1 when a measurement could not be made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_harness import BareClient, echo_argv  # (run as a script: bench/ is on sys.path)
from bench_reference import section, table

from conformance.adapters.process import ProcessAdapter

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.5  # ProcessAdapter.request / bare round trip (issue 15)


class PollClient(BareClient):
    """The bare client, waiting for the reply in poll() with a deadline before reading:
    what reading in the calling thread costs at least."""

    def __init__(self) -> None:
        super().__init__()
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.buf = b""

    def request(self, op: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        rid = self.next_id
        self.next_id += 1
        os.write(self.proc.stdin.fileno(),
                 (json.dumps({"id": rid, "op": op}, separators=(",", ":")) + "\n").encode())
        deadline = time.monotonic() + 10
        while b"\n" not in self.buf:
            if not self.poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                raise TimeoutError("echo child: no reply")
            self.buf += os.read(self.fd, 65536)
        line, _, self.buf = self.buf.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply


def load_before(rev: str) -> ModuleType:
    """conformance/adapters/process.py at `rev`, as a sibling module of this tree's."""
    source = subprocess.run(["git", "show", f"{rev}:conformance/adapters/process.py"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout
    tmp = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    path = tmp / "process_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("conformance.adapters._process_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pinger(adapter: Any) -> Callable[[], object]:
    return lambda: adapter.request("ping")


def time_loop(call: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer round trips and runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--requests", type=int, default=None,
                    help="round trips per run (default 3000; 500 with --quick)")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also measure the adapter of this git revision, in the same run")
    args = ap.parse_args(argv)
    n = args.requests or (500 if args.quick else 3000)
    reps = 5 if args.quick else 11
    load0 = os.getloadavg()
    print(f"adapter hot path: python {platform.python_version()}, {os.cpu_count()} CPUs; load "
          f"average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    errors: list[str] = []
    clients: dict[str, Any] = {"bare": BareClient(), "poll": PollClient()}
    adapters: dict[str, Any] = {"adapter": ProcessAdapter(echo_argv(), name="echo",
                                                          use_layer=False)}
    if args.before:
        try:
            old = load_before(args.before)
            adapters["before"] = old.ProcessAdapter(echo_argv(), name="echo", use_layer=False)
        except Exception as exc:  # noqa: BLE001 - reported; the rest is still measured
            errors.append(f"--before {args.before}: {type(exc).__name__}: {exc}")
    runs: dict[str, list[float]] = {}
    try:
        for a in adapters.values():
            a.start("synced")
        calls: dict[str, Callable[[], object]] = {
            "bare": lambda: clients["bare"].request("ping"),
            "poll": lambda: clients["poll"].request("ping"),
            **{k: _pinger(a) for k, a in adapters.items()},
        }
        for call in calls.values():  # warm-up
            time_loop(call, max(50, n // 10))
        runs = {k: [] for k in calls}
        for _ in range(reps):
            for name, call in calls.items():
                runs[name].append(time_loop(call, n))
        for name, a in adapters.items():
            reply = a.request("ping").reply
            if not (reply and reply.get("ok")):
                errors.append(f"{name}: unexpected reply {reply!r}")
    except Exception as exc:  # noqa: BLE001 - reported as a failed measurement
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        for c in clients.values():
            c.close()
        for a in adapters.values():
            a.close()

    figures: dict[str, Any] = {
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                "loadavg_start": load0, "quick": args.quick, "before": args.before},
        "n": n, "reps": reps, "errors": errors, "target": TARGET,
    }
    if runs and all(runs.values()):
        per = {k: statistics.median(v) for k, v in runs.items()}
        labels = {"bare": "(a) bare client: write, flush, readline",
                  "poll": "diag: bare client, poll() with a deadline, then read",
                  "adapter": "(b) ProcessAdapter.request (this tree)",
                  "before": f"(b0) ProcessAdapter.request at {args.before}"}
        section(f"{n} round trips per run, {reps} runs of each, interleaved; the median run")
        print(table(["path", "us/request", "min", "max"],
                    [[labels[k], f"{per[k] * 1e6:.1f}", f"{min(v) * 1e6:.1f}",
                      f"{max(v) * 1e6:.1f}"] for k, v in runs.items()]))
        ratio = per["adapter"] / per["bare"]
        rows = [["(b) / (a)", f"{ratio:.2f}", f"<= {TARGET:g}",
                 "PASS" if ratio <= TARGET else "FAIL"],
                ["(b) / (a), best runs (min / min)",
                 f"{min(runs['adapter']) / min(runs['bare']):.2f}", "", ""],
                ["(b) - (a): the adapter's own cost", f"{(per['adapter'] - per['bare']) * 1e6:.1f} us",
                 "", ""]]
        if "before" in per:
            rows.append(["(b0) / (a): before", f"{per['before'] / per['bare']:.2f}", "", ""])
            rows.append(["(b) / (b0): after / before", f"{per['adapter'] / per['before']:.2f}",
                         "", ""])
        print()
        print(table(["ratio", "value", "target", "check"], rows))
        figures.update({
            "us_per_request": {k: v * 1e6 for k, v in per.items()},
            "runs_us": {k: [x * 1e6 for x in v] for k, v in runs.items()},
            "ratio": ratio, "pass": ratio <= TARGET,
            "ratio_before": per["before"] / per["bare"] if "before" in per else None,
        })
    load1 = os.getloadavg()
    figures["env"]["loadavg_end"] = load1
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    for err in errors:
        print(f"ERROR {err}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 1 if errors or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
