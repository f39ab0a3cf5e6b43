"""journal_node: an independent node for the applied-index conformance suite.

python examples/journal_node/node.py --data-dir DIR [--capabilities a,b,c]
JSON lines on stdin/stdout (docs/protocol.md); logs on stderr.
"""
import argparse
import hashlib
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import entries  # noqa: E402
from snapfile import SnapshotDir, VerifyError, encode  # noqa: E402
from storage import GenStore, State  # noqa: E402

ALL_CAPS = ("reader", "writer", "header_applier", "unsynced_mode", "failpoints",
            "tamper_hooks", "install_snapshot", "pin_after_restore")
CRASH_POINTS = ("before_pin", "after_pin", "after_save", "mid_restore", "after_batch_commit")
ERROR_POINTS = ("pin", "reader")
TAMPER_KINDS = ("torn_meta", "truncate_snapshot", "flip_body_byte", "wrong_token_crc",
                "unknown_header_version")


def log(*args):
    print("journal_node:", *args, file=sys.stderr, flush=True)


class NodeError(Exception):
    def __init__(self, code, message, kind=None):
        super().__init__(message)
        self.code, self.kind = code, kind


class ReadError(Exception):
    pass


class Failpoints:
    """Armed points: name -> [action, hits left before it fires]. Each fires once."""

    def __init__(self):
        self.armed = {}

    def arm(self, name, action, skip):
        self.armed[name] = [action, skip]

    def hit(self, name):
        """Called at every pass through a point: crash, return "error", or None."""
        slot = self.armed.get(name)
        if slot is None:
            return None
        if slot[1] > 0:
            slot[1] -= 1
            return None
        del self.armed[name]
        if slot[0] == "crash":
            log("failpoint %s: crash" % name)
            os._exit(70)
        log("failpoint %s: error" % name)
        return "error"

    def crash_point(self, name):
        if self.hit(name) == "error":
            raise NodeError("injected", "failpoint %s fired" % name)


def meta_encode(index):
    return index.to_bytes(8, "big").hex()


def meta_decode(raw):
    """(index, present): a value that is not exactly 8 bytes reads as absent."""
    if raw is None or len(raw) != 8:
        return 0, False
    return int.from_bytes(raw, "big"), True


