#!/usr/bin/env python3
"""An independent node on SQLite for the conformance suite: SKIP profile, stdlib only.

    python examples/sqlite_node.py --data-dir DIR [--bug NAME]

It speaks docs/protocol.md on stdin/stdout and is written from that document alone
(entry results follow reference_impl/fsm.py, which the protocol defers to).

Layout of DIR:
    store.db           SQLite, WAL journal. Tables: versions (MVCC cells, tombstone = NULL),
                       intents (prepared transactions), rollbacks (aborted transaction ids),
                       and meta (outside the user key space) holding `_meta_applied_index` as
                       8 bytes big-endian, written in the SAME transaction as each data batch.
                       synchronous=FULL in synced mode, OFF for data batches in unsynced mode;
                       the pin always commits with FULL and is a monotonic UPDATE (max).
    snap-<index>.snap  payload (header: magic, version, HLC ceiling[, cutover]; body: JSON of
                       the three user tables) + CRC-32 footer (zlib.crc32, 4 bytes big-endian)
    pointer.json       {"index", "file", "crc"}: tmp + fsync + rename + directory fsync
    compacted.json     the compaction marker, written only after the pointer is durable
Persist: pin (synced) -> snapshot file -> pointer -> compaction marker. Cold start: have =
meta, snap = pointer index; have >= snap skips the body restore (after verifying the file
and applying its header with max), otherwise one transaction replaces the user tables from
the snapshot body and clears the meta key. The cold_start event follows success.

`--bug NAME` switches on ONE deliberate deviation (see BUGS), to prove the suites catch an
implementation they have never seen.
"""

import argparse
import hashlib
import json
import os
import sqlite3
import struct
import sys
import zlib

META_KEY = "_meta_applied_index"
MAX_KEY, MAX_VALUE, U64 = 1024, 1 << 20, 1 << 64
INT64 = range(-(1 << 63), 1 << 63)
TS_BIAS = 1 << 63  # u64 timestamps are stored biased, as SQLite's signed 64-bit integers
MAGIC, FOOTER = b"SQLSNAP", 4
CAPABILITIES = ["reader", "writer", "header_applier", "unsynced_mode", "failpoints",
                "tamper_hooks", "install_snapshot"]
FAILPOINTS = {"before_pin", "after_pin", "after_save", "mid_restore", "after_batch_commit",
              "pin", "reader"}
BUGS = {
    "pin-after-save": "the pin runs after the pointer save (P1)",
    "pin-deferred": "the pin is cached and rides on the next data batch: not durable (S6)",
    "pin-rewinds": "the pin is a plain assignment, not a max (S6, P6)",
    "pin-unsynced": "the pin commits with the connection's synchronous level: OFF when unsynced (M2)",
    "pin-noop-nosync": "a pin that finds meta already >= i commits nothing, so nothing is synced; "
                       "the value may come from an unsynced apply (S6, M2)",
    "delete-prefix-no-meta": "delete-prefix commits its tombstones without the meta key (S4)",
    "meta-extra-sync": "every batch that records the meta key is followed by an extra fsync (S2)",
    "lease-bumps-meta": "an HLC lease goes through the batch writer and bumps the meta key",
    "skip-effective-snap": "a skip reports effective = snap: entries are re-delivered (C4)",
    "skip-off-by-one": "the gate skips when have == snap - 1 (C1)",
    "restore-at-equal": "the gate restores when have == snap (C1)",
    "skip-no-header": "the skip path does not apply the header state (C3)",
    "skip-no-verify": "the skip path reads the header without verifying the CRCs (C3)",
    "event-before-verify": "the cold_start event is sent before the snapshot is verified (C5)",
}


