"""Reading a suite file a case at a time, within the bounds of limits.py.

`SuiteReader(path)` reads the file (at most `limits.MAX_FILE_BYTES`) and, iterated, yields
one `Document` per case as soon as the case is composed, constructed and located: the
loader validates and keeps what it needs of it (load.py), and the case's YAML nodes,
marks and locations go before the next case is read. So the loader's memory grows with
the largest case rather than with the file, and a file over a bound stops where it
crosses it: the case past `cases.maxItems`, the node or the alias past the node limits.
After the iteration, `reader.top` is the top-level mapping (`suite`, `description`,
`fixture`, and `cases` holding every case read).

Each case `Document` has the JSON paths of the whole file (`("cases", i, ...)`), and its
`data` is a mapping whose `cases` list holds that case at `i`, so that every check and
message works on it as on the whole file. Only a literal `cases:` sequence is read case by
case; a `cases` that comes from an alias or a merge key is read whole (it is bounded by
the node limits all the same), and its cases are then yielded one by one.

`load_document(path)` reads a whole file into one `Document` (for tools and tests).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conformance.cases import Location

from . import limits
from .problems import JsonPath, SuiteError
from .yaml_doc import Document, LimitExceeded, SuiteYamlLoader, _location, _Plainer, _yaml_problem

_CASES: JsonPath = ("cases",)


def read_text(path: Path) -> str:
    """The file's text; `SuiteError` when it cannot be read, is not UTF-8 or is too large."""
    file = str(path)
    raw = bytearray()
    try:
        with open(path, "rb") as f:
            # in chunks: f.read(MAX_FILE_BYTES + 1) would allocate all of it up front
            while len(raw) <= limits.MAX_FILE_BYTES and (chunk := f.read(1 << 16)):
                raw += chunk
    except OSError as exc:
        raise SuiteError([(Location(file, 1, 1), f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > limits.MAX_FILE_BYTES:
        try:
            size = f"{Path(path).stat().st_size:,} bytes"
        except OSError:
            size = "larger"
        raise SuiteError([(Location(file, 1, 1),
                           f"the file is {size}; a suite file may be at most "
                           f"{limits.MAX_FILE_BYTES:,} bytes (docs/suites.md, Limits): split "
                           "it into several files")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError([(Location(file, 1, 1), f"not UTF-8 text: {exc.reason}")]) from None


class SuiteReader:
    """A suite file, read a case at a time (module doc). Iterate it once for `(i, case
    Document)` pairs; then `top` is the top level. Raises `SuiteError` for a file that
    cannot be read, is not YAML, or crosses a bound of limits.py."""

    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self.text = read_text(Path(path))
        self.top = Document(self.file, None, {(): Location(self.file, 1, 1)})
        self._cases: list[Any] = []  # every case read, as plain data
        self._shell: dict[str, Any] = {"cases": self._cases}  # a case Document's data

    def __iter__(self) -> Iterator[tuple[int, Document]]:
        loader = SuiteYamlLoader(self.text)
        try:
            yield from self._read(loader)
        except yaml.YAMLError as exc:
            raise SuiteError([_yaml_problem(self.file, exc, self.text)]) from None
        except LimitExceeded as exc:
            raise SuiteError([(_location(self.file, exc.mark), exc.message)]) from None
        finally:
            loader.dispose()
        self.top.problems += [(_location(self.file, mark), msg)
                              for mark, msg in loader.duplicate_keys]

    def _read(self, loader: SuiteYamlLoader) -> Iterator[tuple[int, Document]]:
        loader.get_event()  # the stream start
        if loader.check_event(StreamEndEvent):
            return  # an empty file: `top.data` stays None
        document = loader.get_event()
        streamed = False
        root: Node
        if loader.check_event(MappingStartEvent):
            root, streamed = yield from self._top_mapping(loader)
        else:
            root = loader.compose_node(None, None)
        loader.get_event()  # the document end
        if not loader.check_event(StreamEndEvent):
            raise ComposerError("expected a single document in the stream",
                                document.start_mark, "but found another document",
                                loader.peek_event().start_mark)
        self.top.data = _Plainer(self.top).run(loader.construct_document(root), (),
                                               root.start_mark)
        data = self.top.data
        if streamed and isinstance(data, dict):
            data["cases"] = self._cases
        elif isinstance(data, dict) and isinstance(data.get("cases"), list):
            # `cases` from an alias or a merge key: read whole; its cases, one by one
            for i in range(len(data["cases"])):
                yield i, Document(self.file, data, self.top.node_locations,
                                  self.top.key_locations)

    def _top_mapping(self, loader: SuiteYamlLoader
                     ) -> Generator[tuple[int, Document], None, tuple[MappingNode, bool]]:
        """Compose the top-level mapping, reading a literal `cases:` sequence case by case;
        return it, holding `cases: []` in place of the cases it yielded, and whether it
        did. (What Composer.compose_mapping_node does, with a stop at each case.)"""
        start = loader.get_event()
        tag = start.tag if start.tag not in (None, "!") else \
            loader.resolve(MappingNode, None, start.implicit)
        root = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if start.anchor is not None:
            loader.anchors[start.anchor] = root
        loader.count_node(start.start_mark)
        self.top.node_locations[()] = _location(self.file, start.start_mark)
        streamed = False
        loader.depth += 1
        while not loader.check_event(MappingEndEvent):
            key = loader.compose_node(root, None)
            if (not streamed and isinstance(key, ScalarNode) and key.value == "cases"
                    and loader.check_event(SequenceStartEvent)
                    and loader.peek_event().anchor is None):
                streamed = True
                self.top.key_locations[_CASES] = _location(self.file, key.start_mark)
                value: Node = yield from self._cases_sequence(loader)
            else:
                value = loader.compose_node(root, key)
            root.value.append((key, value))
        loader.depth -= 1
        root.end_mark = loader.get_event().end_mark
        return root, streamed

    def _cases_sequence(self, loader: SuiteYamlLoader
                        ) -> Generator[tuple[int, Document], None, SequenceNode]:
        start = loader.get_event()
        tag = start.tag if start.tag not in (None, "!") else \
            loader.resolve(SequenceNode, None, start.implicit)
        placeholder = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        loader.count_node(start.start_mark)
        cases_at = _location(self.file, start.start_mark)
        loader.depth += 1
        i = 0
        while not loader.check_event(SequenceEndEvent):
            mark = loader.peek_event().start_mark
            if i == limits.max_cases():
                raise LimitExceeded(mark, f"more than {limits.max_cases():,} cases in one file; "
                                          f"a suite file may have {limits.max_cases():,} "
                                          "(docs/suites.md, Limits): split it into several "
                                          "files")
            loader.case_nodes, loader.case_mark = 0, mark
            node = loader.compose_node(placeholder, i)
            loader.case_nodes = loader.case_mark = None
            doc = Document(self.file, self._shell, {(): self.top.node_locations[()],
                                                    _CASES: cases_at},
                           {_CASES: self.top.key_locations.get(_CASES, cases_at)})
            self._cases.append(_Plainer(doc).run(loader.construct_document(node),
                                                 ("cases", i), node.start_mark))
            del node  # (the case's YAML nodes go now, not when the next case is read)
            yield i, doc
            i += 1
        loader.depth -= 1
        placeholder.end_mark = loader.get_event().end_mark
        return placeholder


def load_document(path: Path) -> Document:
    """A whole suite file as one `Document` (the loader reads it a case at a time instead:
    `SuiteReader`). Raises `SuiteError` as `SuiteReader` does."""
    reader = SuiteReader(path)
    cases = [doc for _, doc in reader]
    top = reader.top
    for doc in cases:
        if doc.node_locations is not top.node_locations:
            top.node_locations.update(doc.node_locations)
            top.key_locations.update(doc.key_locations)
            top.problems += doc.problems
    return top
