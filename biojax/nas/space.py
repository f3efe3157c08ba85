"""The search-space interface (:class:`SearchSpace`) and the registry of spaces by name.

A search space says what the genes of a genome mean, how a genome becomes a trainable
candidate (a network, an ``architecture`` collection and a rule assignment) and how a
population of genomes is evaluated. The search loop (:mod:`biojax.nas.search`), the
strategies (:mod:`biojax.nas.evolution`), the population evaluator and the benchmarks use a
space only through this protocol, and find it by name (``config.space.name``) in the registry,
never by its class (docs/design.md).

Built-in spaces (registered when :mod:`biojax.nas` is imported):

- ``"nb201"``: :class:`biojax.nas.nb201.NB201Space`; the architecture is data, one program
  serves every genome;
- ``"darts"``: :class:`biojax.nas.darts.DartsSpace`; the architecture is compiled in, one
  program set per distinct architecture;
- ``"layer_rules"``: :class:`biojax.nas.layer_rules.LayerRuleSpace`; a fixed MLP, a rule gene
  per weight layer.

Adding a space: write a class with the members of :class:`SearchSpace` (subclassing
:class:`biojax.nas._rule_genes.RuleGeneSpace` gives validation, sampling, rule names, the
assignment and the defaults of a space whose architecture is data), then
``register_space("name", factory)`` with ``factory(config.space) -> space``. The protocol
tests (tests/nas/test_space.py) then run over it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from biojax import rules as rules_lib
from biojax.nn.assignment import Assignment

Array = jax.Array


class Evaluator(Protocol):
  """What the search loop calls on a space's evaluator
  (:class:`biojax.nas.PopulationEvaluator`, :class:`biojax.nas.darts.DartsEvaluator`)."""

  def evaluate(self, genomes, train_batches: Mapping, validation_batches: Mapping,
               key: Array, step_scale=None) -> tuple[Any, dict]:
    """``genomes (P, G)`` -> ``(fitness (P,), info)``, larger fitness better, ``-inf`` for a
    failed candidate (:meth:`biojax.nas.PopulationEvaluator.evaluate`)."""
    ...


@runtime_checkable
class SearchSpace(Protocol):
  """A search space: the genome layout and everything that turns genomes into fitness.

  A genome is an int32 vector of :attr:`num_genes` genes; gene ``g`` takes the values
  ``0 .. gene_sizes[g] - 1``. Some genes choose the architecture
  (:attr:`architecture_genes`), the others choose the learning rule of weight layers
  (:meth:`rule_genes`). "Concrete" below means NumPy (or host) values, not traced ones;
  "jittable" methods also take a leading population axis.

  Genome layout:
    rules: the rule alphabet of the searched layers: rule specs (``"fa"``, ``"usf+eg"``).
      The single-rule baselines put each of them on every layer.
    gene_sizes: the number of values of each gene (the search strategies need only this).
    num_genes: ``len(gene_sizes)``.
    architecture_genes: a slice of the genes that choose the architecture (``slice(0, 0)``
      for a space whose architecture is fixed); equal slices mean equal network shapes.
    describe_gene(g): what gene ``g`` means, in words.
    validate(genome): checks concrete genome(s) ``(..., G)``; returns int32 NumPy or raises
      ValueError naming the first bad gene, its meaning and its valid values.

  Words and strings:
    decode(genome): one genome in words (a NamedTuple); ``encode(*decode(g))`` equals ``g``.
    encode(*words): the genome of words (errors list the valid operations or rules).
    to_string(genome): the whole genome as one line (reports, ``candidates.jsonl``).
    from_string(text, rule=None): its inverse; ``rule`` fills rules the text leaves out.
    cell_string(genome): the architecture alone, in the space's own notation (``""`` when
      it is fixed).

  Jittable:
    random_genomes(key, num): ``(num, G)`` int32, uniform over the space.
    expressed_genes(genome): bool ``(..., G)``: the genes that change the network (a rule
      gene of an edge whose operation has no weights is dormant); evolution mutates only
      these.
    architecture(genome): the ``architecture`` variable collection the network reads
      (:class:`biojax.nas.CandidateState`); ``{}`` when the architecture is compiled in.
    assignment_fn(variables, options=None): a pure ``genome (..., G) -> Assignment`` for a
      network with ``variables`` (every weight layer named).

  Rules:
    rule_genes(): ``(gene, layer name, alphabet)`` of every rule gene, in gene order (the
      rule-frequency records and the baselines).
    rule_names: the registered rules the genes can reach, in registry order: the network
      must compile them (``RuleOptions(rules=space.rule_names)``).

  Networks, programs and evaluation:
    build_network(settings, num_classes, options, dfa, genome=None): the space's network
      from ``settings`` (``config.space``: sizes such as ``C``, ``N``, ``layers``), with the
      rule options ``options`` and DFA matrices if ``dfa``; ``genome`` chooses the
      architecture where it is compiled in (``None``: the space's default one).
    program_key(genome): the genes of one concrete genome compiled into its network, a
      hashable tuple (``()`` when the architecture is data): genomes with equal keys share
      one network and its programs.
    network_for(model, genome): the network of ``genome``: ``model`` when the architecture is
      data, else ``model`` with ``genome``'s architecture compiled in.
    parameter_count(params, genome): the parameters of ``genome``'s architecture, counted
      from the ``params`` (arrays or shapes) of ``network_for(model, genome)``.
    evaluator(model, proxy, mesh=None): the population evaluator (an :class:`Evaluator`) of
      ``model`` for the proxy budget ``proxy`` (``config.proxy``:
      :func:`biojax.nas.evaluator.proxy_settings`, plus the space's own entries such as
      DARTS's ``group_size``), its population axis sharded over ``mesh``.
  """

  rules: tuple[str, ...]

  @property
  def gene_sizes(self) -> tuple[int, ...]: ...

  @property
  def num_genes(self) -> int: ...

  @property
  def architecture_genes(self) -> slice: ...

  @property
  def rule_names(self) -> tuple[str, ...]: ...

  def describe_gene(self, g: int) -> str: ...

  def validate(self, genome) -> np.ndarray: ...

  def decode(self, genome) -> tuple: ...

  def encode(self, *words) -> np.ndarray: ...

  def to_string(self, genome) -> str: ...

  def from_string(self, text: str, rule: str | None = None) -> np.ndarray: ...

  def cell_string(self, genome) -> str: ...

  def random_genomes(self, key: Array, num: int) -> Array: ...

  def expressed_genes(self, genome: Array) -> Array: ...

  def architecture(self, genome: Array) -> dict: ...

  def rule_genes(self) -> Sequence[tuple[int, str, tuple[str, ...]]]: ...

  def assignment_fn(self, variables: Mapping, options: rules_lib.RuleOptions | None = None
                    ) -> Callable[[Array], Assignment]: ...

  def build_network(self, settings: Mapping[str, Any], num_classes: int,
                    options: rules_lib.RuleOptions, dfa: bool, genome=None) -> nn.Module: ...

  def program_key(self, genome) -> tuple[int, ...]: ...

  def network_for(self, model: nn.Module, genome) -> nn.Module: ...

  def parameter_count(self, params: Mapping, genome) -> int: ...

  def evaluator(self, model: nn.Module, proxy: Mapping[str, Any],
                mesh: Mesh | None = None) -> Evaluator: ...


SpaceFactory = Callable[[Mapping[str, Any]], SearchSpace]

_SPACES: dict[str, SpaceFactory] = {}


def register_space(name: str, factory: SpaceFactory) -> SpaceFactory:
  """Registers ``factory(settings) -> SearchSpace`` under ``name`` (``settings``: the
  ``config.space`` section; absent entries take the space's defaults). Returns ``factory``.

  Raises:
    ValueError: the name is empty or taken.
  """
  if not name or not isinstance(name, str):
    raise ValueError(f"A search space needs a non-empty name, got {name!r}.")
  if name in _SPACES:
    raise ValueError(f"A search space named {name!r} is already registered.")
  _SPACES[name] = factory
  return factory


def unregister_space(name: str) -> None:
  """Removes a registered space (for tests and notebooks that register their own)."""
  if name not in _SPACES:
    raise ValueError(f"No search space named {name!r}. Valid spaces: "
                     f"{', '.join(space_names())}.")
  del _SPACES[name]


def space_names() -> tuple[str, ...]:
  """The names of the registered spaces, sorted."""
  return tuple(sorted(_SPACES))


def get_space(name: str, config: Mapping[str, Any] | None = None) -> SearchSpace:
  """The space registered as ``name``, built from ``config`` (the ``config.space`` section:
  ``rules``, ``macro_rules``, ...; ``None``: the space's defaults).

  Raises:
    ValueError: for an unknown name, listing the valid ones (or from the factory, for a bad
      setting such as an unknown rule).
  """
  if name not in _SPACES:
    raise ValueError(f"Unknown search space {name!r}. Valid spaces: "
                     f"{', '.join(space_names())}.")
  return _SPACES[name]({} if config is None else config)
