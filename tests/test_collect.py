"""`conformance collect` (conformance/explore/collect.py): many workers' fixtures, one place.

One fixture per violated requirement and implementation (the fewest steps, ties by file
name, whatever the order of the workers), identical files collapsed, `not-green/` gathered
apart, collecting again the same as collecting at once, and usage errors that name the path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.explore.collect import CollectError, collect, command, main, read_fixture

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "fixtures" / "regressions"


def fixture(directory: Path, name: str, *, guard: str = "CO-002", steps: int = 3,
            catches: str = "delete-prefix-not-bundling-meta", seed: int = 0,
            modeline: bool = True) -> Path:
    """A fixture file as conformance explore writes it (fixtures.fixture_text's layout)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ([f"# yaml-language-server: $schema=../../somewhere/{directory.name}/suite.schema.json"]
             if modeline else [])
    lines += [
        f"suite: {name}",
        f'description: "Found by conformance explore: it violates {guard}."',
        "fixture:",
        f'  catches: ["{catches}"]',
        f"  guards: [{guard}]",
        f"  seed: {seed}",
        f'  implementation: "reference_impl 0.1.0 (in-process mutant {catches})"',
        '  hypothesis_version: "6.170.17"',
        f'  notes: "{steps} steps"',
        "cases:",
        f"  - id: explore-{name}",
        f"    requirements: [{guard}]",
        "    tags: [explore]",
        "    steps:",
        "      - open: {}",
    ]
    lines += ["      - apply: {entry: {kind: noop}}"] * (steps - 1)
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tree(dest: Path) -> dict[str, str]:
    return {str(p.relative_to(dest)): p.read_text() for p in sorted(dest.rglob("*")) if p.is_file()}


def test_the_fewest_steps_per_requirement_and_implementation(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=6)
    fixture(tmp_path / "w1", "co-002-bbbb", steps=4)
    fixture(tmp_path / "w1", "dm-001-cccc", guard="DM-001", steps=5)
    fixture(tmp_path / "w2", "dm-001-dddd", guard="DM-001", steps=7)
    report = collect([tmp_path / "w0", tmp_path / "w1", tmp_path / "w2"], tmp_path / "merged")
    assert sorted(tree(tmp_path / "merged")) == ["co-002-bbbb.yaml", "dm-001-cccc.yaml"]
    assert [(k.path.name, k.guards, k.steps) for k in report.kept] == [
        ("co-002-bbbb.yaml", ("CO-002",), 4), ("dm-001-cccc.yaml", ("DM-001",), 5)]
    assert report.files == 4
    why = {d.source.name: d.reason for d in report.dropped}
    assert set(why) == {"co-002-aaaa.yaml", "dm-001-dddd.yaml"}
    assert "6 steps; co-002-bbbb.yaml violates the same requirement (CO-002)" in why[
        "co-002-aaaa.yaml"]
    assert report.summary().endswith("2 kept, 2 dropped")
    # the sources are left as they were
    assert sorted(p.name for p in (tmp_path / "w0").iterdir()) == ["co-002-aaaa.yaml"]


