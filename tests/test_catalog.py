"""The requirement catalog loads, is well formed, covers the brief, and its page is current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.catalog import (
    AREAS,
    DOC_PATH,
    LEVELS,
    Catalog,
    CatalogError,
    load_catalog,
    main,
    render_markdown,
)

# BRIEF §9: the elastickv peer tests the catalog must cover, by their Go names.
# Names marked "unverified" are spelled from the brief's shorthand; the others were checked
# against elastickv's test sources (store/, internal/raftengine/etcd/, kv/).
BRIEF_PEER_TESTS: tuple[str, ...] = (
    # store
    "TestLastAppliedIndex_MissingMetaKey",
    "TestSetDurableAppliedIndex_RoundTrip",
    "TestApplyMutationsRaftAt_BundlesMetaAppliedIndex",
    "TestApplyMutationsRaftAt_AlreadyLandedAdvancesStaleAppliedIndex",  # unverified
    "TestApplyMutationsRaftAt_AlreadyLandedRequiresEveryMutationKey",  # unverified
    "TestApplyMutationsRaftAt_AlreadyLandedFastPathDoesNotHideConflict",  # unverified
    "TestApplyMutationsRaftAt_ZeroIndexLeavesMetaKey",
    "TestDeletePrefixAtRaftAt_BundlesMetaAppliedIndex",
    "TestSetDurableAppliedIndex_UsesPebbleSync",
    "TestSetDurableAppliedIndex_Monotonic",
    "TestSetDurableAppliedIndex_AdvancesOnlyForward",
    "TestLastAppliedIndex_CorruptValue",
    # engine (both snapshot persist sites)
    "TestPersistCreatedSnapshot_BumpsAppliedIndex",
    "TestPersistCreatedSnapshot_NilFSMNoOp",
    "TestPersistCreatedSnapshot_BumpErrorAborts",
    "TestPersistLocalSnapshotPayload_BumpsAppliedIndex",
    "TestPersistLocalSnapshotPayload_BumpErrorAborts",
    # cold-start skip gate
    "TestSkipGate_SkipsWhenFSMFreshEnough",
    "TestSkipGate_ExecutesWhenFSMStale",
    "TestSkipGate_ReturnsEffectiveAppliedOnSkip",
    "TestSkipGate_EmitsAfterSuccess",
    "TestSkipGate_SkipsWhenFSMAtSnapshotButBehindCommitTail",  # unverified
    "TestSkipGate_FallbackMissingMeta",
    "TestSkipGate_FallbackReadErr",
    "TestSkipGate_FallbackNotReader",
    "TestApplyHeaderStateOnSkip_TruncatedFile",
    "TestApplyHeaderStateOnSkip_WrongTokenCRC",
    "TestApplyHeaderStateOnSkip_BodyCorruption",
    # header round trip, v1 (skip path) and v2 (restore path)
    "TestSkipGate_KVFSMHeaderRoundTrip",
    "TestFSMSnapshotRestoreV2_PlumbsCutover",
)

BRIEF_ITEMS: tuple[str, ...] = (
    *(f"S{n}" for n in range(1, 8)),
    *(f"P{n}" for n in range(1, 7)),
    *(f"C{n}" for n in range(1, 8)),
    "M1",
    "M2",
)

CAPABILITIES = (
    "reader",
    "writer",
    "header_applier",
    "unsynced_mode",
    "failpoints",
    "tamper_hooks",
    "install_snapshot",
    "pin_after_restore",
    "power_loss",
)

PROFILES = ("baseline", "pinned", "skip", "complete", "complete-restore-pin")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# ------------------------------------------------------------------ the real catalog


def test_catalog_loads(catalog: Catalog) -> None:
    assert catalog.version == 1
    assert len(catalog.requirements) >= 40


def test_ids_are_unique_and_well_formed(catalog: Catalog) -> None:
    ids = [r.id for r in catalog.requirements]
    assert len(ids) == len(set(ids))
    for req in catalog.requirements:
        assert re.fullmatch(r"(ST|EN|SP|CO|CS|HV|DM|XR|BI)-\d{3}", req.id), req.id
        assert AREAS[req.prefix][0] == req.area, req.id
        assert req.level in LEVELS, req.id
        assert re.search(rf"\b{req.level}\b", req.text), req.id


def test_ids_are_numbered_in_order_within_each_area(catalog: Catalog) -> None:
    # New requirements are appended with the next free number; nothing is renumbered.
    for prefix in AREAS:
        numbers = [int(r.id[3:]) for r in catalog.in_area(prefix)]
        assert numbers == sorted(numbers), prefix
        assert numbers, f"area {prefix} has no requirement"


HARNESS_FAULTS = ("power_loss", "crash_points", "sync_accounting")


def test_capabilities_and_profiles_are_the_agreed_ones(catalog: Catalog) -> None:
    assert tuple(catalog.capabilities) == tuple(c for c in CAPABILITIES
                                                if c not in HARNESS_FAULTS)
    assert tuple(catalog.harness_faults) == HARNESS_FAULTS
    assert tuple(p.name for p in catalog.profiles) == PROFILES
    assert catalog.profile_capabilities("baseline") == frozenset()
    assert catalog.profile_capabilities("pinned") == {"writer"}
    assert catalog.profile_capabilities("skip") == {"writer", "reader", "header_applier"}
    assert catalog.profile_capabilities("complete-restore-pin") == set(catalog.capabilities)


def test_power_loss_requirements_bind_the_profiles_of_their_node_capabilities(
        catalog: Catalog) -> None:
    """A harness fault never takes a requirement out of every profile: the durability
    requirements are certified only where a power loss could be injected."""
    baseline = {r.id for r in catalog.for_profile("baseline")}
    assert {"XR-003", "SP-007"} <= baseline
    # DM-001 needs the reader to be observable (a node without it replays from the
    # snapshot at every start), not because of the fault
    skip = {r.id for r in catalog.for_profile("skip")}
    assert "DM-001" in skip - baseline
    complete = {r.id for r in catalog.for_profile("complete")}
    assert {"DM-002", "DM-004", "DM-005", "ST-005"} <= complete


def test_profiles_are_cumulative(catalog: Catalog) -> None:
    previous: tuple[str, ...] = ()
    for name in PROFILES:
        covered = {r.id for r in catalog.for_profile(name)}
        caps = catalog.profile_capabilities(name)
        # A higher profile keeps every requirement, except those only for nodes lacking
        # one of its capabilities (e.g. SP-004, no writer, leaves at "pinned").
        dropped = {rid for rid in set(previous) - covered
                   if caps.intersection(catalog.by_id(rid).without)}
        assert set(previous) - dropped <= covered, name
        previous = tuple(sorted(covered))
        for req in catalog.for_profile(name):
            assert set(req.capabilities) - set(catalog.harness_faults) <= caps
            assert not caps.intersection(req.without)


def test_without_requirements_leave_the_profiles_that_have_the_capability(
    catalog: Catalog,
) -> None:
    assert "CS-003" in {r.id for r in catalog.for_profile("baseline")}
    assert "CS-003" not in {r.id for r in catalog.for_profile("skip")}
    assert "SP-004" not in {r.id for r in catalog.for_profile("pinned")}


def test_baseline_covers_apply_replay_and_exactly_once(catalog: Catalog) -> None:
    baseline = {r.id for r in catalog.for_profile("baseline")}
    # every cold start is a full restore, yet apply, replay and exactly-once must hold
    assert {"EN-001", "EN-002", "CS-003", "CS-007", "XR-001", "SP-004"} <= baseline


def test_by_id(catalog: Catalog) -> None:
    assert catalog.by_id("ST-001").area == "store"
    with pytest.raises(KeyError):
        catalog.by_id("ST-999")
    with pytest.raises(KeyError):
        catalog.profile_capabilities("no-such-profile")


def test_every_brief_peer_test_is_cited(catalog: Catalog) -> None:
    cited = set(catalog.peer_tests())
    missing = [name for name in BRIEF_PEER_TESTS if name not in cited]
    assert not missing, f"peer tests cited by no requirement: {missing}"


def test_every_brief_item_is_a_source(catalog: Catalog) -> None:
    cited = {item for r in catalog.requirements for item in r.source.brief}
    missing = [item for item in BRIEF_ITEMS if item not in cited]
    assert not missing, f"BRIEF items cited by no requirement: {missing}"


def test_cold_start_fallback_reasons_and_typed_errors_are_named(catalog: Catalog) -> None:
    texts = " ".join(r.text for r in catalog.requirements)
    for word in ("not_reader", "missing_meta", "read_err", "too_small", "token_crc", "file_crc"):
        assert word in texts, word
    for point in ("before_pin", "after_pin", "after_save", "mid_restore", "after_batch_commit"):
        assert point in texts, point


def test_doc_is_current(catalog: Catalog) -> None:
    assert DOC_PATH.exists(), "run `python -m conformance.catalog`"
    assert DOC_PATH.read_text(encoding="utf-8") == render_markdown(catalog), (
        "docs/requirements.md is stale: run `python -m conformance.catalog`"
    )


def test_render_is_deterministic_and_lists_every_id(catalog: Catalog) -> None:
    page = render_markdown(catalog)
    assert page == render_markdown(load_catalog())
    for req in catalog.requirements:
        assert f"</a>{req.id} | {req.level} |" in page


def test_main_check_passes_on_the_committed_doc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    capsys.readouterr()


def test_main_check_fails_on_a_stale_doc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "requirements.md"
    stale.write_text("# stale\n", encoding="utf-8")
    monkeypatch.setattr("conformance.catalog.DOC_PATH", stale)
    assert main(["--check"]) == 1
    assert "python -m conformance.catalog" in capsys.readouterr().err
    assert main([]) == 0
    assert main(["--check"]) == 0


# ------------------------------------------------------------------ broken catalogs

_HEADER = """\
version: 1
capabilities:
  reader: reports the durable applied index
  writer: pins the durable applied index
