"""The requirement catalog: load, validate and render ``conformance/requirements.yaml``.

The YAML file is the source of truth for what the suite certifies; ``docs/requirements.md``
is rendered from it and committed. Regenerate the page with::

    python -m conformance.catalog           # write docs/requirements.md
    python -m conformance.catalog --check   # exit 1 when the committed page is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

__all__ = [
    "AREAS",
    "DOC_PATH",
    "LEVELS",
    "Catalog",
    "CatalogError",
    "Profile",
    "Requirement",
    "Source",
    "load_catalog",
    "main",
    "render_markdown",
]

LEVELS: tuple[str, ...] = ("MUST", "SHOULD", "MAY")

# ID prefix -> (area name used in the YAML, heading used on the rendered page), in page order.
AREAS: dict[str, tuple[str, str]] = {
    "ST": ("store", "Store contract"),
    "EN": ("entries", "Entries and the state machine"),
    "SP": ("snapshot_persist", "Snapshot persist"),
    "CO": ("crash_ordering", "Crash ordering"),
    "CS": ("cold_start", "Cold start (the skip gate)"),
    "HV": ("header_verification", "Snapshot file and header verification"),
    "DM": ("durability_modes", "Durability modes"),
    "XR": ("exactly_once", "Exactly-once replay"),
    "BI": ("bad_input", "Bad input"),
}

ID_RE = re.compile(r"^(ST|EN|SP|CO|CS|HV|DM|XR|BI)-\d{3}$")
# BRIEF items (S1..S7, P1..P6, C1..C7, M1, M2), whole BRIEF sections (§3), or "suite" for a
# requirement this suite adds on its own (bad-input handling the brief does not spell out).
BRIEF_RE = re.compile(r"^(S[1-7]|P[1-6]|C[1-7]|M[12]|§\d+|suite)$")
PR_RE = re.compile(r"^#\d+$")
DESIGN_RE = re.compile(r"^§\d+(\.\d+)*$")
PEER_TEST_RE = re.compile(r"^Test[A-Za-z0-9_]+$")
PROFILE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
CAPABILITY_RE = re.compile(r"^[a-z][a-z0-9_]*$")

PACKAGED_NAME = "conformance/requirements.yaml"
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "requirements.md"

_TOP_KEYS = frozenset({"version", "capabilities", "harness_faults", "profiles", "requirements"})
_REQUIRED_TOP_KEYS = frozenset({"version", "capabilities", "profiles", "requirements"})
_REQ_KEYS = frozenset({"id", "area", "title", "level", "text", "capabilities", "source"})
_REQ_OPTIONAL = frozenset({"without"})
_SOURCE_KEYS = frozenset({"brief", "pr", "design", "peer_tests"})
_PROFILE_KEYS = frozenset({"description", "capabilities"})


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class Source:
    """Where a requirement comes from."""

    brief: tuple[str, ...]
    pr: tuple[str, ...] = ()
    design: str | None = None
    peer_tests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Requirement:
    """One testable RFC 2119 statement with a stable ID."""

    id: str
    area: str
    title: str
    level: str
    text: str
    capabilities: tuple[str, ...]
    source: Source
    # Capabilities the node must NOT have: a lower-profile behaviour (e.g. no reader ->
    # fallback not_reader). Such a requirement belongs to no profile that has them.
    without: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return self.id.split("-", 1)[0]


@dataclass(frozen=True)
class Profile:
    """A conformance profile; ``capabilities`` are the ones it adds to the previous profile."""

    name: str
    description: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    version: int
    capabilities: dict[str, str]
    profiles: tuple[Profile, ...]
    requirements: tuple[Requirement, ...]
    # faults the harness injects (power_loss, crash_points): a requirement may need one, but
    # they are the adapter's, never a node's, so they do not decide which profile it is in
    harness_faults: dict[str, str] = field(default_factory=dict)

    def by_id(self, id: str) -> Requirement:
        for req in self.requirements:
            if req.id == id:
                return req
        raise KeyError(f"no requirement with id {id!r}")

    def profile(self, name: str) -> Profile:
        for prof in self.profiles:
            if prof.name == name:
                return prof
        known = ", ".join(p.name for p in self.profiles)
        raise KeyError(f"no profile named {name!r} (known: {known})")

    def profile_capabilities(self, name: str) -> frozenset[str]:
        """The capabilities of ``name`` together with those of every profile before it."""
        self.profile(name)  # raises KeyError for an unknown name
        caps: set[str] = set()
        for prof in self.profiles:
            caps.update(prof.capabilities)
            if prof.name == name:
                break
        return frozenset(caps)

    def for_profile(self, name: str) -> tuple[Requirement, ...]:
        """Requirements whose needed node capabilities all belong to the profile
        (cumulatively), leaving out those that apply only to nodes without one of its
        capabilities. Harness faults do not count: a requirement that needs a power loss
        binds every profile with its node capabilities, and is certified only where the
        harness could inject one."""
        caps = self.profile_capabilities(name) | self.harness_faults.keys()
        return tuple(r for r in self.requirements
                     if caps.issuperset(r.capabilities) and not caps.intersection(r.without))

    def in_area(self, prefix: str) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if r.prefix == prefix)

    def peer_tests(self) -> dict[str, tuple[str, ...]]:
        """Peer test name -> IDs of the requirements that cite it, sorted by name."""
        index: dict[str, list[str]] = {}
        for req in self.requirements:
            for name in req.source.peer_tests:
                index.setdefault(name, []).append(req.id)
        return {name: tuple(index[name]) for name in sorted(index)}


# --------------------------------------------------------------------------- loading


def _fail(where: str, message: str) -> NoReturn:
    raise CatalogError(f"{where}: {message}")


def _mapping(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(where, f"{what} must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            _fail(where, f"{what} has a non-string key {key!r}")
    return value


def _check_keys(
    data: Mapping[str, Any], allowed: frozenset[str], required: frozenset[str], where: str
) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        _fail(where, f"unknown field(s) {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        _fail(where, f"missing field(s) {', '.join(missing)}")


def _text(value: object, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(where, f"field '{field}' must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _names(value: object, where: str, field: str, *, scalar_ok: bool) -> tuple[str, ...]:
    """A list of strings; a single string is accepted when ``scalar_ok``."""
    if value is None:
        return ()
    if scalar_ok and isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list):
        items = list(value)
    else:
        _fail(where, f"field '{field}' must be a list, got {value!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            _fail(where, f"field '{field}' holds a non-string or empty item {item!r}")
        if item in out:
            _fail(where, f"field '{field}' names {item!r} twice")
        out.append(item)
    return tuple(out)


def _check_duplicate_keys(text: str, name: str) -> None:
    """``yaml.safe_load`` silently keeps the last of two equal keys; refuse that instead."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        _fail(name, f"not valid YAML: {exc}")
    stack: list[yaml.Node] = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = str(key_node.value)
                    if key in seen:
                        line = key_node.start_mark.line + 1
                        _fail(name, f"duplicate key {key!r} (line {line})")
                    seen.add(key)
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _parse_capabilities(value: object, name: str) -> dict[str, str]:
    where = f"{name}: capabilities"
    data = _mapping(value, name, "'capabilities'")
    if not data:
        _fail(where, "no capability declared")
    caps: dict[str, str] = {}
    for cap, desc in data.items():
        if not CAPABILITY_RE.match(cap):
            _fail(where, f"capability name {cap!r} must match {CAPABILITY_RE.pattern}")
        caps[cap] = _text(desc, f"{where}: {cap}", "description")
    return caps