def test_ties_by_file_name_whatever_the_worker_order(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-ffff", steps=4)
    fixture(tmp_path / "w1", "co-002-1111", steps=4)
    fixture(tmp_path / "w2", "co-002-9999", steps=4)
    dirs = [tmp_path / f"w{i}" for i in range(3)]
    a = collect(dirs, tmp_path / "a")
    b = collect(dirs[::-1], tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert [k.path.name for k in a.kept] == [k.path.name for k in b.kept] == ["co-002-1111.yaml"]
    assert all("the first file name is kept" in d.reason for d in a.dropped)
    assert [d.source.name for d in a.dropped] == [d.source.name for d in b.dropped]


def test_identical_files_collapse(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=3, seed=0)
    fixture(tmp_path / "w1", "co-002-aaaa", steps=3, seed=0)
    fixture(tmp_path / "w2", "co-002-aaaa", steps=3, seed=5)  # the same finding, another seed
    report = collect([tmp_path / "w2", tmp_path / "w1", tmp_path / "w0"], tmp_path / "m")
    assert sorted(tree(tmp_path / "m")) == ["co-002-aaaa.yaml"]
    assert "  seed: 0\n" in (tmp_path / "m" / "co-002-aaaa.yaml").read_text()  # first by text
    reasons = sorted(d.reason for d in report.dropped)
    assert reasons[0].startswith("identical to the kept one")
    assert reasons[1].startswith("the same finding (same file name")
    # another order, the same bytes
    collect([tmp_path / "w0", tmp_path / "w1", tmp_path / "w2"], tmp_path / "n")
    assert tree(tmp_path / "m") == tree(tmp_path / "n")


def test_each_implementation_keeps_its_own(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=3, catches="mutant-a")
    fixture(tmp_path / "w1", "co-002-bbbb", steps=2, catches="mutant-b")
    report = collect([tmp_path / "w0", tmp_path / "w1"], tmp_path / "m")
    assert [(k.path.name, k.catches) for k in report.kept] == [
        ("co-002-aaaa.yaml", ("mutant-a",)), ("co-002-bbbb.yaml", ("mutant-b",))]
    assert not report.dropped


def test_one_sequence_failing_two_implementations_is_one_name(tmp_path: Path) -> None:
    # the file name hashes requirement, steps and configuration, not the implementation
    fixture(tmp_path / "w0", "co-002-aaaa", catches="mutant-b")
    fixture(tmp_path / "w1", "co-002-aaaa", catches="mutant-a")
    report = collect([tmp_path / "w0", tmp_path / "w1"], tmp_path / "m")
    assert [k.catches for k in report.kept] == [("mutant-a",)]
    [d] = report.dropped
    assert d.source == tmp_path / "w0" / "co-002-aaaa.yaml"
    assert "also fails mutant-a" in d.reason and "a directory of its own" in d.reason


def test_not_green_gathered_apart(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=3)
    fixture(tmp_path / "w0" / "not-green", "xr-001-eeee", guard="XR-001", steps=9)
    fixture(tmp_path / "w1" / "not-green", "xr-001-eeee", guard="XR-001", steps=9)
    # a shorter rejected one of the same requirement does not replace a kept fixture, nor
    # another rejected one: rejected findings are reports, each kept
    fixture(tmp_path / "w1" / "not-green", "co-002-0000", steps=1)
    fixture(tmp_path / "w1" / "not-green", "xr-001-ffff", guard="XR-001", steps=2)
    report = collect([tmp_path / "w0", tmp_path / "w1"], tmp_path / "m")
    assert sorted(tree(tmp_path / "m")) == [
        "co-002-aaaa.yaml", "not-green/co-002-0000.yaml", "not-green/xr-001-eeee.yaml",
        "not-green/xr-001-ffff.yaml"]
    assert [k.path.name for k in report.kept] == ["co-002-aaaa.yaml"]
    assert [k.path.name for k in report.rejected] == [
        "co-002-0000.yaml", "xr-001-eeee.yaml", "xr-001-ffff.yaml"]
    assert not report.dropped
    [d] = report.rejected_dropped
    assert d.reason.startswith("identical to the kept one")
    assert "not-green gathered apart" in report.summary()


def test_kept_by_one_worker_rejected_by_another_is_noted(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa")
    fixture(tmp_path / "w1" / "not-green", "co-002-aaaa")
    report = collect([tmp_path / "w0", tmp_path / "w1"], tmp_path / "m")
    assert sorted(tree(tmp_path / "m")) == ["co-002-aaaa.yaml", "not-green/co-002-aaaa.yaml"]
    [note] = report.conflicts
    assert "kept by one source and rejected" in note


def test_collecting_again_is_collecting_at_once(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=6)
    fixture(tmp_path / "w0", "dm-001-cccc", guard="DM-001", steps=5)
    fixture(tmp_path / "w1", "co-002-bbbb", steps=4)
    fixture(tmp_path / "w1" / "not-green", "xr-001-eeee", guard="XR-001")
    collect([tmp_path / "w0"], tmp_path / "late")
    assert sorted(tree(tmp_path / "late")) == ["co-002-aaaa.yaml", "dm-001-cccc.yaml"]
    again = collect([tmp_path / "w1"], tmp_path / "late")
    collect([tmp_path / "w0", tmp_path / "w1"], tmp_path / "once")
    assert tree(tmp_path / "late") == tree(tmp_path / "once")
    # DEST's own fixture that lost was removed, and said so
    [d] = again.dropped
    assert d.source == tmp_path / "late" / "co-002-aaaa.yaml"
    assert d.reason.endswith("in 4 (removed from the destination)")
    # and once more: nothing changes; the destination among the sources is skipped
    collect([tmp_path / "w0", tmp_path / "w1", tmp_path / "late"], tmp_path / "late")
    assert tree(tmp_path / "late") == tree(tmp_path / "once")


def test_the_schema_modeline_is_rewritten_for_dest(tmp_path: Path) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa")
    fixture(tmp_path / "w0", "dm-001-bbbb", guard="DM-001", modeline=False)
    collect([tmp_path / "w0"], tmp_path / "deep" / "merged")
    text = (tmp_path / "deep" / "merged" / "co-002-aaaa.yaml").read_text()
    first, rest = text.split("\n", 1)
    target = (tmp_path / "deep" / "merged" / first.split("$schema=", 1)[1]).resolve()
    assert target == ROOT / "conformance" / "schema" / "suite.schema.json"
    assert rest == (tmp_path / "w0" / "co-002-aaaa.yaml").read_text().split("\n", 1)[1]
    assert (tmp_path / "deep" / "merged" / "dm-001-bbbb.yaml").read_text() == (
        tmp_path / "w0" / "dm-001-bbbb.yaml").read_text()


def test_the_regression_fixtures_are_fixtures(tmp_path: Path) -> None:
    # the handwritten fixtures have the same fixture: block (one per mutant, mostly)
    files = sorted(REGRESSIONS.glob("*.yaml"))
    report = collect([REGRESSIONS], tmp_path / "m")
    assert report.files == len(files) > 20
    assert len(report.kept) + len(report.dropped) == len(files)
    assert len({k.catches for k in report.kept}) > 20
    assert read_fixture(REGRESSIONS / "already-landed-one-key.yaml").guards == ("ST-015",)


@pytest.mark.parametrize(("text", "why"), [
    ("a: [1\n", "not YAML"),
    ("- 1\n- 2\n", "not a suite file"),
    ("suite: x\ncases: []\n", "no 'fixture:' block"),
    ("suite: x\nfixture: {catches: [m]}\ncases: [{steps: []}]\n", "has no 'guards'"),
    ("suite: x\nfixture: {guards: [CO-002]}\ncases: [{steps: []}]\n", "names no implementation"),
    ("suite: x\nfixture: {guards: [CO-002], catches: [m]}\n", "no 'cases:' with 'steps:'"),
])
def test_a_yaml_file_that_is_not_a_fixture(tmp_path: Path, text: str, why: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa")
    (tmp_path / "w0" / "bad.yaml").write_text(text)
    with pytest.raises(CollectError, match=why) as err:
        collect([tmp_path / "w0"], tmp_path / "m")
    assert str(err.value).startswith(f"{tmp_path / 'w0' / 'bad.yaml'}: ")
    assert not (tmp_path / "m").exists()  # nothing written before the error
    assert main([str(tmp_path / "w0"), "--into", str(tmp_path / "m")]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_usage_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CollectError, match=r"nowhere: not a directory"):
        collect([tmp_path / "w0", tmp_path / "nowhere"], tmp_path / "m")
    with pytest.raises(CollectError, match=r"file: the destination is not a directory"):
        collect([tmp_path / "w0"], tmp_path / "file")
    assert main([str(tmp_path / "file"), "--into", str(tmp_path / "m")]) == 2
    assert f"conformance collect: {tmp_path / 'file'}: not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: no source at all
        main(["--into", str(tmp_path / "m")])
    assert exit_.value.code == 2


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixture(tmp_path / "w0", "co-002-aaaa", steps=5)
    fixture(tmp_path / "w1", "co-002-bbbb", steps=3)
    out = tmp_path / "report.json"
    assert main([str(tmp_path / "w0"), str(tmp_path / "w1"), "--into", str(tmp_path / "m"),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("collect: 2 fixture file(s) from 2 source(s)")
    assert printed[1].startswith("  kept    co-002-bbbb.yaml: CO-002 on "
                                 "delete-prefix-not-bundling-meta, 3 steps")
    assert printed[2].startswith(f"  dropped {tmp_path / 'w0' / 'co-002-aaaa.yaml'}: 5 steps")
    data = json.loads(out.read_text())
    assert [k["steps"] for k in data["kept"]] == [3] and len(data["dropped"]) == 1
    assert main(["-q", str(tmp_path / "w0"), "--into", str(tmp_path / "m")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert command  # the cli.py pair: add_parser / command
