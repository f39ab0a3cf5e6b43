"""Command-line problems are found before any case runs: exit status 2, a message that says
what to change, no traceback (issue 13, item 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main

REPO = Path(__file__).resolve().parents[1]
BANNER = "cases against"  # printed just before the first case runs
NODE = f"{sys.executable} examples/minimal_node.py --data-dir {{data_dir}}"


def usage(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI in process; assert exit 2 before any case ran; return what it printed."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code  # type: ignore[assignment]
    out = capsys.readouterr()
    printed = out.out + out.err
    assert status == 2, printed
    assert BANNER not in printed, "a case ran before the usage error was found"
    assert "Traceback" not in printed
    return printed


@pytest.mark.parametrize("impl", ["", "   "])
def test_an_empty_impl(capsys: pytest.CaptureFixture[str], impl: str) -> None:
    assert "--impl is empty" in usage(capsys, "certify", "--impl", impl)


def test_an_impl_without_data_dir_gets_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    printed = usage(capsys, "certify", "--impl", "python node.py")
    assert "has no {data_dir}" in printed
    assert "--impl 'python node.py --data-dir {data_dir}'" in printed
    assert "--allow-no-data-dir" in printed


def test_a_misspelt_placeholder_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    printed = usage(capsys, "run", "--impl", "python node.py --dir {datadir}")
    assert "it has {datadir}: the placeholder is spelled {data_dir}" in printed
    assert "--impl 'python node.py --dir {data_dir}'" in printed


def test_a_node_that_takes_no_data_dir_can_say_so(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    """The override passes the check: what stops this run is the next check (no case)."""
    printed = usage(capsys, "run", "--impl", "python node.py", "--allow-no-data-dir",
                    "-k", "no-such-case", "--out", str(tmp_path))
    assert "{data_dir}" not in printed
    assert "no case selected" in printed


def test_an_impl_that_cannot_be_split(capsys: pytest.CaptureFixture[str]) -> None:
    printed = usage(capsys, "certify", "--impl", 'python "node.py --data-dir {data_dir}')
    assert "cannot split it into arguments (No closing quotation)" in printed


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "ten"])
def test_a_timeout_that_is_not_a_positive_number(capsys: pytest.CaptureFixture[str],
                                                 value: str) -> None:
    printed = usage(capsys, "certify", f"--timeout={value}")
    assert f"argument --timeout: expected a number of seconds > 0, e.g. 10; got '{value}'" \
        in printed


@pytest.mark.parametrize("command", [["explore"], ["mutants"]])
def test_the_other_commands_check_their_timeout_too(capsys: pytest.CaptureFixture[str],
                                                    command: list[str]) -> None:
    assert "--timeout nan: expected a number of seconds > 0" in usage(
        capsys, *command, "--timeout", "nan")


def test_a_negative_exploration_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --explore: expected an integer >= 0; got '-3'" in usage(
        capsys, "certify", "--explore=-3")


def test_an_out_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("not a directory")
    assert f"--out {path}: exists and is not a directory" in usage(
        capsys, "certify", "--out", str(path))


def test_an_out_under_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "reports"
    assert f"--out {out}: the report cannot be written there (Not a directory)" in usage(
        capsys, "run", "--out", str(out))


def test_an_out_that_cannot_be_created(capsys: pytest.CaptureFixture[str]) -> None:
    """/proc takes no new directory, not even from root (for whom a read-only mode is no
    obstacle)."""
    assert "--out /proc/conformance-report: the report cannot be written there" in usage(
        capsys, "certify", "--out", "/proc/conformance-report")


def test_an_out_that_is_read_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory (the /proc case covers it)")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert "the report cannot be written there (Permission denied)" in usage(
            capsys, "certify", "--out", str(out))
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("text,expected", [
    ("expected_failures: [1\n", "line 1, column 20"),
    ("- just a list\n", "expected a mapping with 'expected_failures"),
    (b"\xfe\xff\x00binary", "can't decode byte"),
])
def test_expectations_that_do_not_load(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       text: str | bytes, expected: str) -> None:
    path = tmp_path / "known.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    printed = usage(capsys, "certify", "--expectations", str(path), "--out", str(tmp_path))
    assert f"{path}: cannot read expectations" in printed or str(path) in printed
    assert expected in printed


def test_missing_expectations(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert f"{path}: cannot read expectations: [Errno 2] No such file or directory" in usage(
        capsys, "certify", "--expectations", str(path), "--out", str(tmp_path))


def test_an_unknown_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    printed = usage(capsys, "certify", "--profile", "gold", "--out", str(tmp_path))
    assert ("--profile 'gold' is not a profile of the catalog; one of: baseline, pinned, "
            "skip, complete, complete-restore-pin") in printed


def test_impl_and_image_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "give --impl or --image, not both" in usage(
        capsys, "certify", "--impl", NODE, "--image", "x", "--out", str(tmp_path))


def test_a_usage_error_leaves_the_old_report_alone(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"old": true}')
    usage(capsys, "certify", "--profile", "gold", "--out", str(tmp_path))
    assert (tmp_path / "report.json").read_text() == '{"old": true}'


def test_good_options_pass_every_check(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """The same checks let a correct command line through (the checks can pass)."""
    status = main(["run", "suites/entries.yaml", "-k", "en-occ-conflict-writes-nothing",
                   "--impl", NODE, "--timeout", "30", "--profile", "baseline",
                   "--out", str(tmp_path / "new" / "dir")])
    printed = capsys.readouterr().err
    assert BANNER in printed
    assert status in (0, 1)  # a subset never certifies the claimed profile
    assert (tmp_path / "new" / "dir" / "report.json").is_file()


def test_the_installed_command_says_it_without_a_traceback(tmp_path: Path) -> None:
    """Through the real entry point: the message on stderr, exit 2."""
    res = subprocess.run([sys.executable, "-m", "conformance.cli", "certify", "--timeout",
                          "nan"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 2
    assert "argument --timeout" in res.stderr and "Traceback" not in res.stderr
