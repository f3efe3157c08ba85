"""The rule record and the ordered registry of learning rules.

A learning rule is one :class:`Rule` record: where the layer's credit comes from, its
equations, its hyper-parameters (a frozen dataclass of its own), the state it keeps in each
layer and how that state starts, what it does after every optimizer step, and any structural
change to the weights. Generic code (layers, the learning signal, the train step) only calls
these hooks; it never names a rule. docs/rules.md walks through adding one.

The integer id of a rule is its position in the registry. Assignments store these ids, and
rule-aware layers dispatch on them with ``jax.lax.switch`` (docs/design.md), so the order is
part of the on-disk format of checkpoints and genomes: new rules are appended, never inserted.
An id outside the registry is refused wherever it is still a Python value
(:func:`check_rule_id`) and gives a non-finite update inside a compiled step
(:func:`biojax.nn.known_rule`); checkpoints record the registry's names
(:func:`ids_from_names`), docs/rules.md section "Ids, names and checkpoints".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

Array = jax.Array

CREDITS = ("feedback", "direct", "local")


def exact_feedback(w: Array, state: Mapping, key: Array) -> Array:
  """``B = W``: the error goes to the layer below exactly as back-propagation sends it."""
  del state, key
  return w


@dataclasses.dataclass(frozen=True)
class LayerShapes:
  """What a rule's state initialiser may know about the layer it lives in.

  Attributes:
    kernel: the kernel's shape (dense ``(in, out)``, convolution ``(*window, in/groups, out)``).
    output: the shape of one example's pre-activation output (``(out,)``, ``(H, W, out)``).
    dtype: the kernel's dtype.
    num_classes: the network's number of classes where the layer was built to receive a
      direct projection of the output error (``dfa_classes``), else None.
  """

  kernel: tuple[int, ...]
  output: tuple[int, ...]
  dtype: Any
  num_classes: int | None = None


@dataclasses.dataclass(frozen=True)
class StateVariable:
  """One array of rule state that every rule-aware layer holds in its ``feedback`` collection.

  Rule state is never a parameter: no optimizer, weight decay or gradient touches it; only the
  rule's own :attr:`Rule.after_step` changes it.

  Attributes:
    name: the variable's name in ``feedback/<layer>/`` (part of the checkpoint format). Two
      rules may share a variable by declaring the same name with the same ``init``.
    init: ``init(key, shapes: LayerShapes) -> array``; ``key`` is a fresh draw of the
      model's ``params`` PRNG stream when ``random``, else None.
    random: whether ``init`` draws random numbers.
    needs_classes: created only on layers built with ``dfa_classes`` (the variable depends
      on the number of classes).
  """

  name: str
  init: Callable[[Array | None, LayerShapes], Array]
  random: bool = True
  needs_classes: bool = False


@dataclasses.dataclass(frozen=True)
class NoOptions:
  """A rule without hyper-parameters."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """Everything generic code needs to know about one learning rule.

  A layer ``u = forward(x, W)`` (dense product or convolution) with rule state ``state`` (a
  dict of the :attr:`state` variables of every registered rule) learns as follows.

  Attributes:
    name: the registry name (``"fa"``).
    credit: where the layer's error comes from: ``"feedback"`` (the error of the layer above,
      sent down through a matrix ``B``), ``"direct"`` (the output error projected straight to
      the layer, DFA) or ``"local"`` (no error; the update comes from the layer's own input
      and output).
    citation: the paper that defines the rule.
    summary: one line for tables and error messages.
    feedback: ``"feedback"`` rules: ``feedback(w, state, key) -> B``, of ``w``'s shape, the
      matrix that carries the error to the layer below (``key``: a PRNG key new every batch).
    direct: ``"direct"`` rules: ``direct(output_error, state) -> e_l``, the output error
      (batch, classes) projected to the layer's post-activation shape; it replaces the error
      arriving from above at the layer's tap (:meth:`biojax.nn.Dense.tap`).
    local_signal: ``"local"`` rules: ``local_signal(u, state, options) -> s``, the
      postsynaptic plasticity signal (the shape of ``u``).
    local_update: ``"local"`` rules: ``local_update(hebbian, w, u, s, options) -> update``,
      the pseudo-gradient (the optimizer subtracts it) from the pre x post term ``hebbian``
      (``x^T s`` for a dense layer, computed by the layer with the transposed product that
      error-driven rules use for ``x^T delta``: the expensive product stays outside any
      branch, since XLA on CPU runs convolutions inside a conditional far slower).
    options: the class of the rule's hyper-parameters, a frozen dataclass (config:
      ``rule_options.<name>.<field>``); its default instance holds the defaults.
    state: the rule-state variables the rule keeps in every layer.
    adjust_output: ``adjust_output(y, state, options) -> y``, applied to the layer's output
      (bias included) in EVERY forward pass, training and evaluation, whatever the layer's
      rule (evaluation has no assignment to read). It must be the identity while the state is
      at its initial value, which only this rule's :attr:`after_step` changes.
    activity: ``activity(y) -> a``, a per-unit statistic of the layer's output that training
      records (collection ``rule_activity``) for :attr:`after_step`.
    after_step: ``after_step(state, w_old, w_new, activity, options) -> {name: value}``, the
      new values of rule-state variables after an optimizer step, for the layers that use
      the rule (``activity``: what :attr:`activity` recorded in this step, or None). Return
      ``{}`` to change nothing.
    structural: ``structural(w, options) -> w``, the kernel after a structural change
      (elimination of synapses) following each optimizer step, for the layers that use the
      rule. Return ``w`` itself (the same object) to change nothing.
  """

  name: str
  credit: str
  citation: str
  summary: str
  feedback: Callable | None = None
  direct: Callable | None = None
  local_signal: Callable | None = None
  local_update: Callable | None = None
  options: type = NoOptions
  state: tuple[StateVariable, ...] = ()
  adjust_output: Callable | None = None
  activity: Callable | None = None
  after_step: Callable | None = None
  structural: Callable | None = None

  def __post_init__(self):
    where = f"Rule {self.name!r}"
    if self.credit not in CREDITS:
      raise ValueError(f"{where}: credit must be one of {', '.join(CREDITS)}, got "
                       f"{self.credit!r}.")
    if (self.credit == "feedback") != (self.feedback is not None):
      raise ValueError(f"{where}: feedback rules, and only they, give `feedback`.")
    if (self.credit == "direct") != (self.direct is not None):
      raise ValueError(f"{where}: direct rules, and only they, give `direct`.")
    local = self.local_signal is not None, self.local_update is not None
    if (self.credit == "local") != all(local) or any(local) != all(local):
      raise ValueError(
          f"{where}: local rules, and only they, give local_signal and local_update.")
    if not (dataclasses.is_dataclass(self.options) and isinstance(self.options, type)
            and self.options.__dataclass_params__.frozen):
      raise ValueError(f"{where}: `options` must be a frozen dataclass class.")
    object.__setattr__(self, "state", tuple(self.state))


_RULES: list[Rule] = []


def register(rule: Rule) -> Rule:
  """Appends ``rule`` to the registry; its id is the next free integer.

  Raises:
    ValueError: the name is taken, or a state variable shares its name with another rule's
      variable but not its initialiser.
  """
  if not isinstance(rule, Rule):
    raise TypeError(f"register() takes a biojax.rules.Rule, got {type(rule).__name__}.")
  if any(r.name == rule.name for r in _RULES):
    raise ValueError(f"A rule named {rule.name!r} is already registered.")
  if "+" in rule.name or not rule.name:
    raise ValueError(f"Rule name {rule.name!r} must be non-empty and contain no '+'.")
  known = {v.name: v for r in _RULES for v in r.state}
  for variable in rule.state:
    if variable.name in ("order",):
      raise ValueError(f"Rule {rule.name!r}: state variable name 'order' is reserved.")
    if variable.name in known and known[variable.name] != variable:
      raise ValueError(
          f"Rule {rule.name!r}: state variable {variable.name!r} is already declared by "
          "another rule with a different initialiser; share the same StateVariable or "
          "choose another name.")
  _RULES.append(rule)
  return rule


def unregister(name: str) -> None:
  """Removes the LAST registered rule (ids of the others must not move); for tests and
  notebooks that register a rule of their own."""
  if not _RULES or _RULES[-1].name != name:
    raise ValueError(f"Only the last registered rule can be removed; {name!r} is not it.")
  _RULES.pop()


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
  return _RULES[check_rule_id(name_or_id)]


def describe_ids() -> str:
  """The registry as ``"0 bp, 1 fa, ..."``, for errors about rule ids."""
  return ", ".join(f"{i} {r.name}" for i, r in enumerate(_RULES))


def check_rule_id(rule: int, where: str = "") -> int:
  """``rule`` as an int if it is the id of a registered rule.

  Raises:
    ValueError: naming the id, ``where`` it was found (``"layer dense_1"``) and every id this
      process knows. An id outside the registry must never run: ``jax.lax.switch`` would
      clamp it to the nearest branch, and another rule would run in its place.
  """
  index = int(rule)
  if not 0 <= index < len(_RULES):
    at = f" ({where})" if where else ""
    raise ValueError(
        f"Rule id {index}{at} is not a registered rule: this process knows ids 0 to "
        f"{len(_RULES) - 1} ({describe_ids()}). An id from a run where more rules were "
        "registered needs those rules registered here, in the same order.")
  return index


def check_geometry_id(geometry: int, where: str = "") -> int:
  """``geometry`` as an int if it is a step-geometry id (0 additive, 1 eg); else a
  ValueError naming it and ``where``."""
  index = int(geometry)
  if not 0 <= index < len(GEOMETRIES):
    at = f" ({where})" if where else ""
    raise ValueError(
        f"Step-geometry id {index}{at} is not one of "
        f"{', '.join(f'{i} {g}' for i, g in enumerate(GEOMETRIES))}.")
  return index


def ids_from_names(saved: Sequence[str], what: str = "It") -> list[int]:
  """For rule names saved in id order where they were written (a checkpoint's
  ``rule_names``), the id each has in this process: ``ids_from_names(saved)[old_id]``.

  Raises:
    ValueError: listing the saved rules this process has not registered (``what`` opens the
      message: ``"The checkpoint in DIR"``).
  """
  current = rule_names()
  missing = [n for n in saved if n not in current]
  if missing:
    raise ValueError(
        f"{what} was written with rules that this process has not registered: "
        f"{', '.join(missing)}. Register them (biojax.rules.register) before loading it; "
        f"registered here: {', '.join(current)}.")
  return [current.index(n) for n in saved]


def state_variables() -> tuple[StateVariable, ...]:
  """The rule-state variables of every registered rule, each once, in registry order."""
  seen: dict[str, StateVariable] = {}
  for r in _RULES:
    for variable in r.state:
      seen.setdefault(variable.name, variable)
  return tuple(seen.values())


# The geometry of the step is independent of the rule: any rule's update can be applied
# additively or multiplicatively (biojax.rules.multiplicative).
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
  geometry = check_geometry_id(geometry)
  return name if geometry == 0 else f"{name}+{GEOMETRIES[geometry]}"


def names_to_ids(names: Sequence[str]) -> list[int]:
  return [rule_id(n) for n in names]
