"""Snapshot files and the pointer.

A snapshot file DATA/snapshots/snap-<index>-<id>.bin is
  payload = header + body, then a 4-byte big-endian CRC32C footer over the payload
  header  = b"JNSH", version byte, HLC ceiling u64 BE, and (version 2) cutover u64 BE
  body    = UTF-8 JSON {"versions": [[key, ts, value or null], ...], "intents": {...},
            "markers": [...]}: every version, intents and rollback markers, no meta key
The pointer DATA/POINTER is JSON {"index", "crc", "file"}; it is replaced
atomically (temp, fsync, rename, fsync dir) only after the file is durable.
The compaction mark DATA/COMPACTED is replaced the same way, after the pointer.
"""
import json
import os
import struct

from storage import fsync_dir, replace_durably, write_new_file

MAGIC = b"JNSH"
U64 = struct.Struct(">Q")
FOOTER = struct.Struct(">I")


def _table():
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_T = _table()


def crc32c(data):
    crc = 0xFFFFFFFF
    t = _T
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class VerifyError(Exception):
    """code is snapshot_verify (kind: missing, too_small, token_crc, file_crc) or bad_header."""

    def __init__(self, code, kind, message):
        super().__init__(message)
        self.code, self.kind = code, kind


def encode(ceiling, cutover, body, version=2):
    header = MAGIC + bytes([version]) + U64.pack(ceiling)
    if version == 2:
        header += U64.pack(cutover)
    payload = header + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return payload + FOOTER.pack(crc32c(payload))


def header_len(payload):
    """Length of the header, or raise bad_header for a malformed or unknown one."""
    if len(payload) < 5 or payload[:4] != MAGIC:
        raise VerifyError("bad_header", None, "snapshot header has no magic")
    version = payload[4]
    if version not in (1, 2):
        raise VerifyError("bad_header", None, "unknown snapshot header version %d" % version)
    n = 5 + 8 * version
    if len(payload) < n:
        raise VerifyError("bad_header", None, "snapshot header is short")
    return n


def decode(data, token_crc):
    """Verify a snapshot file (size, footer vs token, payload vs footer, header)
    and return (ceiling, cutover, body). Nothing is changed."""
    if len(data) < FOOTER.size:
        raise VerifyError("snapshot_verify", "too_small", "snapshot file shorter than its footer")
    payload, (footer,) = data[:-FOOTER.size], FOOTER.unpack(data[-FOOTER.size:])
    if footer != token_crc:
        raise VerifyError("snapshot_verify", "token_crc", "footer differs from the pointer's CRC")
    if crc32c(payload) != footer:
        raise VerifyError("snapshot_verify", "file_crc", "payload CRC differs from the footer")
    n = header_len(payload)
    ceiling = U64.unpack_from(payload, 5)[0]
    cutover = U64.unpack_from(payload, 13)[0] if payload[4] == 2 else 0
    try:
        body = json.loads(payload[n:])
        if not isinstance(body.get("versions"), list):
            raise ValueError("no versions")
        return ceiling, cutover, body
    except (ValueError, AttributeError) as e:
        raise VerifyError("bad_header", None, "snapshot body unreadable: %s" % e) from None


class SnapshotDir:
    def __init__(self, root):
        self.root = root
        self.dir = os.path.join(root, "snapshots")
        self.ptr_path = os.path.join(root, "POINTER")

    def pointer(self):
        try:
            with open(self.ptr_path, "rb") as f:
                ptr = json.loads(f.read())
            if not (isinstance(ptr["index"], int) and isinstance(ptr["crc"], int)
                    and isinstance(ptr["file"], str)):
                raise ValueError("bad field")
            return ptr
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            raise VerifyError("bad_header", None, "pointer unreadable: %s" % e) from None

    def compacted(self):
        """The compaction mark: the index through which the log is compacted."""
        try:
            with open(os.path.join(self.root, "COMPACTED"), "rb") as f:
                return int(f.read().decode())
        except FileNotFoundError:
            return 0

    def set_compacted(self, index):
        replace_durably(os.path.join(self.root, "COMPACTED"), b"%d" % index)

    def read(self, ptr):
        """The verified contents of the snapshot the pointer names."""
        try:
            with open(os.path.join(self.dir, ptr["file"]), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise VerifyError("snapshot_verify", "missing",
                              "snapshot file %s is missing" % ptr["file"]) from None
        return decode(data, ptr["crc"])

    def save(self, index, sid, data, before_pointer=None):
        """Write the file durably, then the pointer durably; drop older files."""
        if not os.path.isdir(self.dir):
            os.mkdir(self.dir)
            fsync_dir(self.root)
        name = "snap-%d-%d.bin" % (index, sid)
        write_new_file(os.path.join(self.dir, name), data)
        fsync_dir(self.dir)
        if before_pointer:
            before_pointer()
        replace_durably(self.ptr_path, json.dumps(
            {"index": index, "crc": FOOTER.unpack(data[-4:])[0], "file": name}).encode())
        self.remove_unreferenced()

    def remove_unreferenced(self):
        ptr = self.pointer()
        if not os.path.isdir(self.dir):
            return
        removed = False
        for name in os.listdir(self.dir):
            if ptr is None or name != ptr["file"]:
                os.unlink(os.path.join(self.dir, name))
                removed = True
        if removed:
            fsync_dir(self.dir)

    # --- tamper hooks: each change is made durable before the reply ---

    def _rewrite(self, ptr, data, crc=None):
        path = os.path.join(self.dir, ptr["file"])
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if crc is not None:
            replace_durably(self.ptr_path, json.dumps(dict(ptr, crc=crc)).encode())

    def tamper(self, kind, ptr):
        with open(os.path.join(self.dir, ptr["file"]), "rb") as f:
            data = bytearray(f.read())
        if kind == "truncate_snapshot":
            self._rewrite(ptr, bytes(data[:FOOTER.size - 1]))
        elif kind == "flip_body_byte":
            n = header_len(bytes(data[:-FOOTER.size]))
            data[n] ^= 0x01
            self._rewrite(ptr, bytes(data))
        elif kind == "wrong_token_crc":
            replace_durably(self.ptr_path, json.dumps(dict(ptr, crc=ptr["crc"] ^ 0x1)).encode())
        elif kind == "unknown_header_version":
            payload = bytearray(data[:-FOOTER.size])
            payload[4] = 0x7F
            crc = crc32c(bytes(payload))
            self._rewrite(ptr, bytes(payload) + FOOTER.pack(crc), crc=crc)
