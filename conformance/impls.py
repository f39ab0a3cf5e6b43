"""Turn an `--impl` value into an adapter factory.

    reference            the reference node, in process, on a simulated disk
    reference-process    the reference node as a local process (its stdio server)
    anything else        a command line (shlex-split); `{data_dir}` is replaced by the
                         node's data directory, e.g. "python examples/minimal_node.py
                         --data-dir {data_dir}"
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reference_impl.node import NodeConfig

from .adapters.base import Adapter
from .adapters.inprocess import InProcessAdapter, NodeFactory, reference_node
from .cases import Case

REFERENCE_ARGV = [sys.executable, "-m", "reference_impl.server", "--data-dir", "{data_dir}"]
_SWITCHES = {"reader": "--no-reader", "writer": "--no-writer",
             "header_applier": "--no-header-applier"}


def reference_config(capabilities: Iterable[str] | None, without: Iterable[str] = ()) -> NodeConfig:
    """The reference's switches for a capability set (None = every capability)."""
    caps = set(capabilities) if capabilities is not None else {
        "reader", "writer", "header_applier", "pin_after_restore"}
    caps -= set(without)
    return NodeConfig(reader="reader" in caps, writer="writer" in caps,
                      header_applier="header_applier" in caps,
                      pin_after_restore="pin_after_restore" in caps)


@dataclass
class Implementation:
    """How to reach the implementation under test, and what to call it in reports."""

    name: str
    factory: Callable[[Case], Adapter]
    in_process: bool


def resolve(impl: str, *, seed: int = 0, timeout: float = 10.0,
            profile_capabilities: frozenset[str] | None = None,
            node_factory: NodeFactory = reference_node, label: str = "reference") -> Implementation:
    if impl == "reference":
        def in_process(case: Case) -> Adapter:
            config = reference_config(profile_capabilities, case.without)
            return InProcessAdapter(seed=seed, config=config, node_factory=node_factory,
                                    name=label)
        return Implementation(f"in-process {label}", in_process, True)

    from .adapters.process import ProcessAdapter

    if impl == "reference-process":
        def reference_process(case: Case) -> Adapter:
            config = reference_config(profile_capabilities, case.without)
            argv = list(REFERENCE_ARGV)
            argv += [flag for cap, flag in _SWITCHES.items() if not getattr(config, cap)]
            if config.pin_after_restore:
                argv.append("--pin-after-restore")
            return ProcessAdapter(argv, timeout=timeout, name="reference-process")
        return Implementation("reference (local process)", reference_process, False)

    argv = shlex.split(impl)
    if not argv:
        raise ValueError("--impl is empty")

    def process(case: Case) -> Adapter:
        return ProcessAdapter(argv, timeout=timeout)
    return Implementation(f"process: {impl}", process, False)
