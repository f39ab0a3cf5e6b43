#!/usr/bin/env python3
"""Benchmark of the reference implementation (reference_impl); see docs/performance.md.

    python bench/bench_reference.py [--quick] [--keys N] [--json PATH]

One run measures:

1. apply throughput (entries/s) of one-put raw entries through Node.apply, on SimDisk
   and on the real disk (OSDisk), synced and unsynced, plus the ratios between them;
   and how SimDisk's apply rate changes with the size of the store log;
2. fsyncs per apply (DiskStats.total_fsyncs()): exactly 1 synced, 0 unsynced;
3. fsyncs per snapshot persist with the pin (writer) and without it: exactly 1 apart,
   synced and unsynced, at both persist sites, whether the pin writes the meta key
   (meta < snapshot index) or is a value no-op that still syncs (meta >= index);
4. cold start of a store of --keys keys on the real disk: the skip path versus the
   full restore (execute path), with store recovery (the log replay both paths do)
   separated from the gate; and the skip gate next to a bare read + CRC check of the
   snapshot file at several store sizes.

Times vary on a shared machine, so each timing is the median of a few repetitions and
the ratios measured in one run are what to compare. Counts (fsyncs, bytes) are
deterministic: an exact-count expectation that fails makes the script exit 1.

To split an open() into store recovery and the gate, the script rebinds `Store` and
`decode_body` in the `reference_impl.node` namespace to timing wrappers for the
duration of a measurement; no code of the implementation changes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reference_impl.node as node_mod
from reference_impl.disk import Disk, OSDisk, SimDisk
from reference_impl.node import POINTER, SNAP_DIR, Node, NodeConfig
from reference_impl.snapshot import Header, Token, parse_header, verify_file
from reference_impl.store import STORE_FILE, Store

REPO = Path(__file__).resolve().parent.parent
KEYS_PER_ENTRY = 1000  # keys per raw entry when building the cold-start stores


# -- small helpers -------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ratio(a: float, b: float) -> float | None:
    """a / b; None (printed n/a) when nothing was timed, which an exact-count check names."""
    return a / b if b else None


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def fmt_bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def section(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


def put_entry(i: int) -> dict[str, Any]:
    """A raw entry with one put (the apply-throughput workload)."""
    return {"kind": "raw", "ts": i, "ops": [{"op": "put", "key": f"key/{i:09d}",
                                            "value": f"value-{i:09d}"}]}


def bulk_entry(i: int, first_key: int, n: int) -> dict[str, Any]:
    """A raw entry putting n keys (to build large stores quickly)."""
    ops = [{"op": "put", "key": f"key/{k:09d}", "value": f"value-{k:09d}"}
           for k in range(first_key, first_key + n)]
    return {"kind": "raw", "ts": i, "ops": ops}


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding path, from /proc/self/mounts (best effort)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


class CountingOSDisk(OSDisk):
    """OSDisk that also counts the bytes returned by read(), per path."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bytes_read: dict[str, int] = {}

    def read(self, path: str) -> bytes:
        data = super().read(path)
        self.bytes_read[path] = self.bytes_read.get(path, 0) + len(data)
        return data


@dataclass
class Check:
    name: str
    expected: str
    measured: str
    ok: bool


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, expected: Any, measured: Any, ok: bool | None = None) -> str:
        passed = (expected == measured) if ok is None else ok
        self.checks.append(Check(name, str(expected), str(measured), passed))
        return "PASS" if passed else "FAIL"


# -- 1 and 2: apply throughput, fsyncs per apply ------------------------------------------------


@dataclass
class ApplyRun:
    seconds: float
    entries: int
    fsyncs: int


def apply_run(disk: Disk, sync: bool, entries: list[dict[str, Any]]) -> ApplyRun:
    """Apply entries 1..n on a fresh node; time only the apply loop."""
    node = Node(disk, NodeConfig(sync=sync))
    node.open()
    f0 = disk.stats.total_fsyncs()
    apply = node.apply
    t0 = time.perf_counter()
    for i, entry in enumerate(entries, 1):
        apply(i, entry)
    dt = time.perf_counter() - t0
    fsyncs = disk.stats.total_fsyncs() - f0
    node.close()
    return ApplyRun(dt, len(entries), fsyncs)


