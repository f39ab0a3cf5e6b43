#!/usr/bin/env python3
"""A conformance shim over a REAL library: PySyncObj (PyPI `pysyncobj`, pinned in
requirements.txt), one node, no peers, no network.

    python examples/real/pysyncobj/node.py --data-dir DIR

It speaks docs/protocol.md (JSON lines on stdin/stdout, logs on stderr) and translates it
to PySyncObj's own API (see README.md in this folder for the full mapping):

- `KVMachine` is a `SyncObj` subclass; its `@replicated` method `apply_entry` is the state
  machine: every protocol entry (data, non-data, and direct writes at index 0) is submitted
  through the library's Raft log (an in-memory journal: the harness is the Raft log) and
  computed in that method when PySyncObj commits and applies it.
- The snapshot is the library's full dump (`SyncObjConf.fullDumpFile`, written by its log
  compaction: `forceLogCompaction()` forks, the child pickles + gzips the object's state
  into `<file>.tmp` and renames it over the dump; the parent compacts its log when it
  reaps the child). `snapshot_begin` = the fork (the state captured at that index),
  `snapshot_persist` = waiting for that background dump to be finished.
- `open` = PySyncObj's own start: the first tick loads the full dump (always a full
  restore; the library has no skip gate and no durable applied index apart from the dump),
  then the node elects itself leader and applies its no-op. What `open` reports is the
  harness index the restored state machine holds (`applied`, saved inside the dump).

The shim keeps no durable state of its own: the only file in DIR is the library's dump
(and its `.tmp` while one is written). In-memory bookkeeping only: which snapshot ids were
begun at which index, and which dump the library has finished.
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import time

from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.node import Node as PSONode
from pysyncobj.transport import Transport
from pysyncobj.version import VERSION as PSO_VERSION

MAX_KEY, MAX_VALUE = 1024, 1024 * 1024
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
DUMP_NAME = "pysyncobj.dump"
TICK = 0.002          # seconds the library's poller may wait per tick while we drive it
WAIT_LIMIT = 8.0      # under the harness's 10 s request timeout
GATED = {"last_applied_index", "set_durable_applied_index", "failpoint", "tamper",
         "install_snapshot"}
KINDS = ("raw", "txn", "delete_prefix", "prepare", "commit", "abort", "hlc_lease", "control",
         "noop")

log = logging.getLogger("pso-shim")


class Fail(Exception):
    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.wire = {"code": code, "message": message, **extra}


def need(ok, code, message, **extra):
    if not ok:
        raise Fail(code, message, **extra)


# -- entry validation (docs/protocol.md "Entries"; the rules of reference_impl/entries.py) -----

def _utf8_len(s, where):
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise Fail("bad_entry", f"{where}: not valid UTF-8 text")


def _key(raw, where):
    need(isinstance(raw, str), "bad_entry", f"{where}: key must be a string")
    need(_utf8_len(raw, where) <= MAX_KEY, "too_large", f"{where}: key over {MAX_KEY} bytes")
    return raw


def _uint(raw, where, positive=False):
    need(type(raw) is int and 0 <= raw < 2 ** 64, "bad_entry",
         f"{where}: must be an unsigned 64-bit integer")
    need(not positive or raw > 0, "bad_entry", f"{where}: must be > 0")
    return raw


def _ops(raw, where):
    need(isinstance(raw, list) and raw, "bad_entry", f"{where}: must be a non-empty list")
    out = []
    for i, op in enumerate(raw):
        w = f"{where}[{i}]"
        need(isinstance(op, dict), "bad_entry", f"{w}: an op must be an object")
        name, key = op.get("op"), _key(op.get("key"), f"{w}.key")
        if name == "put":
            value = op.get("value")
            need(isinstance(value, str), "bad_entry", f"{w}.value: put needs a string value")
            need(_utf8_len(value, w) <= MAX_VALUE, "too_large", f"{w}.value: over {MAX_VALUE} bytes")
            out.append({"op": "put", "key": key, "value": value})
        elif name == "del":
            out.append({"op": "del", "key": key})
        elif name == "add":
            delta = op.get("delta")
            need(type(delta) is int and INT64_MIN <= delta <= INT64_MAX, "bad_entry",
                 f"{w}.delta: add needs a signed 64-bit integer delta")
            out.append({"op": "add", "key": key, "delta": delta})
        else:
            raise Fail("bad_entry", f"{w}.op: unknown op {name!r}")
    return out


FIELDS = {"raw": {"ts", "ops"}, "txn": {"start_ts", "commit_ts", "ops", "reads"},
          "delete_prefix": {"prefix", "exclude", "ts"}, "prepare": {"txn", "start_ts", "ops"},
          "commit": {"txn", "commit_ts"}, "abort": {"txn"}, "hlc_lease": {"ceiling"},
          "control": {"opcode", "value"}, "noop": set()}


def parse_entry(raw):
    """Validate an entry and return its normalised form; nothing is touched before this."""
    need(isinstance(raw, dict), "bad_entry", "entry must be an object")
    kind = raw.get("kind")
    need(kind in FIELDS, "bad_entry", f"unknown entry kind {kind!r}")
    extra = set(raw) - FIELDS[kind] - {"kind"}
    need(not extra, "bad_entry", f"{kind}: unexpected field(s) {sorted(extra)}")
    e = {"kind": kind}
    if kind == "raw":
        e.update(ops=_ops(raw.get("ops"), "raw.ops"), ts=_uint(raw.get("ts"), "raw.ts"))
    elif kind == "txn":
        e["start_ts"] = _uint(raw.get("start_ts"), "txn.start_ts")
        e["commit_ts"] = _uint(raw.get("commit_ts"), "txn.commit_ts", positive=True)
        need(e["start_ts"] < e["commit_ts"], "bad_entry", "txn: start_ts must be < commit_ts")
        reads = raw.get("reads", [])
        need(isinstance(reads, list), "bad_entry", "txn.reads: must be a list of keys")
        e["reads"] = [_key(k, f"txn.reads[{i}]") for i, k in enumerate(reads)]
        e["ops"] = _ops(raw.get("ops"), "txn.ops")
    elif kind == "delete_prefix":
        e["prefix"] = _key(raw.get("prefix"), "delete_prefix.prefix")
        exclude = raw.get("exclude")
        e["exclude"] = None if exclude is None else _key(exclude, "delete_prefix.exclude")
        e["ts"] = _uint(raw.get("ts"), "delete_prefix.ts")
    elif kind in ("prepare", "commit", "abort"):
        txn = raw.get("txn")
        need(isinstance(txn, str) and txn != "", "bad_entry", f"{kind}.txn: non-empty string")
        e["txn"] = txn
        if kind == "prepare":
            e["ops"] = _ops(raw.get("ops"), "prepare.ops")
            e["start_ts"] = _uint(raw.get("start_ts"), "prepare.start_ts")
        elif kind == "commit":
            e["commit_ts"] = _uint(raw.get("commit_ts"), "commit.commit_ts", positive=True)
    elif kind == "hlc_lease":
        e["ceiling"] = _uint(raw.get("ceiling"), "hlc_lease.ceiling")
    elif kind == "control":
        opcode = raw.get("opcode")
        need(isinstance(opcode, str) and opcode != "", "bad_entry", "control.opcode: non-empty string")
        e.update(opcode=opcode, value=_uint(raw.get("value", 0), "control.value"))
    return e


# -- the library side ---------------------------------------------------------------------------

class NoNetwork(Transport):
    """PySyncObj's own Transport base class is a transport that is always ready and binds
    nothing; a node with no peers never sends. `send` only guards against a surprise."""

    def send(self, node, message):
        log.error("unexpected send to %s: %r", node, message)
        return False


class _TypeError(Exception):
    pass


def _int64(text):
    if text is None:
        return 0
    if not text or len(text) > 20:
        raise _TypeError
    try:
        v = int(text)
    except ValueError:
        raise _TypeError
    if not INT64_MIN <= v <= INT64_MAX:
        raise _TypeError
    return v


class KVMachine(SyncObj):
    """The replicated state machine. Every attribute set after SyncObj.__init__ is state that
    PySyncObj serialises into the full dump and restores from it (SyncObj excludes only the
    attributes that existed when its own __init__ ended)."""

    def __init__(self, dump_file):
        conf = SyncObjConf(
            autoTick=False,            # the shim drives doTick(): one thread, fork-safe
            fullDumpFile=dump_file,    # the snapshot
            journalFile=None,          # the harness is the Raft log (README: why)
            useFork=True,              # the library's default: dump in a forked child
            logCompactionMinEntries=2 ** 62, logCompactionMinTime=10 ** 12,  # only when asked
            appendEntriesPeriod=0.005, raftMinTimeout=0.02, raftMaxTimeout=0.03,
            connectionTimeout=1.0, leaderFallbackTimeout=1.0,
            dynamicMembershipChange=False,
        )
        super().__init__(PSONode("self"), [], conf, nodeClass=PSONode, transportClass=NoNetwork)
        self.applied = 0           # harness index of the last applied log entry
        self.versions = {}         # key -> [[ts, value or None], ...] sorted by ts
        self.intents = {}          # txn -> {"start_ts", "ops"}
        self.rollbacks = set()     # aborted txn ids
        self.ceiling = 0           # HLC ceiling (header state)
        self.cutover = 0

    # the state machine: computed when the library applies the committed entry ---------------
    @replicated
    def apply_entry(self, index, e):
        result = self._run(index, e)
        if index > 0:
            self.applied = index
        return result

    def latest(self, k):
        v = self.versions.get(k)
        return v[-1][1] if v else None

    def scan(self, prefix=""):
        out = []
        for k in sorted(self.versions):
            if k.startswith(prefix):
                v = self.latest(k)
                if v is not None:
                    out.append([k, v])
        return out

    def _put_cells(self, cells):
        for k, ts, value in cells:
            old = [c for c in self.versions.get(k, []) if c[0] != ts]
            self.versions[k] = sorted(old + [[ts, value]], key=lambda c: c[0])

    def _mutations(self, ops, ts):
        pending = {}
        for op in ops:
            k = op["key"]
            if op["op"] == "put":
                pending[k] = op["value"]
            elif op["op"] == "del":
                pending[k] = None
            else:
                base = pending[k] if k in pending else self.latest(k)
                total = _int64(base) + op["delta"]
                if not INT64_MIN <= total <= INT64_MAX:
                    raise _TypeError
                pending[k] = str(total)
        return [(k, ts, v) for k, v in pending.items()]

    def _newer(self, keys, start_ts):
        return {ts for k in keys for ts, _ in self.versions.get(k, []) if ts > start_ts}

    def _locked(self, keys, own=""):
        return any(t != own and keys & {o["key"] for o in i["ops"]}
                   for t, i in self.intents.items())

    def _run(self, index, e):
        kind = e["kind"]
        if kind == "hlc_lease":
            self.ceiling = max(self.ceiling, e["ceiling"])
            return "ok"
        if kind == "control":
            if e["opcode"] == "cutover":
                self.cutover = max(self.cutover, e["value"])
            return "ok"
        if kind == "noop":
            return "ok"
        if kind == "delete_prefix":
            excl = e["exclude"]
            self._put_cells([(k, e["ts"], None) for k, _ in self.scan(e["prefix"])
                             if excl is None or not k.startswith(excl)])
            return "ok"
        try:
            if kind == "raw":
                self._put_cells(self._mutations(e["ops"], e["ts"]))
                return "ok"
            if kind == "txn":
                written = {o["key"] for o in e["ops"]}
                checked = written | set(e["reads"])
                newer = self._newer(checked, e["start_ts"])
                if not newer and not self._locked(checked):
                    self._put_cells(self._mutations(e["ops"], e["commit_ts"]))
                    return "ok"
                landed = all(any(ts == e["commit_ts"] for ts, _ in self.versions.get(k, []))
                             for k in written)
                if landed and newer == {e["commit_ts"]} and not self._locked(checked):
                    return "already_landed"
                return "conflict"
            if kind == "prepare":
                if e["txn"] in self.rollbacks:
                    return "aborted"
                keys = {o["key"] for o in e["ops"]}
                if self._newer(keys, e["start_ts"]) or self._locked(keys, e["txn"]):
                    return "conflict"
                self.intents[e["txn"]] = {"start_ts": e["start_ts"], "ops": e["ops"]}
                return "ok"
            if kind == "commit":
                intent = self.intents.get(e["txn"])
                if intent is None:
                    return "txn_not_found"
                cells = self._mutations(intent["ops"], e["commit_ts"])
                self._put_cells(cells)
                del self.intents[e["txn"]]
                return "ok"
        except _TypeError:
            return "type_error"
        # abort: the rollback marker is written even without an intent
        self.intents.pop(e["txn"], None)
        self.rollbacks.add(e["txn"])
        return "ok"


class LoadWatch(logging.Handler):
    """Sees the library's own report that loading the full dump failed (it logs and goes on)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.failed = []

    def emit(self, record):
        if "failed to load full dump" in record.getMessage():
            self.failed.append(record.getMessage())


