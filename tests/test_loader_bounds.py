"""Bounded suites (issue 13, item 4): every bound of the suite format rejected at its file:line.

A generator's `count` and `value_bytes`, cases per file, what a case generates in all, the
file's size, its YAML nodes (an alias counting what it repeats) and their depth. A file
over a bound is rejected where it crosses it, without reading (or expanding) the rest, so
neither a file of 100,000 cases nor "billion laughs" costs the loader more than one case.
Memory is measured with tracemalloc (Python allocations), never time.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.loader import SuiteError, discover, limits, load_document, load_schema, load_suite

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


class Catalog:
    def by_id(self, id: str) -> object:
        if id != "SP-001":
            raise KeyError(id)
        return id


def problems_of(path: Path) -> list[tuple[int, int, str]]:
    with pytest.raises(SuiteError) as info:
        load_suite(path, Catalog())
    assert all(loc.file == str(path) for loc, _ in info.value.problems)
    return [(loc.line, loc.column, msg) for loc, msg in info.value.problems]


def suite_file(tmp_path: Path, steps: list[str], *, name: str = "t") -> Path:
    """A one-case suite whose steps are the given lines (flow style); step k is on line 7+k."""
    lines = [f"suite: {name}", "description: d", "cases:", "  - id: c", "    description: d",
             "    requirements: [SP-001]", "    steps:"] + [f"      - {s}" for s in steps]
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def column(path: Path, line: int, needle: str) -> int:
    """The 1-based column where `needle` starts on `line` of `path`."""
    return path.read_text().splitlines()[line - 1].index(needle) + 1


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The peak of Python allocations while `fn` runs."""
    tracemalloc.start()
    try:
        with contextlib.suppress(SuiteError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- the schema's


@pytest.mark.parametrize("step, value, message", [
    ("apply: {generate: {kind: add, count: 1000000000}}", "1000000000",
     "generate.count must be <= 10000, got 1000000000 (docs/suites.md, Limits)"),
    ("apply: {generate: {kind: put, count: 1, value_bytes: 100000000000}}", "100000000000",
     "generate.value_bytes must be <= 8388608, got 100000000000 (docs/suites.md, Limits)"),
    ("install_snapshot: {generate: {kind: put, count: 10001}}", "10001",
     "generate.count must be <= 10000, got 10001"),
])
def test_a_generator_over_its_bound_is_rejected_at_the_field(
        tmp_path: Path, step: str, value: str, message: str) -> None:
    path = suite_file(tmp_path, ["open: {}", step])
    [(line, col, msg)] = [p for p in problems_of(path) if "capability" not in p[2]]
    assert (line, col) == (9, column(path, 9, value))
    assert msg.startswith(f"case 'c' step 2 ({step.split(':')[0]}): {message}")


def test_a_generator_at_its_bound_is_accepted(tmp_path: Path) -> None:
    path = suite_file(tmp_path, ["open: {}", "apply: {generate: {kind: add, count: 10000}}",
                                 "apply: {generate: {kind: put, count: 1, value_bytes: 8388608}}"])
    steps = load_suite(path, Catalog()).cases[0].steps
    assert steps[1].args["generate"]["count"] == 10_000


def test_what_a_case_generates_in_all_is_bounded(tmp_path: Path) -> None:
    # ten generators at their bound reach the case's; the eleventh crosses it
    steps = ["open: {}"] + ["apply: {generate: {kind: noop, count: 10000}}"] * 11
    assert [(line, msg) for line, _, msg in problems_of(suite_file(tmp_path, steps))] == [
        (19, "case 'c' step 12 (apply): the case's generators produce 110,000 entries up to "
             "here; a case may generate 100,000 in all (docs/suites.md, Limits): split it into "
             "several cases")]
    big = ["open: {}", "apply: {generate: {kind: put, count: 8, value_bytes: 8388608}}",
           "apply: {generate: {kind: put, count: 1, value_bytes: 1}}"]
    path = suite_file(tmp_path, big)
    assert [(line, col) for line, col, _ in problems_of(path)] == [
        (10, column(path, 10, "1}}"))]
    load_suite(suite_file(tmp_path, big[:2]), Catalog())  # 64 MiB exactly: accepted


def test_cases_per_file_stop_at_the_first_case_over(tmp_path: Path) -> None:
    """The case past the bound is the problem, at its line; the loader stops there: the
    YAML error after it is never reached."""
    n = limits.max_cases()
    lines = ["suite: many", "description: d", "cases:"]
    lines += [f"  - {{id: c{i}, description: d, requirements: [SP-001], steps: [{{open: {{}}}}]}}"
              for i in range(n + 1)]
    lines += ["  - [this is not: valid YAML"]
    path = tmp_path / "many.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert problems_of(path) == [(n + 4, 5, f"more than {n:,} cases in one file; a suite file "
                                            f"may have {n:,} (docs/suites.md, Limits): split it "
                                            "into several files")]
    path.write_text("\n".join(lines[:-2]) + "\n")  # exactly the bound
    assert len(load_suite(path, Catalog()).cases) == n


