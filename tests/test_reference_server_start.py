"""What a start of the reference server costs is what every node lifetime of
`--impl reference-process` costs: the modules it leaves for later stay unimported, and the
command line the harness passes is parsed without argparse, as argparse would parse it."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from reference_impl import snapshot
from reference_impl.server import _parse, _plain_options

REPO = Path(__file__).resolve().parents[1]
SWITCHES = ["--unsynced", "--no-reader", "--no-writer", "--no-header-applier",
            "--pin-after-restore"]
# imported on first use only: each is milliseconds of every start (docs/performance.md)
LEFT_FOR_LATER = ["argparse", "importlib.metadata", "crc32c", "hashlib", "reference_impl.mutants",
                  "reference_impl.disk.simdisk"]


def test_a_start_imports_none_of_what_it_leaves_for_later(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reference_impl.server", "--data-dir",
         str(tmp_path), "--no-writer"], cwd=REPO, capture_output=True, text=True, timeout=60,
        input="")
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "reference_impl.node" in imported and "reference_impl.snapshot" in imported
    assert [m for m in LEFT_FOR_LATER if m in imported] == []


@pytest.mark.parametrize("switches", [list(c) for n in range(len(SWITCHES) + 1)
                                      for c in itertools.combinations(SWITCHES, n)][::3])
def test_the_plain_command_line_parses_as_argparse_parses_it(switches: list[str]) -> None:
    for argv in (["--data-dir", "/d", *switches], [*switches, "--data-dir", "/d"]):
        plain = _plain_options(argv)
        assert plain is not None
        assert vars(plain) == vars(_parse(argv))


@pytest.mark.parametrize("argv", [
    [], ["--unsynced"], ["--data-dir"], ["--data-dir", "--unsynced"], ["--data-dir=/d"],
    ["--data", "/d"], ["--data-dir", "/d", "--data-dir", "/e"], ["--data-dir", "/d", "-h"],
    ["--data-dir", "/d", "--mutant", "x"], ["--data-dir", "/d", "--listen", ":7070"],
    ["--data-dir", "/d", "extra"],
])
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    assert _plain_options(argv) is None


def test_the_crc32c_function_is_the_package_s() -> None:
    import crc32c

    for data in (b"", b"123456789", bytes(range(256)) * 100):
        assert snapshot.crc32c(data) == crc32c.crc32c(data)
    assert snapshot.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
