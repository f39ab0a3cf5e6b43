"""The generation store.

DATA/CURRENT names the live generation N; DATA/gen-<N>/ holds
  checkpoint  one CRC-framed JSON image of the store (user versions, prepared
              intents, rollback markers, meta value) at the generation's creation;
  journal     CRC-framed JSON records appended after it; each record is one
              atomic batch: its versions, intent and marker changes, meta value.
Recovery = checkpoint + the longest valid prefix of the journal (a torn or
corrupt tail is truncated away, durably, before anything is appended).
A restore builds gen-<N+1>/ completely, makes it durable, then switches CURRENT
(write temp, fsync, rename, fsync dir) and removes the old generation.
"""
import json
import os
import shutil
import struct
import zlib

HDR = struct.Struct(">II")  # payload length, zlib crc32 of payload
ROLL_BYTES = 8 << 20        # journal size above which open rolls a new generation


class StoreError(Exception):
    pass


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_new_file(path, data):
    """Create path with data and fsync it (the caller fsyncs the directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path, data):
    """Atomically and durably replace path: temp file, fsync, rename, fsync dir."""
    tmp = path + ".tmp"
    write_new_file(tmp, data)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path))


def frame(obj):
    payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return HDR.pack(len(payload), zlib.crc32(payload)) + payload


def unframe_all(buf):
    """Decode consecutive frames; return (objects, length of the valid prefix)."""
    objs, pos = [], 0
    while pos + HDR.size <= len(buf):
        n, crc = HDR.unpack_from(buf, pos)
        payload = buf[pos + HDR.size: pos + HDR.size + n]
        if len(payload) < n or zlib.crc32(payload) != crc:
            break
        try:
            objs.append(json.loads(payload))
        except ValueError:
            break
        pos += HDR.size + n
    return objs, pos


class State:
    """The store's contents (entry-semantics.md 1): versions key -> {ts: value or None
    (tombstone)}, prepared intents txn -> {start_ts, ops}, rollback markers, and the
    raw meta value (bytes or None)."""

    def __init__(self, versions=None, intents=None, markers=None, meta=None):
        self.versions = versions if versions is not None else {}
        self.intents = intents if intents is not None else {}
        self.markers = markers if markers is not None else set()
        self.meta = meta

    def visible(self, key):
        vs = self.versions.get(key)
        return vs[max(vs)] if vs else None

    def apply(self, rec):
        for key, ts, value in rec.get("put", ()):
            self.versions.setdefault(key, {})[ts] = value
        for txn, intent in rec.get("intents", {}).items():
            if intent is None:
                self.intents.pop(txn, None)
            else:
                self.intents[txn] = intent
        self.markers.update(rec.get("markers", ()))
        if "meta" in rec:
            self.meta = None if rec["meta"] is None else bytes.fromhex(rec["meta"])

    def copy(self):
        return State({k: dict(vs) for k, vs in self.versions.items()}, dict(self.intents),
                     set(self.markers), self.meta)

    def body(self):
        """Everything but the meta key: what a snapshot carries."""
        return {"versions": [[k, ts, v] for k, vs in sorted(self.versions.items())
                             for ts, v in sorted(vs.items())],
                "intents": self.intents, "markers": sorted(self.markers)}

    def image(self):
        return dict(self.body(), meta=None if self.meta is None else self.meta.hex())

    @classmethod
    def from_body(cls, body, meta=None):
        state = cls(None, dict(body.get("intents", {})), set(body.get("markers", ())), meta)
        state.apply({"put": body["versions"]})
        return state

    @classmethod
    def from_image(cls, img):
        meta = img.get("meta")
        return cls.from_body(img, None if meta is None else bytes.fromhex(meta))


class GenStore:
    def __init__(self, root):
        self.root = root
        self.gen = 0
        self.fd = None
        self.state = None

    def _gen_dir(self, n):
        return os.path.join(self.root, "gen-%d" % n)

    def load(self):
        """Recover the live generation (creating gen-1 on a fresh directory)."""
        os.makedirs(self.root, exist_ok=True)
        cur = os.path.join(self.root, "CURRENT")
        if not os.path.exists(cur):
            self._remove_other_gens(keep=None)
            self.state = State()
            self._create_gen(1, self.state)
            self._switch(1)
        else:
            with open(cur, "rb") as f:
                self.gen = int(f.read().decode().strip())
            self._remove_other_gens(keep=self.gen)
        gdir = self._gen_dir(self.gen)
        with open(os.path.join(gdir, "checkpoint"), "rb") as f:
            objs, _ = unframe_all(f.read())
        if len(objs) != 1:
            raise StoreError("checkpoint of gen-%d is unreadable" % self.gen)
        self.state = State.from_image(objs[0])
        jpath = os.path.join(gdir, "journal")
        self.fd = os.open(jpath, os.O_RDWR | os.O_APPEND)
        size = os.fstat(self.fd).st_size
        buf = os.pread(self.fd, size, 0)
        records, good = unframe_all(buf)
        for rec in records:
            self.state.apply(rec)
        if good < size:  # torn tail from a power loss: cut it off
            os.ftruncate(self.fd, good)
        # recovery sync: what this open reads (and reports) becomes durable before the
        # node builds on it; also the names in DIR (CURRENT, POINTER, COMPACTED), so a
        # later cleanup never outlives the rename it relies on
        os.fsync(self.fd)
        fsync_dir(gdir)
        fsync_dir(self.root)
        if good > ROLL_BYTES:
            self.replace(self.state)
        return self.state

    def commit(self, rec, sync):
        """Append one atomic batch to the journal; fsync it when sync."""
        write_all(self.fd, frame(rec))
        if sync:
            os.fdatasync(self.fd)
        self.state.apply(rec)

    def sync(self):
        os.fdatasync(self.fd)

    def replace(self, state, before_switch=None):
        """Make `state` the store: build the next generation, make it durable,
        call before_switch (the mid_restore point), switch CURRENT, drop the old."""
        new = self.gen + 1
        self._create_gen(new, state)
        if before_switch:
            before_switch()
        self._switch(new)
        if self.fd is not None:
            os.close(self.fd)
        self.fd = os.open(os.path.join(self._gen_dir(new), "journal"), os.O_RDWR | os.O_APPEND)
        self.state = state
        self._remove_other_gens(keep=new)

    def _create_gen(self, n, state):
        gdir = self._gen_dir(n)
        if os.path.exists(gdir):
            shutil.rmtree(gdir)
        os.mkdir(gdir)
        write_new_file(os.path.join(gdir, "checkpoint"), frame(state.image()))
        write_new_file(os.path.join(gdir, "journal"), b"")
        fsync_dir(gdir)
        fsync_dir(self.root)

    def _switch(self, n):
        replace_durably(os.path.join(self.root, "CURRENT"), b"%d\n" % n)
        self.gen = n

    def _remove_other_gens(self, keep):
        removed = False
        for name in os.listdir(self.root):
            if name.startswith("gen-") and name != "gen-%s" % keep:
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
                removed = True
        if removed:
            fsync_dir(self.root)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