# -- the protocol side --------------------------------------------------------------------------

class Shim:
    def __init__(self, data_dir):
        self.dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.node = None
        self.is_open = False
        self.pending = {}        # snapshot id -> harness index captured by its fork
        self.next_id = 1
        self.fork_index = {}     # library serialize id -> harness index of the state it holds
        self.persisted = None    # the pointer: the dump restored at open, then each persist
        self.dump_index = None   # harness index held by the library's current dump

    # library plumbing: the shim is the tick thread ------------------------------------------
    def _tick_until(self, cond, what):
        deadline = time.monotonic() + WAIT_LIMIT
        while not cond():
            if time.monotonic() > deadline:
                raise Fail("bad_request", f"pysyncobj did not {what} within {WAIT_LIMIT}s")
            self.node.doTick(TICK)

    def _serializer_busy(self):
        # read-only look at the library's private state: a forked dump child is running
        return self.node._SyncObj__serializer._Serializer__pid != 0

    def _last_serialized(self):
        return self.node._SyncObj__lastSerializedEntry

    def _sync_dump_index(self):
        sid = self._last_serialized()
        if sid is not None and sid in self.fork_index:
            self.dump_index = self.fork_index[sid]

    # ops -------------------------------------------------------------------------------------
    def open(self):
        need(not self.is_open, "already_open", "open twice")
        watch = LoadWatch()
        logging.getLogger("pysyncobj").addHandler(watch)
        dump = os.path.join(self.dir, DUMP_NAME)
        had_dump = os.path.isfile(dump)
        self.node = KVMachine(dump)
        # PySyncObj's start: the first tick loads the full dump, then the node elects itself
        # (no peers: a majority of one) and commits + applies its leader no-op.
        self._tick_until(lambda: self.node._isLeader() and self.node.isReady()
                         and self.node.raftLastApplied == self.node.raftCommitIndex,
                         "become a ready leader")
        logging.getLogger("pysyncobj").removeHandler(watch)
        if watch.failed:
            log.error("PySyncObj could not load its full dump %s and started from an EMPTY "
                      "state (the library logs and continues): %s", dump, watch.failed)
        snap = self.node.applied  # what the library restored: the harness index in the dump
        log.info("open: dump %s, library restored harness index %d (library raftLastApplied %d)",
                 "present" if had_dump else "absent", snap, self.node.raftLastApplied)
        # The pointer: the dump the library restored (None: no dump, or it could not be read).
        self.dump_index = self.persisted = snap if had_dump and not watch.failed else None
        self.is_open = True
        return {"outcome": "fallback", "reason": "not_reader", "have": None, "snap": snap,
                "effective": snap, "gap": None, "compacted": snap, "last_applied": snap}

    def apply(self, index, raw):
        need(type(index) is int and index >= 0, "bad_index", f"bad index {index!r}")
        e = parse_entry(raw)
        need(index in (0, self.node.applied + 1), "bad_index",
             f"index {index} is not {self.node.applied + 1} (or 0, a direct write)")
        box = []
        self.node.apply_entry(index, e, callback=lambda res, err: box.append((res, err)))
        self._tick_until(lambda: box, "commit and apply the entry")
        res, err = box[0]
        need(err == 0, "bad_request", f"pysyncobj refused the command: FAIL_REASON {err}")
        self._sync_dump_index()
        return {"result": res}

    def snapshot_begin(self):
        index = self.node.applied
        # The library forks only when no dump is in flight: let a previous child finish.
        self._tick_until(lambda: not self._serializer_busy(), "finish the previous dump")
        self._sync_dump_index()
        self.node.forceLogCompaction()
        self._tick_until(lambda: not self.node._SyncObj__forceLogCompaction, "start the dump")
        # Either the library forked a child holding the state at `index` (serialize id =
        # raftLastApplied - 1), or it skipped because that state is already its last dump.
        self.fork_index[self.node.raftLastApplied - 1] = index
        sid, self.next_id = self.next_id, self.next_id + 1
        self.pending[sid] = index
        return {"snapshot": sid, "index": index}

    def snapshot_persist(self, sid, site):
        need(site in ("local", "config"), "bad_request", f"site {site!r}")
        need(sid in self.pending, "unknown_snapshot", f"snapshot id {sid!r} was never begun")
        index = self.pending.pop(sid)  # past the handle lookup the handle is used up
        need(self.persisted is None or index > self.persisted, "snapshot_out_of_date",
             f"{index} is not newer than the pointer (the dump at {self.persisted})")
        self._tick_until(lambda: not self._serializer_busy(), "finish the dump")
        self._sync_dump_index()
        need(self.dump_index is None or self.dump_index <= index, "snapshot_out_of_date",
             f"the library's current dump already holds index {self.dump_index} > {index}")
        need(self.dump_index == index, "bad_snapshot",
             f"the library's dump of index {index} failed (its dump holds {self.dump_index})")
        self.persisted = index
        return {"index": index, "pinned": False, "compacted": index}

    def digest(self):
        canon = json.dumps(self.node.scan(), separators=(",", ":"), ensure_ascii=False)
        return {"digest": hashlib.sha256(canon.encode()).hexdigest()}

    def shutdown(self):
        if self.node is not None:
            self._tick_until(lambda: not self._serializer_busy(), "finish the dump")
            self.node.destroy()

    def handle(self, req):
        op = req.get("op")
        if op == "hello":
            need(isinstance(req.get("versions", [1]), list) and 1 in req.get("versions", [1]),
                 "bad_request", "protocol version 1 only")
            durability = (req.get("config") or {}).get("durability", "synced")
            need(durability != "unsynced", "unsupported", "synced mode only (see README)")
            need(durability == "synced", "bad_request", f"durability {durability!r}")
            need(not self.is_open, "already_open", "hello must come before open")
            return {"version": 1,
                    "implementation": {"name": "pysyncobj-shim", "version": PSO_VERSION},
                    "capabilities": [], "entry_kinds": list(KINDS)}
        need(op not in GATED, "unsupported", f"{op}: capability not claimed (baseline profile)")
        ops = {"open": self.open, "digest": self.digest, "snapshot_begin": self.snapshot_begin,
               "apply": lambda: self.apply(req["index"], req["entry"]),
               "snapshot_persist": lambda: self.snapshot_persist(req["snapshot"],
                                                                 req.get("site", "local")),
               "get": lambda: {"value": self.node.latest(req["key"])},
               "scan": lambda: {"items": self.node.scan(req.get("prefix", ""))},
               "hlc": lambda: {"ceiling": self.node.ceiling, "cutover": self.node.cutover}}
        need(op in ops, "unknown_op", f"unknown op {op!r}")
        need(self.is_open or op == "open", "not_open", f"{op}: call open first")
        if op == "get":
            need(isinstance(req["key"], str), "bad_request", "key must be a string")
        if op == "scan":
            need(isinstance(req.get("prefix", ""), str), "bad_request", "prefix must be a string")
        return ops[op]()


def main():
    ap = argparse.ArgumentParser(description="PySyncObj behind the conformance wire protocol.")
    ap.add_argument("--data-dir", required=True)
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    shim = Shim(args.data_dir)
    sys.stdin.reconfigure(encoding="utf-8")
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
            send({"id": None, "ok": False, "error": {"code": "bad_request", "message": "not a JSON object"}})
            continue
        rid, op = req.get("id"), req.get("op")
        try:
            if op == "shutdown":
                shim.shutdown()
                result = {}
            else:
                result = shim.handle(req)
            reply = {"id": rid, "ok": True, "result": result}
        except Fail as exc:
            reply = {"id": rid, "ok": False, "error": exc.wire}
        except (KeyError, TypeError, UnicodeError) as exc:
            reply = {"id": rid, "ok": False, "error": {"code": "bad_request", "message": repr(exc)}}
        if op == "open" and reply["ok"]:  # C5: only after the library's start succeeded
            send({"event": "cold_start", **reply["result"]})
        send(reply)
        if op == "shutdown":
            break


if __name__ == "__main__":
    main()
