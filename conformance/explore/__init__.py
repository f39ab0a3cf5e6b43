"""`conformance explore`: Hypothesis finds, shrinks and saves failing step sequences.

Handwritten cases cover the bugs someone thought of. Exploration generates the cases
instead: a Hypothesis `RuleBasedStateMachine` whose every rule builds ONE suite `Step`
(the arguments exactly as the YAML loader would produce them) and runs it through one
long-lived `CaseRunner` over the chosen adapter. The same oracle that judges the suites
judges every generated step, so every adapter works (in process, local process, image).
The machine keeps the sequences meaningful (preconditions) and adds only expectations the
protocol fixes exactly: an armed pin error fails the persist with `pin_failed`; a reader
error or a torn meta value makes the cold start fall back with `read_err` /
`missing_meta`; a damaged snapshot fails `open` with the matching verification error; and
`last_applied_index` reads the value the requirements fix while they fix one.

A failing step raises `Found` (one subclass per violated requirement, raised from one
place, so Hypothesis tracks and shrinks one failure per requirement); Hypothesis shrinks
it to a minimal sequence; the sequence is written as a YAML fixture in the suite format
with a `fixture:` block (catches, guards = the violated requirement, seed, implementation
identity from `hello`, Hypothesis version). Findings are deduplicated by the violated
requirement and the shrunk sequence. `conformance replay FILE --impl ...` reproduces a
fixture. Hypothesis' example database lives in `.hypothesis/conformance` (a cache,
gitignored); the YAML fixtures are the record.

Crashes come two ways: at the node's failpoints (named places in its code; capability
`failpoints`), and at crash points, the node's own nth write / fsync / fsyncdir / rename,
which the adapter injects with no cooperation from the node (the `crash_points` fault:
the simulated disk in process, the crash-simulating filesystem under a process or a
container). A node without failpoints still gets its crash orderings explored;
`--hide failpoints` shows what such a node gets.

`--exhaustive` is the bounded-exhaustive mode (CrashMonkey/B3 applied to this protocol):
every sequence of up to `--depth` operations from a small alphabet that includes
snapshot_begin and snapshot_persist, each combined with every crash point (a failpoint at
each of its hits; each kind of file-system operation at its 1st..`--crash-nth`-th
occurrence in the last operation) and every power-loss mode at the end, then restart,
open (with every crash point of the recovery), replay and the exactly-once check.

    conformance explore --impl mutant:pin-error-ignored --time 30
    conformance explore --impl reference --examples 500 --seed 7 --out /tmp/found
    conformance explore --impl "python examples/minimal_node.py --data-dir {data_dir}" --time 120
    conformance explore --impl reference-process --examples 400 --jobs 2
    conformance explore --exhaustive --depth 4

The package, in the order a step travels through it:

    entries.py     the entries generated, from small worlds of keys so that they interact,
                   drawn as flat small-integer codes mapped through tables
    driver.py      Driver: one node, one growing case, a step at a time; Target, probe
    model.py       NodeModel: what the machine knows of the node (pointer, meta key, faults)
    machine.py     ExploreMachine: the rules (one suite step each) and their preconditions
    choice.py      how the next rule is chosen: Hypothesis' choice, with fewer checks
    findings.py    Found (one exception class per requirement), Finding, Stats
    fixtures.py    a finding as a YAML suite file: written, deduplicated, replayed
    engine.py      what a campaign changes in Hypothesis' engine (step clock, deadline, shrinking)
    campaign.py    one campaign: one Hypothesis run of the machine, its findings shrunk
    run.py         explore(): the budget as a series of campaigns, merged; the report
    workers.py     campaigns in worker processes (--jobs N)
    database.py    the example database: a directory, or Redis shared by many machines
    exhaustive.py  exhaustive(): every short sequence x every crash point x every end fault
    command.py     the `conformance explore` subcommand
"""

from __future__ import annotations

from .campaign import campaign_seed
from .choice import ALWAYS_ENABLED
from .command import add_parser, command
from .driver import (
    OPERATION_POINTS,
    RECOVERY_POINTS,
    SWITCHED,
    Driver,
    Target,
    make_step,
    probe,
    step_requirements,
)
from .entries import KEYS, Clock, draw_entries, entry_codes, make_entries
from .exhaustive import ALPHABET, ExhaustiveReport, exhaustive, sequences
from .findings import (
    Finding,
    Found,
    Stats,
    collect_found,
    failed_step,
    fixture_key,
    found_class,
    make_found,
    reblame,
    throw,
)
from .fixtures import (
    Verification,
    fixture_capabilities,
    fixture_text,
    flow,
    keep_fixture,
    print_finding,
    save_fixture,
    step_line,
    verify_fixture,
)
from .machine import SNAPSHOT_TAMPERS, ExploreMachine
from .model import NodeModel
from .run import DEFAULT_DATABASE, DEFAULT_OUT, MAX_CAMPAIGN, ExploreReport, explore

__all__ = [
    "ALPHABET", "ALWAYS_ENABLED", "DEFAULT_DATABASE", "DEFAULT_OUT", "KEYS", "MAX_CAMPAIGN",
    "OPERATION_POINTS", "RECOVERY_POINTS", "SNAPSHOT_TAMPERS", "SWITCHED",
    "Clock", "Driver", "ExhaustiveReport", "ExploreMachine", "ExploreReport", "Finding",
    "Found", "NodeModel", "Stats", "Target", "Verification",
    "add_parser", "campaign_seed", "collect_found", "command", "draw_entries", "entry_codes",
    "exhaustive", "explore", "failed_step", "fixture_capabilities", "fixture_key",
    "fixture_text", "flow", "found_class", "keep_fixture", "make_entries", "make_found",
    "make_step",
    "print_finding", "probe", "reblame",
    "save_fixture", "sequences", "step_line", "step_requirements", "throw", "verify_fixture",
]