def _parse_profiles(value: object, name: str, caps: Mapping[str, str]) -> tuple[Profile, ...]:
    data = _mapping(value, name, "'profiles'")
    if not data:
        _fail(f"{name}: profiles", "no profile declared")
    profiles: list[Profile] = []
    for prof_name, body in data.items():
        where = f"{name}: profile {prof_name!r}"
        if not PROFILE_RE.match(prof_name):
            _fail(where, f"profile name must match {PROFILE_RE.pattern}")
        fields = _mapping(body, where, "the profile")
        _check_keys(fields, _PROFILE_KEYS, _PROFILE_KEYS, where)
        adds = _names(fields["capabilities"], where, "capabilities", scalar_ok=False)
        for cap in adds:
            if cap not in caps:
                _fail(where, f"unknown capability {cap!r} (declared: {', '.join(caps)})")
        description = _text(fields["description"], where, "description")
        profiles.append(Profile(prof_name, description, adds))
    return tuple(profiles)


def _parse_source(value: object, where: str) -> Source:
    data = _mapping(value, where, "'source'")
    _check_keys(data, _SOURCE_KEYS, frozenset({"brief"}), f"{where}: source")
    brief = _names(data["brief"], where, "source.brief", scalar_ok=True)
    if not brief:
        _fail(where, "field 'source.brief' must name at least one BRIEF item")
    for item in brief:
        if not BRIEF_RE.match(item):
            _fail(where, f"source.brief item {item!r} must match {BRIEF_RE.pattern}")
    prs = _names(data.get("pr"), where, "source.pr", scalar_ok=True)
    for pr in prs:
        if not PR_RE.match(pr):
            _fail(where, f"source.pr item {pr!r} must look like '#915'")
    design: str | None = None
    if data.get("design") is not None:
        design = _text(data["design"], where, "source.design")
        if not DESIGN_RE.match(design):
            _fail(where, f"source.design {design!r} must look like '§6'")
    peers = _names(data.get("peer_tests"), where, "source.peer_tests", scalar_ok=False)
    for peer in peers:
        if not PEER_TEST_RE.match(peer):
            _fail(where, f"source.peer_tests item {peer!r} must be a Go test name (Test...)")
    return Source(brief=brief, pr=prs, design=design, peer_tests=peers)


