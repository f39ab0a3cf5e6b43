"""`conformance collect`: the fixtures of many exploration workers, deduplicated in one place.

    conformance collect found/worker-* --into found/merged
    conformance collect /found/worker-0 /found/worker-1 --into /found/merged --json merged.json

Each worker of a campaign spread over many machines (docs/scale-out.md) writes the
fixtures it found to its own `--out` directory: `<requirement>-<key>.yaml`, where the key
hashes the requirement, the steps and the configuration (fixtures.py), plus the findings
that failed on a correct node under `not-green/`. Workers exploring the same implementation
find the same bugs, each shrunk to its own minimal sequence. `collect` gathers them:

- **one fixture per violated requirement and implementation** (the `fixture:` block's
  `guards`, `catches` and `implementation`): the one with the fewest steps; among as
  short ones, the first by file name, so that the result does not depend on the order of
  the workers or of the command line;
- **identical files collapse**: the same file name is the same finding (same requirement,
  steps and configuration); two workers' copies differ at most in their provenance (the
  `seed:` line, the notes), and the one whose text sorts first is kept;
- **`not-green/` apart**: the rejected findings (they failed on a correct node: a
  generator's or the oracle's problem, to be reported) are gathered into `DEST/not-green/`,
  identical files collapsed, never among the kept fixtures and never deduplicated against
  them;
- what is already in DEST takes part like one more source, so collecting again (a worker
  that finished late) gives the same DEST as collecting everything at once; a fixture of
  DEST that loses is removed from it.

The kept files are copied as they are, but for their first line (the schema modeline,
a path relative to the directory the file is in): it is rewritten for DEST. The report
says what was kept, what was dropped and why (`--json` writes it).

Exit status: 0; 2 on a usage error, naming the path at fault: a source that is not a
directory, a YAML file that is not a fixture (and why), a DEST that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .fixtures import REJECTED, SCHEMA

MODELINE = "# yaml-language-server: $schema="
SUFFIXES = (".yaml", ".yml")


class CollectError(ValueError):
    """A usage error: the message names the path at fault and why."""


@dataclass(frozen=True)
class Fixture:
    """One fixture file as `collect` sees it."""

    path: Path
    guards: tuple[str, ...]
    catches: tuple[str, ...]
    implementation: str
    steps: int
    body: str  # the text without the schema modeline: what "identical" compares

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def group(self) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        """What one fixture is kept for: the violated requirement(s) and the implementation."""
        return self.guards, self.catches, self.implementation

    def order(self) -> tuple[int, str, str]:
        """The fewest steps first, then by file name, then by text: no worker order."""
        return self.steps, self.name, self.body


@dataclass
class Kept:
    path: Path  # in DEST
    source: Path  # the file it was copied from (DEST's own when it was there already)
    guards: tuple[str, ...]
    catches: tuple[str, ...]
    implementation: str
    steps: int


@dataclass
class Dropped:
    source: Path
    reason: str
    instead: Path  # the kept file (in DEST) that stands for it


@dataclass
class CollectReport:
    sources: list[Path]
    dest: Path
    files: int = 0  # fixture files read (the not-green ones included)
    kept: list[Kept] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    rejected: list[Kept] = field(default_factory=list)  # gathered into DEST/not-green/
    rejected_dropped: list[Dropped] = field(default_factory=list)
    # a finding kept by one worker and rejected (not-green) by another: worth a look
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def kept(k: Kept) -> dict[str, Any]:
            return {"path": str(k.path), "source": str(k.source), "guards": list(k.guards),
                    "catches": list(k.catches), "implementation": k.implementation,
                    "steps": k.steps}

        def dropped(d: Dropped) -> dict[str, Any]:
            return {"source": str(d.source), "reason": d.reason, "instead": str(d.instead)}

        return {"sources": [str(s) for s in self.sources], "dest": str(self.dest),
                "files": self.files, "kept": [kept(k) for k in self.kept],
                "dropped": [dropped(d) for d in self.dropped],
                "rejected": [kept(k) for k in self.rejected],
                "rejected_dropped": [dropped(d) for d in self.rejected_dropped],
                "conflicts": list(self.conflicts)}

    def summary(self) -> str:
        return (f"collect: {self.files} fixture file(s) from {len(self.sources)} source(s) -> "
                f"{self.dest}: {len(self.kept)} kept, {len(self.dropped)} dropped"
                + (f"; {len(self.rejected)} not-green gathered apart into "
                   f"{self.dest / REJECTED} ({len(self.rejected_dropped)} dropped)"
                   if self.rejected or self.rejected_dropped else ""))

    def lines(self) -> list[str]:
        out = [self.summary()]
        for k in self.kept:
            out.append(f"  kept    {k.path.name}: {', '.join(k.guards)} on "
                       f"{', '.join(k.catches) or k.implementation}, {k.steps} steps "
                       f"(from {k.source})")
        for d in self.dropped:
            out.append(f"  dropped {d.source}: {d.reason}")
        for k in self.rejected:
            out.append(f"  not-green {k.path.name}: {', '.join(k.guards)} (from {k.source})")
        for d in self.rejected_dropped:
            out.append(f"  dropped {d.source}: {d.reason}")
        out += [f"  NOTE {c}" for c in self.conflicts]
        return out


def read_fixture(path: Path) -> Fixture:
    """A fixture file, or CollectError naming it and why it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectError(f"{path}: cannot read it: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CollectError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise CollectError(f"{path}: not a fixture: not a suite file (a mapping with "
                           "'fixture:' and 'cases:')")
    block = doc.get("fixture")
    if not isinstance(block, dict):
        raise CollectError(f"{path}: not a fixture: no 'fixture:' block (a suite file that "
                           "conformance explore did not write?)")
    guards = block.get("guards")
    if not (isinstance(guards, list) and guards and all(isinstance(g, str) for g in guards)):
        raise CollectError(f"{path}: not a fixture: its 'fixture:' block has no 'guards' "
                           "(the violated requirement)")
    catches = block.get("catches", [])
    implementation = block.get("implementation", "")
    if not (isinstance(catches, list) and all(isinstance(c, str) for c in catches)
            and isinstance(implementation, str)) or not (catches or implementation):
        raise CollectError(f"{path}: not a fixture: its 'fixture:' block names no "
                           "implementation ('catches' or 'implementation')")
    cases = doc.get("cases")
    if not (isinstance(cases, list) and cases
            and all(isinstance(c, dict) and isinstance(c.get("steps"), list) for c in cases)):
        raise CollectError(f"{path}: not a fixture: no 'cases:' with 'steps:'")
    body = text.split("\n", 1)[1] if text.startswith(MODELINE) else text
    return Fixture(path, tuple(guards), tuple(catches), implementation,
                   sum(len(c["steps"]) for c in cases), body)


def _fixture_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def _modeline(dest: Path) -> str:
    return MODELINE + os.path.relpath(SCHEMA, dest.resolve()) + "\n"


def _text_for(f: Fixture, dest: Path) -> str:
    had = f.path.read_text(encoding="utf-8").startswith(MODELINE)
    return (_modeline(dest) if had else "") + f.body


def _write(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _same_key_reason(f: Fixture, winner: Fixture) -> str:
    if f.body == winner.body:
        return "identical to the kept one"
    return ("the same finding (same file name: requirement, steps and configuration) "
            "from another run; only its provenance differs (seed, notes)")


def _choose(pool: list[Fixture], dest: Path, *, per_group: bool
            ) -> tuple[list[tuple[Fixture, Path]], list[Dropped]]:
    """The winners (with their path in `dest`) and the dropped, with why."""
    groups: dict[Any, list[Fixture]] = {}
    for f in pool:
        groups.setdefault(f.group if per_group else f.name, []).append(f)
    winners: list[tuple[Fixture, Path]] = []
    dropped: list[Dropped] = []
    for members in groups.values():
        members.sort(key=Fixture.order)
        win = members[0]
        target = dest / win.name
        winners.append((win, target))
        for f in members[1:]:
            here = f.path.resolve() == target.resolve()
            if here and f.body != win.body:
                reason = "it was in the destination; the same finding from another run replaces it"
            elif f.name == win.name:
                reason = _same_key_reason(f, win)
            elif f.steps > win.steps:
                reason = (f"{f.steps} steps; {win.name} violates the same requirement "
                          f"({', '.join(f.guards)}) on the same implementation in {win.steps}")
            else:
                reason = (f"as short as {win.name} ({f.steps} steps, the same requirement and "
                          "implementation); the first file name is kept")
            if not here and f.path.resolve().parent == dest.resolve():
                reason += " (removed from the destination)"
            dropped.append(Dropped(f.path, reason, target))
    # The file name hashes the requirement, the steps and the configuration, not the
    # implementation: the same sequence failing two implementations is one name twice. One
    # directory holds one of them (the first by implementation); the other is reported.
    by_name: dict[str, tuple[Fixture, Path]] = {}
    for win, target in sorted(winners, key=lambda w: (w[0].name, w[0].catches,
                                                      w[0].implementation)):
        first = by_name.setdefault(win.name, (win, target))
        if first[0] is not win:
            dropped.append(Dropped(win.path, (
                f"the same sequence also fails {', '.join(first[0].catches) or first[0].implementation}"
                f", kept under this name; this one fails {', '.join(win.catches) or win.implementation}"
                ": collect each implementation's workers into a directory of its own"), target))
    winners = sorted(by_name.values(), key=lambda w: w[1].name)
    dropped.sort(key=lambda d: (d.instead.name, str(d.source)))
    return winners, dropped


def collect(sources: Sequence[Path], dest: Path) -> CollectReport:
    """Gather the fixtures of `sources` (workers' --out directories) into `dest` (module doc).
    Raises CollectError, before writing anything, on a usage error."""
    if not sources:
        raise CollectError("no source directory given")
    dest_resolved = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise CollectError(f"{dest}: the destination is not a directory")
    seen: set[Path] = set()
    dirs: list[Path] = []
    for src in sources:
        if not src.is_dir():
            raise CollectError(f"{src}: not a directory (give the workers' --out directories)")
        r = src.resolve()
        if r == dest_resolved or r in seen:
            continue
        seen.add(r)
        dirs.append(src)
    # DEST's own fixtures take part: collecting again gives what collecting all at once gives
    if dest.is_dir():
        dirs.append(dest)
    kept_pool: list[Fixture] = []
    rejected_pool: list[Fixture] = []
    for d in dirs:
        kept_pool += [read_fixture(p) for p in _fixture_files(d)]
        if (d / REJECTED).is_dir():
            rejected_pool += [read_fixture(p) for p in _fixture_files(d / REJECTED)]
    report = CollectReport(list(sources), dest, files=len(kept_pool) + len(rejected_pool))
    winners, report.dropped = _choose(kept_pool, dest, per_group=True)
    r_winners, report.rejected_dropped = _choose(rejected_pool, dest / REJECTED, per_group=False)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for f, target in winners:
            _write(target, _text_for(f, dest))
        if r_winners:
            (dest / REJECTED).mkdir(exist_ok=True)
        for f, target in r_winners:
            _write(target, _text_for(f, dest / REJECTED))
        # DEST's own files that lost
        keep = {t.resolve() for _, t in winners} | {t.resolve() for _, t in r_winners}
        for lost in report.dropped + report.rejected_dropped:
            where = lost.source.resolve()
            if where.parent in (dest_resolved, (dest / REJECTED).resolve()) and where not in keep:
                lost.source.unlink(missing_ok=True)
    except OSError as exc:
        raise CollectError(f"{dest}: cannot write the collected fixtures: {exc}") from None
    for f, target in winners:
        report.kept.append(Kept(target, f.path, f.guards, f.catches, f.implementation, f.steps))
    for f, target in r_winners:
        report.rejected.append(Kept(target, f.path, f.guards, f.catches, f.implementation,
                                    f.steps))
    names = {f.name for f, _ in winners} | {d.source.name for d in report.dropped}
    for f, _ in r_winners:
        if f.name in names:
            report.conflicts.append(f"{f.name} was kept by one source and rejected "
                                    f"(not-green) by another: see {dest / REJECTED / f.name}")
    return report


def add_parser(sub: Any) -> None:
    """Add `collect` to the subcommands of `conformance` (conformance/cli.py)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "collect", help="gather the fixtures of many exploration workers into one directory, "
                        "deduplicated",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", type=Path, nargs="+", metavar="SRC",
                   help="the workers' --out directories (their not-green/ is gathered apart)")
    p.add_argument("--into", type=Path, required=True, metavar="DEST",
                   help="where the deduplicated fixtures go (made if absent; what is there "
                        "already takes part)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary line only")


def command(args: argparse.Namespace) -> int:
    """Exit status: 0, or 2 on a usage error (named)."""
    try:
        report = collect(args.sources, args.into)
    except CollectError as exc:
        print(f"conformance collect: {exc}", file=sys.stderr)
        return 2
    for line in report.lines()[:1] if args.quiet else report.lines():
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m conformance.explore.collect SRC... --into DEST` (= `conformance collect`)."""
    ap = argparse.ArgumentParser(prog="conformance")
    add_parser(ap.add_subparsers(dest="command", required=True))
    return command(ap.parse_args(["collect", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