class Node:
    def __init__(self, data_dir, caps):
        self.data_dir = data_dir
        self.caps = set(caps)
        self.synced = True
        self.fp = Failpoints()
        self.store = GenStore(data_dir)
        self.snaps = SnapshotDir(data_dir)
        self.opened = False
        self.last = 0            # last accepted Raft index
        self.ceiling = 0         # in-memory HLC ceiling
        self.cutover = 0         # in-memory cutover
        self.begun = {}          # snapshot id -> captured state
        self.next_sid = 1

    # ----- helpers -----

    def need(self, cap):
        if cap not in self.caps:
            raise NodeError("unsupported", "capability %s not advertised" % cap)

    def need_open(self):
        if not self.opened:
            raise NodeError("not_open", "the node is not open")

    def read_applied(self):
        """The reader: last_applied_index() of the store, with the reader failpoint."""
        if self.fp.hit("reader") == "error":
            raise ReadError("injected read failure of the meta key")
        return meta_decode(self.store.state.meta)

    def pin(self, index):
        """set_durable_applied_index: keep the maximum; always synced."""
        cur, present = meta_decode(self.store.state.meta)
        if present and index <= cur:
            self.store.sync()  # an earlier unsynced apply may hold the value: make it durable
            return False
        self.store.commit({"meta": meta_encode(index)}, sync=True)
        return True

    def restore(self, snap, header, body):
        """Replace the whole store with a snapshot's state (or the empty state) in a new
        generation, durable before it replaces the old one (mid_restore in between)."""
        state = State.from_body(body) if body is not None else State()
        if "pin_after_restore" in self.caps and body is not None:
            # the restore pin lands with the restored data: one atomic generation switch
            state.meta = bytes.fromhex(meta_encode(snap))
        self.store.replace(state, before_switch=lambda: self.fp.crash_point("mid_restore"))
        self.apply_header(*header)

    def apply_header(self, ceiling, cutover):
        self.ceiling = max(self.ceiling, ceiling)
        self.cutover = max(self.cutover, cutover)

    # ----- ops -----

    def op_hello(self, req):
        if self.opened:
            raise NodeError("already_open", "hello after open")
        versions = req.get("versions", [1])
        if not isinstance(versions, list) or 1 not in versions:
            raise NodeError("bad_request", "this node speaks protocol version 1 only")
        config = req.get("config") or {}
        if not isinstance(config, dict):
            raise NodeError("bad_request", "config must be an object")
        durability = config.get("durability", "synced" if self.synced else "unsynced")
        if durability not in ("synced", "unsynced"):
            raise NodeError("bad_request", "durability is synced or unsynced")
        if durability == "unsynced":
            self.need("unsynced_mode")
        self.synced = durability == "synced"
        return {"version": 1, "implementation": {"name": "journal_node", "version": "1.0"},
                "capabilities": [c for c in ALL_CAPS if c in self.caps],
                "entry_kinds": list(entries.KINDS)}

    def op_failpoint(self, req):
        self.need("failpoints")
        name, action, skip = req.get("name"), req.get("action"), req.get("skip", 0)
        if name not in CRASH_POINTS + ERROR_POINTS or action not in ("crash", "error") \
                or not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise NodeError("bad_request", "bad failpoint name, action or skip")
        self.fp.arm(name, action, skip)
        return {}

    def op_tamper(self, req):
        self.need("tamper_hooks")
        if self.opened:
            raise NodeError("already_open", "tamper only before open")
        kind = req.get("kind")
        if kind not in TAMPER_KINDS:
            raise NodeError("bad_request", "unknown tamper kind %r" % kind)
        if kind == "torn_meta":
            self.store.load()
            self.store.commit({"meta": "a5a5"}, sync=True)
            self.store.close()
            return {}
        ptr = self.snaps.pointer()
        if ptr is None:
            raise NodeError("bad_snapshot", "no snapshot to tamper with")
        try:
            self.snaps.tamper(kind, ptr)
        except (FileNotFoundError, VerifyError) as e:
            raise NodeError("bad_snapshot", "cannot tamper: %s" % e) from None
        return {}

    def op_open(self, req):
        if self.opened:
            raise NodeError("already_open", "open twice")
        self.store.load()
        try:
            self.snaps.remove_unreferenced()
            ptr = self.snaps.pointer()
            snap = ptr["index"] if ptr else 0
            have, reason = None, None
            if "reader" not in self.caps:
                reason = "not_reader"
            else:
                try:
                    have, present = self.read_applied()
                    if not present:
                        have, reason = None, "missing_meta"
                except ReadError:
                    reason = "read_err"
            if reason is None and "header_applier" not in self.caps:
                reason = "not_header_applier"
            if reason is None and have >= snap:
                outcome, effective = "skipped", have
            else:
                outcome, effective = ("executed" if reason is None else "fallback"), snap
            # verify before using anything of the snapshot, on both paths
            ceiling, cutover, body = self.snaps.read(ptr) if ptr else (0, 0, None)
        except VerifyError as e:
            self.store.close()
            raise NodeError(e.code, str(e), e.kind) from None
        if outcome == "skipped":
            self.apply_header(ceiling, cutover)
        else:
            self.restore(snap, (ceiling, cutover), body)
        self.opened = True
        self.last = effective
        result = {"outcome": outcome, "reason": reason, "have": have, "snap": snap,
                  "effective": effective, "gap": None if have is None else have - snap,
                  "compacted": self.snaps.compacted(), "last_applied": effective}
        emit(dict({"event": "cold_start"}, **result))
        return result

    def op_apply(self, req):
        self.need_open()
        if "index" not in req or "entry" not in req:
            raise NodeError("bad_request", "apply needs index and entry")
        index, entry = req["index"], req["entry"]
        if not entries.is_u64(index):
            raise NodeError("bad_index", "index must be a non-negative integer")
        try:
            entries.validate(entry)
        except entries.EntryError as e:
            raise NodeError(e.code, str(e)) from None
        if index > 0 and index != self.last + 1:
            raise NodeError("bad_index", "expected index %d, got %d" % (self.last + 1, index))
        kind = entry["kind"]
        result, batch = entries.evaluate(self.store.state, entry)
        if kind == "hlc_lease":
            self.ceiling = max(self.ceiling, entry["ceiling"])
        elif kind == "control" and entry["opcode"] == "cutover":
            self.cutover = max(self.cutover, entry.get("value", 0))
        if batch is not None:  # a data entry that writes (entry-semantics 9)
            batch = {k: v for k, v in batch.items() if v}
            if index > 0:
                batch["meta"] = meta_encode(index)
            if batch:
                self.store.commit(batch, sync=self.synced)
                self.fp.crash_point("after_batch_commit")
        if index > 0:
            self.last = index
        return {"result": result}

    def op_snapshot_begin(self, req):
        self.need_open()
        sid, self.next_sid = self.next_sid, self.next_sid + 1
        self.begun[sid] = (self.last, self.store.state.copy(), self.ceiling, self.cutover)
        return {"snapshot": sid, "index": self.last}

    def op_snapshot_persist(self, req):
        self.need_open()
        sid, site = req.get("snapshot"), req.get("site", "local")
        if site not in ("local", "config"):
            raise NodeError("bad_request", "site is local or config")
        if not isinstance(sid, int) or isinstance(sid, bool):
            raise NodeError("bad_request", "snapshot must be an integer handle")
        if sid not in self.begun:
            raise NodeError("unknown_snapshot", "snapshot %r was never begun or is used up" % sid)
        index, state, ceiling, cutover = self.begun.pop(sid)  # the handle is used up
        ptr = self.snaps.pointer()
        if ptr is not None and index <= ptr["index"]:
            raise NodeError("snapshot_out_of_date", "pointer already at %d" % ptr["index"])
        pinned = "writer" in self.caps
        if pinned:
            self.fp.crash_point("before_pin")
            if self.fp.hit("pin") == "error":
                raise NodeError("pin_failed", "injected pin failure; nothing saved")
            self.pin(index)
            self.fp.crash_point("after_pin")
        self.snaps.save(index, sid, encode(ceiling, cutover, state.body()))
        self.fp.crash_point("after_save")
        self.snaps.set_compacted(index)
        return {"index": index, "pinned": pinned, "compacted": index}

    def op_install_snapshot(self, req):
        self.need("install_snapshot")
        self.need_open()
        if "index" not in req:
            raise NodeError("bad_request", "install_snapshot needs index")
        index = req["index"]
        if not entries.is_u64(index) or index <= self.last:
            raise NodeError("snapshot_out_of_date", "index %r is not above the applied index %d"
                            % (index, self.last))
        ceiling, cutover, rows = req.get("ceiling", 0), req.get("cutover", 0), req.get("rows", [])
        if not (entries.is_u64(ceiling) and entries.is_u64(cutover) and isinstance(rows, list)):
            raise NodeError("bad_snapshot", "malformed ceiling, cutover or rows")
        versions = {}
        for row in rows:
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
                    and isinstance(row[1], str) and entries.is_u64(row[2])) or row[0] in versions:
                raise NodeError("bad_snapshot", "malformed or duplicate row %r" % (row,))
            try:
                if entries.utf8_len(row[0]) > entries.MAX_KEY or \
                        entries.utf8_len(row[1]) > entries.MAX_VALUE:
                    raise NodeError("bad_snapshot", "row key or value over the limits")
            except entries.EntryError:
                raise NodeError("bad_snapshot", "row is not valid Unicode text") from None
            versions[row[0]] = {row[2]: row[1]}
        body = State(versions).body()
        # choice (a): the pointer first, then the store (a crash in between restores again)
        self.snaps.save(index, 0, encode(ceiling, cutover, body))
        self.fp.crash_point("after_save")
        self.restore(index, (ceiling, cutover), body)
        self.snaps.set_compacted(index)
        self.last = index
        self.begun.clear()
        return {"index": index}

    def op_get(self, req):
        self.need_open()
        key = req.get("key")
        if not isinstance(key, str):
            raise NodeError("bad_request", "key must be a string")
        return {"value": self.store.state.visible(key)}

    def items(self, prefix=""):
        state = self.store.state
        live = ((k, state.visible(k)) for k in sorted(state.versions) if k.startswith(prefix))
        return [[k, v] for k, v in live if v is not None]

    def op_scan(self, req):
        self.need_open()
        prefix = req.get("prefix", "")
        if not isinstance(prefix, str):
            raise NodeError("bad_request", "prefix must be a string")
        return {"items": self.items(prefix)}

    def op_digest(self, req):
        self.need_open()
        text = json.dumps(self.items(), separators=(",", ":"), ensure_ascii=False)
        return {"digest": hashlib.sha256(text.encode("utf-8")).hexdigest()}

    def op_hlc(self, req):
        self.need_open()
        return {"ceiling": self.ceiling, "cutover": self.cutover}

    def op_last_applied_index(self, req):
        self.need("reader")
        self.need_open()
        try:
            index, present = self.read_applied()
        except ReadError as e:
            raise NodeError("read_error", str(e)) from None
        return {"index": index, "present": present}

    def op_set_durable_applied_index(self, req):
        self.need("writer")
        self.need_open()
        index = req.get("index")
        if not entries.is_u64(index):
            raise NodeError("bad_request", "index must be an unsigned 64-bit integer")
        if self.fp.hit("pin") == "error":
            raise NodeError("injected", "injected pin failure; nothing written")
        return {"written": self.pin(index)}

    def op_shutdown(self, req):
        return {}

    def handle(self, req):
        op = req.get("op")
        fn = getattr(self, "op_%s" % op, None) if isinstance(op, str) else None
        if fn is None:
            raise NodeError("unknown_op", "unknown op %r" % op)
        return fn(req)


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--capabilities", default=",".join(ALL_CAPS),
                    help="comma-separated capabilities to advertise (default: all; '' for none)")
    args = ap.parse_args()
    caps = [c for c in args.capabilities.split(",") if c]
    unknown = set(caps) - set(ALL_CAPS)
    if unknown:
        ap.error("unknown capabilities: %s" % ", ".join(sorted(unknown)))
    node = Node(args.data_dir, caps)
    for line in sys.stdin:
        if not line.strip():
            continue
        rid, req = None, None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("not an object")
            rid = req.get("id")
            reply = {"id": rid, "ok": True, "result": node.handle(req)}
        except NodeError as e:
            err = {"code": e.code, "message": str(e)}
            if e.kind:
                err["kind"] = e.kind
            reply = {"id": rid, "ok": False, "error": err}
        except ValueError as e:
            reply = {"id": rid, "ok": False, "error": {"code": "bad_request", "message": str(e)}}
        except Exception as e:  # a bug or an I/O failure: say so, keep serving
            log("internal error:", traceback.format_exc())
            reply = {"id": rid, "ok": False, "error": {"code": "bad_request",
                                                       "message": "internal error: %r" % e}}
        emit(reply)
        if isinstance(req, dict) and req.get("op") == "shutdown" and reply["ok"]:
            node.store.close()
            return


if __name__ == "__main__":
    main()
