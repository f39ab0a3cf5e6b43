#!/usr/bin/env python3
"""Node lifetimes through the local-process adapter: where a start costs, and what certify
of an external node costs against the in-process reference (issue 15.2).

    python bench/bench_node_lifetimes.py [--quick] [--json PATH] [--cycles N] [--rounds N]
                                         [--suites PATH ...] [--before REV] [--no-certify]

One run measures (ratios within the run: the machine is shared and noisy):

1. **Where a start costs**, for the reference server and examples/sqlite_node.py, node
   starts with spares off (CONFORMANCE_SPARES=off): the spawn (Popen), the wait for the
   `hello` reply (the node's interpreter start and imports), and the kill of a crash split
   into the /proc scans (reaper.kill_node, reaper.finish_node) and the reap; plus the CPU
   of one bare start of each (`python -c pass` for scale);
   The reference server is measured through the adapter both as `--impl reference-process`
   starts it (forked from a zygote, conformance/forkserver/) and started anew.
2. **A case's lifetimes**, the same adapter cycle (construct, start, open, crash, start,
   open, close) with spares off and on, interleaved: the median cycle of each, and its
   parts;
3. **certify**: `conformance certify --explore 0 --jobs 1` on the in-process reference
   (in every round), `--impl reference-process` and examples/sqlite_node.py, each with spares
   on and off, and with the fork servers off (CONFORMANCE_FORKSERVER=off), and with
   `--before REV` also each at git revision REV (its tree exported; run from there):
   wall times and the ratios to the in-process certify (targets 8x and 5x);
   `--rounds N` runs each N times, every other round in reverse order, and takes medians.

Exit status 0 whatever the figures; 1 when a measurement could not be made (a certify that
did not exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_reference import section, table  # (run as a script: bench/ is on sys.path)

from conformance.adapters import child as child_module
from conformance.adapters import reaper
from conformance.adapters.process import ProcessAdapter
from conformance.forkserver import ForkServer, Program
from conformance.impls import REFERENCE_ARGV, REFERENCE_PROGRAM

REPO = Path(__file__).resolve().parent.parent
SQLITE_ARGV = [sys.executable, str(REPO / "examples" / "sqlite_node.py"), "--data-dir",
               "{data_dir}"]
NODES = {"reference server": list(REFERENCE_ARGV), "sqlite_node": SQLITE_ARGV}
# how the harness starts each through the adapter: the reference (--impl reference-process)
# forked from a zygote (conformance/forkserver/), also measured started anew
ADAPTER_NODES: dict[str, tuple[list[str], Program | None]] = {
    "reference server, forked": (list(REFERENCE_ARGV), REFERENCE_PROGRAM),
    "reference server, started anew": (list(REFERENCE_ARGV), None),
    "sqlite_node": (SQLITE_ARGV, None)}
TARGETS = {"reference-process": 8.0, "sqlite_node": 5.0}  # certify / in-process certify
CERTIFY_TIMEOUT = 900.0


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


@contextlib.contextmanager
def spares_setting(value: str) -> Iterator[None]:
    old = os.environ.get("CONFORMANCE_SPARES")
    os.environ["CONFORMANCE_SPARES"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CONFORMANCE_SPARES", None)
        else:
            os.environ["CONFORMANCE_SPARES"] = old


class Timers:
    """Seconds spent in wrapped functions, by name (for the parts of a start and a kill)."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                self.spent.setdefault(name, []).append(time.perf_counter() - t0)

        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, inner))

    def undo(self) -> None:
        for fn in reversed(self._undo):
            fn()
        self._undo.clear()


