#!/usr/bin/env python3
"""A minimal node under test for the conformance suite: BASELINE profile, stdlib only.

    python examples/minimal_node.py --data-dir DIR

It speaks docs/protocol.md on stdin/stdout (one JSON object per line; logs would go
to stderr) and advertises no capabilities: no applied-index reader (every cold start
is a full restore from the snapshot), no writer (no pin), synced mode only.
Files in DIR, each replaced atomically (write tmp, fsync, rename, fsync the dir):
    state.json         the whole state + the applied index; rewritten by every write
    snap-<index>.snap  a snapshot: JSON payload + CRC32 footer (4 bytes, little-endian)
    pointer.json       the current snapshot: {"index", "file", "crc"}
To climb profiles: at open, read state.json's "applied" and skip the restore when it
is >= the snapshot index (capability reader); pin it before a snapshot save (writer).
"""

import argparse
import hashlib
import json
import os
import sys
import zlib

MAX_KEY, MAX_VALUE = 1024, 1024 * 1024  # UTF-8 bytes
GATED = {"last_applied_index", "set_durable_applied_index", "failpoint", "tamper",
         "install_snapshot"}  # protocol ops behind capabilities this node does not claim


class Fail(Exception):
    """An error reply: a protocol error code, a message, optional extra fields."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.wire = {"code": code, "message": message, **extra}


def write_atomic(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)  # make the rename itself durable
    os.fsync(fd)
    os.close(fd)


# -- entry validation, in the reference's order: reject before touching any state -------

def need(ok, where, what, code="bad_entry"):
    if not ok:
        raise Fail(code, f"{where}: {what}")


def u64(x, where, low=0):  # type(x) is int: JSON true/false and 1.0 are not integers
    need(type(x) is int and low <= x < 2**64, where, f"not an integer in [{low}, 2^64)")


def key(k, where, limit=MAX_KEY):  # keys, and values with their own limit
    need(isinstance(k, str), where, "must be a string")
    need(len(k.encode()) <= limit, where, f"over {limit} bytes", "too_large")


def ops(raw, where):
    need(isinstance(raw, list) and raw, where, "must be a non-empty list")
    for i, op in enumerate(raw):
        need(isinstance(op, dict), f"{where}[{i}]", "an op must be an object")
        key(op.get("key"), f"{where}[{i}].key")
        if op.get("op") == "put":
            key(op.get("value"), f"{where}[{i}].value", MAX_VALUE)
        else:
            need(op.get("op") == "del" or (op.get("op") == "add" and type(op.get("delta")) is int),
                 f"{where}[{i}]", "op must be put, del, or add with an integer delta")


KINDS = {  # entry kind -> its fields, in the order they are checked
    "raw": ("ops", "ts"), "txn": ("start_ts", "commit_ts", "reads", "ops"),
    "delete_prefix": ("prefix", "exclude", "ts"), "prepare": ("txn", "ops", "start_ts"),
    "commit": ("txn", "commit_ts"), "abort": ("txn",), "hlc_lease": ("ceiling",),
    "control": ("opcode", "value"), "noop": (),
}
CHECKS = {  # field -> check (a field has the same type in every kind)
    "ts": u64, "start_ts": u64, "ceiling": u64, "value": u64, "ops": ops, "prefix": key,
    "commit_ts": lambda x, w: u64(x, w, low=1),
    "reads": lambda x, w: need(isinstance(x, list), w, "not a list") or [key(k, w) for k in x],
    "exclude": lambda x, w: x is None or key(x, w),
    "txn": lambda x, w: need(isinstance(x, str) and x != "", w, "must be a non-empty string"),
}
CHECKS["opcode"] = CHECKS["txn"]
DEFAULT = {"reads": [], "exclude": None, "value": 0}  # the optional fields


def parse_entry(raw):
    need(isinstance(raw, dict) and raw.get("kind") in KINDS, "entry", "not an object of a "
         "known kind")
    kind, fields = raw["kind"], KINDS[raw["kind"]]
    need(set(raw) <= {"kind", *fields}, kind, f"unexpected fields in {sorted(raw)}")
    e = {"kind": kind} | {f: raw.get(f, DEFAULT.get(f)) for f in fields}
    for f in fields:
        CHECKS[f](e[f], f"{kind}.{f}")
        if kind == "txn" and f == "commit_ts":
            need(e["start_ts"] < e["commit_ts"], kind, "start_ts must be < commit_ts")
    return e


# -- the node -----------------------------------------------------------------------------

class Node:
    def __init__(self, data_dir):
        self.dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.is_open, self.applied, self.meta = False, 0, None  # meta: applied index on disk
        self.ceiling = self.cutover = 0  # in-memory header state, carried by snapshots
        # MVCC, all JSON: versions = {key: [[ts, value or None (a tombstone)], ...] by ts},
        # intents = {txn: {start_ts, ops}} (prepared), rollbacks = [aborted txn ids].
        self.state = {"versions": {}, "intents": {}, "rollbacks": []}
        self.pending, self.next_id = {}, 1  # snapshot id -> (index, payload bytes)

    def path(self, name):
        return os.path.join(self.dir, name)

    def pointer(self):
        if not os.path.exists(self.path("pointer.json")):
            return None
        with open(self.path("pointer.json"), "rb") as f:
            return json.load(f)

    def latest(self, k):  # the version with the highest ts wins, whatever the write order
        versions = self.state["versions"].get(k)
        return versions[-1][1] if versions else None

    def scan(self, prefix=""):
        pairs = ((k, self.latest(k)) for k in sorted(self.state["versions"]))
        return [[k, v] for k, v in pairs if v is not None and k.startswith(prefix)]

    # the FSM: the same results as reference_impl/fsm.py ---------------------------------
    def newer(self, keys, start_ts):  # commit timestamps after start_ts, tombstones included
        return {ts for k in keys for ts, _ in self.state["versions"].get(k, []) if ts > start_ts}

    def locked(self, keys, own_txn=""):  # another transaction's intent covers one of the keys
        return any(t != own_txn and keys & {o["key"] for o in i["ops"]}
                   for t, i in self.state["intents"].items())

    def write(self, index, cells, txn=None, intent=None, rollback=False):
        """One atomic batch: in memory, then state.json with the applied index if index > 0."""
        for k, cell in cells.items():  # a cell at the same ts replaces the old one
            old = [c for c in self.state["versions"].get(k, []) if c[0] != cell[0]]
            self.state["versions"][k] = sorted(old + [cell], key=lambda c: c[0])
        if txn is not None and intent is None:
            self.state["intents"].pop(txn, None)
        elif txn is not None:
            self.state["intents"][txn] = intent
        if rollback:
            self.state["rollbacks"] = sorted(set(self.state["rollbacks"]) | {txn})
        self.meta = index or self.meta
        write_atomic(self.path("state.json"), json.dumps({"applied": self.meta, **self.state},
                                                         ensure_ascii=False).encode())
        return "ok"

    def write_ops(self, index, ops, ts, txn=None):
        """Ops in order at ts (an add sees earlier ops of the batch); txn: drop its intent."""
        cells = {}
        for op in ops:
            k = op["key"]
            if op["op"] == "add":
                base = cells[k][1] if k in cells else self.latest(k)
                try:
                    total = (int(base) if base is not None else 0) + op["delta"]
                except ValueError:
                    return "type_error"  # nothing written
                if not -2**63 <= total < 2**63 or not (base is None or -2**63 <= int(base) < 2**63):
                    return "type_error"  # outside signed 64-bit: nothing written
                cells[k] = [ts, str(total)]
            else:
                cells[k] = [ts, op["value"] if op["op"] == "put" else None]
        return self.write(index, cells, txn)

    def run(self, e, index):
        kind, txn = e["kind"], e.get("txn")
        if kind == "raw":
            return self.write_ops(index, e["ops"], e["ts"])
        if kind == "txn":  # OCC: nothing newer than start_ts on a written or read key
            written = {o["key"] for o in e["ops"]}
            checked = written | set(e["reads"])
            newer = self.newer(checked, e["start_ts"])
            if not newer and not self.locked(checked):
                return self.write_ops(index, e["ops"], e["commit_ts"])
            # Already landed: a re-delivered txn, all its writes there at commit_ts and
            # nothing else newer: advance the applied index only. Anything else: conflict.
            landed = all(e["commit_ts"] in dict(self.state["versions"].get(k, []))
                         for k in written)
            if not landed or newer != {e["commit_ts"]} or self.locked(checked):
                return "conflict"
            if index > 0:
                self.write(index, {})
            return "already_landed"
        if kind == "delete_prefix":  # tombstones at ts for live keys outside `exclude`
            excl = e["exclude"]
            return self.write(index, {k: [e["ts"], None] for k, _ in self.scan(e["prefix"])
                                      if excl is None or not k.startswith(excl)})
        if kind == "prepare":
            keys = {o["key"] for o in e["ops"]}
            if txn in self.state["rollbacks"]:
                return "aborted"
            if self.newer(keys, e["start_ts"]) or self.locked(keys, txn):
                return "conflict"
            return self.write(index, {}, txn, {"start_ts": e["start_ts"], "ops": e["ops"]})
        if kind == "commit":
            intent = self.state["intents"].get(txn)
            if intent is None:
                return "txn_not_found"
            return self.write_ops(index, intent["ops"], e["commit_ts"], txn)
        if kind == "abort":  # the rollback marker also blocks a prepare that comes later
            return self.write(index, {}, txn, rollback=True)
        if kind == "hlc_lease":  # max: the ceiling never goes backwards
            self.ceiling = max(self.ceiling, e["ceiling"])
        elif kind == "control" and e["opcode"] == "cutover":
            self.cutover = max(self.cutover, e["value"])
        return "ok"  # hlc_lease, control, noop: nothing written

    # protocol ops ----------------------------------------------------------------------
    def open(self):
        need(not self.is_open, "open", "already open", "already_open")
        snap, payload, ptr = 0, {"ceiling": 0, "cutover": 0, "state": self.state}, self.pointer()
        if ptr is not None:  # verify the file before using anything in it
            with open(self.path(ptr["file"]), "rb") as f:
                data = f.read()
            footer = int.from_bytes(data[-4:], "little")
            for kind, bad in (("too_small", len(data) < 4), ("token_crc", footer != ptr["crc"]),
                              ("file_crc", zlib.crc32(data[:-4]) != footer)):
                if bad:
                    raise Fail("snapshot_verify", f"{ptr['file']}: {kind}", kind=kind)
            snap, payload = ptr["index"], json.loads(data[:-4])
            need(payload.get("version") == 1, ptr["file"], "unknown version", "bad_header")
        # Baseline: no reader, so always the full restore. Resetting state.json to the
        # snapshot keeps exactly-once: the harness replays the log from snap + 1.
        self.state, self.meta = payload["state"], None  # a restore does not pin
        self.write(0, {})
        self.ceiling, self.cutover = payload["ceiling"], payload["cutover"]
        self.applied, self.is_open = snap, True
        return {"outcome": "fallback", "reason": "not_reader", "have": None, "snap": snap,
                "effective": snap, "gap": None, "compacted": snap, "last_applied": snap}

    def apply(self, index, entry):
        need(type(index) is int and index >= 0, "apply", f"bad index {index!r}", "bad_index")
        entry = parse_entry(entry)
        need(index in (0, self.applied + 1), "apply", f"index {index} is not "
             f"{self.applied + 1} (or 0, a direct write)", "bad_index")
        result = self.run(entry, index)
        self.applied = index or self.applied
        return {"result": result}

    def snapshot_begin(self):  # serialized now: later applies do not change it
        sid, self.next_id = self.next_id, self.next_id + 1
        payload = {"version": 1, "ceiling": self.ceiling, "cutover": self.cutover,
                   "state": self.state}
        self.pending[sid] = (self.applied, json.dumps(payload, ensure_ascii=False).encode())
        return {"snapshot": sid, "index": self.applied}

    def snapshot_persist(self, sid, site):
        need(site in ("local", "config"), "snapshot_persist", f"site {site!r}", "bad_request")
        need(sid in self.pending, "snapshot_persist", f"id {sid!r}", "unknown_snapshot")
        (index, payload), current = self.pending.pop(sid), (self.pointer() or {"index": -1})
        need(index > current["index"], "snapshot_persist", f"{index} is not newer than "
             f"{current['index']}", "snapshot_out_of_date")
        name, crc = f"snap-{index:020d}.snap", zlib.crc32(payload)
        write_atomic(self.path(name), payload + crc.to_bytes(4, "little"))  # the file first,
        write_atomic(self.path("pointer.json"),                              # then the pointer
                     json.dumps({"index": index, "file": name, "crc": crc}).encode())
        for old in os.listdir(self.dir):  # compaction, only once the pointer is durable
            if old.startswith("snap-") and old.endswith(".snap") and old != name:
                os.remove(self.path(old))
        return {"index": index, "pinned": False, "compacted": index}

    def digest(self):
        canon = json.dumps(self.scan(), separators=(",", ":"), ensure_ascii=False)
        return {"digest": hashlib.sha256(canon.encode()).hexdigest()}

    def handle(self, req):
        op = req.get("op")
        if op == "hello":
            need(1 in req.get("versions", [1]), "hello", "version 1 only", "bad_request")
            durability = (req.get("config") or {}).get("durability", "synced")
            need(durability != "unsynced", "hello", "synced mode only", "unsupported")
            need(durability == "synced", "hello", f"durability {durability!r}", "bad_request")
            need(not self.is_open, "hello", "must come before open", "already_open")
            return {"version": 1, "implementation": {"name": "minimal_node", "version": "0.1"},
                    "capabilities": [], "entry_kinds": sorted(KINDS)}
        need(op not in GATED, op, "this node claims the baseline profile", "unsupported")
        ops = {"open": self.open, "snapshot_begin": self.snapshot_begin, "digest": self.digest,
               "apply": lambda: self.apply(req["index"], req["entry"]),
               "snapshot_persist": lambda: self.snapshot_persist(req["snapshot"],
                                                                 req.get("site", "local")),
               "get": lambda: {"value": self.latest(req["key"])},
               "scan": lambda: {"items": self.scan(req.get("prefix", ""))},
               "hlc": lambda: {"ceiling": self.ceiling, "cutover": self.cutover}}
        need(op in ops, repr(op), "unknown op", "unknown_op")
        need(self.is_open or op == "open", op, "call open first", "not_open")
        return ops[op]()


def main():
    ap = argparse.ArgumentParser(description="A minimal baseline node (docs/protocol.md).")
    ap.add_argument("--data-dir", required=True)
    node = Node(ap.parse_args().data_dir)
    sys.stdin.reconfigure(encoding="utf-8")
    sys.stdout.reconfigure(encoding="utf-8")

    def send(obj):  # one line per message, flushed at once
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
            send({"id": None, "ok": False,
                  "error": {"code": "bad_request", "message": "not a JSON object"}})
            continue
        rid, op = req.get("id"), req.get("op")
        try:
            reply = {"id": rid, "ok": True, "result": {} if op == "shutdown" else node.handle(req)}
        except Fail as exc:
            reply = {"id": rid, "ok": False, "error": exc.wire}
        except (KeyError, TypeError, UnicodeError) as exc:  # a missing or malformed field
            reply = {"id": rid, "ok": False, "error": {"code": "bad_request", "message": repr(exc)}}
        if op == "open" and reply["ok"]:  # C5: report the cold start only once it succeeded
            send({"event": "cold_start", **reply["result"]})
        send(reply)
        if op == "shutdown":
            break


if __name__ == "__main__":
    main()
