"""Every reply and event the node sends, checked against the schemas in wire/schemas/.

One draft-07 schema per op's result (`<op>.json`), one for the envelope every reply shares
(`reply.json`: id, ok, result or error) and one for the `cold_start` event. They are compiled
with fastjsonschema on first use: both checks of a snapshot_persist reply cost 2.5 us against
84 us with jsonschema (CPU time, measured on a loaded 2-core machine). A reply that
breaks one raises `ReplyViolation` naming the op, the request id, the field, its value and
the rule, so that the oracle downstream can trust every type it reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from ..adapters.base import ProtocolViolation
from .decode import quote

Validator = Callable[[Any], Any]

# Ops whose result has a schema (an op outside the protocol, e.g. a test's, gets the envelope).
RESULT_SCHEMAS = ("hello", "open", "apply", "snapshot_begin", "snapshot_persist", "get", "scan",
                  "digest", "hlc", "last_applied_index", "set_durable_applied_index",
                  "failpoint", "tamper", "install_snapshot", "shutdown")
_VALUE_LIMIT = 100  # characters of an offending value quoted


class ReplyViolation(ProtocolViolation):
    """A line from the node that breaks the protocol, while `request` waited for its reply.

    `culprit_id` is the id of the request whose step is to blame: the waiting one, or an
    earlier one when the line is a stray second reply to it. `reply` is the decoded object
    when the line decoded to one.
    """

    def __init__(self, request: dict[str, Any], what: str, line: bytes | None = None, *,
                 reply: dict[str, Any] | None = None, culprit_id: int | None = None) -> None:
        op, rid = request.get("op"), request.get("id")
        super().__init__(f"{op} (id {rid}): {what}" + (f": {quote(line)}" if line else ""))
        self.request = request
        self.reply = reply
        self.what = what
        self.culprit_id: int = request["id"] if culprit_id is None else culprit_id


def schema_text(name: str) -> str:
    return resources.files(__package__).joinpath(f"schemas/{name}.json").read_text()


@cache
def validator(name: str) -> Validator:
    compiled: Validator = fastjsonschema.compile(json.loads(schema_text(name)))
    return compiled


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_LIMIT else text[:_VALUE_LIMIT] + "..."


def describe(exc: fastjsonschema.JsonSchemaValueException, prefix: str, schema: str) -> str:
    """A schema failure as `field = value: rule (schema)`, the field as `result.index`."""
    inner = (exc.name or "data").removeprefix("data")  # fastjsonschema: data.items[1][0]
    path = (prefix + inner if prefix else inner.removeprefix(".")) or "the reply"
    rule, defn, value = exc.rule, exc.rule_definition, exc.value
    if rule == "required" and isinstance(value, dict):
        missing = [k for k in defn if k not in value]
        field = repr(missing[0]) if missing else repr(defn)
        return f"{path}: required field {field} is missing ({schema})"
    if rule == "type":
        how = f"must be {' or '.join(defn) if isinstance(defn, list) else defn}"
    elif rule == "enum":
        how = f"must be one of {defn}"
    elif rule == "const":
        how = f"must be {defn!r}"
    elif rule == "minimum":
        how = f"must be >= {defn}"
    elif rule == "maximum":
        how = f"must be <= {defn}" + (" (an unsigned 64-bit integer)" if defn == 2**64 - 1
                                       else "")
    elif rule == "pattern":
        how = f"must match {defn}"
    elif rule == "minItems":
        how = f"must have at least {defn} items"
    elif rule == "items":
        how = "must have no more items than the schema lists"
    else:
        how = str(exc.message).replace("data", path, 1)
    return f"{path} = {_value(value)}: {how} ({schema})"


def check_reply(request: dict[str, Any], msg: dict[str, Any], line: bytes | None = None) -> None:
    """`msg` (a line with an `id`) is the well-formed reply to `request`, or ReplyViolation."""
    rid, got = request["id"], msg["id"]
    if type(got) is not int or got != rid:
        if type(got) is int and 0 < got < rid:
            raise ReplyViolation(request, f"a reply to the earlier request {got} (a second "
                                 "reply to it, or a stray line), while waiting for this one",
                                 line, reply=msg, culprit_id=got)
        raise ReplyViolation(request, f"reply id {got!r} does not match request id {rid}",
                             line, reply=msg)
    name = "reply"
    try:
        validator("reply")(msg)
        if msg["ok"] and request["op"] in RESULT_SCHEMAS:
            name = request["op"]
            validator(name)(msg["result"])
    except fastjsonschema.JsonSchemaValueException as exc:
        where = "" if name == "reply" else "result"
        raise ReplyViolation(request, describe(exc, where, f"schemas/{name}.json"), line,
                             reply=msg) from None


def check_event(request: dict[str, Any], msg: dict[str, Any], line: bytes | None = None) -> None:
    """`msg` (a line without an `id`) is an event: a string `event`, and a `cold_start` one
    with the open result's eight fields."""
    name = msg.get("event")
    if not isinstance(name, str):
        raise ReplyViolation(request, "neither a reply (no 'id') nor an event (no string "
                             "'event')", line)
    if name == "cold_start":
        try:
            validator("cold_start_event")(msg)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise ReplyViolation(request, describe(exc, "cold_start event",
                                                   "schemas/cold_start_event.json"),
                                 line) from None
