"""The registry of learning rules: one entry per rule, looked up by name or integer id.

The integer id of a rule is its position in :data:`RULES`. Assignments store these ids, and
rule-aware layers dispatch on them with ``jax.lax.switch`` (DESIGN.md section 2), so the order
here is part of the on-disk format of checkpoints and genomes: append new rules at the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class Rule:
  """Static description of one learning rule.

  Attributes:
    name: the registry name (``"fa"``).
    credit: where the layer's error comes from: ``"feedback"`` (the error of the layer above
      sent down through a matrix ``B``), ``"direct"`` (the output error sent straight to the
      layer through a fixed matrix, DFA) or ``"local"`` (no error at all; the update is
      computed from the layer's own input and output).
    feedback: for ``"feedback"`` rules, ``feedback(w, state, key) -> B`` giving the matrix, of
      the shape of ``w``, that carries the error to the layer below. ``state`` is the layer's
      rule-state dict (:func:`biojax.rules.init_feedback_state`), ``key`` a PRNG key that is new
      every batch.
    citation: the paper that defines the rule.
    summary: one line for tables and error messages.
    local_signal: for ``"local"`` rules, ``local_signal(u, state, options) -> s``: the
      postsynaptic plasticity signal of each output unit, from the layer's pre-activation
      ``u`` (the shape of ``u``) and its per-unit rule state ``state`` (``{"threshold":
      theta}``, shape ``(out,)``).
    local_update: for ``"local"`` rules, ``local_update(hebbian, w, u, s, options) -> update``:
      the layer's pseudo-gradient (the optimizer subtracts it) from the pre x post term
      ``hebbian = sum x s`` (``x^T s`` for a dense layer; computed by the layer with the
      same transposed product that error-driven rules use for ``x^T delta``), the weight,
      ``u`` and ``s``. Splitting a local rule this way keeps the expensive product outside
      any branch (XLA on CPU runs convolutions inside a conditional far slower).
  """

  name: str
  credit: str
  feedback: Callable | None
  citation: str
  summary: str
  local_signal: Callable | None = None
  local_update: Callable | None = None


_RULES: list[Rule] = []


def register(rule: Rule) -> Rule:
  """Adds ``rule`` to the registry; its id is the next free integer."""
  if any(r.name == rule.name for r in _RULES):
    raise ValueError(f"A rule named {rule.name!r} is already registered.")
  if rule.credit not in ("feedback", "direct", "local"):
    raise ValueError(f"Rule {rule.name!r}: credit must be feedback, direct or local.")
  if (rule.credit == "feedback") != (rule.feedback is not None):
    raise ValueError(f"Rule {rule.name!r}: feedback rules, and only they, give a feedback fn.")
  if (rule.credit == "local") != (rule.local_update is not None) or \
      (rule.local_update is None) != (rule.local_signal is None):
    raise ValueError(
        f"Rule {rule.name!r}: local rules, and only they, give local_signal and local_update.")
  _RULES.append(rule)
  return rule


def rules() -> tuple[Rule, ...]:
  """All registered rules, in id order."""
  return tuple(_RULES)


def rule_names() -> tuple[str, ...]:
  """Names of all registered rules, in id order."""
  return tuple(r.name for r in _RULES)


def rule_id(name: str) -> int:
  """The integer id of the rule called ``name``.

  Raises:
    ValueError: naming the unknown rule and listing every valid name.
  """
  for i, r in enumerate(_RULES):
    if r.name == name:
      return i
  raise ValueError(
      f"Unknown learning rule {name!r}. Valid rules: {', '.join(rule_names())}."
  )


def get_rule(name_or_id: str | int) -> Rule:
  """The :class:`Rule` for a name or an integer id."""
  if isinstance(name_or_id, str):
    return _RULES[rule_id(name_or_id)]
  index = int(name_or_id)
  if not 0 <= index < len(_RULES):
    raise ValueError(
        f"Rule id {index} is out of range: ids run from 0 to {len(_RULES) - 1} "
        f"({', '.join(rule_names())})."
    )
  return _RULES[index]


# The geometry of the step is independent of the rule (DESIGN.md section 1): any rule's update
# can be applied additively or multiplicatively.
GEOMETRIES: tuple[str, ...] = ("additive", "eg")


def geometry_id(name: str) -> int:
  """The integer id of a step geometry (``"additive"`` or ``"eg"``)."""
  if name not in GEOMETRIES:
    raise ValueError(
        f"Unknown step geometry {name!r}. Valid geometries: {', '.join(GEOMETRIES)}."
    )
  return GEOMETRIES.index(name)


def parse_rule_spec(spec: str) -> tuple[int, int]:
  """Parses a per-layer rule spec such as ``"fa"``, ``"usf+eg"`` or ``"eg"``.

  ``"eg"`` alone means back-propagated credit with the exponentiated-gradient step
  (Cornford et al. 2024), i.e. ``"bp+eg"``.

  Returns:
    (rule id, geometry id).
  """
  if not isinstance(spec, str):
    raise TypeError(f"A rule spec must be a string such as 'fa' or 'usf+eg', got {spec!r}.")
  parts = [p.strip() for p in spec.split("+")]
  if parts == ["eg"]:
    parts = ["bp", "eg"]
  if len(parts) == 1:
    return rule_id(parts[0]), 0
  if len(parts) == 2:
    return rule_id(parts[0]), geometry_id(parts[1])
  raise ValueError(
      f"Cannot parse rule spec {spec!r}: expected 'RULE' or 'RULE+GEOMETRY' with RULE in "
      f"{', '.join(rule_names())} and GEOMETRY in {', '.join(GEOMETRIES)}."
  )


def format_rule_spec(rule: int, geometry: int = 0) -> str:
  """Inverse of :func:`parse_rule_spec`."""
  name = get_rule(rule).name
  return name if int(geometry) == 0 else f"{name}+{GEOMETRIES[int(geometry)]}"


def names_to_ids(names: Sequence[str]) -> list[int]:
  return [rule_id(n) for n in names]
