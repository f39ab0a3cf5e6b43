"""Typed errors of the reference node.

Every error a caller can act on is a `NodeError` with a stable `code`; the wire
protocol (docs/protocol.md) carries that code unchanged, so an external
implementation and the reference report the same condition the same way.

`SimulatedCrash` is deliberately *not* an `Exception`: a failpoint crash must
unwind through every `except Exception` in the node, exactly like a SIGKILL
would stop the process wherever it is.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of every error the node reports to its caller."""

    code = "node_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class BadRequestError(NodeError):
    """A request field is missing, malformed or names something unknown."""

    code = "bad_request"


class EntryError(NodeError):
    """The entry is malformed or of an unknown kind."""

    code = "bad_entry"


class LimitError(EntryError):
    """A key or value exceeds the documented size limits."""

    code = "too_large"


class IndexOrderError(NodeError):
    """An applied index went backwards or skipped (index > 0 must be last + 1)."""

    code = "bad_index"


class NotOpenError(NodeError):
    """An operation that needs an open node was called before open (or after a crash)."""

    code = "not_open"


class AlreadyOpenError(NodeError):
    code = "already_open"


class CapabilityError(NodeError):
    """The node runs without the capability this operation needs (a lower profile)."""

    code = "unsupported"


class StoreReadError(NodeError):
    """A real read failure of the durable applied index (not a missing or torn value)."""

    code = "read_error"


class PinError(NodeError):
    """set_durable_applied_index failed: the snapshot save must not happen."""

    code = "pin_failed"


class InjectedError(NodeError):
    """An error raised on purpose by an armed failpoint."""

    code = "injected"


class SnapshotError(NodeError):
    code = "bad_snapshot"


class SnapshotVerifyError(SnapshotError):
    """The snapshot file failed verification against its token (C3)."""

    code = "snapshot_verify"
    KINDS = ("missing", "too_small", "token_crc", "file_crc")

    def __init__(self, kind: str, message: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown verification failure kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind

    def to_wire(self) -> dict[str, object]:
        return {**super().to_wire(), "kind": self.kind}


class HeaderError(SnapshotError):
    """The snapshot header is malformed or of an unknown version (fails closed)."""

    code = "bad_header"


class StaleSnapshotError(SnapshotError):
    """A snapshot older than (or equal to) the saved pointer cannot be persisted."""

    code = "snapshot_out_of_date"


class UnknownSnapshotError(SnapshotError):
    code = "unknown_snapshot"


class SimulatedCrash(BaseException):  # noqa: N818 - it is not an error, it is a crash
    """An armed crash failpoint fired: the node is dead from here on."""

    def __init__(self, point: str) -> None:
        super().__init__(f"simulated crash at failpoint {point!r}")
        self.point = point
