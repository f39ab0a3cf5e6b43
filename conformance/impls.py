"""Turn an `--impl` value into an adapter factory.

    reference            the reference node, in process, on a simulated disk
    reference-process    the reference node as a local process (its stdio server)
    mutant:NAME          a mutant of the reference (reference_impl/mutants.py), in process
    mutant-process:NAME  the same mutant as a local process (the server's --mutant NAME)
    image:NAME[:TAG]     a Docker image serving the protocol over TCP 7070, data on a /data
                         volume (conformance/adapters/container/); the CLI's --image
    anything else        a command line (shlex-split); `{data_dir}` is replaced by the
                         node's data directory, e.g. "python examples/minimal_node.py
                         --data-dir {data_dir}"
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reference_impl.node import NodeConfig

from .adapters.base import Adapter, AdapterError
from .adapters.inprocess import InProcessAdapter, NodeFactory, reference_node
from .cases import Case, CaseResult
from .forkserver import Program
from .forkserver import enabled as forkserver_enabled

REFERENCE_ARGV = [sys.executable, "-m", "reference_impl.server", "--data-dir", "{data_dir}"]
# Its lifetimes are forked from a process that imported the server once (conformance/forkserver/), with
# what a start imports only later (a digest, --mutant, argparse for anything but the plain
# command line): a start costs a fork, not an interpreter (docs/performance.md).
REFERENCE_PROGRAM = Program.module_run(
    "reference_impl.server", ["hashlib", "argparse", "reference_impl.mutants",
                              "reference_impl.disk.simdisk"])
_SWITCHES = {"reader": "--no-reader", "writer": "--no-writer",
             "header_applier": "--no-header-applier"}


def reference_config(capabilities: Iterable[str] | None, without: Iterable[str] = ()) -> NodeConfig:
    """The reference's switches for a capability set (None = every capability)."""
    caps = set(capabilities) if capabilities is not None else {
        "reader", "writer", "header_applier", "pin_after_restore"}
    caps -= set(without)
    return NodeConfig(reader="reader" in caps, writer="writer" in caps,
                      header_applier="header_applier" in caps,
                      # the reference pins after a restore only with its writer on
                      pin_after_restore="pin_after_restore" in caps and "writer" in caps)


@dataclass
class Implementation:
    """How to reach the implementation under test, and what to call it in reports."""

    name: str
    factory: Callable[[Case], Adapter]
    in_process: bool


def _mutant_name(impl: str) -> str:
    from reference_impl.mutants import get

    name = impl.split(":", 1)[1]
    try:
        return get(name).name
    except KeyError as exc:
        raise ImplementationUnavailable(exc.args[0]) from None


POWER_LOSS_SETTINGS = ("auto", "off", "require")


def power_loss_setting() -> bool | None:
    """CONFORMANCE_POWER_LOSS: auto (default: the crash-simulating filesystem where FUSE
    works), off (never: power-loss cases are not applicable, and the verdict says so), or
    require (an error when it cannot be mounted)."""
    value = os.environ.get("CONFORMANCE_POWER_LOSS", "auto")
    if value not in POWER_LOSS_SETTINGS:
        raise ImplementationUnavailable(
            f"CONFORMANCE_POWER_LOSS={value!r}: expected one of {', '.join(POWER_LOSS_SETTINGS)}")
    return {"auto": None, "off": False, "require": True}[value]


def check_forkserver_setting() -> None:
    """CONFORMANCE_FORKSERVER (conformance/forkserver/): auto or off, checked before any case
    runs (the reference node's lifetimes and the crash-simulating filesystem's daemons)."""
    try:
        forkserver_enabled()
    except ValueError as exc:
        raise ImplementationUnavailable(str(exc)) from None


def needs_layer(case: Case) -> bool:
    """Whether a case needs the crash-simulating filesystem under the node (a power loss or
    a crash point); the others run on a plain directory, which is cheaper to set up.
    CONFORMANCE_LAYER=all puts it under every case (to measure or debug the layer)."""
    if os.environ.get("CONFORMANCE_LAYER") == "all":
        return True
    return bool({"power_loss", "crash_points", "sync_accounting"} & set(case.capabilities))


class ImplementationUnavailable(ValueError):
    """The implementation cannot be reached at all (no Docker engine, no such image)."""


