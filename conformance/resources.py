"""Where the data the harness reads by default lives, in a checkout and in an installed package.

In a source checkout these are the repository's folders (``suites/``,
``fixtures/regressions/``, ``examples/journal_node/``): users, tests and ``pytest suites`` run
them in place. A built wheel has no repository beside it, so pyproject.toml maps each folder
into the package as ``conformance._suites``, ``conformance._regressions`` and
``conformance._journal_node``; those copies are used whenever they exist.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# files() of a package installed on a file system is a real directory (a zip import is not
# supported: the suites are loaded, and the second node run, from plain paths)
_PACKAGE = Path(str(files("conformance")))
_CHECKOUT = Path(__file__).resolve().parents[1]


def _locate(packaged: str, in_checkout: str) -> Path:
    inside = _PACKAGE / packaged
    return inside if inside.is_dir() else _CHECKOUT / in_checkout


SUITES_DIR = _locate("_suites", "suites")
REGRESSION_FIXTURES_DIR = _locate("_regressions", "fixtures/regressions")
# the second correct node (docs/exploration.md), a script run by path
JOURNAL_NODE = _locate("_journal_node", "examples/journal_node") / "node.py"
