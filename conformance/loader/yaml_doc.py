"""The marked YAML loader: YAML nodes in, plain data with the location of every node out.

`SuiteYamlLoader` is a safe YAML loader (YAML 1.2 core scalars, no object tags) that
records where every mapping, key, value and list item starts and reports repeated keys.
It composes nodes in Python (`compose_node`), one at a time, so that reader.py can read a
file a case at a time; and it counts what it composes, each alias as every node it
repeats, so that a file over the limits (limits.py) stops at the node that crosses one
(`LimitExceeded`), before anything is expanded. `_Plainer` turns a constructed tree into
plain JSON-like data plus the location of every JSON path (`Document`), rejecting
non-JSON values; `_yaml_problem` turns a YAML error into a problem with a
file:line:column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conformance.cases import Location

from . import limits
from .problems import JsonPath, Problem

# --------------------------------------------------------------------------- YAML


class _MarkedDict(dict[Any, Any]):
    """A mapping that remembers where it, each of its keys and each of its values start."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[Any, yaml.Mark] = {}
        self.value_marks: dict[Any, yaml.Mark] = {}


class _MarkedList(list[Any]):
    """A sequence that remembers where it and each of its items start."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[yaml.Mark] = []


_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_TAG = "tag:yaml.org,2002:"


# libyaml's parser when PyYAML has it (4x faster on the suites); same nodes and marks.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LimitExceeded(Exception):
    """The file crosses a bound of limits.py at `mark`; `message` says which and what to do."""

    def __init__(self, mark: Any, message: str) -> None:  # (a PyYAML or a libyaml Mark)
        super().__init__(message)
        self.mark, self.message = mark, message


def _composed(node: Node | None) -> Node:
    assert node is not None  # (Composer returns a node for every event it accepts)
    return node


class SuiteYamlLoader(_SafeLoader, Composer):  # type: ignore[valid-type,misc]
    """A SafeLoader that records the start mark of every mapping, sequence, key and value.

    Scalars resolve as in YAML 1.2's core schema, as yaml-language-server does:
    only true/false are booleans (`yes`, `no`, `on`, `off` stay strings), `017` is
    17, and dates stay strings. Mappings with a repeated key are reported in
    `duplicate_keys` rather than silently keeping the last value. Only the plain
    data tags of the safe loader construct anything; `!!python/...` is an error.

    Nodes are composed by PyYAML's Python composer over libyaml's events (the C composer
    builds a whole document at once): `compose_node` composes one node, counting it in
    `nodes` and, while `case_nodes` is not None, in `case_nodes`; an alias counts the
    nodes it repeats. Crossing `limits.MAX_NODES`, `limits.MAX_CASE_NODES` or
    `limits.MAX_DEPTH` raises `LimitExceeded` at that node.
    """

    def __init__(self, stream: str) -> None:
        _SafeLoader.__init__(self, stream)
        self.anchors: dict[Any, Node] = {}  # (Composer's state, which CSafeLoader lacks)
        self.duplicate_keys: list[tuple[yaml.Mark, str]] = []
        self.nodes = 0
        self.case_nodes: int | None = None
        self.case_mark: Any = None  # where the case being counted starts
        self.depth = 0  # how deeply the node being composed nests
        self._sizes: dict[int, int] = {}  # id(anchored node) -> its nodes, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # (an undefined alias is the composer's own error)
                size = self._sizes.get(id(target))
                if size is None:
                    raise LimitExceeded(event.start_mark,
                                        f"alias *{event.anchor} is inside the node it names: "
                                        "a suite file cannot contain itself")
                self.count_node(event.start_mark, size, event.anchor)
            return _composed(super().compose_node(parent, index))
        self.count_node(event.start_mark)
        if self.depth >= limits.MAX_DEPTH:
            raise LimitExceeded(event.start_mark,
                                f"nested more than {limits.MAX_DEPTH} levels deep; a suite "
                                f"file may nest {limits.MAX_DEPTH} (docs/suites.md, Limits)")
        before = self.nodes
        self.depth += 1
        try:
            node = _composed(super().compose_node(parent, index))
        finally:
            self.depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = self.nodes - before + 1
        return node

    def count_node(self, mark: Any, n: int = 1, alias: str | None = None) -> None:
        """Count `n` nodes composed at `mark` (an alias: the nodes it repeats)."""
        self.nodes += n
        via, fix = "", "split it into several {}"
        if alias is not None:  # (an alias bomb is one: no more nodes, but fewer aliases)
            via = f" once alias *{alias} is expanded (an alias counts every node it repeats)"
            fix = "repeat less through aliases, or split it into several {}"
        if self.nodes > limits.MAX_NODES:
            raise LimitExceeded(mark, f"the file has more than {limits.MAX_NODES:,} YAML nodes"
                                      f"{via}; a suite file may have {limits.MAX_NODES:,} "
                                      f"(docs/suites.md, Limits): {fix.format('files')}")
        if self.case_nodes is not None:
            self.case_nodes += n
            if self.case_nodes > limits.MAX_CASE_NODES:
                start = (f" (it starts at line {self.case_mark.line + 1})"
                         if self.case_mark is not None else "")
                raise LimitExceeded(mark, f"the case{start} has more than "
                                          f"{limits.MAX_CASE_NODES:,} YAML nodes{via}; a case "
                                          f"may have {limits.MAX_CASE_NODES:,} (docs/suites.md, "
                                          f"Limits): {fix.format('cases')}")


SuiteYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in (_TAG + "bool", _TAG + "int", _TAG + "float", _TAG + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SuiteYamlLoader.add_implicit_resolver(_TAG + "bool", _BOOL_RE, list("tTfF"))
SuiteYamlLoader.add_implicit_resolver(_TAG + "int", _INT_RE, list("-+0123456789"))
SuiteYamlLoader.add_implicit_resolver(_TAG + "float", _FLOAT_RE, list("-+0123456789."))


def _construct_int(loader: SuiteYamlLoader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node)
    try:
        return int(text, 0) if text[:2] in ("0o", "0x", "0b") else int(text, 10)
    except ValueError:
        raise ConstructorError(None, None, f"invalid integer {text!r}", node.start_mark) from None


def _construct_map(loader: SuiteYamlLoader, node: MappingNode) -> Iterator[_MarkedDict]:
    data = _MarkedDict(node.start_mark)
    yield data
    seen: dict[tuple[str, str], yaml.Mark] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag != _TAG + "merge":
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                first = seen[ident]
                loader.duplicate_keys.append(
                    (key_node.start_mark,
                     f"duplicate key {key_node.value!r} (first at line {first.line + 1})"))
            else:
                seen[ident] = key_node.start_mark
    data.update(loader.construct_mapping(node))  # also flattens `<<` merge keys into node.value
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        try:
            data.key_marks[key] = key_node.start_mark
            data.value_marks[key] = value_node.start_mark
        except TypeError:  # unhashable key: construct_mapping has already refused it
            pass


def _construct_seq(loader: SuiteYamlLoader, node: SequenceNode) -> Iterator[_MarkedList]:
    data = _MarkedList(node.start_mark)
    yield data
    data.extend(loader.construct_sequence(node))
    data.item_marks = [child.start_mark for child in node.value]


SuiteYamlLoader.add_constructor(_TAG + "int", _construct_int)
SuiteYamlLoader.add_constructor(_TAG + "map", _construct_map)
SuiteYamlLoader.add_constructor(_TAG + "seq", _construct_seq)


# --------------------------------------------------------------------------- documents


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


@dataclass
class Document:
    """A parsed suite file, or one case of it (reader.py): plain JSON-like data plus where
    each node of it came from, by JSON path from the top of the file."""

    file: str
    data: Any
    node_locations: dict[JsonPath, Location] = field(default_factory=dict)
    key_locations: dict[JsonPath, Location] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def location(self, path: Sequence[str | int]) -> Location:
        """Where the node at `path` starts (or its nearest ancestor that exists)."""
        p = tuple(path)
        while p not in self.node_locations and p:
            p = p[:-1]
        return self.node_locations.get(p, Location(self.file, 1, 1))

    def key_location(self, path: Sequence[str | int]) -> Location:
        """Where the key of the mapping entry at `path` starts (the node itself if no key)."""
        return self.key_locations.get(tuple(path)) or self.location(path)


class _Plainer:
    """Turns the marked YAML tree into plain dicts and lists, recording locations."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def loc(self, mark: yaml.Mark) -> Location:
        return _location(self.doc.file, mark)

    def run(self, obj: Any, path: JsonPath, mark: yaml.Mark) -> Any:
        # (the composer bounds what this walks: nodes, aliases expanded, and depth)
        self.doc.node_locations[path] = self.loc(mark)
        if isinstance(obj, _MarkedDict):
            out: dict[str, Any] = {}
            for key, value in obj.items():
                key_mark = obj.key_marks.get(key, obj.mark)
                if not isinstance(key, str):
                    self.doc.problems.append(
                        (self.loc(key_mark), f"mapping keys must be strings, got {key!r}; quote it"))
                    continue
                self.doc.key_locations[(*path, key)] = self.loc(key_mark)
                out[key] = self.run(value, (*path, key), obj.value_marks.get(key, key_mark))
            return out
        if isinstance(obj, _MarkedList):
            marks = obj.item_marks
            return [self.run(item, (*path, i), marks[i] if i < len(marks) else mark)
                    for i, item in enumerate(obj)]
        if obj is None or isinstance(obj, str | bool | int):
            return obj
        if isinstance(obj, float):
            if not math.isfinite(obj):
                self.doc.problems.append((self.loc(mark), f"{obj} is not a JSON number"))
            return obj
        self.doc.problems.append(
            (self.loc(mark), f"not a JSON value ({type(obj).__name__}); use a string"))
        return str(obj)


def _yaml_problem(file: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        tag = re.search(r"constructor for the tag '([^']*)'", problem)
        if tag:
            message = (f"YAML tag {tag.group(1)!r} is not allowed: "
                       "suite files hold plain data only")
        else:
            message = f"invalid YAML: {problem}"
            if exc.context and exc.context_mark is not None and exc.problem:
                message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        if mark is not None:
            return _location(file, mark), message
        return Location(file, 1, 1), message
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        before = text[:position]
        line = before.count("\n") + 1
        column = position - (before.rfind("\n") + 1) + 1
        return Location(file, line, column), f"invalid YAML: {exc}"
    return Location(file, 1, 1), f"invalid YAML: {exc}"
