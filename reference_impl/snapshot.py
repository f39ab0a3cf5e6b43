"""Snapshot file format, header versions and verification against the pointer token.

File layout (all integers big-endian except the footer):

    payload = header || body
    header  = b"RSH" || version:u8 || ceiling:u64 [|| cutover:u64 when version >= 2]
    file    = payload || crc32c(payload):u32 little-endian   (the footer)

The pointer ("token") records the snapshot index and the footer CRC. Before any
header state is used, the file is verified in the order the brief gives:
size >= footer, footer == token CRC, CRC32C(payload) == footer. Header parsing
fails closed on an unknown version: a newer writer's fields are never guessed.
"""

from __future__ import annotations

import importlib.machinery
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import HeaderError, SnapshotVerifyError

MAGIC = b"RSH"
FOOTER_SIZE = 4
SUPPORTED_HEADER_VERSIONS = (1, 2)


def _load_crc32c() -> Callable[[bytes], int]:
    """The `crc32c` package's C function. Its extension module is loaded on its own when it
    can be: the package's __init__ imports importlib.metadata for a version string, a third
    of every start of the server (docs/performance.md). Another layout of the package: the
    package itself."""
    name = "crc32c._crc32c"
    module = sys.modules.get(name)
    if module is None:
        package = importlib.machinery.PathFinder.find_spec("crc32c")
        where = package.submodule_search_locations if package is not None else None
        spec = importlib.machinery.FileFinder(
            where[0], (importlib.machinery.ExtensionFileLoader,
                       importlib.machinery.EXTENSION_SUFFIXES)).find_spec(name) if where else None
        if spec is None or spec.loader is None:
            import crc32c as package_module

            return package_module.crc32c
        module = spec.loader.create_module(spec)
        assert module is not None
        spec.loader.exec_module(module)
        sys.modules[name] = module  # the package, if imported later, reuses it
    crc: Callable[[bytes], int] = module.crc32c
    return crc


_crc32c = _load_crc32c()


def crc32c(data: bytes) -> int:
    return int(_crc32c(data))


@dataclass(frozen=True)
class Header:
    """State carried by a snapshot outside its body; applied on both restore and skip."""

    ceiling: int = 0  # HLC physical ceiling
    cutover: int = 0  # control-plane cutover value (v2 only; v1 reads as 0)


def encode_header(header: Header, version: int = 2) -> bytes:
    if version == 1:
        return MAGIC + struct.pack(">BQ", 1, header.ceiling)
    if version == 2:
        return MAGIC + struct.pack(">BQQ", 2, header.ceiling, header.cutover)
    raise HeaderError(f"cannot encode header version {version}; supported: 1, 2")


def parse_header(payload: bytes) -> tuple[Header, int, int]:
    """Return (header, version, header length). Unknown versions fail closed."""
    if len(payload) < 4 or payload[:3] != MAGIC:
        raise HeaderError("snapshot payload does not start with a header (bad magic)")
    version = payload[3]
    if version not in SUPPORTED_HEADER_VERSIONS:
        raise HeaderError(
            f"unknown snapshot header version {version}; this node understands "
            f"{SUPPORTED_HEADER_VERSIONS} and refuses to guess"
        )
    if version == 1:
        if len(payload) < 12:
            raise HeaderError("v1 header truncated")
        (ceiling,) = struct.unpack_from(">Q", payload, 4)
        return Header(ceiling=ceiling), 1, 12
    if len(payload) < 20:
        raise HeaderError("v2 header truncated")
    ceiling, cutover = struct.unpack_from(">QQ", payload, 4)
    return Header(ceiling=ceiling, cutover=cutover), 2, 20


@dataclass(frozen=True)
class Token:
    """The snapshot pointer: which file is current, at which index, with which CRC."""

    index: int
    crc: int
    file: str

    def encode(self) -> bytes:
        return json.dumps({"index": self.index, "crc": self.crc, "file": self.file},
                          sort_keys=True).encode()

    @staticmethod
    def decode(raw: bytes) -> Token:
        try:
            obj = json.loads(raw)
            return Token(index=int(obj["index"]), crc=int(obj["crc"]), file=str(obj["file"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise HeaderError(f"snapshot pointer is unreadable: {exc}") from exc


def snapshot_file_name(index: int) -> str:
    return f"snap-{index:020d}.snap"


def encode_body(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise HeaderError(f"snapshot body is not valid: {exc}") from exc
    if not isinstance(obj, dict):
        raise HeaderError("snapshot body must be an object")
    return obj


def build_file(header: Header, body: bytes, version: int = 2) -> tuple[bytes, int]:
    """Return (file bytes, footer CRC)."""
    payload = encode_header(header, version) + body
    crc = crc32c(payload)
    return payload + struct.pack("<I", crc), crc


def verify_file(data: bytes, token: Token) -> bytes:
    """C3 verification; return the payload or raise SnapshotVerifyError(kind)."""
    if len(data) < FOOTER_SIZE:
        raise SnapshotVerifyError(
            "too_small", f"{token.file} is {len(data)} bytes, smaller than its {FOOTER_SIZE}-byte footer"
        )
    payload, footer = data[:-FOOTER_SIZE], data[-FOOTER_SIZE:]
    (crc,) = struct.unpack("<I", footer)
    if crc != token.crc:
        raise SnapshotVerifyError(
            "token_crc", f"{token.file} footer CRC {crc:#010x} != pointer CRC {token.crc:#010x}"
        )
    actual = crc32c(payload)
    if actual != crc:
        raise SnapshotVerifyError(
            "file_crc", f"{token.file} payload CRC {actual:#010x} != footer CRC {crc:#010x}"
        )
    return payload