class Fail(Exception):
    """An error reply: a protocol error code, a message, optional extra fields."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.wire = {"code": code, "message": message, **extra}


def need(ok, code, message, **extra):
    if not ok:
        raise Fail(code, message, **extra)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def write_atomic(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    fsync_dir(os.path.dirname(path))


# -- entries: validated before anything is touched ----------------------------------------

def check_u64(x, where, low=0):
    need(type(x) is int and low <= x < U64, "bad_entry", f"{where}: not an integer in [{low}, 2^64)")


def check_text(x, where, limit=MAX_KEY):
    need(isinstance(x, str), "bad_entry", f"{where}: not a string")
    try:
        size = len(x.encode())
    except UnicodeEncodeError:
        raise Fail("bad_entry", f"{where}: not valid UTF-8") from None
    need(size <= limit, "too_large", f"{where}: {size} bytes, over {limit}")


def check_ops(ops, where):
    need(isinstance(ops, list) and ops, "bad_entry", f"{where}: not a non-empty list")
    for i, op in enumerate(ops):
        need(isinstance(op, dict), "bad_entry", f"{where}[{i}]: not an object")
        check_text(op.get("key"), f"{where}[{i}].key")
        if op.get("op") == "put":
            check_text(op.get("value"), f"{where}[{i}].value", MAX_VALUE)
        else:
            need(op.get("op") == "del" or (op.get("op") == "add" and type(op.get("delta")) is int),
                 "bad_entry", f"{where}[{i}]: op must be put, del, or add with an integer delta")


CHECKS = {"ts": check_u64, "start_ts": check_u64, "ceiling": check_u64, "value": check_u64,
          "commit_ts": lambda x, w: check_u64(x, w, low=1), "ops": check_ops, "prefix": check_text,
          "txn": lambda x, w: need(isinstance(x, str) and x, "bad_entry", f"{w}: not a non-empty string"),
          "reads": lambda x, w: need(isinstance(x, list), "bad_entry", f"{w}: not a list")
          or [check_text(k, w) for k in x],
          "exclude": lambda x, w: x is None or check_text(x, w)}
CHECKS["opcode"] = CHECKS["txn"]
KINDS = {  # entry kind -> its fields, in the order they are checked
    "raw": ("ops", "ts"), "txn": ("start_ts", "commit_ts", "reads", "ops"),
    "delete_prefix": ("prefix", "exclude", "ts"), "prepare": ("txn", "ops", "start_ts"),
    "commit": ("txn", "commit_ts"), "abort": ("txn",), "hlc_lease": ("ceiling",),
    "control": ("opcode", "value"), "noop": (),
}
OPTIONAL = {"reads": [], "exclude": None, "value": 0}


def parse_entry(raw):
    need(isinstance(raw, dict) and raw.get("kind") in KINDS, "bad_entry", "unknown entry kind")
    kind, fields = raw["kind"], KINDS[raw["kind"]]
    need(set(raw) <= {"kind", *fields}, "bad_entry", f"{kind}: unexpected fields {sorted(raw)}")
    entry = {"kind": kind} | {f: raw.get(f, OPTIONAL.get(f)) for f in fields}
    for f in fields:
        CHECKS[f](entry[f], f"{kind}.{f}")
    if kind == "txn":
        need(entry["start_ts"] < entry["commit_ts"], "bad_entry", "txn: start_ts >= commit_ts")
    return entry


class TypeErr(Exception):
    """An integer add on a non-integer value, or an overflow: the entry writes nothing."""


def int64(text, delta=0):
    """`text` (None counts as 0) plus delta; TypeErr unless both are signed 64-bit integers."""
    try:
        value = 0 if text is None else int(text) if 0 < len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None or value not in INT64 or value + delta not in INT64:
        raise TypeErr
    return value + delta


# -- the SQLite store ---------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (key TEXT NOT NULL, ts INTEGER NOT NULL, value TEXT,
                                     PRIMARY KEY (key, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (txn TEXT PRIMARY KEY, start_ts INTEGER, ops TEXT);
CREATE TABLE IF NOT EXISTS rollbacks (txn TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
LATEST = ("SELECT key, value FROM versions v WHERE ts = "
          "(SELECT MAX(ts) FROM versions WHERE key = v.key)")


class Store:
    def __init__(self, path, synced):
        fresh = not os.path.exists(path)
        self.path = path
        self.synced = synced
        self.db = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN / COMMIT
        self.db.execute("PRAGMA journal_mode=WAL")
        self.sync("FULL" if synced else "OFF")
        self.db.executescript(SCHEMA)
        if fresh:
            fsync_dir(os.path.dirname(path))

    def sync(self, level):
        self.db.execute(f"PRAGMA synchronous={level}")

    def commit(self, statements, hook=None):
        """One SQLite transaction: every statement, then `hook()` before COMMIT, or nothing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self.db.execute(sql, params)
            if hook:
                hook()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def versions(self, key):
        rows = self.db.execute("SELECT ts, value FROM versions WHERE key = ? ORDER BY ts", (key,))
        return [(ts + TS_BIAS, value) for ts, value in rows]

    def latest(self, key):
        versions = self.versions(key)
        return versions[-1][1] if versions else None

    def scan(self, prefix=""):
        rows = self.db.execute(LATEST + " AND value IS NOT NULL")
        return sorted([k, v] for k, v in rows if k.startswith(prefix))

    def intents(self):
        rows = self.db.execute("SELECT txn, start_ts, ops FROM intents")
        return {txn: (start + TS_BIAS, json.loads(ops)) for txn, start, ops in rows}

    def has_rollback(self, txn):
        return self.db.execute("SELECT 1 FROM rollbacks WHERE txn = ?", (txn,)).fetchone() is not None

    def read_meta(self):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
        if row is None or len(row[0]) != 8:  # absent, or torn: not an error
            return 0, False
        return int.from_bytes(row[0], "big"), True

    @staticmethod
    def meta_stmt(index):
        return ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (META_KEY, index.to_bytes(8, "big")))

    def pin(self, index, monotonic=True, synced=True, sync_noop=True):
        """set_durable_applied_index: synced whatever the mode; a no-op unless it raises."""
        upsert = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        if monotonic:  # 8-byte big-endian blobs compare like the integers they hold
            upsert += " WHERE length(meta.value) != 8 OR meta.value < excluded.value"
        self.sync("FULL" if synced or self.synced else "OFF")
        try:
            self.commit([(upsert, (META_KEY, index.to_bytes(8, "big")))])
        finally:
            self.sync("FULL" if self.synced else "OFF")
        changed = self.db.execute("SELECT changes()").fetchone()[0] > 0
        if not changed and (synced or self.synced) and sync_noop:
            # SQLite does not sync a transaction that wrote nothing, yet the value that made
            # this pin a no-op may come from an unsynced apply: make it durable (the WAL, and
            # the database file an unsynced checkpoint may have copied it to).
            self.fsync_files()
        return changed

    def fsync_files(self):
        for name in (self.path, self.path + "-wal"):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def dump(self):
        """The user tables as the snapshot body: never the meta table."""
        return {"versions": [[k, ts + TS_BIAS, v] for k, ts, v in
                             self.db.execute("SELECT key, ts, value FROM versions ORDER BY key, ts")],
                "intents": [[t, s + TS_BIAS, json.loads(o)] for t, s, o in
                            self.db.execute("SELECT txn, start_ts, ops FROM intents")],
                "rollbacks": [t for (t,) in self.db.execute("SELECT txn FROM rollbacks")]}

    def replace(self, body, clear_meta, hook):
        """Replace the user tables by `body` in one transaction (a restore)."""
        stmts = [("DELETE FROM versions", ()), ("DELETE FROM intents", ()),
                 ("DELETE FROM rollbacks", ())]
        stmts += [("INSERT INTO versions VALUES (?, ?, ?)", (k, ts - TS_BIAS, v))
                  for k, ts, v in body["versions"]]
        stmts += [("INSERT INTO intents VALUES (?, ?, ?)", (t, s - TS_BIAS, json.dumps(o)))
                  for t, s, o in body["intents"]]
        stmts += [("INSERT INTO rollbacks VALUES (?)", (t,)) for t in body["rollbacks"]]
        if clear_meta:  # the store now holds the snapshot's state, not what meta claimed
            stmts.append(("DELETE FROM meta WHERE key = ?", (META_KEY,)))
        self.commit(stmts, hook)


