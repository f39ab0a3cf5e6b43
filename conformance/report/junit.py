"""junit.xml: one testsuite per suite, one testcase per case, for CI systems."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from conformance.cases import CaseResult

from .json_report import _log_tail
from .model import _FAILING, RunInfo, _failure_message, _na_reason, _order
from .text import render, scrub

_XML_INVALID = re.compile(
    "[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _xml(text: object) -> str:
    """Text that XML 1.0 can carry: invalid characters become visible escapes."""
    return _XML_INVALID.sub(lambda m: f"\\x{{{ord(m.group()):x}}}", str(text))


def _properties(parent: ET.Element, props: Sequence[tuple[str, str]]) -> None:
    if not props:
        return
    node = ET.SubElement(parent, "properties")
    for name, value in props:
        ET.SubElement(node, "property", name=_xml(name), value=_xml(value))


def render_junit(results: Sequence[CaseResult], info: RunInfo) -> ET.Element:
    """junit.xml: one testsuite per suite, one testcase per case."""
    ordered = _order(results)
    suites: dict[str, list[CaseResult]] = {}
    for res in ordered:
        suites.setdefault(res.case.suite, []).append(res)

    def counts(rs: Sequence[CaseResult]) -> dict[str, str]:
        return {
            "tests": str(len(rs)),
            "failures": str(sum(1 for r in rs if r.status == "failed")),
            "errors": str(sum(1 for r in rs if r.status == "error")),
            "skipped": str(sum(1 for r in rs if r.status in ("not_applicable", "xfailed"))),
            "time": f"{sum(r.duration for r in rs):.3f}",
        }

    root = ET.Element("testsuites", {"name": "applied-index-conformance", **counts(ordered)})
    run_props = [
        ("implementation", info.identity()),
        ("adapter", info.adapter),
        ("protocol_version", str(info.protocol_version)),
        ("capabilities", ",".join(sorted(info.capabilities))),
        ("profile", info.profile or ""),
        ("seed", str(info.seed)),
        ("command", info.command),
        ("harness_version", info.harness_version),
    ]
    for name in sorted(suites):
        rs = suites[name]
        suite = ET.SubElement(
            root, "testsuite", {"name": _xml(name), **counts(rs), "timestamp": _xml(info.started)}
        )
        _properties(suite, run_props)
        for res in rs:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(name),
                name=_xml(res.case.id),
                time=f"{res.duration:.3f}",
            )
            props = [("requirement", rid) for rid in res.case.requirements]
            props.append(("location", str(res.case.location)))
            props += [("violation", rid) for rid in res.violations]
            _properties(case, props)
            if res.status in ("failed", "error"):
                tag = "failure" if res.status == "failed" else "error"
                el = ET.SubElement(
                    case, tag, message=_xml(scrub(_failure_message(res))), type=res.status
                )
                el.text = _xml(render(res))
            elif res.status == "not_applicable":
                ET.SubElement(case, "skipped", message=_xml(scrub(_na_reason(res))))
            elif res.status == "xfailed":
                el = ET.SubElement(
                    case,
                    "skipped",
                    message=_xml("expected failure: "
                                 + scrub(res.reason or _failure_message(res))),
                    type="xfail",
                )
                if res.failure is not None:
                    el.text = _xml(render(res))
            if res.failure is not None and res.failure.logs and res.status in _FAILING:
                ET.SubElement(case, "system-err").text = _xml(scrub(_log_tail(res.failure.logs)))
    ET.indent(root)
    return root

