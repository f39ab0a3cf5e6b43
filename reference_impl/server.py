"""Serve the reference node over the wire protocol (JSON lines on stdin/stdout).

    python -m reference_impl.server --data-dir DIR [--unsynced] [--no-reader] ...
    python -m reference_impl.server --data-dir DIR --mutant NAME   # a broken variant
    python -m reference_impl.server --data-dir DIR --listen 0.0.0.0:7070   # over TCP

One request per line, one reply per line, in order; events (no id) may come
before a reply. Logs go to stderr only. See docs/protocol.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import IO, TYPE_CHECKING, Any

from .disk import OSDisk
from .entries import ALL_KINDS
from .errors import AlreadyOpenError, BadRequestError, NodeError, SimulatedCrash
from .node import Node, NodeConfig

if TYPE_CHECKING:
    import argparse

PROTOCOL_VERSION = 1
IMPLEMENTATION = {"name": "reference_impl", "version": "0.1.0"}


class Server:
    def __init__(self, node: Node, out: IO[str]) -> None:
        self.node = node
        self.out = out
        node.on_event = self._send
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "hello": self.hello,
            "open": lambda r: self.node.open().to_json(),
            "apply": self.apply,
            "snapshot_begin": self.snapshot_begin,
            "snapshot_persist": self.snapshot_persist,
            "get": lambda r: {"value": self.node.get(r["key"])},
            "scan": lambda r: {"items": [list(p) for p in self.node.scan(r.get("prefix", ""))]},
            "digest": lambda r: {"digest": self.node.digest()},
            "hlc": self.hlc,
            "last_applied_index": self.last_applied_index,
            "set_durable_applied_index": lambda r: {
                "written": self.node.set_durable_applied_index(r["index"])},
            "failpoint": self.failpoint,
            "tamper": self.tamper,
            "install_snapshot": lambda r: {"index": self.node.install_snapshot(
                r["index"], r.get("ceiling", 0), r.get("cutover", 0), r.get("rows", []))},
        }

    def _send(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        versions = req.get("versions", [PROTOCOL_VERSION])
        if PROTOCOL_VERSION not in versions:
            raise BadRequestError(f"no common protocol version: harness offers {versions}, "
                                  f"this node speaks {PROTOCOL_VERSION}")
        config = req.get("config") or {}
        durability = config.get("durability")
        if durability not in (None, "synced", "unsynced"):
            raise BadRequestError(f"unknown durability mode {durability!r}")
        if self.node.store is not None:
            raise AlreadyOpenError("hello must come before open")
        if durability is not None:  # absent: keep the mode given on the command line
            self.node.config = replace(self.node.config, sync=durability == "synced")
        # prestart (docs/protocol.md): nothing under the data directory is read, written or
        # held open before the first request (OSDisk only creates the directory when it is
        # missing; a Node reads its disk at open)
        return {"version": PROTOCOL_VERSION, "implementation": IMPLEMENTATION,
                "capabilities": self.node.config.capabilities(),
                "entry_kinds": sorted(ALL_KINDS), "prestart": True}

    def apply(self, req: dict[str, Any]) -> dict[str, Any]:
        outcome = self.node.apply(req["index"], req["entry"])
        return {"result": outcome.result}

    def snapshot_begin(self, req: dict[str, Any]) -> dict[str, Any]:
        sid, index = self.node.snapshot_begin()
        return {"snapshot": sid, "index": index}

    def snapshot_persist(self, req: dict[str, Any]) -> dict[str, Any]:
        res = self.node.snapshot_persist(req["snapshot"], req.get("site", "local"))
        return {"index": res.index, "pinned": res.pinned, "compacted": res.compacted}

    def hlc(self, req: dict[str, Any]) -> dict[str, Any]:
        ceiling, cutover = self.node.hlc()
        return {"ceiling": ceiling, "cutover": cutover}

    def last_applied_index(self, req: dict[str, Any]) -> dict[str, Any]:
        index, present = self.node.last_applied_index()
        return {"index": index, "present": present}

    def tamper(self, req: dict[str, Any]) -> dict[str, Any]:
        self.node.tamper(req["kind"])
        return {}

    def failpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            self.node.failpoints.arm(req["name"], req.get("action", "crash"),
                                     skip=req.get("skip", 0))
        except ValueError as exc:
            raise BadRequestError(str(exc)) from exc
        return {}

    def dispatch(self, req: object) -> dict[str, Any]:
        """Handle one decoded request and return its reply (SimulatedCrash propagates)."""
        rid = req.get("id") if isinstance(req, dict) else None
        op = req.get("op") if isinstance(req, dict) else None
        if op == "shutdown":
            self.node.close()
            return {"id": rid, "ok": True, "result": {}}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": {
                "code": "bad_request", "message": "a request must be a JSON object"}}
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            return {"id": rid, "ok": False,
                    "error": {"code": "unknown_op", "message": f"unknown op {op!r}"}}
        try:
            result = handler(req)
        except NodeError as exc:
            return {"id": rid, "ok": False, "error": exc.to_wire()}
        except (KeyError, TypeError) as exc:
            return {"id": rid, "ok": False, "error": {
                "code": "bad_request", "message": f"{op}: missing or malformed field: {exc}"}}
        return {"id": rid, "ok": True, "result": result}

    def handle(self, line: str) -> bool:
        """Handle one request line; return False when the server must stop."""
        try:
            req = json.loads(line)
        except ValueError as exc:
            self._send({"id": None, "ok": False,
                        "error": {"code": "bad_request", "message": f"not JSON: {exc}"}})
            return True
        try:
            reply = self.dispatch(req)
        except SimulatedCrash as crash:
            # A crash failpoint: die the way a SIGKILL would, with no reply and no cleanup.
            print(f"reference_impl: {crash}", file=sys.stderr, flush=True)
            os._exit(137)
        self._send(reply)
        return not (isinstance(req, dict) and req.get("op") == "shutdown")


def _log(message: str) -> None:
    print(f"reference_impl: {message}", file=sys.stderr, flush=True)


def serve_tcp(server: Server, listen: str) -> int:
    """Serve JSON lines over TCP (containers): one connection at a time, the node kept
    across connections, until a `shutdown` (or a crash failpoint, which exits at once)."""
    import socket

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen wants HOST:PORT, got {listen!r}")
    with socket.create_server((host.strip("[]") or "0.0.0.0", int(port)),
                              family=socket.AF_INET6 if ":" in host else socket.AF_INET) as lsock:
        _log(f"listening on {listen}")
        while True:
            conn, peer = lsock.accept()
            _log(f"connection from {peer[0]}:{peer[1]}")
            # an event and its reply are two writes: without this, Nagle holds the second
            # until the harness's delayed ACK
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn, conn.makefile("r", encoding="utf-8", newline="\n") as rfile, \
                    conn.makefile("w", encoding="utf-8", newline="\n") as wfile:
                server.out = wfile
                try:
                    for line in rfile:
                        if line.strip() and not server.handle(line):
                            _log("shutdown")
                            return 0
                except (OSError, ValueError) as exc:  # reset, or a write to a closed peer
                    _log(f"connection lost: {exc}")
            _log("connection closed; waiting for the next one")


def _mutants() -> dict[str, Any]:
    from .mutants import MUTANTS

    return dict(MUTANTS)


# The switches, for the command line the harness passes: parsed without argparse, whose
# import and first use (gettext, locale, shutil) are ~6 ms of every start of the server.
_SWITCHES = {"--unsynced": "unsynced", "--no-reader": "no_reader", "--no-writer": "no_writer",
             "--no-header-applier": "no_header_applier",
             "--pin-after-restore": "pin_after_restore"}


def _plain_options(argv: list[str]) -> SimpleNamespace | None:
    """`--data-dir DIR` once and switches, each spelled out; None for anything else (an
    abbreviation, --listen, --mutant, --help, a mistake), which argparse then parses, with
    its messages."""
    found: dict[str, Any] = dict.fromkeys(_SWITCHES.values(), False)
    data_dir = None
    rest = iter(argv)
    for arg in rest:
        if arg in _SWITCHES:
            found[_SWITCHES[arg]] = True
        elif arg == "--data-dir" and data_dir is None:
            data_dir = next(rest, None)
            if data_dir is None or data_dir.startswith("-"):
                return None
        else:
            return None
    if data_dir is None:
        return None
    return SimpleNamespace(data_dir=Path(data_dir), listen=None, mutant=None, **found)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m reference_impl.server", description=__doc__)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--unsynced", action="store_true", help="M2: unsynced applies")
    ap.add_argument("--no-reader", action="store_true")
    ap.add_argument("--no-writer", action="store_true")
    ap.add_argument("--no-header-applier", action="store_true")
    ap.add_argument("--pin-after-restore", action="store_true")
    ap.add_argument("--listen", metavar="HOST:PORT", default=None,
                    help="serve over TCP (one connection at a time) instead of stdin/stdout")
    ap.add_argument("--mutant", metavar="NAME",
                    help="run a deliberately broken variant (reference_impl/mutants.py, "
                         "docs/mutants.md)")
    args = ap.parse_args(argv)
    if args.mutant is not None and args.mutant not in _mutants():
        ap.error(f"argument --mutant: invalid choice: {args.mutant!r} (choose from "
                 f"{', '.join(sorted(_mutants()))})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _plain_options(sys.argv[1:] if argv is None else argv) or _parse(argv)
    config = NodeConfig(sync=not args.unsynced, reader=not args.no_reader,
                        writer=not args.no_writer, header_applier=not args.no_header_applier,
                        pin_after_restore=args.pin_after_restore)
    disk = OSDisk(args.data_dir)
    # the mutants module (~7 ms of a start) is imported only when one is asked for
    node = (_mutants()[args.mutant].make_node(disk, config) if args.mutant
            else Node(disk, config))
    server = Server(node, sys.stdout)
    if args.listen:
        return serve_tcp(server, args.listen)
    for line in sys.stdin:
        if line.strip() and not server.handle(line):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