def _image(image: str, timeout: float,
           profile_capabilities: frozenset[str] | None, seed: int = 0) -> Implementation:
    """A container image. An image labelled `conformance.capability-switches=reference-server`
    (the reference's, docker/Dockerfile) takes the reference server's capability switches as
    arguments, so a case's `without` is honoured as for the reference process."""
    from .adapters.base import AdapterError
    from .adapters.container import ContainerAdapter, inspect_image

    power_loss = power_loss_setting()
    check_forkserver_setting()
    if not image:
        raise ImplementationUnavailable("image: needs an image name, e.g. image:NAME[:TAG]")
    try:
        info = inspect_image(image)
    except AdapterError as exc:
        raise ImplementationUnavailable(str(exc)) from None

    def container(case: Case) -> Adapter:
        command = None
        if info.reference_switches:
            config = reference_config(profile_capabilities, case.without)
            command = [flag for cap, flag in _SWITCHES.items() if not getattr(config, cap)]
            if config.pin_after_restore:
                command.append("--pin-after-restore")
        return ContainerAdapter(image, timeout=timeout, command=command, name=image, seed=seed,
                                use_layer=needs_layer(case), power_loss=power_loss)
    return Implementation(f"container: {image}", container, False)


def resolve(impl: str, *, seed: int = 0, timeout: float = 10.0,
            profile_capabilities: frozenset[str] | None = None,
            node_factory: NodeFactory = reference_node, label: str = "reference") -> Implementation:
    if impl.startswith("image:"):
        return _image(impl.split(":", 1)[1], timeout, profile_capabilities, seed)
    extra_argv: list[str] = []
    if impl.startswith("mutant:"):
        from reference_impl.mutants import get

        name = _mutant_name(impl)
        impl, node_factory, label = "reference", get(name).make_node, f"mutant {name}"
    elif impl.startswith("mutant-process:"):
        name = _mutant_name(impl)
        impl, extra_argv, label = "reference-process", ["--mutant", name], f"mutant {name}"
    if impl == "reference":
        def in_process(case: Case) -> Adapter:
            config = reference_config(profile_capabilities, case.without)
            return InProcessAdapter(seed=seed, config=config, node_factory=node_factory,
                                    name=label)
        return Implementation(f"in-process {label}", in_process, True)

    from .adapters.process import ProcessAdapter

    power_loss = power_loss_setting()
    check_forkserver_setting()
    if impl == "reference-process":
        def reference_process(case: Case) -> Adapter:
            config = reference_config(profile_capabilities, case.without)
            argv = list(REFERENCE_ARGV)
            argv += [flag for cap, flag in _SWITCHES.items() if not getattr(config, cap)]
            if config.pin_after_restore:
                argv.append("--pin-after-restore")
            return ProcessAdapter(argv + extra_argv, timeout=timeout, seed=seed,
                                  use_layer=needs_layer(case), power_loss=power_loss,
                                  program=REFERENCE_PROGRAM,
                                  name=f"{label}-process" if extra_argv else "reference-process")
        return Implementation(f"{label} (local process)", reference_process, False)

    argv = shlex.split(impl)
    if not argv:
        raise ValueError("--impl is empty")

    def process(case: Case) -> Adapter:
        return ProcessAdapter(argv, timeout=timeout, seed=seed, use_layer=needs_layer(case),
                              power_loss=power_loss)
    return Implementation(f"process: {impl}", process, False)


def identify(results: list[CaseResult], impl: Implementation, stuck: str | None
              ) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """The implementation's identity and capabilities, as it announced them in hello (with the
    harness faults the adapter can inject), and the faults it cannot, with its reasons. A
    node that never started has announced nothing (and is not asked again). Both front ends
    (the CLI and the pytest plugin) call it, so their reports name the node alike."""
    probe_case = results[0].case if results else None
    if probe_case is None:
        return {"name": impl.name}, set(), {}
    if stuck is not None:
        return {"name": f"{impl.name} (never started)", "never_started": stuck}, set(), {}
    adapter = impl.factory(probe_case)
    try:
        hello = adapter.start("synced")
        unavailable = adapter.unavailable_faults()
        return ({str(k): str(v) for k, v in hello.implementation.items()},
                set(hello.capabilities) | (set(adapter.fault_capabilities) - set(unavailable)),
                unavailable)
    except AdapterError as exc:  # it started for the cases, not now: nothing is advertised
        print(f"conformance: the node did not start to say who it is: {exc}", file=sys.stderr)
        return {"name": impl.name}, set(), {}
    finally:
        adapter.close()