profiles:
  baseline:
    description: nothing
    capabilities: []
  pinned:
    description: the pin
    capabilities: [writer]
requirements:
"""

_GOOD = """\
  - id: ST-001
    area: store
    title: Absent meta key reads as not present
    level: MUST
    text: The reader MUST return (0, false) when the key is absent.
    capabilities: [reader]
    source:
      brief: S1
      pr: "#915"
      peer_tests: [TestLastAppliedIndex_MissingMetaKey]
"""


def _write(tmp_path: Path, body: str, header: str = _HEADER) -> Path:
    path = tmp_path / "requirements.yaml"
    path.write_text(header + body, encoding="utf-8")
    return path


def _requirement(**fields: str) -> str:
    values = {
        "id": "ST-002",
        "area": "store",
        "title": "Torn value reads as absent",
        "level": "MUST",
        "text": "The reader MUST return (0, false) for a torn value.",
        "capabilities": "[reader]",
        "brief": "S1",
    }
    values.update(fields)
    return (
        f"  - id: {values['id']}\n"
        f"    area: {values['area']}\n"
        f"    title: {values['title']}\n"
        f"    level: {values['level']}\n"
        f"    text: {values['text']}\n"
        f"    capabilities: {values['capabilities']}\n"
        f"    source:\n"
        f"      brief: {values['brief']}\n"
    )


def test_a_small_valid_catalog_loads(tmp_path: Path) -> None:
    cat = load_catalog(_write(tmp_path, _GOOD + _requirement()))
    assert [r.id for r in cat.requirements] == ["ST-001", "ST-002"]
    assert cat.by_id("ST-001").source.pr == ("#915",)
    assert cat.for_profile("baseline") == ()
    assert cat.profile_capabilities("pinned") == {"writer"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(_GOOD + _requirement(id="ST-001"), r"ST-001: duplicate id", id="dup-id"),
        pytest.param(
            _requirement(capabilities="[reader, teleport]"),
            r"ST-002: unknown capability 'teleport'",
            id="unknown-capability",
        ),
        pytest.param(_requirement(level="MUSTN'T"), r"ST-002: level \"MUSTN'T\"", id="bad-level"),
        pytest.param(_requirement(id="ST-1"), r"ST-1: id 'ST-1' must match", id="bad-id"),
        pytest.param(_requirement(id="XX-001"), r"XX-001: id 'XX-001' must match", id="prefix"),
        pytest.param(
            _requirement(area="entries"),
            r"ST-002: area 'entries' does not match prefix ST",
            id="area-mismatch",
        ),
        pytest.param(
            _requirement(text="The reader returns (0, false)."),
            r"ST-002: text does not use its level keyword MUST",
            id="no-keyword",
        ),
        pytest.param(_requirement(brief="Z9"), r"ST-002: source.brief item 'Z9'", id="bad-brief"),
        pytest.param(
            _requirement() + "    extra: field\n",
            r"ST-002: unknown field\(s\) extra",
            id="unknown-field",
        ),
    ],
)
def test_a_broken_catalog_names_the_problem(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(CatalogError, match=expected) as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_a_profile_with_an_unknown_capability_is_refused(tmp_path: Path) -> None:
    header = _HEADER.replace("capabilities: [writer]", "capabilities: [writer, psychic]")
    path = _write(tmp_path, _GOOD, header=header)
    with pytest.raises(CatalogError, match=r"profile 'pinned': unknown capability 'psychic'"):
        load_catalog(path)


def test_a_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    header = _HEADER.replace(
        "  writer: pins the durable applied index\n",
        "  writer: pins the durable applied index\n  reader: again\n",
    )
    path = _write(tmp_path, _GOOD, header=header)
    with pytest.raises(CatalogError, match=r"duplicate key 'reader'"):
        load_catalog(path)


def test_invalid_yaml_and_missing_files_are_catalog_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "  - id: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "absent.yaml")
