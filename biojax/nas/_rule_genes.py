"""What every built-in search space shares: rule alphabets, genome -> assignment, and the
methods of :class:`biojax.nas.space.SearchSpace` that do not depend on the space's layout.

A space's rule genes index *alphabets* of rule specs (``"fa"``, ``"usf+eg"``): for the cell
spaces one for the genes of the searched cells, one for the other (macro) layers. Each weight
layer of the network reads one gene through one alphabet (``gene_of_layer(name) -> (gene,
group)``, ``group`` indexing ``space.alphabets``); :func:`assignment_fn` turns that map into a
pure, jittable ``genome -> Assignment``.

:class:`RuleGeneSpace` holds the methods every space implements the same way (validation,
sampling, rule names, the assignment, and the defaults of a space whose architecture is data:
one network and one :class:`biojax.nas.PopulationEvaluator` for every genome).
:class:`CellRuleSpace` adds what the two cell spaces (NAS-Bench-201, DARTS) share: the
``rules`` / ``macro_rules`` alphabets and the macro part of the genome and of its string form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh

from biojax import rules as rules_lib
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import genome as genome_lib
from biojax.nn.assignment import Assignment, weight_layers

Array = jax.Array

# The quickstart's rule alphabet, and the default alphabet of the built-in spaces. It is NOT
# the whole registry: it lists, in registry order, the eight rules registered when it was
# written; `sparse`, registered later, is left out to keep the quickstart's results
# reproducible (a rule gene indexes this alphabet, so adding a rule changes every genome and
# every search). Any space searches it when asked: ``rules=(..., "sparse")``.
DEFAULT_RULES: tuple[str, ...] = ("bp", "fa", "usf", "brsf", "frsf", "kp", "dfa", "softhebb")


def canonical_spec(spec: str) -> str:
  """``spec`` in its canonical form (unknown rule names: an error listing every rule)."""
  return rules_lib.format_rule_spec(*rules_lib.parse_rule_spec(spec))


def canonical_alphabet(owner: str, field: str, alphabet) -> tuple[str, ...] | None:
  """A rule alphabet, checked (non-empty, no rule twice) and canonicalised; None stays
  None. ``owner.field`` names it in errors."""
  if alphabet is None:
    return None
  if isinstance(alphabet, str) or not len(alphabet):
    raise ValueError(f"{owner}.{field} must be a non-empty sequence of rule specs, "
                     f"got {alphabet!r}.")
  canonical = tuple(canonical_spec(s) for s in alphabet)
  if len(set(canonical)) != len(canonical):
    raise ValueError(f"{owner}.{field} lists a rule twice: {alphabet!r}.")
  return canonical


def rule_index(spec: str, alphabet: Sequence[str], where: str) -> int:
  """The gene value of ``spec`` in ``alphabet``; the error names ``where`` and the
  alphabet."""
  canonical = canonical_spec(spec)
  if canonical not in alphabet:
    raise ValueError(f"Rule {spec!r} ({where}) is not in this space's rule alphabet. "
                     f"Valid rules: {', '.join(alphabet)}.")
  return list(alphabet).index(canonical)


def rule_names(*alphabets: Sequence[str]) -> tuple[str, ...]:
  """The registered rules the alphabets reach, in registry order."""
  ids = {rules_lib.parse_rule_spec(s)[0] for a in alphabets for s in a}
  return tuple(rules_lib.get_rule(i).name for i in sorted(ids))


def per_edge(specs: str | Sequence[str], count: int, where: str) -> list[str]:
  """One rule spec per edge: ``specs`` repeated if it is one spec, else checked to hold
  ``count`` (``where`` opens the error: ``"A cell"``)."""
  specs = [specs] * count if isinstance(specs, str) else list(specs)
  if len(specs) != count:
    raise ValueError(f"{where} has {count} edges; got {len(specs)} edge rules.")
  return specs


def token_rule(spec: str | None, rule: str | None, missing: str) -> str:
  """The rule of one token of a string form: its own ``spec`` (``"op:SPEC"``), else the
  default ``rule``; ``missing`` is the error when there is neither."""
  spec = (spec or "").strip() or rule
  if spec is None:
    raise ValueError(missing)
  return spec


def assignment_fn(variables: Mapping, options: rules_lib.RuleOptions | None,
                  alphabets: Sequence[Sequence[str]],
                  gene_of_layer: Callable[[str], tuple[int, int]]
                  ) -> Callable[[Array], Assignment]:
  """``genome (..., G) -> Assignment`` for a model with ``variables`` (the layer list is
  read here, once; works under ``jit``; a leading population axis gives a stacked
  assignment).

  Raises:
    ValueError: if ``options`` leaves out a rule the alphabets reach; if an alphabet holds a
      direct-feedback rule (DFA) but a hidden layer reading it has no DFA matrix; or (from
      ``gene_of_layer``) for a layer the space does not know.
  """
  names = rule_names(*alphabets)
  allows = getattr(options, "allows", None)
  left_out = [n for n in names if allows is not None and not allows(n)]
  if left_out:
    raise ValueError(
        f"The model's rule options leave out {', '.join(left_out)}, which this space's genes "
        f"can choose: build it with RuleOptions(rules=space.rule_names) ({', '.join(names)}).")
  layers = weight_layers(variables)
  flat_feedback = traverse_util.flatten_dict(flax.core.unfreeze(variables["feedback"]))
  genes, groups = [], []
  for name in layers:
    gene, group = gene_of_layer(name)
    genes.append(gene)
    groups.append(group)
    direct = [s for s in alphabets[group]
              if rules_lib.get_rule(rules_lib.parse_rule_spec(s)[0]).credit == "direct"]
    if direct and name != "classifier" and (*name.split("/"), "direct") not in flat_feedback:
      raise ValueError(
          f"The rule alphabet holds {', '.join(direct)}, but layer {name} has no DFA "
          "matrix: build the network with dfa=True, or leave DFA out of the space's rules.")
  width = max(len(a) for a in alphabets)
  parsed = [[rules_lib.parse_rule_spec(s) for s in a] + [(0, 0)] * (width - len(a))
            for a in alphabets]
  rule_table = jnp.asarray([[r for r, _ in row] for row in parsed], jnp.int32)
  geometry_table = jnp.asarray([[g for _, g in row] for row in parsed], jnp.int32)
  gene_index = np.asarray(genes, np.int32)
  group_index = np.asarray(groups, np.int32)

  sizes = np.asarray([len(alphabets[g]) for g in groups], np.int32)

  def assign(genome: Array) -> Assignment:
    values = jnp.asarray(genome, jnp.int32)[..., gene_index]  # (..., layers)
    # A gene value outside its alphabet (a genome from another space, or corrupt) becomes
    # rule and geometry -1, which the compiled step turns into a non-finite update
    # (biojax.nn.known_rule): a gather would clamp it to a valid rule. Concrete genomes are
    # checked with a clear error first (space.validate).
    valid = (values >= 0) & (values < sizes)
    rule = jnp.where(valid, rule_table[group_index, values], -1)
    geometry = jnp.where(valid, geometry_table[group_index, values], -1)
    return Assignment(rule={n: rule[..., i] for i, n in enumerate(layers)},
                      geometry={n: geometry[..., i] for i, n in enumerate(layers)},
                      layers=layers)

  return assign


class RuleGeneSpace:
  """The :class:`biojax.nas.space.SearchSpace` methods every built-in space shares.

  A subclass (a frozen dataclass with a ``rules`` field) gives ``gene_sizes``,
  ``describe_gene(g)``, ``_gene_values(g)`` (the names of gene ``g``'s values, for errors),
  ``alphabets`` (the rule alphabets ``gene_of_layer`` indexes) and ``gene_of_layer(name)``,
  and the layout-specific methods of the protocol. The defaults here are those of a space
  whose architecture is data: one network serves every genome (``program_key`` is ``()``)
  and one :class:`biojax.nas.PopulationEvaluator` evaluates any population.
  """

  rules: tuple[str, ...]

  # ---------------------------------------------------------------- layout and checks
  @property
  def num_genes(self) -> int:
    return len(self.gene_sizes)

  @property
  def alphabets(self) -> tuple[tuple[str, ...], ...]:
    """The rule alphabets, in the order of ``gene_of_layer``'s groups."""
    return (self.rules,)

  def validate(self, genome) -> np.ndarray:
    """Checks concrete genome(s) ``(..., G)``; returns them as int32 NumPy.

    Raises:
      ValueError: naming the first gene out of range, its meaning and its valid values.
    """
    return genome_lib.check_genomes(genome, self.gene_sizes, self._describe_values)

  def _describe_values(self, g: int) -> str:
    values = self._gene_values(g)
    return f"{self.describe_gene(g)}: {', '.join(f'{k}={v}' for k, v in enumerate(values))}"

  def _one(self, genome, what: str) -> np.ndarray:
    g = self.validate(genome)
    if g.ndim != 1:
      raise ValueError(f"{what}() takes one genome of shape ({self.num_genes},), got "
                       f"{g.shape}.")
    return g

  def random_genomes(self, key: Array, num: int) -> Array:
    """``num`` genomes drawn uniformly from the space: ``(num, G)`` int32."""
    return genome_lib.random_genomes(key, self.gene_sizes, num)

  # ---------------------------------------------------------------- rules
  @property
  def rule_names(self) -> tuple[str, ...]:
    """The registered rules the genes can choose (every alphabet), in registry order: the
    rules a model's compiled programs must contain (``RuleOptions(rules=...)``)."""
    return rule_names(*self.alphabets)

  def assignment_fn(self, variables: Mapping, options: rules_lib.RuleOptions | None = None
                    ) -> Callable[[Array], Assignment]:
    """A pure function ``genome (..., G) -> Assignment`` for a model with ``variables``.

    Each weight layer gets the rule of the gene ``gene_of_layer`` names for it. With a
    leading population axis on the genomes the result is a stacked assignment, ready for
    ``jax.vmap``. Works under ``jit`` (the layer list is taken from ``variables`` here, once).

    Args:
      variables: the model's variables (``model.init`` output, or ``state.variables()``).
      options: the model's rule options (``model.options``); if given, checked to compile
        every rule of the space: a rule left out of a model's programs would not run as
        assigned, and assignments made here are not checked again.

    Raises:
      ValueError: if a weight layer is not one of the space's; if an alphabet holds a
        direct-feedback rule (DFA) but a hidden layer reading it has no DFA matrix (a network
        built with ``dfa=False``); or if ``options`` leaves out a rule of the space.
    """
    return assignment_fn(variables, options, self.alphabets, self.gene_of_layer)

  # ---------------------------------------------------------------- programs
  def program_key(self, genome) -> tuple[int, ...]:
    """The genes of one concrete genome compiled into its network, as a hashable tuple:
    ``()`` here, the architecture being data (one network for every genome)."""
    self._one(genome, "program_key")
    return ()

  def network_for(self, model: nn.Module, genome) -> nn.Module:
    """The network that trains ``genome``: ``model`` itself, the architecture being data."""
    del genome
    return model

  def evaluator(self, model: nn.Module, proxy: Mapping[str, Any], mesh: Mesh | None = None
                ) -> evaluator_lib.PopulationEvaluator:
    """One :class:`biojax.nas.PopulationEvaluator` (one set of programs for the whole
    search) with the settings of ``proxy`` (:func:`biojax.nas.evaluator.proxy_settings`)."""
    return evaluator_lib.PopulationEvaluator(self, model, mesh=mesh,
                                             **evaluator_lib.proxy_settings(proxy))


@dataclasses.dataclass(frozen=True)
class CellRuleSpace(RuleGeneSpace):
  """A cell space: ``rules`` for the genes of the cells' edges, ``macro_rules`` for the
  layers outside the cells (:attr:`macro_layers`, whose genes are :attr:`macro_rule_genes`).

  Attributes:
    rules: the rule alphabet of the edge rule genes: rule specs (``"fa"``, ``"usf+eg"``);
      gene value ``k`` means ``rules[k]``.
    macro_rules: the alphabet of the macro genes; ``None`` means the same as ``rules``. A
      single entry (``("bp",)``) fixes those layers' rule: the genes then have one value and
      never mutate.
  """

  rules: tuple[str, ...] = DEFAULT_RULES
  macro_rules: tuple[str, ...] | None = None

  macro_layers: ClassVar[tuple[str, ...]] = ()
  macro_rule_genes: ClassVar[slice] = slice(0, 0)
  # How errors name the macro layers ("layers", "layer kinds") and the cells ("the cell").
  _macro_noun: ClassVar[str] = "layers"
  _cells: ClassVar[str] = "the cells"

  def __post_init__(self):
    for field in ("rules", "macro_rules"):
      object.__setattr__(self, field, canonical_alphabet(type(self).__name__, field,
                                                         getattr(self, field)))

  @classmethod
  def from_config(cls, settings: Mapping[str, Any]) -> CellRuleSpace:
    """The space of ``config.space`` (``rules``, ``macro_rules``; absent: the defaults)."""
    rules = settings.get("rules")
    macro = settings.get("macro_rules")
    return cls(rules=DEFAULT_RULES if rules is None else tuple(rules),
               macro_rules=None if macro is None else tuple(macro))

  @property
  def macro_alphabet(self) -> tuple[str, ...]:
    return self.rules if self.macro_rules is None else self.macro_rules

  @property
  def alphabets(self) -> tuple[tuple[str, ...], ...]:
    """``(rules, macro_alphabet)``: group 0 the edges, group 1 the macro layers."""
    return (self.rules, self.macro_alphabet)

  def _macro_rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, layer name, alphabet)`` of the macro genes (the tail of ``rule_genes``)."""
    return tuple((self.macro_rule_genes.start + m, name, self.macro_alphabet)
                 for m, name in enumerate(self.macro_layers))

  def _encode_macro(self, macro_rules: str | Mapping[str, str]) -> list[int]:
    """The macro genes of one rule spec for every macro layer, or of a dict naming each."""
    if isinstance(macro_rules, str):
      macro_rules = dict.fromkeys(self.macro_layers, macro_rules)
    missing = [n for n in self.macro_layers if n not in macro_rules]
    extra = [n for n in macro_rules if n not in self.macro_layers]
    if missing or extra:
      raise ValueError(
          f"macro_rules must name exactly the {self._macro_noun} "
          f"{', '.join(self.macro_layers)}"
          + (f"; missing: {', '.join(missing)}" if missing else "")
          + (f"; unknown: {', '.join(extra)}" if extra else "") + ".")
    return [rule_index(macro_rules[n], self.macro_alphabet, f"layer {n}")
            for n in self.macro_layers]

  @staticmethod
  def _macro_string(macro_rules: Mapping[str, str]) -> str:
    """What follows ``@`` in the string form: one rule when all are equal, else
    ``layer:rule,...``."""
    macro = list(macro_rules.values())
    if len(set(macro)) == 1:
      return macro[0]
    return ",".join(f"{n}:{r}" for n, r in macro_rules.items())

  def _parse_macro(self, text: str, rule: str | None) -> str | dict[str, str]:
    """Inverse of :meth:`_macro_string`; ``rule`` fills the layers ``text`` leaves out."""
    text = text.strip()
    if not text:
      if rule is None:
        raise ValueError(f"No rules for the layers outside {self._cells} "
                         f"({', '.join(self.macro_layers)}): append '@RULE' or "
                         "'@layer:RULE,...', or pass rule=.")
      return rule
    if ":" not in text:
      return text
    macro_rules = {}
    for item in text.split(","):
      name, colon, spec = item.strip().partition(":")
      if not colon:
        raise ValueError(f"Cannot parse {item!r} after '@': expected 'layer:rule'.")
      macro_rules[name.strip()] = spec.strip()
    if rule is not None:
      for name in self.macro_layers:
        macro_rules.setdefault(name, rule)
    return macro_rules
