"""The layer-rule space: one learning-rule gene per weight layer of a fixed network
(registered as ``"layer_rules"``; its network is an MLP).

The architecture is fixed, so the genome holds rules only: ``(num_layers,)`` int32, gene
``i`` the rule of the ``i``-th weight layer in the order the network applies them
(:func:`biojax.nn.weight_layers`), value ``k`` meaning ``rules[k]``. Every gene is
expressed. The benchmarks run their MLP workload through it (``python -m biojax.bench``), and
``config.space = {"name": "layer_rules", "rules": (...), "hidden": (256, 256)}`` searches the
rule of every layer of ``biojax.nn.MLP(hidden=...)`` with the NAS loop.

String form: the rule specs in layer order, separated by commas (``fa,usf+eg,bp``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from biojax import rules as rules_lib
from biojax.nas import _rule_genes
from biojax.nas import space as space_lib
from biojax.nn import MLP
from biojax.nn.assignment import Assignment, weight_layers

Array = jax.Array

DEFAULT_HIDDEN: tuple[int, ...] = (256, 256)  # biojax.nn.MLP's default widths


class LayerRules(NamedTuple):
  """A genome in words (:meth:`LayerRuleSpace.decode`)."""

  rules: tuple[str, ...]  # one rule spec per weight layer, in the order of application


@dataclasses.dataclass(frozen=True)
class LayerRuleSpace(_rule_genes.RuleGeneSpace):
  """One rule gene per weight layer of a fixed network.

  Attributes:
    rules: the rule alphabet of every gene (rule specs); value ``k`` means ``rules[k]``.
    num_layers: the network's weight layers (an MLP with ``hidden`` widths has
      ``len(hidden) + 1``).
  """

  rules: tuple[str, ...]
  num_layers: int

  def __post_init__(self):
    object.__setattr__(self, "rules",
                       _rule_genes.canonical_alphabet("LayerRuleSpace", "rules", self.rules))
    if int(self.num_layers) < 1:
      raise ValueError(f"LayerRuleSpace.num_layers={self.num_layers} must be >= 1.")

  @classmethod
  def from_config(cls, settings: Mapping[str, Any]) -> LayerRuleSpace:
    """The space of ``config.space``: ``rules`` (default: the quickstart's alphabet) and the
    MLP's ``hidden`` widths (default :data:`DEFAULT_HIDDEN`)."""
    rules = settings.get("rules")
    return cls(rules=_rule_genes.DEFAULT_RULES if rules is None else tuple(rules),
               num_layers=len(_hidden(settings)) + 1)

  # ---------------------------------------------------------------- gene layout
  @property
  def gene_sizes(self) -> tuple[int, ...]:
    return (len(self.rules),) * self.num_layers

  @property
  def architecture_genes(self) -> slice:
    """No architecture genes: the network is fixed."""
    return slice(0, 0)

  def describe_gene(self, g: int) -> str:
    return f"rule of weight layer {g}"

  def _gene_values(self, g: int) -> Sequence[str]:
    del g
    return self.rules

  # ---------------------------------------------------------------- words <-> genome
  def decode(self, genome) -> LayerRules:
    """The genome in words."""
    return LayerRules(tuple(self.rules[v] for v in self._one(genome, "decode")))

  def encode(self, rules: str | Sequence[str]) -> np.ndarray:
    """The genome of one rule spec for every layer, or of ``num_layers`` of them; inverse of
    :meth:`decode`.

    Raises:
      ValueError: for a rule outside the alphabet (listing it) or a wrong number of rules.
    """
    rules = [rules] * self.num_layers if isinstance(rules, str) else list(rules)
    if len(rules) != self.num_layers:
      raise ValueError(f"The network has {self.num_layers} weight layers; got {len(rules)} "
                       "rules.")
    return np.asarray([_rule_genes.rule_index(r, self.rules, f"layer {i}")
                       for i, r in enumerate(rules)], np.int32)

  def to_string(self, genome) -> str:
    """The rule specs in layer order, comma-separated; :meth:`from_string` is its inverse."""
    return ",".join(self.decode(genome).rules)

  def from_string(self, text: str, rule: str | None = None) -> np.ndarray:
    """Parses :meth:`to_string`'s form; ``rule`` fills empty entries (and a whole empty
    string: every layer)."""
    tokens = text.split(",") if text.strip() else [""] * self.num_layers
    return self.encode([_rule_genes.token_rule(t, rule, f"No rule for layer {i} in {text!r}: "
                                               "write one or pass rule=.")
                        for i, t in enumerate(tokens)])

  def cell_string(self, genome) -> str:
    """``""``: the architecture is fixed."""
    self._one(genome, "cell_string")
    return ""

  # ---------------------------------------------------------------- jittable helpers
  def expressed_genes(self, genome: Array) -> Array:
    """Every gene is expressed."""
    return jnp.ones(jnp.shape(genome), bool)

  def architecture(self, genome: Array) -> dict:
    """``{}``: the architecture is fixed."""
    del genome
    return {}

  # ---------------------------------------------------------------- rules
  def rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, "layer_<i>", rules)`` for every weight layer."""
    return tuple((i, f"layer_{i}", self.rules) for i in range(self.num_layers))

  def assignment_fn(self, variables: Mapping, options: rules_lib.RuleOptions | None = None
                    ) -> Callable[[Array], Assignment]:
    """``genome (..., num_layers) -> Assignment``: gene ``i`` to the ``i``-th weight layer of
    ``variables`` (as :meth:`biojax.nas._rule_genes.RuleGeneSpace.assignment_fn`).

    Raises:
      ValueError: if the model has another number of weight layers (or as the shared
        assignment: rules left out of ``options``, DFA without DFA matrices).
    """
    layers = weight_layers(variables)
    if len(layers) != self.num_layers:
      raise ValueError(f"The model has {len(layers)} weight layers ({', '.join(layers)}), "
                       f"the space {self.num_layers}.")
    position = {name: i for i, name in enumerate(layers)}
    return _rule_genes.assignment_fn(variables, options, self.alphabets,
                                     lambda name: (position[name], 0))

  # ---------------------------------------------------------------- networks
  def build_network(self, settings: Mapping[str, Any], num_classes: int,
                    options: rules_lib.RuleOptions, dfa: bool, genome=None) -> nn.Module:
    """``biojax.nn.MLP(num_classes, hidden=settings["hidden"])`` (the MLP always has its
    hidden layers' DFA matrices, so ``dfa`` changes nothing; ``genome`` is not needed)."""
    del dfa, genome
    hidden = _hidden(settings)
    if len(hidden) + 1 != self.num_layers:
      raise ValueError(f"hidden={hidden} gives {len(hidden) + 1} weight layers; the space has "
                       f"{self.num_layers}.")
    return MLP(num_classes, hidden=hidden, options=options)

  def parameter_count(self, params: Mapping, genome=None) -> int:
    """Every parameter of the fixed network (``genome``, if given, is only validated)."""
    if genome is not None:
      self.validate(genome)
    return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params)))


def _hidden(settings: Mapping[str, Any]) -> tuple[int, ...]:
  hidden = settings.get("hidden")
  return DEFAULT_HIDDEN if hidden is None else tuple(int(h) for h in hidden)


space_lib.register_space("layer_rules", LayerRuleSpace.from_config)