def fsyncs_per_apply(disk: Disk, sync: bool, n: int) -> list[int]:
    """The fsync count of each of n applies, one by one."""
    node = Node(disk, NodeConfig(sync=sync))
    node.open()
    deltas = []
    for i in range(1, n + 1):
        before = disk.stats.total_fsyncs()
        node.apply(i, put_entry(i))
        deltas.append(disk.stats.total_fsyncs() - before)
    node.close()
    return deltas


def bench_apply(rep: Report, tmp: Path, n: int, reps: int) -> None:
    section(f"1. Apply throughput: one-put raw entries, {n} per run, median of {reps} runs")
    entries = [put_entry(i) for i in range(1, n + 1)]
    counter = iter(range(1_000_000))

    def real() -> Disk:
        return OSDisk(tmp / f"apply-{next(counter)}")

    disks: dict[str, Callable[[], Disk]] = {"sim": lambda: SimDisk(seed=1), "real": real}
    rates: dict[tuple[str, bool], float] = {}
    rows = []
    for name, make in disks.items():
        for sync in (True, False):
            apply_run(make(), sync, entries[: max(1, n // 10)])  # warm-up, discarded
            runs = [apply_run(make(), sync, entries) for _ in range(reps)]
            rate = median([r.entries / r.seconds for r in runs])
            rates[(name, sync)] = rate
            per_apply = median([r.fsyncs / r.entries for r in runs])
            rows.append([name, "synced" if sync else "unsynced", f"{rate:,.0f}",
                         f"{1e6 / rate:.1f}", f"{per_apply:g}"])
            rep.results.setdefault("apply", {})[f"{name}_{'synced' if sync else 'unsynced'}"] = {
                "entries_per_s": rate, "us_per_entry": 1e6 / rate,
                "runs_entries_per_s": [r.entries / r.seconds for r in runs],
            }
            with contextlib.suppress(OSError):
                for p in tmp.glob("apply-*"):
                    shutil.rmtree(p)
    print(table(["disk", "mode", "entries/s", "us/entry", "fsyncs/entry"], rows))
    ratios = [
        ("sim: unsynced / synced", rates[("sim", False)] / rates[("sim", True)]),
        ("real: unsynced / synced", rates[("real", False)] / rates[("real", True)]),
        ("synced: real / sim", rates[("real", True)] / rates[("sim", True)]),
        ("unsynced: real / sim", rates[("real", False)] / rates[("sim", False)]),
    ]
    print()
    print(table(["ratio (throughput)", "value"], [[k, f"{v:.2f}"] for k, v in ratios]))
    rep.results["apply_ratios"] = dict(ratios)

    section("2. fsyncs per apply (DiskStats.total_fsyncs(), each apply counted on its own)")
    rows = []
    for name, make in disks.items():
        for sync in (True, False):
            deltas = fsyncs_per_apply(make(), sync, 200)
            expected = 1 if sync else 0
            exact = all(d == expected for d in deltas)
            mode = "synced" if sync else "unsynced"
            verdict = rep.check(f"fsyncs per apply, {name} {mode}", expected,
                                f"min {min(deltas)} max {max(deltas)}", ok=exact)
            rows.append([name, mode, str(len(deltas)), str(sum(deltas)),
                         f"{min(deltas)}..{max(deltas)}", str(expected), verdict])
    print(table(["disk", "mode", "applies", "fsyncs", "per apply", "expected", "check"], rows))


def bench_sim_scaling(rep: Report, tmp: Path, sizes_mib: list[int], n: int, reps: int) -> None:
    section(f"1b. Apply rate versus store log size ({n} one-put unsynced entries, median of "
            f"{reps})")
    rows = []
    base: dict[str, float] = {}
    results = {}
    for mib in sizes_mib:
        row = [f"{mib} MiB"]
        for name in ("sim", "real"):
            rates = []
            for r in range(reps):
                disk: Disk = SimDisk(seed=1) if name == "sim" else OSDisk(tmp / f"scale-{r}")
                node = Node(disk, NodeConfig(sync=False))
                node.open()
                i = 0
                while disk.size(STORE_FILE) < mib << 20:
                    i += 1
                    node.apply(i, bulk_entry(i, i * KEYS_PER_ENTRY, KEYS_PER_ENTRY))
                todo = [put_entry(1_000_000_000 + k) for k in range(n)]
                t0 = time.perf_counter()
                for k, entry in enumerate(todo, i + 1):
                    node.apply(k, entry)
                rates.append(n / (time.perf_counter() - t0))
                node.close()
                if name == "real":
                    shutil.rmtree(tmp / f"scale-{r}")
            rate = median(rates)
            base.setdefault(name, rate)
            row += [f"{rate:,.0f}", f"{rate / base[name]:.2f}"]
            results[f"{name}_{mib}MiB"] = rate
        rows.append(row)
    print(table(["store log", "sim entries/s", "sim vs 0 MiB", "real entries/s",
                 "real vs 0 MiB"], rows))
    rep.results["apply_vs_log_size"] = results


# -- 3: fsyncs per snapshot persist ------------------------------------------------------------


@dataclass
class PersistCount:
    fsyncs: int
    bytes_written: int
    meta_after: int
    pinned: bool


def persist_once(disk: Disk, sync: bool, writer: bool, case: str, site: str) -> PersistCount:
    """Apply a few entries, snapshot, and count what snapshot_persist alone costs.

    case meta<snap: the last entry is a no-op, so the meta key lags the snapshot index
                    and the pin writes it;
    case meta=snap: the last entry is a data entry, the meta key already equals the
                    index: the pin is a value no-op, but still syncs;
    case meta>snap: applies continue after snapshot_begin (a background persist, P6):
                    the pin must not rewind the key, it only syncs.
    """
    node = Node(disk, NodeConfig(sync=sync, writer=writer))
    node.open()
    i = 0
    for _ in range(5):
        i += 1
        node.apply(i, put_entry(i))
    if case == "meta<snap":
        i += 1
        node.apply(i, {"kind": "noop"})
    snap_id, _ = node.snapshot_begin()
    if case == "meta>snap":
        for _ in range(3):
            i += 1
            node.apply(i, put_entry(i))
    f0, b0 = disk.stats.total_fsyncs(), disk.stats.bytes_written
    result = node.snapshot_persist(snap_id, site)  # type: ignore[arg-type]
    counts = PersistCount(disk.stats.total_fsyncs() - f0, disk.stats.bytes_written - b0,
                          node.last_applied_index()[0], result.pinned)
    node.close()
    return counts


def bench_persist(rep: Report, tmp: Path) -> None:
    section("3. fsyncs per snapshot persist: with the pin (writer) versus without")
    rows = []
    counter = iter(range(1_000_000))
    results = []
    for disk_name in ("sim", "real"):
        for sync in (True, False):
            for case in ("meta<snap", "meta=snap", "meta>snap"):
                for site in ("local", "config"):
                    def make(name: str = disk_name) -> Disk:
                        if name == "sim":
                            return SimDisk(seed=1)
                        return OSDisk(tmp / f"persist-{next(counter)}")

                    pin = persist_once(make(), sync, True, case, site)
                    nopin = persist_once(make(), sync, False, case, site)
                    diff = pin.fsyncs - nopin.fsyncs
                    extra_bytes = pin.bytes_written - nopin.bytes_written
                    mode = "synced" if sync else "unsynced"
                    label = f"{disk_name} {mode} {case} {site}"
                    ok_diff = rep.check(f"persist pin fsync diff, {label}", 1, diff)
                    # The pin writes a meta record only when the key lags the index (S6).
                    pin_writes = case == "meta<snap"
                    ok_bytes = rep.check(f"persist pin bytes, {label}",
                                         "> 0" if pin_writes else "0",
                                         extra_bytes, ok=(extra_bytes > 0) == pin_writes)
                    verdict = "PASS" if ok_diff == ok_bytes == "PASS" else "FAIL"
                    rows.append([disk_name, mode, case, site, str(nopin.fsyncs), str(pin.fsyncs),
                                 str(diff), str(extra_bytes),
                                 f"{nopin.meta_after}/{pin.meta_after}", verdict])
                    results.append({"disk": disk_name, "mode": mode, "case": case, "site": site,
                                    "fsyncs_without_pin": nopin.fsyncs,
                                    "fsyncs_with_pin": pin.fsyncs, "diff": diff,
                                    "pin_bytes": extra_bytes})
    with contextlib.suppress(OSError):
        for p in tmp.glob("persist-*"):
            shutil.rmtree(p)
    print(table(["disk", "mode", "case", "site", "fsyncs no pin", "fsyncs pin", "diff",
                 "pin bytes", "meta after (no pin/pin)", "check"], rows))
    print("expected: diff exactly 1 in every row; pin bytes > 0 only for meta<snap "
          "(elsewhere the pin is a value no-op that still fsyncs)")
    rep.results["persist"] = results


# -- 4: cold start -------------------------------------------------------------------------------


@dataclass
class BuiltStore:
    root: Path
    keys: int
    entries: int
    log_bytes_before_last: int  # store.log size before the last entry: truncate to lose it
    build_seconds: float


def build_store(root: Path, keys: int) -> BuiltStore:
    """keys keys in raw entries of KEYS_PER_ENTRY puts, unsynced, then a snapshot persist."""
    t0 = time.perf_counter()
    disk = OSDisk(root)
    node = Node(disk, NodeConfig(sync=False))
    node.open()
    per = min(KEYS_PER_ENTRY, max(1, keys // 2))
    n_entries = max(2, keys // per)  # >= 2: the execute path drops the last one
    before_last = 0
    for e in range(n_entries):
        if e == n_entries - 1:
            before_last = disk.size(STORE_FILE)
        node.apply(e + 1, bulk_entry(e + 1, e * per, per))
    snap_id, _ = node.snapshot_begin()
    node.snapshot_persist(snap_id)
    node.close()
    return BuiltStore(root, n_entries * per, n_entries, before_last, time.perf_counter() - t0)


@dataclass
class OpenTiming:
    total: float
    store_recovery: float
    load_snapshot: float  # read pointer-named file + verify (C3) + split header/body
    decode: float  # execute path: JSON-decode the snapshot body
    restore: float  # execute path: Store.restore (write, fsync, rename, reload)
    outcome: str
    reason: str | None
    gate_bytes_read: int  # everything open() read except the store log
    store_bytes_read: int
    fsyncs: int
    # how often the timing wrappers ran: a wrapper the node no longer reaches (the open
    # builds its store some other way) would time nothing, and every figure would be 0
    calls: dict[str, int]

    @property
    def gate(self) -> float:
        return self.total - self.store_recovery


class _ProbedNode(Node):
    probe: dict[str, float]

    def _load_snapshot(self, token: Token | None) -> tuple[Header, bytes]:
        t0 = time.perf_counter()
        try:
            return super()._load_snapshot(token)
        finally:
            self.probe["load_snapshot"] += time.perf_counter() - t0


@contextlib.contextmanager
def probed(probe: dict[str, float], calls: dict[str, int]) -> Iterator[None]:
    """Rebind Store and decode_body in reference_impl.node to timing wrappers (each counts
    its calls)."""
    real_decode = node_mod.decode_body

    class TimedStore(Store):
        def __init__(self, disk: Disk, *, sync: bool, failpoints: Any = None) -> None:
            t0 = time.perf_counter()
            super().__init__(disk, sync=sync, failpoints=failpoints)
            probe["store_recovery"] += time.perf_counter() - t0
            calls["store"] += 1

        def restore(self, state: dict[str, Any], pin: int | None,
                    keep_meta_at_most: int | None = None) -> None:
            t0 = time.perf_counter()
            super().restore(state, pin, keep_meta_at_most)
            probe["restore"] += time.perf_counter() - t0
            calls["restore"] += 1

    def timed_decode(body: bytes) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return real_decode(body)
        finally:
            probe["decode"] += time.perf_counter() - t0
            calls["decode"] += 1

    # the Node builds its store through the class attribute `store_class` (so mutants can
    # override one step), not the module name: rebind both
    saved = node_mod.Store, node_mod.decode_body, node_mod.Node.store_class
    node_mod.Store, node_mod.decode_body = TimedStore, timed_decode  # type: ignore[misc]
    node_mod.Node.store_class = TimedStore
    try:
        yield
    finally:
        node_mod.Store, node_mod.decode_body, node_mod.Node.store_class = saved  # type: ignore[misc]


def timed_open(root: Path, config: NodeConfig) -> OpenTiming:
    disk = CountingOSDisk(root)
    probe = dict.fromkeys(("store_recovery", "load_snapshot", "decode", "restore"), 0.0)
    calls = dict.fromkeys(("store", "decode", "restore"), 0)
    node = _ProbedNode(disk, config)
    node.probe = probe
    f0 = disk.stats.total_fsyncs()
    with probed(probe, calls):
        t0 = time.perf_counter()
        result = node.open()
        total = time.perf_counter() - t0
    store_bytes = disk.bytes_read.get(STORE_FILE, 0)
    timing = OpenTiming(total, probe["store_recovery"], probe["load_snapshot"], probe["decode"],
                        probe["restore"], result.outcome, result.reason,
                        sum(disk.bytes_read.values()) - store_bytes, store_bytes,
                        disk.stats.total_fsyncs() - f0, calls)
    node.close()
    return timing


def timed_verify(root: Path) -> tuple[float, float, int]:
    """Read the current snapshot file once and verify it (C3): the floor of the skip gate.

    Returns (read + verify_file, read + verify_file + header/body split, file size). The
    split (parse_header, then slicing the body off the payload) is the rest of what the
    node's _load_snapshot does; the slice copies the body, which the skip path never uses.
    """
    disk = OSDisk(root)
    token = Token.decode(disk.read(POINTER))
    path = f"{SNAP_DIR}/{token.file}"
    t0 = time.perf_counter()
    data = disk.read(path)
    payload = verify_file(data, token)
    t1 = time.perf_counter()
    _, _, header_len = parse_header(payload)
    body = payload[header_len:]
    t2 = time.perf_counter()
    del body
    return t1 - t0, t2 - t0, len(data)


def med_timing(runs: list[OpenTiming]) -> dict[str, float]:
    keys = ("total", "store_recovery", "gate", "load_snapshot", "decode", "restore")
    return {k: median([getattr(r, k) for r in runs]) for k in keys}


def bench_cold_start(rep: Report, tmp: Path, keys: int, reps_skip: int, reps_exec: int) -> None:
    sizes = sorted({max(KEYS_PER_ENTRY, keys // 10), max(KEYS_PER_ENTRY, keys // 2), keys})
    section(f"4. Cold start on the real disk (warm page cache), store sizes {sizes} keys")
    built: dict[int, BuiltStore] = {}
    for n in sizes:
        built[n] = build_store(tmp / f"store-{n}", n)
    rows = []
    for n in sizes:
        b = built[n]
        snap = next(p for p in (b.root / SNAP_DIR).iterdir() if p.suffix == ".snap")
        rows.append([f"{b.keys:,}", str(b.entries), fmt_bytes((b.root / STORE_FILE).stat().st_size),
                     fmt_bytes(snap.stat().st_size), fmt_s(b.build_seconds)])
    print(table(["keys", "entries", "store log", "snapshot file", "build time"], rows))

    big = built[sizes[-1]]
    cfg = NodeConfig(sync=False)

    # (a) skip: meta (= last entry) >= snapshot index. Opening changes nothing on disk.
    skip_runs = [timed_open(big.root, cfg) for _ in range(reps_skip)]

    # (b) execute: lose the last entry's record from a copy of the store log, as an
    # unsynced tail lost in a power loss would be on a node without the pin (P3):
    # meta = snap - 1 < snap, so the gate restores the body ("executed").
    # (c) fallback: tamper torn_meta on a copy: meta unreadable -> missing_meta -> restore.
    def fresh_copy() -> Path:
        copy = tmp / "exec-copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(big.root, copy)
        return copy

    exec_runs, fallback_runs = [], []
    for _ in range(reps_exec):
        copy = fresh_copy()
        os.truncate(copy / STORE_FILE, big.log_bytes_before_last)
        exec_runs.append(timed_open(copy, cfg))
        copy = fresh_copy()
        Node(OSDisk(copy), cfg).tamper("torn_meta")
        fallback_runs.append(timed_open(copy, cfg))

    # Diagnostic: the same skip and execute opens with Python's cyclic GC switched off,
    # to show how much of each path is collector time (allocation-heavy JSON decoding).
    skip_nogc, exec_nogc = [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(reps_exec):
            skip_nogc.append(timed_open(big.root, cfg))
            copy = fresh_copy()
            os.truncate(copy / STORE_FILE, big.log_bytes_before_last)
            exec_nogc.append(timed_open(copy, cfg))
    finally:
        gc.enable()
    shutil.rmtree(tmp / "exec-copy", ignore_errors=True)

    paths = [("skip (meta >= snap)", skip_runs, "skipped", None),
             ("execute (meta < snap)", exec_runs, "executed", None),
             ("fallback (torn meta)", fallback_runs, "fallback", "missing_meta"),
             ("diag: skip, GC off", skip_nogc, "skipped", None),
             ("diag: execute, GC off", exec_nogc, "executed", None)]
    rows, res = [], {}
    for label, runs, want_outcome, want_reason in paths:
        got = {(r.outcome, r.reason) for r in runs}
        rep.check(f"cold start outcome, {label}", {(want_outcome, want_reason)}, got)
        # one store per open; the body decoded and restored exactly when the gate restores
        restores = 0 if want_outcome == "skipped" else 1
        rep.check(f"timing wrappers reached the node, {label}",
                  {(1, restores, restores)},
                  {(r.calls["store"], r.calls["decode"], r.calls["restore"]) for r in runs})
        m = med_timing(runs)
        res[label] = {**m, "outcome": runs[0].outcome, "reason": runs[0].reason,
                      "fsyncs": runs[0].fsyncs, "gate_bytes_read": runs[0].gate_bytes_read,
                      "store_bytes_read": runs[0].store_bytes_read, "reps": len(runs)}
        outcome = runs[0].outcome + (f"/{runs[0].reason}" if runs[0].reason else "")
        rows.append([label, outcome, fmt_s(m["total"]), fmt_s(m["store_recovery"]),
                     fmt_s(m["gate"]), fmt_s(m["load_snapshot"]), fmt_s(m["decode"]),
                     fmt_s(m["restore"]), str(runs[0].fsyncs),
                     fmt_bytes(runs[0].gate_bytes_read)])
    print()
    print(f"{big.keys:,} keys; median of {reps_skip} (skip) / {reps_exec} (others) opens; "
          "gate = open - store recovery")
    print(table(["path", "outcome", "open", "store recovery", "gate", "load+verify", "decode",
                 "restore", "fsyncs", "gate bytes read"], rows))
    skip = res["skip (meta >= snap)"]
    exe = res["execute (meta < snap)"]
    ratios = [("gate: execute / skip", ratio(exe["gate"], skip["gate"])),
              ("open: execute / skip", ratio(exe["total"], skip["total"])),
              ("skip: store recovery / open", ratio(skip["store_recovery"], skip["total"])),
              ("execute: restore / gate", ratio(exe["restore"], exe["gate"])),
              ("execute: decode / gate", ratio(exe["decode"], exe["gate"])),
              ("execute gate: GC on / GC off",
               ratio(exe["gate"], res["diag: execute, GC off"]["gate"])),
              ("store recovery: GC on / GC off",
               ratio(skip["store_recovery"], res["diag: skip, GC off"]["store_recovery"]))]
    print()
    print(table(["ratio", "value"], [[k, "n/a" if v is None else f"{v:.2f}"] for k, v in ratios]))
    rep.results["cold_start"] = {"keys": big.keys, "paths": res, "ratios": dict(ratios)}

    # Skip gate versus a bare read + CRC of the snapshot file, at each store size.
    reps = max(reps_skip, 5)
    rows, scaling = [], []
    for n in sizes:
        b = built[n]
        opens, verifies = [], []
        for _ in range(reps):  # interleaved, so drift on a noisy machine hits both alike
            opens.append(timed_open(b.root, cfg))
            verifies.append(timed_verify(b.root))
        rep.check(f"skip outcome at {n} keys", {"skipped"}, {r.outcome for r in opens})
        gate = median([r.gate for r in opens])
        store = median([r.store_recovery for r in opens])
        ver = median([v[0] for v in verifies])
        split = median([v[1] for v in verifies])
        snap_bytes = verifies[0][2]
        gate_bytes = opens[0].gate_bytes_read
        rows.append([f"{b.keys:,}", fmt_bytes(snap_bytes), fmt_s(store), fmt_s(gate),
                     fmt_s(ver), fmt_s(split), f"{gate / ver:.2f}", f"{gate / split:.2f}",
                     fmt_bytes(gate_bytes), f"{gate_bytes / snap_bytes:.4f}"])
        scaling.append({"keys": b.keys, "snapshot_bytes": snap_bytes, "store_recovery": store,
                        "skip_gate": gate, "read_verify": ver, "read_verify_split": split,
                        "gate_over_verify": gate / ver, "gate_over_verify_split": gate / split,
                        "gate_bytes_read": gate_bytes})
    print()
    print(f"skip gate versus reading + verifying the snapshot file alone (median of {reps}, "
          "interleaved); split = + parse_header and the body slice")
    print(table(["keys", "snapshot", "store recovery", "skip gate", "read+verify",
                 "read+verify+split", "gate/verify", "gate/(verify+split)", "gate bytes read",
                 "read/snapshot"], rows))
    rep.results["skip_scaling"] = scaling


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smaller, faster run (< 30 s)")
    ap.add_argument("--keys", type=int, default=None,
                    help="keys in the cold-start store (default 100000; 10000 with --quick)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    keys = args.keys if args.keys is not None else (10_000 if args.quick else 100_000)
    if keys < 1:
        ap.error("--keys must be >= 1")
    quick = args.quick
    n_apply, reps = (1000, 3) if quick else (4000, 5)
    scale_sizes, scale_n = ([0, 1], 300) if quick else ([0, 1, 4], 1000)

    rep = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=REPO, prefix=".bench-tmp-") as tmp_name:
        tmp = Path(tmp_name)
        fstype = fs_type(tmp)
        print(f"reference_impl benchmark: python {platform.python_version()}, "
              f"{os.cpu_count()} CPUs, {'--quick' if quick else 'default'} run, --keys {keys}")
        print(f"real-disk directory: {tmp} ({fstype})")
        if fstype in ("tmpfs", "ramfs"):
            print("WARNING: the real-disk directory is on a RAM filesystem; fsyncs are free")
        rep.results["env"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "fs_type": fstype, "quick": quick, "keys": keys}
        bench_apply(rep, tmp, n_apply, reps)
        bench_sim_scaling(rep, tmp, scale_sizes, scale_n, 3)
        bench_persist(rep, tmp)
        bench_cold_start(rep, tmp, keys, 5 if quick else 7, 3)

    elapsed = time.perf_counter() - started
    failed = [c for c in rep.checks if not c.ok]
    section("Exact-count checks")
    print(f"{len(rep.checks) - len(failed)}/{len(rep.checks)} passed")
    for c in failed:
        print(f"FAIL {c.name}: expected {c.expected}, measured {c.measured}")
    print(f"total time {elapsed:.1f} s")
    rep.results["checks"] = [c.__dict__ for c in rep.checks]
    rep.results["elapsed_s"] = elapsed
    if args.json is not None:
        args.json.write_text(json.dumps(rep.results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
