"""Entry validation and semantics (protocol.md "Entries", entry-semantics.md).

evaluate(state, entry) never touches the store: it returns (result, batch),
where batch is the journal record of the entry's writes, or None when the
entry writes nothing. The caller adds the meta value and commits it atomically.
"""
import re

MAX_KEY = 1024
MAX_VALUE = 1 << 20
U64_MAX = (1 << 64) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
INT_RE = re.compile(r"-?[0-9]+\Z")

DATA_KINDS = ("raw", "txn", "delete_prefix", "prepare", "commit", "abort")
KINDS = DATA_KINDS + ("hlc_lease", "control", "noop")
FIELDS = {  # field -> required
    "raw": {"ts": True, "ops": True},
    "txn": {"start_ts": True, "commit_ts": True, "ops": True, "reads": False},
    "delete_prefix": {"prefix": True, "exclude": False, "ts": True},
    "prepare": {"txn": True, "start_ts": True, "ops": True},
    "commit": {"txn": True, "commit_ts": True},
    "abort": {"txn": True},
    "hlc_lease": {"ceiling": True},
    "control": {"opcode": True, "value": False},
    "noop": {},
}
NUMBERS = ("ts", "start_ts", "commit_ts", "ceiling", "value")


class EntryError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _bad(msg):
    raise EntryError("bad_entry", msg)


def is_u64(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U64_MAX


def utf8_len(s):
    """UTF-8 length of s; a string that is not valid Unicode text is a bad entry."""
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        _bad("not valid Unicode text")


def _key(k, what="key"):
    if not isinstance(k, str):
        _bad("%s must be a string" % what)
    if utf8_len(k) > MAX_KEY:
        raise EntryError("too_large", "%s longer than %d bytes" % (what, MAX_KEY))


def _ops(ops):
    if not isinstance(ops, list) or not ops:
        _bad("ops must be a non-empty list")
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("put", "del", "add"):
            _bad("each op is an object with op put, del or add")
        _key(op.get("key"))
        if op["op"] == "put":
            if not isinstance(op.get("value"), str):
                _bad("put needs a string value")
            if utf8_len(op["value"]) > MAX_VALUE:
                raise EntryError("too_large", "value longer than %d bytes" % MAX_VALUE)
        elif op["op"] == "add":
            d = op.get("delta")
            if not (isinstance(d, int) and not isinstance(d, bool) and I64_MIN <= d <= I64_MAX):
                _bad("add needs a signed 64-bit integer delta")


def validate(entry):
    """Raise EntryError (bad_entry or too_large) for an entry that must be rejected."""
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str) \
            or entry["kind"] not in KINDS:
        _bad("unknown entry kind")
    kind, fields = entry["kind"], FIELDS[entry["kind"]]
    for name in entry:
        if name != "kind" and name not in fields:
            _bad("%s has no field %s" % (kind, name))
    for name, required in fields.items():
        if required and name not in entry:
            _bad("%s needs field %s" % (kind, name))
    for name in NUMBERS:
        if name in entry and not is_u64(entry[name]):
            _bad("%s must be an integer in [0, 2^64-1]" % name)
    if kind in ("txn", "commit") and entry["commit_ts"] == 0:
        _bad("commit_ts must not be 0")
    if kind == "txn" and entry["start_ts"] >= entry["commit_ts"]:
        _bad("txn needs start_ts < commit_ts")
    if "ops" in fields:
        _ops(entry["ops"])
    if "reads" in entry:
        if not isinstance(entry["reads"], list):
            _bad("reads must be a list of keys")
        for k in entry["reads"]:
            _key(k, "read key")
    if kind == "delete_prefix":
        _key(entry["prefix"], "prefix")
        if entry.get("exclude") is not None:
            _key(entry["exclude"], "exclude")
    for name in ("txn", "opcode"):
        if name in fields and not (isinstance(entry[name], str) and entry[name]):
            _bad("%s must be a non-empty string" % name)
        if name in fields:
            utf8_len(entry[name])


def _run_ops(state, ops):
    """Pending value per key after the ops (entry-semantics 2); None on a type error."""
    pending = {}
    for op in ops:
        key = op["key"]
        if op["op"] == "put":
            pending[key] = op["value"]
        elif op["op"] == "del":
            pending[key] = None
        else:
            base = pending[key] if key in pending else state.visible(key)
            if base is None:
                base = "0"
            if len(base) > 20 or not INT_RE.match(base) or not I64_MIN <= int(base) <= I64_MAX:
                return None
            total = int(base) + op["delta"]
            if not I64_MIN <= total <= I64_MAX:
                return None
            pending[key] = str(total)
    return pending


def _write(state, ops, ts):
    """(result, batch) writing the ops' versions at ts."""
    pending = _run_ops(state, ops)
    if pending is None:
        return "type_error", None
    return "ok", {"put": [[k, ts, v] for k, v in pending.items()]}


def _locked(state, keys, other_than=None):
    """Whether a prepared intent (of another transaction) has an op on one of keys."""
    return any(op["key"] in keys for txn, intent in state.intents.items() if txn != other_than
               for op in intent["ops"])


def _newer(state, keys, start):
    return {ts for k in keys for ts in state.versions.get(k, {}) if ts > start}


def evaluate(state, entry):
    kind = entry["kind"]
    if kind == "raw":
        return _write(state, entry["ops"], entry["ts"])
    if kind == "txn":
        start, commit = entry["start_ts"], entry["commit_ts"]
        writes = {op["key"] for op in entry["ops"]}
        checked = writes | set(entry.get("reads", []))
        newer, locked = _newer(state, checked, start), _locked(state, checked)
        if not newer and not locked:
            return _write(state, entry["ops"], commit)
        if not locked and newer == {commit} and \
                all(commit in state.versions.get(k, {}) for k in writes):
            return "already_landed", {}
        return "conflict", None
    if kind == "delete_prefix":
        prefix, exclude = entry["prefix"], entry.get("exclude")
        doomed = [k for k in state.versions if k.startswith(prefix) and state.visible(k) is not None
                  and not (exclude is not None and k.startswith(exclude))]
        return "ok", {"put": [[k, entry["ts"], None] for k in sorted(doomed)]}
    if kind == "prepare":
        txn, keys = entry["txn"], {op["key"] for op in entry["ops"]}
        if txn in state.markers:
            return "aborted", None
        if _newer(state, keys, entry["start_ts"]) or _locked(state, keys, other_than=txn):
            return "conflict", None
        return "ok", {"intents": {txn: {"start_ts": entry["start_ts"], "ops": entry["ops"]}}}
    if kind == "commit":
        intent = state.intents.get(entry["txn"])
        if intent is None:
            return "txn_not_found", None
        result, batch = _write(state, intent["ops"], entry["commit_ts"])
        if batch is not None:
            batch["intents"] = {entry["txn"]: None}
        return result, batch
    if kind == "abort":
        return "ok", {"intents": {entry["txn"]: None}, "markers": [entry["txn"]]}
    return "ok", None  # hlc_lease, control, noop: the caller updates the header state
