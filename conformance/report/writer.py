"""Writing the four report files: report.json, report.md, junit.xml and report.html."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.cases import CaseResult
from conformance.catalog import Catalog

from .html import render_html
from .json_report import build_report
from .junit import render_junit
from .markdown import render_markdown
from .model import RunInfo


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    json: Path
    markdown: Path
    junit: Path
    html: Path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(
    results: Sequence[CaseResult],
    catalog: Catalog,
    info: RunInfo,
    out_dir: Path,
    mutants: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportPaths:
    """Write report.json, report.md, junit.xml and report.html into ``out_dir`` (created if
    needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        out_dir=out_dir,
        json=out_dir / "report.json",
        markdown=out_dir / "report.md",
        junit=out_dir / "junit.xml",
        html=out_dir / "report.html",
    )
    data = build_report(results, catalog, info, mutants)
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    _write_atomic(paths.json, text.encode("utf-8", "backslashreplace"))
    md = render_markdown(results, catalog, info, mutants)
    _write_atomic(paths.markdown, md.encode("utf-8", "backslashreplace"))
    xml = ET.tostring(render_junit(results, info), encoding="utf-8", xml_declaration=True)
    _write_atomic(paths.junit, xml + b"\n")
    page = render_html(results, catalog, info, mutants)
    _write_atomic(paths.html, page.encode("utf-8", "backslashreplace"))
    return paths
