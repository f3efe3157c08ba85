"""Search strategies over integer genomes with pure ``init / ask / tell`` (docs/design.md).

As in evosax, a strategy object holds only static settings (it is hashable, so its methods
can be jitted), everything that changes lives in an :class:`EvolutionState` (a
``flax.struct`` pytree, checkpointable as it is), and the population is the leading axis::

  strategy = RegularizedEvolution(space.gene_sizes, population_size=10, tournament_size=3,
                                  num_children=8)
  state = strategy.init()
  for generation in range(...):
    key, ask_key = jax.random.split(key)
    children = strategy.ask(ask_key, state)        # (K, G) int32
    fitness = evaluate(children)                   # (K,), larger is better
    state = strategy.tell(state, children, fitness)

**Fitness is maximised** (validation accuracy, say), unlike evosax, which minimises. A NaN
fitness counts as ``-inf``: such a candidate never wins a tournament and is the first to
lose, and the search goes on.

Both strategies keep the same aging population of the last ``population_size`` evaluated
genomes (empty at first), so they share one state type, and statistics such as the median
fitness of the population mean the same for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp

from biojax.nas import genome as genome_lib

Array = jax.Array


@flax.struct.dataclass
class EvolutionState:
  """The whole state of a search (a pytree; slots of the population in no particular order).

  Attributes:
    genomes: (P, G) int32, the population.
    fitness: (P,) float32, fitness of each member; ``-inf`` in empty slots.
    birth: (P,) int32, serial number of each member in the order of evaluation (0 for the
      first genome ever told); -1 for an empty slot. The oldest member has the smallest.
    best_genome: (G,) int32, the fittest genome ever told (zeros before the first tell).
    best_fitness: () float32, its fitness (``-inf`` before the first tell).
    num_evaluated: () int32, genomes told so far.
    generation: () int32, calls of ``tell`` so far.
  """

  genomes: Array
  fitness: Array
  birth: Array
  best_genome: Array
  best_fitness: Array
  num_evaluated: Array
  generation: Array

  def is_full(self) -> Array:
    return jnp.all(self.birth >= 0)

  def age_order(self) -> Array:
    """Slot indices of the members from the oldest to the youngest (empty slots last)."""
    return jnp.argsort(jnp.where(self.birth < 0, jnp.iinfo(jnp.int32).max, self.birth))


@dataclasses.dataclass(frozen=True)
class _AgingPopulation:
  """What both strategies share: the state, and ``tell`` (add children, drop the oldest)."""

  gene_sizes: tuple[int, ...]
  population_size: int = 10
  num_children: int = 1

  def __post_init__(self):
    object.__setattr__(self, "gene_sizes", tuple(int(s) for s in self.gene_sizes))
    if not self.gene_sizes or min(self.gene_sizes) < 1:
      raise ValueError(f"gene_sizes must be positive, got {self.gene_sizes}.")
    if not 1 <= self.num_children <= self.population_size:
      raise ValueError(f"num_children ({self.num_children}) must be between 1 and "
                       f"population_size ({self.population_size}).")

  @property
  def num_genes(self) -> int:
    return len(self.gene_sizes)

  def init(self) -> EvolutionState:
    """An empty population: the first ``ask`` calls return random genomes."""
    p, g = self.population_size, self.num_genes
    return EvolutionState(
        genomes=jnp.zeros((p, g), jnp.int32), fitness=jnp.full((p,), -jnp.inf, jnp.float32),
        birth=jnp.full((p,), -1, jnp.int32), best_genome=jnp.zeros((g,), jnp.int32),
        best_fitness=jnp.asarray(-jnp.inf, jnp.float32), num_evaluated=jnp.zeros((), jnp.int32),
        generation=jnp.zeros((), jnp.int32))

  def ask(self, key: Array, state: EvolutionState) -> Array:
    """``num_children`` genomes to evaluate next: (K, G) int32."""
    return self.ask_with_parents(key, state)[0]

  def ask_with_parents(self, key: Array, state: EvolutionState) -> tuple[Array, Array, Array]:
    raise NotImplementedError

  def tell(self, state: EvolutionState, children: Array, fitness: Array) -> EvolutionState:
    """Adds the evaluated ``children`` (K, G) with ``fitness`` (K,) to the population,
    filling empty slots first, then replacing the oldest members ("aging", Real et al.
    2019). Child ``k`` is born ``num_evaluated + k``."""
    k = self.num_children
    children = jnp.asarray(children, jnp.int32)
    fitness = jnp.asarray(fitness, jnp.float32)
    if children.shape != (k, self.num_genes) or fitness.shape != (k,):
      raise ValueError(
          f"tell() takes the {k} children of one ask, (K, G) = ({k}, {self.num_genes}), and "
          f"their fitness ({k},); got {children.shape} and {fitness.shape}.")
    fitness = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    slots = jnp.argsort(state.birth)[:k]  # empty slots (-1) first, then the oldest
    births = state.num_evaluated + jnp.arange(k, dtype=jnp.int32)
    best = jnp.argmax(fitness)
    better = fitness[best] > state.best_fitness
    return state.replace(
        genomes=state.genomes.at[slots].set(children),
        fitness=state.fitness.at[slots].set(fitness),
        birth=state.birth.at[slots].set(births),
        best_genome=jnp.where(better, children[best], state.best_genome),
        best_fitness=jnp.where(better, fitness[best], state.best_fitness),
        num_evaluated=state.num_evaluated + k, generation=state.generation + 1)

  def _random(self, key: Array) -> Array:
    return genome_lib.random_genomes(key, self.gene_sizes, self.num_children)


@dataclasses.dataclass(frozen=True)
class RegularizedEvolution(_AgingPopulation):
  """Batched regularised (aging) evolution, Real, Aggarwal, Huang & Le (2019), AAAI,
  arXiv:1802.01548, Algorithm 1, with ``K`` children per generation.

  Until the population holds ``P`` members, ``ask`` returns random genomes. Then each of
  the ``K`` children comes from its own tournament: ``S`` members drawn uniformly *with
  replacement* (as in the authors' reference code), the fittest of them (first drawn on a
  tie) is the parent, and the child is the parent with one gene mutated
  (:func:`biojax.nas.genome.mutate`). ``tell`` adds the ``K`` children and removes the ``K``
  oldest members. NAS-Bench-201's reference settings: ``P = 10``, ``S = 3``.

  Attributes:
    gene_sizes: number of values of each gene (``space.gene_sizes``).
    population_size: ``P``.
    num_children: ``K``, genomes per ``ask`` (one batch for the population evaluator).
    tournament_size: ``S``.
    mutable_genes: optional ``genome (G,) -> bool (G,)``, the genes a mutation may change
      (e.g. ``space.expressed_genes``, so that no evaluation is spent on a child whose only
      change is a dormant gene). Default: every gene with more than one value.
  """

  tournament_size: int = 3
  mutable_genes: Callable[[Array], Array] | None = None

  def __post_init__(self):
    super().__post_init__()
    if self.tournament_size < 1:
      raise ValueError(f"tournament_size must be at least 1, got {self.tournament_size}.")

  def ask_with_parents(self, key: Array, state: EvolutionState) -> tuple[Array, Array, Array]:
    """``(children (K, G), parents (K,), samples (K, S))``: ``parents[k]`` is the slot of
    child ``k``'s parent, ``samples[k]`` the slots of its tournament; both -1 while the
    population is still being filled (random children)."""
    random_key, sample_key, mutate_key = jax.random.split(key, 3)
    k, s = self.num_children, self.tournament_size
    samples = jax.random.randint(sample_key, (k, s), 0, self.population_size, jnp.int32)
    winners = jnp.argmax(state.fitness[samples], axis=1)
    parents = jnp.take_along_axis(samples, winners[:, None], axis=1)[:, 0]
    parent_genomes = state.genomes[parents]
    masks = (None if self.mutable_genes is None
             else jax.vmap(self.mutable_genes)(parent_genomes))
    mutate = lambda key_, genome, mask: genome_lib.mutate(key_, genome, self.gene_sizes, mask)
    children = jax.vmap(mutate, in_axes=(0, 0, None if masks is None else 0))(
        jax.random.split(mutate_key, k), parent_genomes, masks)
    full = state.is_full()
    children = jnp.where(full, children, self._random(random_key))
    return (children, jnp.where(full, parents, -1), jnp.where(full, samples, -1))


@dataclasses.dataclass(frozen=True)
class RandomSearch(_AgingPopulation):
  """Random search: every ``ask`` returns ``K`` genomes drawn uniformly from the space.

  The state is the same as :class:`RegularizedEvolution`'s (the population is the last ``P``
  genomes evaluated), so both run in the same search loop with the same budget.
  """

  def ask_with_parents(self, key: Array, state: EvolutionState) -> tuple[Array, Array, Array]:
    """``(children (K, G), parents, samples)``; parents and samples are all -1."""
    del state
    k = self.num_children
    return (self._random(key), jnp.full((k,), -1, jnp.int32),
            jnp.full((k, 0), -1, jnp.int32))