# -- snapshot files -----------------------------------------------------------------------

def encode_payload(ceiling, cutover, body):
    return MAGIC + struct.pack(">BQQ", 2, ceiling, cutover) + json.dumps(body).encode()


def decode_payload(payload):
    """(ceiling, cutover, body bytes); version 1 headers carry no cutover."""
    head = len(MAGIC) + 1
    version = payload[len(MAGIC)] if len(payload) >= head and payload.startswith(MAGIC) else None
    need(version in (1, 2), "bad_header", f"unknown snapshot header version {version!r}")
    need(len(payload) >= head + 8 * version, "bad_header", "snapshot header cut short")
    if version == 1:
        (ceiling,), cutover = struct.unpack_from(">Q", payload, head), 0
        return ceiling, cutover, payload[head + 8:]
    ceiling, cutover = struct.unpack_from(">QQ", payload, head)
    return ceiling, cutover, payload[head + 16:]


# -- the node -----------------------------------------------------------------------------

class Node:
    def __init__(self, data_dir, bug=None):
        self.dir, self.bug = data_dir, bug
        os.makedirs(data_dir, exist_ok=True)
        self.store, self.synced, self.is_open = None, True, False
        self.applied = self.ceiling = self.cutover = 0
        self.pending, self.next_id, self.armed = {}, 1, {}
        self.deferred_pin = 0  # bug pin-deferred only

    def path(self, name):
        return os.path.join(self.dir, name)

    def connect(self):
        if self.store is None:
            self.store = Store(self.path("store.db"), self.synced)
        return self.store

    def read_json(self, name):
        if not os.path.exists(self.path(name)):
            return None
        with open(self.path(name), "rb") as f:
            return json.load(f)

    def hit(self, name):
        """A failpoint: crash (exit at once, no reply) or raise, on its (skip+1)-th hit."""
        fp = self.armed.get(name)
        if fp is None:
            return
        if fp["skip"] > 0:
            fp["skip"] -= 1
            return
        del self.armed[name]
        if fp["action"] == "crash":
            os._exit(70)
        raise Fail("injected", f"failpoint {name} fired")

    # the state machine: results as reference_impl/fsm.py -------------------------------
    def write(self, index, ts=0, cells=(), intent=None, rollback=None, meta=True):
        stmts = [("INSERT OR REPLACE INTO versions VALUES (?, ?, ?)", (k, ts - TS_BIAS, v))
                 for k, v in dict(cells).items()]
        if intent is not None:
            txn, body = intent
            stmts.append(("DELETE FROM intents WHERE txn = ?", (txn,)) if body is None else
                         ("INSERT OR REPLACE INTO intents VALUES (?, ?, ?)",
                          (txn, body[0] - TS_BIAS, json.dumps(body[1]))))
        if rollback is not None:
            stmts.append(("INSERT OR IGNORE INTO rollbacks VALUES (?)", (rollback,)))
        if index > 0 and meta:
            stmts.append(Store.meta_stmt(max(index, self.deferred_pin)))
        self.store.commit(stmts)
        if index > 0 and meta and self.bug == "meta-extra-sync":
            self.store.fsync_files()
        self.hit("after_batch_commit")
        return "ok"

    def mutations(self, ops):
        cells = {}
        for op in ops:
            k = op["key"]
            if op["op"] == "add":
                cells[k] = str(int64(cells[k] if k in cells else self.store.latest(k), op["delta"]))
            else:
                cells[k] = op["value"] if op["op"] == "put" else None
        return cells

    def locked(self, keys, own=""):
        return any(t != own and keys & {o["key"] for o in ops}
                   for t, (_, ops) in self.store.intents().items())

    def newer(self, keys, start_ts):
        return {ts for k in keys for ts, _ in self.store.versions(k) if ts > start_ts}

    def run(self, e, index):
        kind, txn = e["kind"], e.get("txn")
        if kind == "hlc_lease":
            self.ceiling = max(self.ceiling, e["ceiling"])
            if self.bug == "lease-bumps-meta":  # "record every applied index"
                self.write(index)
            return "ok"
        if kind == "control":
            if e["opcode"] == "cutover":
                self.cutover = max(self.cutover, e["value"])
            return "ok"
        if kind == "noop":
            return "ok"
        if kind == "delete_prefix":
            excl = e["exclude"]
            dead = {k: None for k, _ in self.store.scan(e["prefix"])
                    if excl is None or not k.startswith(excl)}
            # its own batch; the bug is the original one: forgetting the meta key on this path
            return self.write(index, e["ts"], dead, meta=self.bug != "delete-prefix-no-meta")
        try:
            if kind == "raw":
                return self.write(index, e["ts"], self.mutations(e["ops"]))
            if kind == "txn":
                return self.txn(e, index)
            if kind == "prepare":
                keys = {o["key"] for o in e["ops"]}
                if self.store.has_rollback(txn):
                    return "aborted"
                if self.newer(keys, e["start_ts"]) or self.locked(keys, txn):
                    return "conflict"
                return self.write(index, intent=(txn, (e["start_ts"], e["ops"])))
            if kind == "commit":
                found = self.store.intents().get(txn)
                if found is None:
                    return "txn_not_found"
                return self.write(index, e["commit_ts"], self.mutations(found[1]), (txn, None))
        except TypeErr:
            return "type_error"
        return self.write(index, intent=(txn, None), rollback=txn)  # abort

    def txn(self, e, index):
        written = {o["key"] for o in e["ops"]}
        checked = written | set(e["reads"])
        newer = self.newer(checked, e["start_ts"])
        if not newer and not self.locked(checked):
            return self.write(index, e["commit_ts"], self.mutations(e["ops"]))
        # Already landed (a re-delivery): every written key has a cell at commit_ts and
        # nothing else is newer. Only the meta key moves. Anything else is a conflict.
        landed = all(e["commit_ts"] in dict(self.store.versions(k)) for k in written)
        if landed and newer == {e["commit_ts"]} and not self.locked(checked):
            self.write(index)
            return "already_landed"
        return "conflict"

    # snapshots ---------------------------------------------------------------------------
    def load_snapshot(self, ptr, verify=True):
        """Verify the pointed-to file (size, footer vs token, payload vs footer); decode it."""
        try:
            with open(self.path(ptr["file"]), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if verify:
            footer = int.from_bytes(data[-FOOTER:], "big") if len(data) >= FOOTER else None
            for kind, bad in (("too_small", footer is None),
                              ("token_crc", footer != ptr["crc"]),
                              ("file_crc", zlib.crc32(data[:-FOOTER]) != footer)):
                need(not bad, "snapshot_verify", f"{ptr['file']}: {kind}", kind=kind)
        return decode_payload(data[:-FOOTER])

    def save_snapshot(self, index, payload):
        name, crc = f"snap-{index:020d}.snap", zlib.crc32(payload)
        write_atomic(self.path(name), payload + crc.to_bytes(FOOTER, "big"))
        write_atomic(self.path("pointer.json"),
                     json.dumps({"index": index, "file": name, "crc": crc}).encode())
        return name

    def compact(self, index, keep):
        write_atomic(self.path("compacted.json"), json.dumps({"index": index}).encode())
        for old in os.listdir(self.dir):
            if old.startswith("snap-") and old.endswith(".snap") and old != keep:
                os.remove(self.path(old))

    def pointer_index(self):
        return (self.read_json("pointer.json") or {"index": -1})["index"]

    def pin(self, index):
        self.hit("pin")
        if self.bug == "pin-deferred":  # "saves an fsync": flushed with the next batch
            self.deferred_pin = max(self.deferred_pin, index)
            return True
        return self.store.pin(index, monotonic=self.bug != "pin-rewinds",
                              synced=self.bug != "pin-unsynced",
                              sync_noop=self.bug != "pin-noop-nosync")

    # protocol ops ------------------------------------------------------------------------
    def last_applied_index(self):
        try:
            self.hit("reader")
            index, present = self.store.read_meta()
        except (Fail, sqlite3.Error) as exc:
            raise Fail("read_error", f"reading {META_KEY}: {exc}") from None
        if self.deferred_pin > index:
            return self.deferred_pin, True
        return index, present

    def open(self, send):
        need(not self.is_open, "already_open", "open: already open")
        self.connect()
        ptr = self.read_json("pointer.json")
        snap = ptr["index"] if ptr else 0
        try:
            have, present = self.last_applied_index()
            reason = None if present else "missing_meta"
        except Fail:
            have, present, reason = None, False, "read_err"
        have = have if present else None
        if have is None:
            skip = False
        elif self.bug == "skip-off-by-one":
            skip = have + 1 >= snap
        elif self.bug == "restore-at-equal":
            skip = have > snap
        else:
            skip = have >= snap
        outcome = "skipped" if skip else "executed" if reason is None else "fallback"
        effective = have if skip and self.bug != "skip-effective-snap" else snap
        result = {"outcome": outcome, "reason": reason, "have": have, "snap": snap,
                  "effective": effective, "gap": None if have is None else have - snap,
                  "compacted": (self.read_json("compacted.json") or {"index": 0})["index"],
                  "last_applied": effective}
        if self.bug == "event-before-verify":  # the decision is logged before it is carried out
            send({"event": "cold_start", **result})
        ceiling = cutover = 0
        body = {"versions": [], "intents": [], "rollbacks": []}
        if ptr is not None:
            ceiling, cutover, raw = self.load_snapshot(
                ptr, verify=not (skip and self.bug == "skip-no-verify"))
            if not skip:
                body = json.loads(raw)
        if not skip:
            self.store.replace(body, clear_meta=True, hook=lambda: self.hit("mid_restore"))
        if not (skip and self.bug == "skip-no-header"):
            self.ceiling, self.cutover = max(self.ceiling, ceiling), max(self.cutover, cutover)
        self.applied, self.is_open = effective, True
        if self.bug != "event-before-verify":
            send({"event": "cold_start", **result})
        return result

    def apply(self, index, raw):
        need(type(index) is int and 0 <= index < U64, "bad_index", f"bad index {index!r}")
        entry = parse_entry(raw)
        need(index in (0, self.applied + 1), "bad_index",
             f"index {index} is not {self.applied + 1} (or 0, a direct write)")
        result = self.run(entry, index)
        self.applied = index or self.applied
        return {"result": result}

    def snapshot_begin(self):  # captured now: later applies do not change it
        sid, self.next_id = self.next_id, self.next_id + 1
        self.pending[sid] = (self.applied, encode_payload(self.ceiling, self.cutover,
                                                          self.store.dump()))
        return {"snapshot": sid, "index": self.applied}

    def snapshot_persist(self, sid, site):
        need(site in ("local", "config"), "bad_request", f"site {site!r}")
        need(sid in self.pending, "unknown_snapshot", f"snapshot id {sid!r}")
        index, payload = self.pending[sid]
        current = self.pointer_index()
        need(index > current, "snapshot_out_of_date", f"{index} is not newer than {current}")
        self.hit("before_pin")
        if self.bug != "pin-after-save":
            self.pin_for_persist(index)
        name = self.save_snapshot(index, payload)
        self.hit("after_save")
        if self.bug == "pin-after-save":  # "the file is safe first, then the index"
            self.pin_for_persist(index)
        del self.pending[sid]
        self.compact(index, keep=name)
        return {"index": index, "pinned": True, "compacted": index}

    def pin_for_persist(self, index):
        try:
            self.pin(index)
        except (Fail, sqlite3.Error) as exc:
            raise Fail("pin_failed", f"pin to {index}: {exc}") from None
        self.hit("after_pin")

    def install_snapshot(self, req):
        index, ceiling, cutover, rows = req["index"], req["ceiling"], req["cutover"], req["rows"]
        try:
            for x in (index, ceiling, cutover):
                check_u64(x, "install_snapshot")
            need(isinstance(rows, list), "bad_entry", "rows: not a list")
            for row in rows:
                need(isinstance(row, list) and len(row) == 3, "bad_entry", "a row is [key, value, ts]")
                check_text(row[0], "row key")
                check_text(row[1], "row value", MAX_VALUE)
                check_u64(row[2], "row ts")
            need(len({r[0] for r in rows}) == len(rows), "bad_entry", "rows: a key twice")
        except Fail as exc:
            raise Fail("bad_snapshot", exc.wire["message"]) from None
        current = self.pointer_index()
        need(index > max(current, self.applied), "snapshot_out_of_date",
             f"{index} is not newer than the pointer {current} and the applied index {self.applied}")
        body = {"versions": [[k, ts, v] for k, v, ts in rows], "intents": [], "rollbacks": []}
        name = self.save_snapshot(index, encode_payload(ceiling, cutover, body))
        # C7: the meta key keeps its older value; the next cold start restores again.
        self.store.replace(body, clear_meta=False, hook=lambda: self.hit("mid_restore"))
        self.compact(index, keep=name)
        self.ceiling, self.cutover = max(self.ceiling, ceiling), max(self.cutover, cutover)
        self.applied, self.pending = index, {}
        return {"index": index}

    def tamper(self, kind):
        need(not self.is_open, "already_open", "tamper: only before open")
        if kind == "torn_meta":
            self.connect().commit([("INSERT OR REPLACE INTO meta VALUES (?, ?)", (META_KEY, b"\0\7"))])
            return {}
        need(kind in ("truncate_snapshot", "flip_body_byte", "wrong_token_crc",
                      "unknown_header_version"), "bad_request", f"tamper kind {kind!r}")
        ptr = self.read_json("pointer.json")
        need(ptr is not None, "bad_snapshot", "tamper: no snapshot")
        with open(self.path(ptr["file"]), "rb") as f:
            data = bytearray(f.read())
        if kind == "truncate_snapshot":
            data = data[:FOOTER - 2]
        elif kind == "flip_body_byte":
            data[len(MAGIC) + 17] ^= 0x01  # the first body byte
        elif kind == "wrong_token_crc":
            ptr["crc"] ^= 0xFFFFFFFF
        else:  # a version this node does not know, with consistent CRCs
            data[len(MAGIC)] = 0x7F
            ptr["crc"] = zlib.crc32(data[:-FOOTER])
            data[-FOOTER:] = ptr["crc"].to_bytes(FOOTER, "big")
        write_atomic(self.path(ptr["file"]), bytes(data))
        write_atomic(self.path("pointer.json"), json.dumps(ptr).encode())
        return {}

    def failpoint(self, name, action, skip):
        need(name in FAILPOINTS and action in ("crash", "error") and type(skip) is int and skip >= 0,
             "bad_request", f"failpoint {name!r} {action!r} skip {skip!r}")
        self.armed[name] = {"action": action, "skip": skip}
        return {}

    def digest(self):
        canon = json.dumps(self.store.scan(), separators=(",", ":"), ensure_ascii=False)
        return {"digest": hashlib.sha256(canon.encode()).hexdigest()}

    def hello(self, req):
        need(1 in req.get("versions", []), "bad_request", "hello: this node speaks version 1")
        durability = (req.get("config") or {}).get("durability", "synced")
        need(durability in ("synced", "unsynced"), "bad_request", f"durability {durability!r}")
        need(not self.is_open, "already_open", "hello: must come before open")
        self.synced = durability == "synced"
        # prestart (protocol 1.1): nothing in the data directory is touched before a request
        return {"version": 1, "implementation": {"name": "sqlite_node", "version": "0.1"
                                                 + (f"+bug.{self.bug}" if self.bug else "")},
                "capabilities": CAPABILITIES, "entry_kinds": sorted(KINDS), "prestart": True}

    def handle(self, req, send):
        op = req.get("op")
        before_open = {"hello": lambda: self.hello(req), "open": lambda: self.open(send),
                       "tamper": lambda: self.tamper(req["kind"]),
                       "failpoint": lambda: self.failpoint(req["name"], req.get("action", "crash"),
                                                           req.get("skip", 0))}
        ops = {"apply": lambda: self.apply(req["index"], req["entry"]),
               "snapshot_begin": self.snapshot_begin,
               "snapshot_persist": lambda: self.snapshot_persist(req["snapshot"],
                                                                 req.get("site", "local")),
               "get": lambda: {"value": self.store.latest(req["key"])},
               "scan": lambda: {"items": self.store.scan(req.get("prefix", ""))},
               "digest": self.digest,
               "hlc": lambda: {"ceiling": self.ceiling, "cutover": self.cutover},
               "last_applied_index": lambda: dict(zip(("index", "present"),
                                                      self.last_applied_index(), strict=True)),
               "set_durable_applied_index": lambda: {"written": self.set_durable(req["index"])},
               "install_snapshot": lambda: self.install_snapshot(req)}
        if op in before_open:
            return before_open[op]()
        need(op in ops, "unknown_op", f"unknown op {op!r}")
        need(self.is_open, "not_open", f"{op}: call open first")
        return ops[op]()

    def set_durable(self, index):
        need(type(index) is int and 0 <= index < U64, "bad_request", f"index {index!r}")
        return self.pin(index)


def main():
    ap = argparse.ArgumentParser(description="An independent SQLite node (docs/protocol.md).")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--bug", choices=sorted(BUGS), help="one deliberate deviation")
    args = ap.parse_args()
    node = Node(args.data_dir, args.bug)
    sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
    sys.stdout.reconfigure(encoding="utf-8")

    def send(obj):
        sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            send({"id": None, "ok": False, "error": {"code": "bad_request", "message": "not JSON"}})
            continue
        try:
            result = {} if req.get("op") == "shutdown" else node.handle(req, send)
            reply = {"id": req.get("id"), "ok": True, "result": result}
        except Fail as exc:
            reply = {"id": req.get("id"), "ok": False, "error": exc.wire}
        except (KeyError, TypeError, ValueError, UnicodeError, sqlite3.Error) as exc:
            print(f"sqlite_node: {req.get('op')}: {exc!r}", file=sys.stderr)
            reply = {"id": req.get("id"), "ok": False,
                     "error": {"code": "bad_request", "message": repr(exc)}}
        send(reply)
        if req.get("op") == "shutdown":
            break


if __name__ == "__main__":
    main()