def test_a_file_of_100000_cases_is_rejected_within_bounded_memory(tmp_path: Path) -> None:
    """Before the bounds, such a file (7.8 MB) loaded with a peak RSS of 1.3 GB (and 118 MB
    of realistic cases went to MemoryError); now the loader stops at case 1001."""
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write("suite: huge\ndescription: d\ncases:\n")
        for i in range(100_000):
            f.write(f"  - {{id: c{i}, description: d, requirements: [SP-001], "
                    "steps: [{open: {}}]}\n")
    assert path.stat().st_size < limits.MAX_FILE_BYTES
    peak = peak_bytes(lambda: load_suite(path, Catalog()))
    # the text itself (7.8 MB, bytes and str) and at most 1000 small cases
    assert peak < 48 * MiB, peak
    assert problems_of(path)[0][:2] == (limits.max_cases() + 4, 5)


def test_loader_memory_grows_with_the_case_not_with_the_file(tmp_path: Path) -> None:
    """What a load allocates beyond the suite it returns hardly grows with the number of
    cases: the YAML nodes, marks and locations of one case at a time. (When the whole
    file was composed, constructed and located at once, it grew by ~34 kB per case of
    this size; what is left, ~1.5 kB, is the plain data of each case, which the suite's
    steps share, kept until the suite is built.)"""
    def transient(n: int) -> int:
        path = tmp_path / f"s{n}.yaml"
        lines = [f"suite: s{n}", "description: d", "cases:"]
        for i in range(n):
            lines += [f"  - id: c{i}", "    description: d", "    requirements: [SP-001]",
                      "    steps:", "      - open: {}",
                      "      - apply: {entries: [{kind: raw, ts: 1, ops: [{op: add, key: n, "
                      "delta: 1}]}, {kind: noop}]}",
                      "      - get: {key: n, expect: {value: '1'}}"]
        path.write_text("\n".join(lines) + "\n")
        text = path.stat().st_size
        tracemalloc.start()
        try:
            suite = load_suite(path, Catalog())
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(suite.cases) == n
        return peak - kept - 2 * text  # (the file's text, as bytes and as str)

    load_suite(suite_file(tmp_path, ["open: {}"], name="warm"), Catalog())  # schema, caches
    small, large = transient(40), transient(400)
    assert (large - small) / 360 < 4096, (small, large)


# --------------------------------------------------------------------------- the reader's


def test_a_file_over_the_size_bound_is_rejected_before_it_is_parsed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = suite_file(tmp_path, ["open: {}"])
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", path.stat().st_size - 1)
    size = path.stat().st_size
    assert problems_of(path) == [(1, 1, f"the file is {size:,} bytes; a suite file may be at most "
                                        f"{size - 1:,} bytes (docs/suites.md, Limits): split it "
                                        "into several files")]
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", size)
    load_suite(path, Catalog())