def _parse_requirement(
    value: object, index: int, name: str, caps: Mapping[str, str]
) -> Requirement:
    data = _mapping(value, f"{name}: requirements[{index}]", "a requirement")
    raw_id = data.get("id")
    rid = raw_id if isinstance(raw_id, str) else f"requirements[{index}]"
    where = f"{name}: requirement {rid}"
    _check_keys(data, _REQ_KEYS | _REQ_OPTIONAL, _REQ_KEYS, where)
    match = ID_RE.match(rid)
    if match is None:
        _fail(where, f"id {raw_id!r} must match {ID_RE.pattern}")
    area = _text(data["area"], where, "area")
    expected_area = AREAS[match.group(1)][0]
    if area != expected_area:
        _fail(where, f"area {area!r} does not match prefix {match.group(1)} ({expected_area!r})")
    level = data["level"]
    if level not in LEVELS:
        _fail(where, f"level {level!r} must be one of {', '.join(LEVELS)}")
    needs = _names(data["capabilities"], where, "capabilities", scalar_ok=False)
    for cap in needs:
        if cap not in caps:
            _fail(where, f"unknown capability {cap!r} (declared: {', '.join(caps)})")
    without = _names(data.get("without", []), where, "without", scalar_ok=False)
    for cap in without:
        if cap not in caps:
            _fail(where, f"unknown capability {cap!r} in without")
    text = _text(data["text"], where, "text")
    if not re.search(rf"\b{level}\b", text):
        _fail(where, f"text does not use its level keyword {level}")
    return Requirement(
        id=rid,
        area=area,
        title=_text(data["title"], where, "title"),
        level=str(level),
        text=text,
        capabilities=needs,
        source=_parse_source(data["source"], where),
        without=without,
    )


def _needs_cell(req: Requirement) -> str:
    needs = _code_list(req.capabilities)
    if req.without:
        needs += " (without " + ", ".join(f"`{c}`" for c in req.without) + ")"
    return needs


