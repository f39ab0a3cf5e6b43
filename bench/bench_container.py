#!/usr/bin/env python3
"""Benchmark of the container adapter; see docs/performance.md, section "Containers".

    python bench/bench_container.py [--image IMAGE] [--cycles N] [--no-suite] [--json PATH]

One run measures, on the machine's real Docker engine:

1. the crash-plus-restart cycle through ContainerAdapter (crash() = docker kill, wait until
   the engine sees it stopped; start() = docker start of the same container, re-read its
   address, connect, hello answered) against a bare `docker kill` + `docker start` of the
   SAME container with the docker CLI (target: adapter / bare <= 1.5x), interleaved cycle
   by cycle so that drift hits both alike. For context: the same bare cycle through the
   Docker SDK (no CLI process start-up), and the bare SDK cycle plus waiting until the node
   answers hello on a fresh connection (what "ready" costs beyond the engine);
2. the parts of one adapter lifetime: construction, first start (network, volume,
   container), close (container, volume and network removed);
3. the wall time of the full suite (every case of suites/) against the image through
   session.run_all, the engine's containers created and removed per case (not with
   --no-suite).

Targets print PASS/FAIL, but the exit status is 0 whatever the figures (a shared, noisy
machine); it is 1 when no engine or no image is there, or a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conformance.adapters.container import ContainerAdapter, EngineUnavailable, engine_problem

DEFAULT_IMAGE = "applied-index-conformance/reference:latest"
TARGET_RATIO = 1.5


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": statistics.median(xs) * 1e3, "min_ms": xs[0] * 1e3,
            "p90_ms": xs[min(len(xs) - 1, int(len(xs) * 0.9))] * 1e3, "n": len(xs)}


def _hello_ready(addr: tuple[str, int], deadline: float) -> None:
    """Wait until a fresh connection to addr answers hello (the bare cycle's 'ready')."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(addr, timeout=1.0) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b'{"id":1,"op":"hello","versions":[1],"harness":"bench"}\n')
                if s.makefile("rb").readline():
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError("the node did not answer hello")


def bench_cycles(image: str, cycles: int) -> dict[str, Any]:
    import docker

    adapter = ContainerAdapter(image, ready_timeout=60)
    client = docker.from_env()
    try:
        t0 = time.monotonic()
        adapter.start("synced")
        first_start = time.monotonic() - t0
        adapter.request("open")
        assert adapter.container is not None and adapter.address is not None
        cid = str(adapter.container.id)
        sdk_container = client.containers.get(cid)
        rows: dict[str, list[float]] = {"adapter": [], "bare_cli": [], "bare_sdk": [],
                                        "bare_sdk_ready": []}
        for _ in range(cycles):
            t0 = time.monotonic()
            adapter.crash()
            adapter.start("synced")
            rows["adapter"].append(time.monotonic() - t0)

            t0 = time.monotonic()
            subprocess.run(["docker", "kill", cid], check=True, capture_output=True)
            subprocess.run(["docker", "start", cid], check=True, capture_output=True)
            rows["bare_cli"].append(time.monotonic() - t0)

            t0 = time.monotonic()
            sdk_container.kill()
            sdk_container.wait(condition="not-running")
            sdk_container.start()
            rows["bare_sdk"].append(time.monotonic() - t0)

            t0 = time.monotonic()
            sdk_container.kill()
            sdk_container.wait(condition="not-running")
            sdk_container.start()
            sdk_container.reload()
            ip = next(iter(sdk_container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
            _hello_ready((ip, 7070), time.monotonic() + 60)
            rows["bare_sdk_ready"].append(time.monotonic() - t0)
        t0 = time.monotonic()
        adapter.close()
        close = time.monotonic() - t0
    finally:
        adapter.close()
        client.close()
    t0 = time.monotonic()
    probe = ContainerAdapter(image)
    construct = time.monotonic() - t0
    probe.close()
    out: dict[str, Any] = {k: _stats(v) for k, v in rows.items()}
    out["ratio_adapter_over_bare_cli"] = out["adapter"]["median_ms"] / out["bare_cli"]["median_ms"]
    out["ratio_adapter_over_bare_sdk"] = out["adapter"]["median_ms"] / out["bare_sdk"]["median_ms"]
    out["ratio_adapter_over_bare_sdk_ready"] = (out["adapter"]["median_ms"]
                                                / out["bare_sdk_ready"]["median_ms"])
    out["lifetime_ms"] = {"construct": construct * 1e3, "first_start": first_start * 1e3,
                          "close": close * 1e3}
    return out


def bench_suite(image: str) -> dict[str, Any]:
    from conformance.catalog import load_catalog
    from conformance.impls import resolve
    from conformance.loader import load_suites
    from conformance.session import SUITES_DIR, run_all

    cases = [c for s in load_suites([SUITES_DIR], load_catalog()) for c in s.cases]
    impl = resolve(f"image:{image}")
    t0 = time.monotonic()
    results = run_all(cases, impl, 0)
    wall = time.monotonic() - t0
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"cases": len(results), "wall_s": wall, "per_case_s": wall / max(1, len(results)),
            "statuses": counts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--cycles", type=int, default=20, help="crash+restart cycles per variant")
    ap.add_argument("--no-suite", action="store_true", help="skip the full-suite wall time")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args, unknown = ap.parse_known_args()
    if unknown:
        print(f"(ignoring options meant for other benchmarks: {' '.join(unknown)})")
    problem = engine_problem()
    if problem is not None:
        print(f"bench_container: {problem}", file=sys.stderr)
        return 1
    print(f"# container benchmark: {args.image}, {args.cycles} cycles, "
          f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})")
    try:
        figures: dict[str, Any] = {"image": args.image, "cycles": bench_cycles(args.image,
                                                                               args.cycles)}
    except EngineUnavailable as exc:
        print(f"bench_container: {exc}", file=sys.stderr)
        return 1
    c = figures["cycles"]
    print("\n## crash + restart cycle (median / p90 / min, ms)\n")
    print("| variant | median | p90 | min |\n|---|---|---|---|")
    names = {"adapter": "ContainerAdapter: crash() + start() (ready: hello answered)",
             "bare_cli": "bare: `docker kill` + `docker start` (CLI)",
             "bare_sdk": "bare: kill + wait + start (Docker SDK)",
             "bare_sdk_ready": "bare SDK + wait until a new connection answers hello"}
    for key, label in names.items():
        s = c[key]
        print(f"| {label} | {s['median_ms']:.0f} | {s['p90_ms']:.0f} | {s['min_ms']:.0f} |")
    ratio = c["ratio_adapter_over_bare_cli"]
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"\nadapter / bare CLI: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict}); "
          f"adapter / bare SDK: {c['ratio_adapter_over_bare_sdk']:.2f}x; "
          f"adapter / bare SDK + ready: {c['ratio_adapter_over_bare_sdk_ready']:.2f}x")
    lt = c["lifetime_ms"]
    print(f"adapter lifetime: construct {lt['construct']:.0f} ms, first start (network, volume, "
          f"container, ready) {lt['first_start']:.0f} ms, close {lt['close']:.0f} ms")
    if not args.no_suite:
        suite = bench_suite(args.image)
        figures["suite"] = suite
        print(f"\n## full suite against {args.image}\n\n{suite['cases']} cases in "
              f"{suite['wall_s']:.1f} s ({suite['per_case_s']:.2f} s per case): "
              + ", ".join(f"{n} {s}" for s, n in sorted(suite["statuses"].items())))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
