#!/usr/bin/env python3
"""Benchmark of the harness (conformance/); see docs/performance.md, section "Harness".

    python bench/bench_harness.py [--quick] [--json PATH] [--suites PATH ...] [--cprofile]
                                  [--no-process] [--requests N]

One run measures:

1. the per-request cost of the local-process adapter (ProcessAdapter.request) against a
   bare JSON-lines round trip over a pipe, both talking to the same tiny Python echo
   child; the ratio adapter / bare has a target of <= 2x. For context: the reference
   server's `digest` through the ProcessAdapter, and the same op through the in-process
   adapter;
2. the full default suite run in process: every case of every suite (suites/) through
   session.run_all against the in-process reference, as executed steps/s, requests/s
   and cases/s, with a per-suite table, the slowest cases, and the share of the time
   spent inside adapter.request;
3. the wall time of the `conformance certify` console script on the in-process
   reference (median of 3; target under 10 s), and one run with
   `--impl reference-process` for context (not with --quick or --no-process); plus the
   bare start-up cost of the console script (`conformance --version`) and an estimate of
   where certify's wall time goes.

The targets print PASS/FAIL, but the exit status is 0 whatever the figures: they are
measurements on a shared, noisy machine, not tests. The exit status is 1 only when a
measurement could not be made (e.g. the echo child did not answer).

`--cprofile` also runs `conformance certify` once in this process under cProfile and prints
the top functions (part 4).
Options meant for bench_reference.py (e.g. `--keys`, passed by `tox -e bench -- ...`)
are ignored with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_reference import section, table  # (run as a script: bench/ is on sys.path)

from conformance.adapters.base import Adapter, Exchange, Hello
from conformance.adapters.inprocess import InProcessAdapter
from conformance.adapters.process import ProcessAdapter
from conformance.cases import Case, CaseResult, Suite
from conformance.catalog import Catalog, load_catalog
from conformance.impls import REFERENCE_ARGV, Implementation, resolve
from conformance.loader import SuiteError, discover, load_suite, load_suites
from conformance.session import SUITES_DIR, run_all

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0  # ProcessAdapter.request / bare round trip
TARGET_CERTIFY_S = 10.0  # `conformance certify`, in-process reference
CERTIFY_TIMEOUT_S = 300.0  # per console-script run; a run over it is reported as timed out

# The echo child: JSON lines in, {"id", "ok": true, "result": {}} out; answers `hello` with a
# valid hello result so that ProcessAdapter.start() accepts it.
ECHO_CHILD = r"""
import json, sys
HELLO = {"version": 1, "implementation": {"name": "echo", "version": "0"},
         "capabilities": [], "entry_kinds": []}
out = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    result = HELLO if req.get("op") == "hello" else {}
    out.write(json.dumps({"id": req.get("id"), "ok": True, "result": result}) + "\n")
    out.flush()
"""


# -- small helpers -------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_s(seconds: float) -> str:
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    if abs(seconds) >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Results:
    figures: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


# -- 1. per-request overhead of the process adapter ----------------------------------------------


def echo_argv() -> list[str]:
    return [sys.executable, "-c", ECHO_CHILD]


class BareClient:
    """The baseline: write one JSON line, flush, readline, decode. Nothing else.

    threaded=True (a diagnostic): the replies are read by a thread and handed over through a
    queue.Queue, as ProcessAdapter does, to show what that hand-off costs on its own.
    """

    def __init__(self, threaded: bool = False) -> None:
        self.proc = subprocess.Popen(echo_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 1
        self.lines: queue.Queue[bytes] | None = None
        if threaded:
            self.lines = queue.Queue()
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None and self.lines is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line)

    def request(self, op: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        rid = self.next_id
        self.next_id += 1
        self.proc.stdin.write((json.dumps({"id": rid, "op": op}, separators=(",", ":"))
                               + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline() if self.lines is None else self.lines.get(timeout=10)
        reply: dict[str, Any] = json.loads(line)
        if reply.get("id") != rid:
            raise RuntimeError(f"echo child: reply {reply!r} to request id {rid}")
        return reply

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def time_loop(call: Callable[[], object], n: int) -> float:
    """Seconds per call, over n calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n