def bare_cpu(argv: list[str], reps: int, tree: Path = REPO) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of `argv` run to its end from `tree`,
    stdin empty."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for _ in range(reps):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=tree, env=env, timeout=60, check=False)
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def bench_start_parts(figures: dict[str, Any], reps: int,
                      before: tuple[str, Path] | None) -> None:
    section(f"1. Where a node start costs (spares off; median of {reps})")
    rows: list[list[str]] = []
    out: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-lifetimes-"))
    starts = [("python -c pass", [sys.executable, "-c", "pass"], REPO)]
    starts += [(k, [a.replace("{data_dir}", str(scratch / "data")) for a in v], REPO)
               for k, v in NODES.items()]
    if before is not None:  # the same server, from the tree of that revision
        rev, tree = before
        starts.insert(2, (f"reference server at {rev}", starts[1][1], tree))
    try:
        (scratch / "data").mkdir()
        for _ in range(reps):  # interleaved, one of each at a time
            for name, argv, tree in starts:
                wall, cpu = bare_cpu(argv, 1, tree)
                out.setdefault("bare", {}).setdefault(name, {"wall_s": [], "cpu_s": []})
                out["bare"][name]["wall_s"].append(wall)
                out["bare"][name]["cpu_s"].append(cpu)
        for name, _, _ in starts:
            got = out["bare"][name]
            wall, cpu = statistics.median(got["wall_s"]), statistics.median(got["cpu_s"])
            out["bare"][name] = {"wall_s": wall, "cpu_s": cpu}
            rows.append([f"{name}: started to its end (stdin empty)", ms(wall), ms(cpu)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(["process", "wall", "CPU"], rows))
    print()
    parts_rows = []
    for name, (argv, program) in ADAPTER_NODES.items():
        timers = Timers()
        timers.wrap(subprocess, "Popen", "spawn (Popen)")
        timers.wrap(ForkServer, "spawn", "spawn (fork server)")
        timers.wrap(reaper, "kill_node", "kill: /proc scan + SIGKILL (kill_node)")
        timers.wrap(child_module, "wait_exit", "kill: reap the leader (pidfd)")
        timers.wrap(reaper, "finish_node", "kill: /proc scan for the rest (finish_node)")
        starts, crashes = [], []
        try:
            with spares_setting("off"):
                adapter = ProcessAdapter(argv, use_layer=False, program=program)
                try:
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        adapter.start("synced")
                        starts.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        adapter.crash()
                        crashes.append(time.perf_counter() - t0)
                finally:
                    adapter.close()
        finally:
            timers.undo()
        spent = {k: statistics.median(v) for k, v in timers.spent.items()}
        start, crash = statistics.median(starts), statistics.median(crashes)
        spawn = spent.get("spawn (Popen)", 0.0) + spent.get("spawn (fork server)", 0.0)
        node_out = {"start_s": start, "crash_s": crash, "parts_s": spent,
                    "hello_wait_s": start - spawn}
        out.setdefault("adapter", {})[name] = node_out
        parts_rows.append([name, "start(): spawn to hello answered", ms(start), ""])
        how = "a fork of the zygote" if program else "Popen"
        parts_rows.append(["", f"  spawn ({how}, in the harness)", ms(spawn), ""])
        parts_rows.append(["", "  the node: " + ("hello" if program else
                                                  "interpreter, imports, hello"),
                           ms(start - spawn), ""])
        parts_rows.append(["", "crash(): SIGKILL, reap, /proc scans", ms(crash), ""])
        for k, v in spent.items():
            if k.startswith("kill"):
                parts_rows.append(["", f"  {k}", ms(v), ""])
    print(table(["node", "part", "median", ""], parts_rows))
    print(f"processes on the machine (each /proc scan reads them all): {len(reaper.processes())}")
    figures["start_parts"] = out


def cycle(argv: list[str], program: Program | None) -> dict[str, float]:
    """One case's worth of lifetimes: construct, start, open, crash, start, open, close."""
    t: dict[str, float] = {}
    clock = time.perf_counter
    t0 = clock()
    adapter = ProcessAdapter(argv, use_layer=False, program=program)
    t["construct"] = clock() - t0
    try:
        for n in (1, 2):
            t0 = clock()
            adapter.start("synced")
            t[f"start #{n}"] = clock() - t0
            reply = adapter.request("open").reply
            if not (reply and reply["ok"]):
                raise RuntimeError(f"open: {reply!r}")
            time.sleep(0.02)  # the case's own steps
            if n == 1:
                t0 = clock()
                adapter.crash()
                t["crash"] = clock() - t0
    finally:
        t0 = clock()
        adapter.close()
        t["close"] = clock() - t0
    t["cycle (without the 2 x 20 ms of steps)"] = sum(t.values())
    return t


def bench_cycles(figures: dict[str, Any], n: int) -> None:
    section(f"2. A case's lifetimes through the adapter: {n} cycles per variant, interleaved")
    print("construct, start, open, (20 ms of steps), crash, start, open, (20 ms), close")
    out: dict[str, Any] = {}
    for name, (argv, program) in ADAPTER_NODES.items():
        runs: dict[str, list[dict[str, float]]] = {"off": [], "auto": []}
        for setting in runs:  # warm-up: the first of a command gets no first-lifetime spare
            with spares_setting(setting):
                cycle(argv, program)
                cycle(argv, program)
        for _ in range(n):
            for setting, got in runs.items():
                with spares_setting(setting):
                    got.append(cycle(argv, program))
        parts = list(runs["off"][0])
        med = {s: {p: statistics.median(r[p] for r in rs) for p in parts}
               for s, rs in runs.items()}
        print()
        print(table([name, "spares off", "spares on", "on / off"],
                    [[p, ms(med["off"][p]), ms(med["auto"][p]),
                      f"{med['auto'][p] / med['off'][p]:.2f}" if med["off"][p] else "-"]
                     for p in parts]))
        out[name] = med
    figures["cycles"] = out


def export_tree(rev: str, where: Path) -> Path:
    """The tree of git revision `rev`, exported under `where` (`rev` may also name a
    directory that holds such a tree already)."""
    if Path(rev).is_dir():
        return Path(rev).resolve()
    tree = where / f"tree-{rev.replace('/', '_')}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True,
                             check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
    return tree


def certify(tree: Path, impl: list[str], out: Path, suites: list[str],
            env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, exit status and summary line of `conformance certify` run from `tree`."""
    argv = [sys.executable, "-m", "conformance.cli", "certify", *impl, "--explore", "0",
            "--out", str(out), *(["--suites", *suites] if suites else [])]
    if "--jobs" in (tree / "conformance" / "cli.py").read_text(encoding="utf-8"):
        argv += ["--jobs", "1"]  # the serial figure: --jobs adds parallelism on top
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=tree, capture_output=True, text=True,
                              timeout=CERTIFY_TIMEOUT,
                              env={**os.environ, "PYTHONPATH": str(tree), **env})
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, -1, f"timed out after {CERTIFY_TIMEOUT:g} s"
    wall = time.perf_counter() - t0
    summary = next((ln.split("; report:")[0] for ln in reversed(proc.stdout.splitlines())
                    if "; report:" in ln), proc.stderr.strip()[-300:])
    return wall, proc.returncode, summary


def bench_certify(figures: dict[str, Any], suites: list[str],
                  before: tuple[str, Path] | None, rounds: int, errors: list[str]) -> None:
    section(f"3. `conformance certify --explore 0` (serial), wall time and ratio to in process; "
            f"median of {rounds} round(s), every other one in reverse order")
    work = Path(tempfile.mkdtemp(prefix="bench-lifetimes-"))
    try:
        trees = {"this tree": REPO}
        if before is not None:
            trees[f"at {before[0]}"] = before[1]
        sqlite = " ".join([sys.executable, str(REPO / "examples" / "sqlite_node.py"),
                           "--data-dir", "{data_dir}"])
        variants: list[tuple[str, str, list[str], dict[str, str]]] = []
        for label, _tree in trees.items():
            variants.append((label, "in process", [], {}))
            for node, impl in (("reference-process", ["--impl", "reference-process"]),
                               ("sqlite_node", ["--impl", sqlite])):
                variants.append((label, node, impl, {}))
                if label == "this tree":
                    variants.append((label, f"{node}, spares off", impl,
                                     {"CONFORMANCE_SPARES": "off"}))
                    # the node (reference) and the filesystem daemons started anew
                    variants.append((label, f"{node}, fork server off", impl,
                                     {"CONFORMANCE_FORKSERVER": "off"}))
        results: dict[tuple[str, str], list[tuple[float, int, str]]] = {}
        made = 0
        for r in range(rounds):  # every other round backwards: drift in the load hits all
            for label, what, impl, env in (variants if r % 2 == 0 else variants[::-1]):
                made += 1
                got = certify(trees[label], impl, work / f"out-{made}", suites, env)
                results.setdefault((label, what), []).append(got)
                if got[1] != 0:
                    errors.append(f"certify {what} ({label}) exited {got[1]}: {got[2]}")
        rows, out = [], {}
        for label in trees:
            base = statistics.median(r[0] for r in results[(label, "in process")])
            out[label] = {"in process": base}
            for (lab, what), runs in results.items():
                if lab != label:
                    continue
                wall = statistics.median(r[0] for r in runs)
                ratio = wall / base
                node = what.split(",")[0]
                target = TARGETS.get(node) if what == node else None
                rows.append([label, what, f"{wall:.2f} s",
                             f"{ratio:.1f}x" if what != "in process" else
                             ", ".join(f"{r[0]:.2f} s" for r in runs),
                             f"<= {target:g}x" if target else "",
                             ("PASS" if ratio <= target else "FAIL") if target else "",
                             runs[0][2]])
                out[label][what] = wall
                out[label][f"{what} / in process"] = ratio
        print(table(["tree", "certify", "wall", "ratio (in process: runs)", "target", "check",
                     "summary"], rows))
        figures["certify"] = out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions; one suite file")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--cycles", type=int, default=None,
                    help="cycles per variant in part 2 (default 15; 3 with --quick)")
    ap.add_argument("--suites", nargs="+", default=None,
                    help="suites for part 3 (default: all; suites/entries.yaml with --quick)")
    ap.add_argument("--before", metavar="REV", default=None,
                    help="also run parts 1 (the server's start) and 3 on the tree of this git "
                         "revision")
    ap.add_argument("--no-certify", action="store_true", help="skip part 3")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of each certify in part 3, every other round backwards")
    args = ap.parse_args(argv)
    reps = 3 if args.quick else 11
    suites = args.suites or (["suites/entries.yaml"] if args.quick else [])
    load0 = os.getloadavg()
    print(f"node lifetimes: python {platform.python_version()}, {os.cpu_count()} CPUs; load "
          f"average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    figures: dict[str, Any] = {"env": {"python": platform.python_version(),
                                       "cpus": os.cpu_count(), "loadavg_start": load0,
                                       "quick": args.quick, "before": args.before}}
    errors: list[str] = []
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-lifetimes-"))
    try:
        before = (args.before, export_tree(args.before, work)) if args.before else None
        try:
            bench_start_parts(figures, reps, before)
            bench_cycles(figures, args.cycles or (3 if args.quick else 15))
        except Exception as exc:  # noqa: BLE001 - reported as a failed measurement
            errors.append(f"{type(exc).__name__}: {exc}")
        if not args.no_certify:
            bench_certify(figures, suites, before, max(1, args.rounds), errors)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    figures["env"]["loadavg_end"] = load1
    figures["errors"] = errors
    figures["elapsed_s"] = time.perf_counter() - started
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
          f"total {figures['elapsed_s']:.1f} s")
    for err in errors:
        print(f"ERROR {err}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
