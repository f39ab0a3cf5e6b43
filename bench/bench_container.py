#!/usr/bin/env python3
"""Benchmark of the container adapter; see docs/performance.md, section "Containers".

    python bench/bench_container.py [--image IMAGE] [--cycles N] [--no-cycles] [--no-suite]
        [--jobs 1,2] [--before REV] [--spares-off] [-k EXPR] [--json PATH]

One run measures, on the machine's real Docker engine:

1. the crash-plus-restart cycle through ContainerAdapter (crash() = docker kill, wait until
   the engine sees it stopped; start() = the next lifetime's container, made ahead of need
   on the same storage because the reference says prestart, or else docker start of the
   same container; connect, hello answered) against a bare `docker kill` + `docker start`
   of the container the adapter runs, with the docker CLI (target: adapter / bare <=
   1.5x), interleaved cycle by cycle so that drift hits both alike. For context: the same
   bare cycle through the Docker SDK (no CLI process start-up), and the bare SDK cycle plus
   waiting until the node answers hello on a fresh connection (what "ready" costs beyond
   the engine);
2. the parts of one adapter lifetime: construction, first start (network, volume,
   container), close (container, volume and network removed);
3. the wall time of the full suite (every case of suites/, or those `-k EXPR` selects)
   against the image: `conformance run suites --image IMAGE --jobs N` for every N of
   `--jobs` (default 1,2), each in a process of its own; with `--before REV` the same
   from the tree of git revision REV (exported), with `--next-off` this tree with
   CONFORMANCE_CONTAINER_NEXT=off and with `--spares-off` with CONFORMANCE_SPARES=off, all
   in the same run, the variants in order for each N. Every
   report is compared with this tree's serial one, without its timing fields: they must
   be identical (not with --no-suite).

Targets print PASS/FAIL, but the exit status is 0 whatever the figures (a shared, noisy
machine); it is 1 when no engine or no image is there, or a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_node_lifetimes import export_tree  # (run as a script: bench/ is on sys.path)

from conformance.adapters.container import ContainerAdapter, EngineUnavailable, engine_problem

DEFAULT_IMAGE = "applied-index-conformance/reference:latest"
TARGET_RATIO = 1.5
TARGET_SUITE_S = 90.0  # issue 15: the full suite against the reference image, with --jobs
REPO = Path(__file__).resolve().parents[1]
SUITE_TIMEOUT = 1800


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": statistics.median(xs) * 1e3, "min_ms": xs[0] * 1e3,
            "p90_ms": xs[min(len(xs) - 1, int(len(xs) * 0.9))] * 1e3, "n": len(xs)}


def _hello_ready(container: Any, network_mode: str, deadline: float) -> None:
    """Wait until a fresh connection to the node answers hello (the bare cycle's 'ready'):
    at its IP on the internal network, or inside its network namespace (network none)."""
    from conformance.adapters.container.transport import connect_in_netns

    container.reload()
    if network_mode == "none":
        pid = int(container.attrs["State"]["Pid"])
    else:
        nets = container.attrs["NetworkSettings"]["Networks"]
        ip = next(iter(nets.values()))["IPAddress"]
    while time.monotonic() < deadline:
        try:
            conn = (connect_in_netns(pid, 7070, 1.0) if network_mode == "none"
                    else socket.create_connection((ip, 7070), timeout=1.0))
            with conn as s:
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
        rows: dict[str, list[float]] = {"adapter": [], "bare_cli": [], "bare_sdk": [],
                                        "bare_sdk_ready": []}
        for _ in range(cycles):
            t0 = time.monotonic()
            adapter.crash()
            adapter.start("synced")
            rows["adapter"].append(time.monotonic() - t0)
            # the bare cycles on the container the adapter runs now (a restart may be a
            # new container, made ahead of need: the reference says prestart)
            assert adapter.container is not None
            cid = str(adapter.container.id)
            sdk_container = client.containers.get(cid)

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
            _hello_ready(sdk_container, adapter.network_mode, time.monotonic() + 60)
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


def _report(out: Path) -> dict[str, Any]:
    from conformance.report import without_timing

    data: dict[str, Any] = json.loads(without_timing(
        "report.json", (out / "report.json").read_text(encoding="utf-8")))
    data["info"].pop("command", None)  # names --jobs and --out
    return data


def run_suite(tree: Path, image: str, jobs: int, out: Path, k: str | None,
              env: dict[str, str]) -> dict[str, Any]:
    """`conformance run suites --image IMAGE --jobs N` from `tree`: wall time and outcome."""
    argv = [sys.executable, "-m", "conformance.cli", "run", "suites", "--image", image,
            "--jobs", str(jobs), "--out", str(out), *(["-k", k] if k else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=SUITE_TIMEOUT,
                          env={**os.environ, "PYTHONPATH": str(tree), **env})
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"jobs": jobs, "wall_s": wall, "exit": proc.returncode}
    if not (out / "report.json").exists():
        row["error"] = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        return row
    cases = json.loads((out / "report.json").read_text(encoding="utf-8"))["cases"]
    statuses: dict[str, int] = {}
    for c in cases:
        statuses[c["status"]] = statuses.get(c["status"], 0) + 1
    row.update(cases=len(cases), per_case_s=wall / max(1, len(cases)), statuses=statuses,
               case_s_mean=sum(c.get("duration_s") or 0 for c in cases) / max(1, len(cases)))
    return row


def bench_suite(image: str, jobs: list[int], before: str | None, spares_off: bool,
                k: str | None, next_off: bool = False) -> dict[str, Any]:
    """The suite's wall time for every variant and --jobs N, in one run (see the module doc)."""
    work = Path(tempfile.mkdtemp(prefix="bench-container-"))
    try:
        variants: list[tuple[str, Path, dict[str, str]]] = [("this tree", REPO, {})]
        if next_off:
            variants.append(("this tree, next lifetimes not made ahead", REPO,
                             {"CONFORMANCE_CONTAINER_NEXT": "off"}))
        if spares_off:
            variants.append(("this tree, spares off", REPO, {"CONFORMANCE_SPARES": "off"}))
        if before:
            variants.insert(0, (f"at {before}", export_tree(before, work), {}))
        rows: list[dict[str, Any]] = []
        reference: dict[str, Any] | None = None
        for n in jobs:
            for label, tree, env in variants:
                out = work / f"out-{len(rows)}"
                row = {"variant": label, **run_suite(tree, image, n, out, k, env)}
                if "error" not in row:
                    report = _report(out)
                    if label == "this tree" and n == min(jobs):
                        reference = report
                    row["same_report"] = None if reference is None else report == reference
                rows.append(row)
                print(f"  {label}, --jobs {n}: {row['wall_s']:.1f} s, exit {row['exit']}"
                      + (f", {row['cases']} cases" if "cases" in row else f": {row['error']}"),
                      flush=True)
        # a row run before the reference existed is compared now
        for row in rows:
            if row.get("same_report") is None and "error" not in row and reference is not None:
                i = rows.index(row)
                row["same_report"] = _report(work / f"out-{i}") == reference
        return {"k": k, "rows": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--cycles", type=int, default=20, help="crash+restart cycles per variant")
    ap.add_argument("--no-cycles", action="store_true",
                    help="skip the crash+restart cycles and the lifetime parts")
    ap.add_argument("--no-suite", action="store_true", help="skip the full-suite wall time")
    ap.add_argument("--jobs", default="1,2",
                    help="comma-separated --jobs values for the suite runs (default 1,2)")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also run the suite from the tree of git revision REV (or from "
                         "the directory REV, a tree exported before)")
    ap.add_argument("--spares-off", action="store_true",
                    help="also run the suite with CONFORMANCE_SPARES=off")
    ap.add_argument("--next-off", action="store_true",
                    help="also run the suite with CONFORMANCE_CONTAINER_NEXT=off (first "
                         "lifetimes made ahead of need, restarts by docker start)")
    ap.add_argument("-k", dest="k", default=None,
                    help="only the cases this expression selects (as `conformance run -k`)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args, unknown = ap.parse_known_args()
    if unknown:
        print(f"(ignoring options meant for other benchmarks: {' '.join(unknown)})")
    problem = engine_problem()
    if problem is not None:
        print(f"bench_container: {problem}", file=sys.stderr)
        return 1
    jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    print(f"# container benchmark: {args.image}, {args.cycles} cycles, "
          f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()})")
    figures: dict[str, Any] = {"image": args.image}
    if not args.no_cycles:
        try:
            figures["cycles"] = bench_cycles(args.image, args.cycles)
        except EngineUnavailable as exc:
            print(f"bench_container: {exc}", file=sys.stderr)
            return 1
        print_cycles(figures["cycles"])
    if not args.no_suite:
        what = f"the cases -k {args.k!r} selects" if args.k else "the full suite"
        print(f"\n## {what} against {args.image}, --jobs {args.jobs}\n", flush=True)
        suite = bench_suite(args.image, jobs, args.before, args.spares_off, args.k,
                            args.next_off)
        figures["suite"] = suite
        print_suite(suite)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def print_cycles(c: dict[str, Any]) -> None:
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
    print(f"adapter lifetime: construct {lt['construct']:.0f} ms, first start (volume, "
          f"container, ready) {lt['first_start']:.0f} ms, close {lt['close']:.0f} ms")


def print_suite(suite: dict[str, Any]) -> None:
    rows = suite["rows"]
    print("\n| variant | --jobs | wall | per case (wall / cases) | mean case duration | "
          "cases | statuses | report = this tree's serial one |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r['jobs']} | {r['wall_s']:.1f} s | failed: exit "
                  f"{r['exit']} | | | | |")
            continue
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(r["statuses"].items()))
        print(f"| {r['variant']} | {r['jobs']} | {r['wall_s']:.1f} s | {r['per_case_s']:.2f} s "
              f"| {r['case_s_mean']:.2f} s | {r['cases']} | {statuses} | "
              f"{'yes' if r['same_report'] else 'NO'} |")
    base = {(r["variant"], r["jobs"]): r["wall_s"] for r in rows if "error" not in r}
    serial = [r for r in rows if r["jobs"] == min(r2["jobs"] for r2 in rows)]
    for r in rows:
        ref = next((s for s in serial if s["variant"] == r["variant"]), None)
        if ref is not None and r is not ref and (r["variant"], r["jobs"]) in base:
            print(f"{r['variant']}: --jobs {r['jobs']} is {ref['wall_s'] / r['wall_s']:.2f}x the "
                  f"serial throughput")
    this = [r for r in rows if r["variant"] == "this tree" and r["jobs"] > 1 and "error" not in r]
    for r in rows:
        if r["variant"].startswith("at ") and "error" not in r:
            same = next((t for t in rows if t["variant"] == "this tree"
                         and t["jobs"] == r["jobs"] and "error" not in t), None)
            if same is not None:
                print(f"--jobs {r['jobs']}: this tree {same['wall_s']:.1f} s vs "
                      f"{r['variant']} {r['wall_s']:.1f} s: {r['wall_s'] / same['wall_s']:.2f}x "
                      "faster")
    if this and suite["k"] is None:
        best = min(r["wall_s"] for r in this)
        print(f"full suite with --jobs: {best:.1f} s (target <= {TARGET_SUITE_S:g} s: "
              f"{'PASS' if best <= TARGET_SUITE_S else 'FAIL'})")


if __name__ == "__main__":
    sys.exit(main())