def test_billion_laughs_is_rejected_at_the_alias_not_expanded(tmp_path: Path) -> None:
    lines = ["suite: bomb", "description: d", 'a0: &a0 ["lol","lol","lol","lol","lol","lol",'
                                              '"lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 9**9 = 387,420,489 strings once expanded
    peak = peak_bytes(lambda: load_suite(path, Catalog()))
    assert peak < 8 * MiB, peak  # what expanding 1,000,000 nodes used to cost: ~300 MB
    [(line, col, message)] = problems_of(path)
    # a4 holds 66,430 nodes once expanded, a0..a4 74,742 with the rest: the third *a4 of
    # a5 crosses 250,000
    assert (line, col) == (8, 1 + len("a5: &a5 [") + 2 * len("*a4,"))
    assert message.startswith("the file has more than 250,000 YAML nodes once alias *a4 is "
                              "expanded (an alias counts every node it repeats)")
    assert message.endswith("repeat less through aliases, or split it into several files")


def test_aliases_within_the_bounds_still_work(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("suite: t\ndescription: d\ncases: &all\n"
                    "  - {id: c, description: d, requirements: [SP-001], steps: &s [{open: {}}]}\n"
                    "  - {id: e, description: d, requirements: [SP-001], steps: *s}\n")
    suite = load_suite(path, Catalog())  # (an anchored `cases` is read whole)
    assert [(c.id, [s.kind for s in c.steps]) for c in suite.cases] == [
        ("c", ["open"]), ("e", ["open"])]
    assert suite.cases[1].location.line == 5


def test_a_recursive_alias_is_rejected(tmp_path: Path) -> None:
    path = suite_file(tmp_path, ["open: {expect: &x {a: [*x]}}"])
    assert problems_of(path) == [(8, column(path, 8, "*x"), "alias *x is inside the node it "
                                                            "names: a suite file cannot "
                                                            "contain itself")]


def test_nodes_per_case_and_per_file_are_bounded(tmp_path: Path) -> None:
    many = "[" + ",".join(["a"] * limits.MAX_CASE_NODES) + "]"
    [(line, _, message)] = problems_of(suite_file(tmp_path, [f"scan: {{expect: {{items: {many}}}}}"]))
    assert line == 8
    assert message.startswith("the case (it starts at line 4) has more than 25,000 YAML nodes; "
                              "a case may have 25,000")
    per_case = "[" + ",".join(["a"] * (limits.MAX_CASE_NODES // 2)) + "]"
    lines = ["suite: t", "description: d", "cases:"]
    lines += [f"  - {{id: c{i}, description: d, requirements: [SP-001], "
              f"steps: [{{scan: {{expect: {{items: {per_case}}}}}}}]}}" for i in range(21)]
    path = tmp_path / "t.yaml"
    path.write_text("\n".join(lines) + "\n")
    [(line, _, message)] = problems_of(path)
    assert line == 23  # the 20th case brings the file to 250,000 and a few
    assert message.startswith("the file has more than 250,000 YAML nodes; a suite file may "
                              "have 250,000")


def test_nesting_is_bounded(tmp_path: Path) -> None:
    deep = "[" * 100 + "]" * 100
    [(line, col, message)] = problems_of(suite_file(tmp_path, [f"scan: {{expect: {{items: {deep}}}}}"]))
    # the top mapping, the cases list, the case, steps, the step, scan's args, expect:
    # 7 levels above the first [
    path = tmp_path / "t.yaml"
    assert (line, col) == (8, column(path, 8, "[") + limits.MAX_DEPTH - 7)
    assert message == "nested more than 64 levels deep; a suite file may nest 64 (docs/suites.md, Limits)"


def test_validate_names_each_bounded_input(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`conformance validate` on the inputs of issue 13: exit 2, one FILE:LINE:COL each."""
    count = suite_file(tmp_path, ["apply: {generate: {kind: add, count: 1000000000}}"], name="a")
    size = suite_file(tmp_path, ["apply: {generate: {kind: put, count: 1, "
                                 "value_bytes: 100000000000}}"], name="b")
    assert main(["validate", str(count), str(size)]) == 2
    out = "".join(capsys.readouterr())
    at = f"{count}:8:{column(count, 8, '1000000000')}"
    assert f"{at}: case 'c' step 1 (apply): generate.count must be <= 10000" in out
    at = f"{size}:8:{column(size, 8, '100000000000')}"
    assert f"{at}: case 'c' step 1 (apply): generate.value_bytes must be <= 8388608" in out


def test_the_suites_and_fixtures_pass_every_bound_with_margin() -> None:
    """The bounds are far above what the project's own files use (docs/suites.md, Limits)."""
    files = discover(ROOT / "suites") + discover(ROOT / "fixtures" / "regressions")
    assert len(files) > 30
    largest: dict[str, int] = {}

    def note(what: str, n: int) -> None:
        largest[what] = max(largest.get(what, 0), n)

    def walk(value: Any, depth: int) -> int:
        note("depth", depth)
        if isinstance(value, dict):
            if isinstance(value.get("generate"), dict):
                note("count", value["generate"]["count"])
                note("value_bytes", value["generate"].get("value_bytes", 0))
            return 1 + sum(walk(v, depth + 1) for v in value.values())
        if isinstance(value, list):
            return 1 + sum(walk(v, depth + 1) for v in value)
        return 1

    for f in files:
        note("file bytes", f.stat().st_size)
        data = load_document(f).data
        note("cases", len(data["cases"]))
        note("case nodes", max(walk(c, 3) for c in data["cases"]))
        note("nodes", walk(data, 1))
    generator = load_schema()["definitions"]["generator"]["properties"]
    bounds = {"file bytes": limits.MAX_FILE_BYTES, "cases": limits.max_cases(),
              "nodes": limits.MAX_NODES, "case nodes": limits.MAX_CASE_NODES,
              "depth": limits.MAX_DEPTH, "count": generator["count"]["maximum"],
              "value_bytes": generator["value_bytes"]["maximum"]}
    for what, bound in bounds.items():
        assert bound >= 4 * largest[what], (what, bound, largest[what])
