"""The package as a user gets it: built into a wheel, installed without extras into a fresh
virtualenv, and run from a directory outside the repository, where nothing of the checkout
can be found (issue 14: `certify` once looked for suites/ in the source tree).

The install reaches PyPI for the dependencies through pip's own cache (~/.cache/pip), so a
second run downloads nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# what a build must not see: other builds, environments, reports (the tree is shared)
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "reports",
                                     "target", "*.egg-info", "__pycache__", ".*_cache",
                                     ".hypothesis", "node_modules")


def _subcommands() -> list[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]  # argparse keeps them here
    assert sub.choices is not None
    return sorted(sub.choices)


def test_every_subpackage_is_listed_in_pyproject() -> None:
    """The package list is explicit (pyproject.toml says why); a subpackage missing from it
    would be absent from every installed copy, though a checkout never notices."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("conformance", "reference_impl")
             for p in (ROOT / top).rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, (f"pyproject.toml [tool.setuptools] packages lacks {missing}: add them, "
                         "or the installed package cannot import them")
    for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        assert name in listed and (ROOT / folder).is_dir(), (name, folder)


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, (f"{' '.join(argv)} exited {proc.returncode}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(bin directory of the fresh venv, a working directory outside the repository, env)."""
    base = tmp_path_factory.mktemp("install")
    # the environment of a user's shell: nothing that points into this checkout or its venv
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    # build from a copy: a build writes build/ and *.egg-info beside the sources
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE, symlinks=True)
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist),
          str(src)], cwd=base, env=env)
    [wheel] = dist.glob("*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base, env=env)
    bin_dir = venv / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
         cwd=base, env=env, timeout=600)
    shutil.rmtree(src)
    outside = base / "elsewhere"
    outside.mkdir()
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])
    try:
        yield bin_dir, outside, env
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def test_the_installed_package_is_the_wheel(installed: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, outside, env = installed
    proc = _run([str(bin_dir / "python"), "-c",
                 "import conformance.resources as r, pytest; "
                 "print(r.__file__, r.SUITES_DIR, r.REGRESSION_FIXTURES_DIR, r.JOURNAL_NODE)"],
                cwd=outside, env=env)
    venv = str(bin_dir.parent)
    paths = proc.stdout.split()
    assert len(paths) == 4 and all(p.startswith(venv) for p in paths), proc.stdout
    assert all(Path(p).exists() for p in paths), proc.stdout


def test_every_subcommand_answers_help(installed: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, outside, env = installed
    commands = _subcommands()
    assert {"certify", "run", "replay", "list", "validate", "mutants", "explore"} <= set(commands)
    top = _run([str(bin_dir / "conformance"), "--help"], cwd=outside, env=env)
    for command in commands:
        assert command in top.stdout
        proc = _run([str(bin_dir / "conformance"), command, "--help"], cwd=outside, env=env)
        assert f"usage: conformance {command}" in proc.stdout


def test_certify_and_the_others_run_from_outside_the_repository(
        installed: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, outside, env = installed
    conformance = str(bin_dir / "conformance")
    suites = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))
    listed = _run([conformance, "list", "suites"], cwd=outside, env=env).stdout
    assert sorted(line.split()[0] for line in listed.splitlines()) == suites
    assert _run([conformance, "validate"], cwd=outside, env=env).stdout.startswith("ok")

    proc = _run([conformance, "certify", "-k", "cs-skip", "--explore", "0"], cwd=outside, env=env)
    report = json.loads((outside / "reports" / "latest" / "report.json").read_text("utf-8"))
    cases = report["summary"]["cases"]
    assert cases["total"] >= 2 and cases["passed"] == cases["total"], proc.stdout
    assert all(c["location"]["file"].startswith(str(bin_dir.parent)) for c in report["cases"])
    assert (outside / "reports" / "latest" / "report.md").is_file()

    # the regression fixtures ship too: `mutants` runs them beside the suites
    fixtures = len(list((ROOT / "fixtures" / "regressions").glob("*.yaml")))
    proc = _run([conformance, "mutants", "--only", "pin-error-ignored", "--out", "mutants"],
                cwd=outside, env=env)
    assert f"({fixtures} regression fixtures)" in proc.stdout + proc.stderr

    # and the pytest front end is installed with the package (a runtime dependency)
    installed_suite = Path(_run([str(bin_dir / "python"), "-c",
                                 "import conformance.resources as r; print(r.SUITES_DIR)"],
                                cwd=outside, env=env).stdout.strip()) / "cold_start.yaml"
    proc = _run([str(bin_dir / "pytest"), "-p", "no:cacheprovider", "-q", str(installed_suite),
                 "-k", "cs-skip"], cwd=outside, env=env)
    assert re.search(r"\b\d+ passed", proc.stdout) and "report:" in proc.stdout, proc.stdout
