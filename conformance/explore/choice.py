"""How the exploring machine chooses its next rule: Hypothesis' choice, made cheaper.

Hypothesis' stateful engine chooses each step's rule with a `RuleStrategy`: it draws an
index among all the rules and rejects those whose precondition is false or that swarm
testing disabled for this sequence (three tries, then a scan of all of them). Every rule
it asks about costs a precondition evaluation, which Hypothesis also records for its
statistics, and, when valid, a choice that records the rule's swarm-testing flag again;
in a profile of in-process exploration that was a quarter of Hypothesis' time, and a
third once the entries were drawn as flat codes (entries.py).
`_RuleStrategy` makes the same choice with fewer checks and choices:

- every precondition is evaluated once per step (the state it reads only changes when a
  step runs);
- each rule's swarm-testing flag is drawn once per sequence, the first time the rule is
  valid, and kept;
- the rule is one integer drawn among the valid and enabled rules, in Hypothesis' order
  of the rules: the same uniform choice, and shrinking the integer moves towards the same
  rules;
- the `ALWAYS_ENABLED` rules escape swarm testing.

`rule_strategy(machine)` returns it, or None under a Hypothesis whose rule strategy lacks
what it builds on (Hypothesis' own choice then).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine, RuleStrategy

# Hypothesis' stateful engine does "swarm testing": each generated sequence enables a
# random subset of the rules. That diversifies the sequences, but a sequence whose
# `restart` is disabled dies at its first crash (no rule can run: Hypothesis discards the
# sequence). These rules are therefore never disabled: the lifecycle, and one productive
# rule when the node is open.
ALWAYS_ENABLED = frozenset({"restart", "open", "apply_write"})


class _RuleStrategy(RuleStrategy):
    """Hypothesis' choice of the next rule, with fewer checks and choices (module doc).
    `ExploreMachine` has no bundles, which this does not check."""

    def __init__(self, machine: RuleBasedStateMachine) -> None:
        super().__init__(machine)
        # (rule, name, its precondition, whether swarm testing may disable it)
        self._checks = [(r, r.function.__name__, _one_check(r.preconditions),
                         r.function.__name__ not in ALWAYS_ENABLED) for r in self.rules]
        self._valid: dict[str, bool] = {}  # this step's answers
        self._flags: Any = None  # this sequence's swarm-testing flags
        self._enabled: dict[str, bool] = {}  # and what they said

    def do_draw(self, data: Any) -> Any:
        machine = self.machine
        self._valid = valid = {}
        candidates = []
        for r, name, check, swarmed in self._checks:
            ok = valid[name] = check(machine)
            if ok and (not swarmed or self._swarm_enabled(data, name)):
                candidates.append(r)
        if not candidates:  # every valid rule disabled: the valid ones
            candidates = [r for r, name, _, _ in self._checks if valid[name]]
        if not candidates:
            return super().do_draw(data)  # Hypothesis says why no rule can run
        chosen = candidates[data.draw_integer(0, len(candidates) - 1)]
        return chosen, {k: data.draw(s) for k, s in chosen.arguments_strategies.items()}

    def _swarm_enabled(self, data: Any, name: str) -> bool:
        enabled = self._enabled.get(name)
        if enabled is None:
            if self._flags is None:
                self._flags = data.draw(self.enabled_rules_strategy)
            enabled = self._enabled[name] = bool(self._flags.is_enabled(name))
        return enabled

    def is_valid(self, rule: Any) -> bool:
        name = rule.function.__name__
        valid = self._valid.get(name)
        if valid is None:
            valid = self._valid[name] = all(p(self.machine) for p in rule.preconditions)
        return valid

    def _rule_is_enabled(self, r: Any) -> bool:  # (Hypothesis' own choice, the fallback)
        return self.is_valid(r) and (r.function.__name__ in ALWAYS_ENABLED
                                     or bool(super()._rule_is_enabled(r)))  # type: ignore[no-untyped-call]


def _one_check(preconditions: Sequence[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """A rule's preconditions as one call (each rule here has one, or none)."""
    if len(preconditions) == 1:
        return preconditions[0]
    return lambda machine: all(p(machine) for p in preconditions)


def rule_strategy(machine: RuleBasedStateMachine) -> RuleStrategy | None:
    """Our rule choice for `machine`; None where Hypothesis' rule strategy lacks what it
    builds on (another version: Hypothesis' own choice then, plain swarm testing)."""
    if not all(hasattr(RuleStrategy, a) for a in ("_rule_is_enabled", "is_valid")):
        return None  # pragma: no cover
    strategy = _RuleStrategy(machine)
    if not all(hasattr(strategy, a) for a in ("rules", "enabled_rules_strategy")):
        return None  # pragma: no cover
    return strategy