def _parse(text: str, name: str) -> Catalog:
    _check_duplicate_keys(text, name)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # pragma: no cover - compose() above fails first
        _fail(name, f"not valid YAML: {exc}")
    data = _mapping(raw, name, "the document")
    _check_keys(data, _TOP_KEYS, _REQUIRED_TOP_KEYS, name)
    if data["version"] != 1:
        _fail(name, f"unsupported version {data['version']!r} (expected 1)")
    caps = _parse_capabilities(data["capabilities"], name)
    faults = (_parse_capabilities(data["harness_faults"], f"{name}: harness_faults")
              if "harness_faults" in data else {})
    clash = sorted(set(caps) & set(faults))
    if clash:
        _fail(f"{name}: harness_faults", f"{', '.join(clash)} declared as a node capability too")
    profiles = _parse_profiles(data["profiles"], name, caps)
    raw_reqs = data["requirements"]
    if not isinstance(raw_reqs, list) or not raw_reqs:
        _fail(name, "'requirements' must be a non-empty list")
    reqs: list[Requirement] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_reqs):
        req = _parse_requirement(item, index, name, {**caps, **faults})
        if req.id in seen:
            _fail(f"{name}: requirement {req.id}", "duplicate id")
        seen.add(req.id)
        reqs.append(req)
    return Catalog(version=1, capabilities=caps, profiles=profiles, requirements=tuple(reqs),
                   harness_faults=faults)


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate the catalog (default: the packaged conformance/requirements.yaml).

    Raises :class:`CatalogError` naming the file and the offending id or field.
    """
    if path is None:
        name = PACKAGED_NAME
        text = resources.files("conformance").joinpath("requirements.yaml").read_text("utf-8")
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(name, f"cannot read: {exc.strerror or exc}")
    return _parse(text, name)


# --------------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) if names else "—"


def _source_cell(source: Source) -> str:
    brief = [i for i in source.brief if i != "suite"]
    parts = ["BRIEF " + ", ".join(brief)] if brief else []
    if "suite" in source.brief:
        parts.append("suite-defined")
    if source.pr:
        parts.append("PR " + ", ".join(source.pr))
    if source.design:
        parts.append("design " + source.design)
    cell = _cell(" · ".join(parts))
    if source.peer_tests:
        cell += "<br>peer: " + ", ".join(f"`{t}`" for t in source.peer_tests)
    return cell


def render_markdown(catalog: Catalog) -> str:
    """The human page for the catalog (deterministic: same catalog, same bytes)."""
    reqs = catalog.requirements
    counts = {level: sum(1 for r in reqs if r.level == level) for level in LEVELS}
    out: list[str] = [
        "# Requirement catalog",
        "",
        "<!-- Generated by `python -m conformance.catalog` from conformance/requirements.yaml;"
        " do not edit by hand. -->",
        "",
        "This page lists every requirement the conformance suite certifies for the durable"
        " applied-index and snapshot-persist protocol of a Raft state machine. The source of"
        " truth is `conformance/requirements.yaml`; this page is rendered from it, and a test"
        " fails when the two disagree.",
        "",
        "- **IDs are stable.** An ID is never renumbered or reused; its prefix names its area."
        ' Tests cite the IDs they check with `@pytest.mark.req("ST-001", ...)`.',
        "- **Levels** follow RFC 2119: MUST is required for conformance, SHOULD is expected"
        " unless there is a reason not to, MAY is optional.",
        "- **Needs** lists the capabilities an implementation must expose for the requirement"
        " to be tested. A requirement with no needs applies to every implementation.",
        "- **Source** cites the BRIEF item (S, P, C, M items, or a § section; `suite` marks a"
        " requirement the suite adds), the elastickv PR (#910 design, #915 plumbing, #934 skip"
        " gate), the design-document section, and the elastickv peer tests that check the"
        " same behaviour.",
        "",
        "Words used below: the *meta key* is the durable applied index the store keeps beside"
        " its data; `last_applied_index()` reads it (the *reader*) and"
        " `set_durable_applied_index()` writes it (the *writer*, or *pin*); the *pointer* is"
        " the durable snapshot token (snapshot index and CRC32C); at cold start *have* is the"
        " durable applied index and *snap* the pointer's index; the *effective applied index*"
        " is the index the node reports after open, and delivery resumes at the next one.",
        "",
        f"In all: {len(reqs)} requirements ({counts['MUST']} MUST, {counts['SHOULD']} SHOULD,"
        f" {counts['MAY']} MAY) in {len(AREAS)} areas.",
        "",
        "## Capabilities",
        "",
        "| Capability | Meaning |",
        "|---|---|",
    ]
    for cap, desc in catalog.capabilities.items():
        out.append(f"| `{cap}` | {_cell(desc)} |")
    if catalog.harness_faults:
        out += ["", "Harness faults: the adapter provides them, not the node.", "",
                "| Fault | Meaning |", "|---|---|"]
        out += [f"| `{f}` | {_cell(d)} |" for f, d in catalog.harness_faults.items()]
    out += ["", "## Profiles", ""]
    out.append(
        "Each profile builds on the previous one. A profile covers the requirements whose"
        " node needs are all within its cumulative capabilities; a harness fault a"
        " requirement needs (" + ", ".join(f"`{f}`" for f in catalog.harness_faults)
        + ") does not decide its profile. A profile is certified when the node advertises all"
        " of its capabilities and every MUST requirement it covers passed: none failed, none"
        " only not applicable, none without a case. A case that needs a harness fault the"
        " adapter cannot inject is not applicable; when the node had everything else the case"
        " needs, the harness left the requirements it cites untested, and no profile with one"
        " of them among its MUST requirements is certified: the report names the fault, the"
        " adapter's reason and the requirements."
    )
    out += [
        "",
        "| Profile | Adds | Cumulative capabilities | Requirements | MUST |",
        "|---|---|---|---|---|",
    ]
    for prof in catalog.profiles:
        cumulative = catalog.profile_capabilities(prof.name)
        ordered = [c for c in catalog.capabilities if c in cumulative]
        covered = catalog.for_profile(prof.name)
        must = sum(1 for r in covered if r.level == "MUST")
        out.append(
            f"| `{prof.name}` | {_code_list(prof.capabilities)} | {_code_list(ordered)}"
            f" | {len(covered)} | {must} |"
        )
    out.append("")
    for prof in catalog.profiles:
        out.append(f"- `{prof.name}`: {_cell(prof.description)}")
    out += [
        "",
        "## Areas",
        "",
        "| Prefix | Area | Requirements | BRIEF items |",
        "|---|---|---|---|",
    ]
    for prefix, (_, heading) in AREAS.items():
        area_reqs = catalog.in_area(prefix)
        items = sorted({i for r in area_reqs for i in r.source.brief}, key=_brief_order)
        anchor = _anchor(prefix, heading)
        out.append(
            f"| {prefix} | [{heading}](#{anchor}) | {len(area_reqs)} | {_cell(', '.join(items))} |"
        )
    for prefix, (_, heading) in AREAS.items():
        area_reqs = tuple(sorted(catalog.in_area(prefix), key=lambda r: r.id))
        out += ["", f"## {prefix}: {heading}", ""]
        if not area_reqs:
            out.append("No requirement yet.")
            continue
        out += ["| ID | Level | Requirement | Needs | Source |", "|---|---|---|---|---|"]
        for req in area_reqs:
            out.append(
                f'| <a id="{req.id.lower()}"></a>{req.id} | {req.level}'
                f" | **{_cell(req.title)}.** {_cell(req.text)}"
                f" | {_needs_cell(req)} | {_source_cell(req.source)} |"
            )
    peers = catalog.peer_tests()
    out += [
        "",
        "## Peer tests",
        "",
        "The elastickv tests that check the same behaviours, and the requirements citing them.",
        "",
        "| Peer test | Requirements |",
        "|---|---|",
    ]
    for name, ids in peers.items():
        out.append(f"| `{name}` | " + ", ".join(f"[{i}](#{i.lower()})" for i in ids) + " |")
    out.append("")
    return "\n".join(out)


def _brief_order(item: str) -> tuple[int, int]:
    """Sort BRIEF items as the brief does: S, P, C, M items, then § sections, then ``suite``."""
    if item == "suite":
        return (9, 0)
    if item.startswith("§"):
        return (8, int(item[1:]))
    return ("SPCM".index(item[0]), int(item[1:]))


def _anchor(prefix: str, heading: str) -> str:
    """GitHub's anchor for the heading ``## {prefix}: {heading}``."""
    title = f"{prefix}: {heading}".lower()
    return re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-")


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.catalog",
        description="Render docs/requirements.md from conformance/requirements.yaml.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if docs/requirements.md differs from the rendered catalog",
    )
    args = parser.parse_args(argv)
    try:
        rendered = render_markdown(load_catalog())
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else None
    if args.check:
        if current != rendered:
            print(
                f"{DOC_PATH} is out of date with conformance/requirements.yaml; "
                "run `python -m conformance.catalog` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{DOC_PATH} is up to date")
        return 0
    if current != rendered:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(rendered, encoding="utf-8", newline="\n")
        print(f"wrote {DOC_PATH}")
    else:
        print(f"{DOC_PATH} is already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