def bench_requests(res: Results, n: int, reps: int) -> None:
    section(f"1. Per-request cost: {n} round trips per run, {reps} runs of each, interleaved; "
            "median run")
    bare = BareClient()
    threaded = BareClient(threaded=True)
    adapter = ProcessAdapter(echo_argv(), name="echo")
    ref = ProcessAdapter(REFERENCE_ARGV, name="reference-process")
    inproc = InProcessAdapter()
    try:
        adapter.start("synced")
        ref.start("synced")
        inproc.start("synced")
        for a in (ref, inproc):  # a small store, so that digest has something to hash
            a.request("open")
            for i in range(1, 11):
                a.request("apply", index=i, entry={
                    "kind": "raw", "ts": i, "ops": [{"op": "put", "key": f"k/{i}",
                                                     "value": f"v{i}"}]})
        calls: dict[str, Callable[[], object]] = {
            "bare": lambda: bare.request("ping"),
            "adapter": lambda: adapter.request("ping"),
            "bare_thread": lambda: threaded.request("ping"),
            "ref_digest": lambda: ref.request("digest"),
            "inproc_digest": lambda: inproc.request("digest"),
        }
        for call in calls.values():  # warm-up
            time_loop(call, max(50, n // 20))
        runs: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(reps):
            for name, call in calls.items():
                runs[name].append(time_loop(call, n))
        ex = adapter.request("ping")
        if not (isinstance(ex, Exchange) and ex.reply and ex.reply.get("ok")):
            res.errors.append(f"echo child through the adapter: unexpected reply {ex.reply!r}")
    finally:
        bare.close()
        threaded.close()
        adapter.close()
        ref.close()
        inproc.close()

    per = {k: median(v) for k, v in runs.items()}
    ratio = per["adapter"] / per["bare"]
    ratio_min = min(runs["adapter"]) / min(runs["bare"])
    labels = {
        "bare": "(a) bare client, echo child",
        "adapter": "(b) ProcessAdapter.request, echo child",
        "bare_thread": "diag: (a) + reader thread and queue.get(timeout)",
        "ref_digest": "(c) ProcessAdapter.request, reference server digest",
        "inproc_digest": "(d) InProcessAdapter.request, reference digest",
    }
    rows = [[labels[k], f"{per[k] * 1e6:.1f}", f"{min(runs[k]) * 1e6:.1f}",
             f"{max(runs[k]) * 1e6:.1f}", f"{1 / per[k]:,.0f}"] for k in calls]
    print(table(["path", "us/request", "min", "max", "requests/s"], rows))
    print()
    ratios = [
        ["(b) adapter / (a) bare", f"{ratio:.2f}",
         f"<= {TARGET_RATIO:g}", verdict(ratio <= TARGET_RATIO)],
        ["(b) / (a), best runs (min / min): the least disturbed by other load",
         f"{ratio_min:.2f}", "", ""],
        ["(b) - (a): adapter overhead per request", f"{(per['adapter'] - per['bare']) * 1e6:.1f} us",
         "", ""],
        ["diag - (a): the reader-thread + queue hand-off alone",
         f"{(per['bare_thread'] - per['bare']) * 1e6:.1f} us", "", ""],
        ["(c) reference digest / (b) echo", f"{per['ref_digest'] / per['adapter']:.2f}", "", ""],
        ["(c) process / (d) in process, digest", f"{per['ref_digest'] / per['inproc_digest']:.2f}",
         "", ""],
    ]
    print(table(["ratio", "value", "target", "check"], ratios))
    print("the bare client also encodes each request and decodes each reply (json.dumps/loads),")
    print("so the ratio isolates the adapter's own machinery (reader threads, queue, select, checks)")
    starts = bench_starts(reps)
    res.figures["requests"] = {
        "n": n, "reps": reps, "start_s": starts,
        "us_per_request": {k: per[k] * 1e6 for k in calls},
        "runs_us": {k: [x * 1e6 for x in v] for k, v in runs.items()},
        "ratio_adapter_over_bare": ratio, "ratio_min_over_min": ratio_min,
        "handoff_us": (per["bare_thread"] - per["bare"]) * 1e6,
        "target_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
    }


def bench_starts(reps: int) -> dict[str, float]:
    """ProcessAdapter.start() (spawn, imports, hello) and close(): what each node lifetime costs."""
    argvs = {"echo child": echo_argv(), "reference server": list(REFERENCE_ARGV)}
    times: dict[str, list[float]] = {k: [] for k in argvs}
    for _ in range(reps):
        for name, argv in argvs.items():
            adapter = ProcessAdapter(argv, name=name)
            t0 = time.perf_counter()
            adapter.start("synced")
            adapter.close()
            times[name].append(time.perf_counter() - t0)
    print()
    print(table(["ProcessAdapter start + close (one node lifetime)", "median", "min", "max"],
                [[k, fmt_s(median(v)), fmt_s(min(v)), fmt_s(max(v))] for k, v in times.items()]))
    return {k: median(v) for k, v in times.items()}


# -- 2. the default suite, in process ----------------------------------------------------------------


@dataclass
class Counter:
    requests: int = 0
    seconds: float = 0.0
    starts: int = 0


def counting(impl: Implementation, counters: dict[str, Counter]) -> Implementation:
    """The same implementation, with every adapter.request counted and timed per case."""

    def factory(case: Case) -> Adapter:
        adapter = impl.factory(case)
        counter = counters.setdefault(case.id, Counter())
        inner = adapter.request
        inner_start = adapter.start
        clock = time.perf_counter

        def start(durability: str) -> Hello:
            counter.starts += 1
            return inner_start(durability)

        def request(op: str, **fields: Any) -> Exchange:
            t0 = clock()
            try:
                return inner(op, **fields)
            finally:
                counter.seconds += clock() - t0
                counter.requests += 1

        adapter.request = request  # type: ignore[method-assign]
        adapter.start = start  # type: ignore[method-assign]
        return adapter

    return Implementation(impl.name, factory, impl.in_process)


def load_what_exists(paths: list[Path], catalog: Catalog) -> tuple[list[Suite], list[str]]:
    """All suites; if some file does not load (being written?), every other one, with notes."""
    try:
        return load_suites(paths, catalog), []
    except SuiteError:
        pass
    suites, notes = [], []
    for root in paths:
        for f in discover(root):
            try:
                suites.append(load_suite(f, catalog))
            except SuiteError as exc:
                first = exc.problems[0] if exc.problems else None
                notes.append(f"skipped {f}: {first[0]}: {first[1]}" if first else f"skipped {f}")
    return suites, notes


@dataclass
class SuiteRun:
    seconds: float
    results: list[CaseResult]
    counters: dict[str, Counter]


def run_suite_once(cases: list[Case]) -> SuiteRun:
    counters: dict[str, Counter] = {}
    impl = counting(resolve("reference"), counters)
    t0 = time.perf_counter()
    results = run_all(cases, impl, 0)
    return SuiteRun(time.perf_counter() - t0, results, counters)


def bench_suite(res: Results, paths: list[Path], reps: int) -> None:
    files = [f for p in paths for f in discover(p)]
    section(f"2. The suite in process (session.run_all, in-process reference), median of {reps}")
    catalog_s, suites_s = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        catalog = load_catalog()
        t1 = time.perf_counter()
        suites, notes = load_what_exists(paths, catalog)
        catalog_s.append(t1 - t0)
        suites_s.append(time.perf_counter() - t1)
    for note in notes:
        print(f"note: {note}")
    cases = [c for s in suites for c in s.cases]
    where = ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in paths)
    print(f"{len(files)} suite file(s) under {where}; {len(suites)} loaded; {len(cases)} cases")
    yaml_bytes = sum(f.stat().st_size for f in files)
    kib = max(yaml_bytes / 1024, 1e-9)
    load_s = median(suites_s)
    print(f"loading, first call (as certify pays it): catalog {fmt_s(catalog_s[0])}, suites "
          f"{fmt_s(suites_s[0])} for {yaml_bytes / 1024:.0f} KiB of YAML "
          f"({suites_s[0] * 1e3 / kib:.1f} ms/KiB: YAML parse + schema + semantic checks)")
    if reps > 1:
        print(f"loading, median of {reps}: catalog {fmt_s(median(catalog_s))}, suites "
              f"{fmt_s(load_s)} ({load_s * 1e3 / kib:.1f} ms/KiB)")
    res.figures["suite"] = {"files": len(files), "loaded": len(suites), "cases": len(cases),
                            "notes": notes, "catalog_load_s": catalog_s[0],
                            "suites_load_s": suites_s[0], "catalog_load_median_s": median(catalog_s),
                            "suites_load_median_s": load_s, "yaml_bytes": yaml_bytes}
    if not cases:
        print("no case to run: nothing measured")
        return

    runs = [run_suite_once(cases) for _ in range(reps)]
    mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    steps = sum(r.steps_run for r in mid.results)
    requests = sum(c.requests for c in mid.counters.values())
    in_request = sum(c.seconds for c in mid.counters.values())
    starts = sum(c.starts for c in mid.counters.values())
    statuses: dict[str, int] = {}
    for r in mid.results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    secs = mid.seconds
    # figures of a run that went wrong would measure something else: say so, and exit 1
    broken = {s: n for s, n in statuses.items() if s not in ("passed", "not_applicable")}
    if broken:
        res.errors.append(f"part 2: the in-process reference did not pass every case: {broken}")
    if requests == 0 or starts == 0:
        res.errors.append(f"part 2: the counting adapter saw {requests} requests and {starts} "
                          "starts: it no longer wraps the adapter's request/start")

    rows = [[f"{len(cases)}", f"{steps:,}", f"{requests:,}", fmt_s(secs),
             f"{steps / secs:,.0f}", f"{requests / secs:,.0f}", f"{len(cases) / secs:,.1f}",
             f"{in_request / secs:.2f}"]]
    print(table(["cases", "steps", "requests", "wall (median)", "steps/s", "requests/s", "cases/s",
                 "in adapter.request"], rows))
    print("statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    print(f"all runs: {', '.join(fmt_s(r.seconds) for r in runs)}; per request "
          f"{secs / max(requests, 1) * 1e6:.0f} us all in, "
          f"{in_request / max(requests, 1) * 1e6:.0f} us inside adapter.request")
    print(f"node lifetimes (adapter.start calls): {starts}")
    start_s = res.figures.get("requests", {}).get("start_s", {}).get("reference server")
    if start_s:
        print(f"  x {fmt_s(start_s)} per reference-server start (part 1) = {fmt_s(starts * start_s)}"
              " of process start-up alone for --impl reference-process")

    by_suite: dict[str, list[CaseResult]] = {}
    for r in mid.results:
        by_suite.setdefault(r.case.suite, []).append(r)
    srows = []
    for name, rs in by_suite.items():
        t = sum(r.duration for r in rs)
        st = sum(r.steps_run for r in rs)
        rq = sum(mid.counters[r.case.id].requests for r in rs if r.case.id in mid.counters)
        srows.append([name, str(len(rs)), str(st), str(rq), fmt_s(t),
                      f"{st / t:,.0f}" if t > 0 else "-", f"{t / secs:.2f}"])
    print()
    print(table(["suite", "cases", "steps", "requests", "time", "steps/s", "share"], srows))
    slow = sorted(mid.results, key=lambda r: r.duration, reverse=True)[:5]
    print()
    print(table(["slowest cases", "status", "steps", "requests", "time"],
                [[f"{r.case.suite}::{r.case.id}", r.status, str(r.steps_run),
                  str(mid.counters[r.case.id].requests if r.case.id in mid.counters else "-"),
                  fmt_s(r.duration)] for r in slow]))
    res.figures["suite"].update({
        "steps": steps, "requests": requests, "starts": starts, "seconds": secs,
        "runs_s": [r.seconds for r in runs], "steps_per_s": steps / secs,
        "requests_per_s": requests / secs, "cases_per_s": len(cases) / secs,
        "share_in_adapter_request": in_request / secs, "statuses": statuses,
        "by_suite": {n: {"cases": len(rs), "seconds": sum(r.duration for r in rs),
                         "steps": sum(r.steps_run for r in rs)} for n, rs in by_suite.items()},
        "slowest": [{"case": f"{r.case.suite}::{r.case.id}", "seconds": r.duration}
                    for r in slow],
    })


# -- 4. (--cprofile) where `conformance certify` spends its time ----------------------------------


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null (certify's progress holds sys.stderr itself)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def profile_certify(res: Results, suites: list[Path] | None) -> None:
    """cProfile of `conformance certify` run in this process (conformance.cli.main)."""
    from conformance.cli import main as cli_main

    section("4. cProfile of `conformance certify` in this process (cli.main; output discarded)")
    extra = ["--suites", *map(str, suites)] if suites else []
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp, silenced():
        prof.enable()
        cli_main(["certify", "--out", tmp, *extra])
        prof.disable()
    views = [("tottime", (20,), "top 20 functions by own time (tottime)"),
             ("cumulative", (r"conformance/|reference_impl/", 25),
              "top 25 functions of conformance/ and reference_impl/ by cumulative time")]
    for key, restrictions, title in views:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(*restrictions)
        text = buf.getvalue()
        total = next((ln.strip() for ln in text.splitlines() if "function calls" in ln), "")
        start = text.find("   ncalls")
        body = (text[start:] if start >= 0 else text).rstrip()
        body = body.replace(str(Path(sys.prefix)), "<prefix>").replace(str(REPO) + "/", "")
        print()
        print(f"{title}; {total}")
        print(body)
        res.figures.setdefault("cprofile", {})[key] = body


# -- 3. `conformance certify` wall time ---------------------------------------------------------------


def console_script() -> str | None:
    """The `conformance` console script of this interpreter's environment, else on PATH."""
    here = Path(sys.executable).parent / "conformance"
    if here.is_file():
        return str(here)
    return shutil.which("conformance")


@dataclass
class CliRun:
    seconds: float
    returncode: int
    summary: str


def run_cli(argv: list[str], timeout: float = CERTIFY_TIMEOUT_S) -> CliRun:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CliRun(time.perf_counter() - t0, -1, f"timed out after {timeout:g} s")
    dt = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if " in " in ln and "report:" in ln]
    last_err = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
    summary = lines[-1].split("; report:")[0] if lines else " ".join(last_err)
    return CliRun(dt, proc.returncode, summary)


def bench_certify(res: Results, reps: int, suites: list[Path] | None, with_process: bool,
                  explore: int | None = None) -> None:
    section(f"3. `conformance certify` wall time (subprocess; in process: median of {reps})")
    exe = console_script()
    if exe is None:
        print("the `conformance` console script is not installed: nothing measured")
        res.errors.append("no conformance console script")
        return
    print(f"console script: {exe}")
    extra = ["--suites", *map(str, suites)] if suites else []
    extra += ["--explore", str(explore)] if explore is not None else []
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        startup = [run_cli([exe, "--version"]) for _ in range(3)]
        inproc = [run_cli([exe, "certify", "--out", f"{tmp}/inproc-{i}", *extra]) for i in range(reps)]
        proc = run_cli([exe, "certify", "--impl", "reference-process", "--out", f"{tmp}/proc",
                        *extra]) if with_process else None
    med = median([r.seconds for r in inproc])
    start_s = median([r.seconds for r in startup])
    rows = [
        ["conformance --version (start-up only)", fmt_s(start_s), "", "", "",
         str(startup[0].returncode), ""],
        ["conformance certify", fmt_s(med), ", ".join(fmt_s(r.seconds) for r in inproc),
         f"< {TARGET_CERTIFY_S:g} s", verdict(med < TARGET_CERTIFY_S),
         str(inproc[0].returncode), inproc[0].summary],
    ]
    if proc is not None:
        rows.append(["conformance certify --impl reference-process", fmt_s(proc.seconds),
                     "(one run)", "", "", str(proc.returncode), proc.summary])
    print(table(["command (--out a temp dir)", "wall", "runs", "target", "check", "exit",
                 "summary"], rows))
    if proc is not None:
        print(f"reference-process / in process: {proc.seconds / med:.1f}x; "
              "exit 1 means some case failed (the figure is still the wall time)")
    else:
        print("--impl reference-process: not run (--quick or --no-process); part 2 gives an "
              "estimate from the node lifetimes")
    res.errors += [f"part 3: `conformance certify` (in process) exited {r.returncode}: "
                   f"{r.summary}" for r in inproc if r.returncode != 0]
    if any(r.returncode == 2 for r in [*inproc, *([proc] if proc else [])]):
        print("WARNING: exit 2 is a usage or suite-format error: certify ran no case, so its "
              "wall time is start-up only")
    res.figures["certify"] = {
        "startup_s": start_s, "inprocess_s": med, "inprocess_runs_s": [r.seconds for r in inproc],
        "inprocess_exit": [r.returncode for r in inproc], "inprocess_summary": inproc[0].summary,
        "target_s": TARGET_CERTIFY_S, "pass": med < TARGET_CERTIFY_S,
        "process_s": proc.seconds if proc else None,
        "process_exit": proc.returncode if proc else None,
        "process_summary": proc.summary if proc else None,
    }
    # certify prints the duration of its own case run ("... in 0.48s; report: ...").
    own = [m.group(1) for r in inproc if (m := re.search(r" in ([0-9.]+)s$", r.summary))]
    su = res.figures.get("suite", {})
    if own and len(own) == len(inproc):
        run_s = median([float(x) for x in own])
        parts = [("interpreter start-up + imports (`conformance --version`)", start_s),
                 ("running the cases (the duration certify prints)", run_s),
                 ("the rest: loading the catalog and the suites, identity probe, report",
                  med - start_s - run_s)]
        print()
        print(table(["where certify's wall time goes (medians)", "time", "share"],
                    [[k, fmt_s(x), f"{x / med:.2f}"] for k, x in parts]))
        if su.get("suites_load_s") is not None:
            print(f"(part 2 measured, in this process: catalog load {fmt_s(su['catalog_load_s'])}, "
                  f"suite load {fmt_s(su['suites_load_s'])})")
        res.figures["certify"]["breakdown_s"] = dict(parts)


# -- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer round trips and repetitions")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--suites", type=Path, nargs="+", default=None,
                    help="suite files or directories (default: suites/), for parts 2 and 3")
    ap.add_argument("--explore", type=int, default=None, metavar="N",
                    help="certify's --explore for part 3 (default: certify's own; 0 skips it)")
    ap.add_argument("--cprofile", action="store_true",
                    help="also profile one `conformance certify` (in this process) with cProfile "
                         "and print the top functions")
    ap.add_argument("--requests", type=int, default=None,
                    help="round trips per run in part 1 (default 2000; 500 with --quick)")
    ap.add_argument("--no-process", action="store_true",
                    help="skip the `certify --impl reference-process` run (skipped by --quick too)")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"note: ignoring {' '.join(unknown)} (options of bench_reference.py?)")
    quick = args.quick
    n_req = args.requests or (500 if quick else 2000)
    req_reps, suite_reps, certify_reps = (5, 1, 1) if quick else (9, 3, 3)
    paths = args.suites or [SUITES_DIR]

    res = Results()
    started = time.perf_counter()
    print(f"harness benchmark: python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{'--quick' if quick else 'default'} run")
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; the machine is "
          "shared and noisy: compare the ratios, not the absolute times")
    res.figures["env"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "quick": quick, "platform": platform.platform(), "loadavg_start": load0}
    try:
        bench_requests(res, n_req, req_reps)
    except Exception as exc:  # noqa: BLE001 - report and go on to the other parts
        res.errors.append(f"part 1: {type(exc).__name__}: {exc}")
    bench_suite(res, paths, suite_reps)
    bench_certify(res, certify_reps, args.suites, not (quick or args.no_process), args.explore)
    if args.cprofile:
        profile_certify(res, args.suites)

    elapsed = time.perf_counter() - started
    section("Summary")
    rq, su, ce = (res.figures.get(k, {}) for k in ("requests", "suite", "certify"))
    rows = []
    if rq:
        rows.append(["ProcessAdapter.request / bare round trip", f"{rq['ratio_adapter_over_bare']:.2f}",
                     f"<= {TARGET_RATIO:g}", verdict(rq["pass"])])
    if "steps_per_s" in su:
        rows.append(["suite in process: steps/s", f"{su['steps_per_s']:,.0f}", "", ""])
    if ce:
        rows.append(["conformance certify (in process), median", fmt_s(ce["inprocess_s"]),
                     f"< {TARGET_CERTIFY_S:g} s", verdict(ce["pass"])])
    if rows:
        print(table(["figure", "value", "target", "check"], rows))
    for err in res.errors:
        print(f"ERROR {err}")
    load1 = os.getloadavg()
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"total time {elapsed:.1f} s")
    res.figures["env"]["loadavg_end"] = load1
    res.figures["errors"] = res.errors
    res.figures["elapsed_s"] = elapsed
    if args.json is not None:
        args.json.write_text(json.dumps(res.figures, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
