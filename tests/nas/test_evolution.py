"""Regularised evolution and random search: against a hand-run, mutation, NaN, jit, a toy race."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import nas
from biojax.nas import RandomSearch, RegularizedEvolution


def test_matches_a_hand_run_of_regularized_evolution():
  # Real et al. (2019), Algorithm 1, run by hand with a queue: maximise the number of genes
  # equal to 2. P = 5 is not a multiple of K = 2, so the warm-up overfills the population
  # once and the oldest random genome already ages out.
  sizes, P, S, K = (3, 3, 3, 3), 5, 2, 2
  fitness_of = lambda g: float(np.sum(np.asarray(g) == 2))
  strategy = RegularizedEvolution(sizes, population_size=P, tournament_size=S, num_children=K)
  ask, tell = jax.jit(strategy.ask_with_parents), jax.jit(strategy.tell)
  state = jax.jit(strategy.init)()
  queue = collections.deque()  # (birth, genome, fitness), the oldest on the left
  evaluated, key = [], jax.random.key(0)
  for generation in range(10):
    key, ask_key = jax.random.split(key)
    children, parents, samples = map(np.asarray, ask(ask_key, state))
    genomes, fitness, birth = map(np.asarray, (state.genomes, state.fitness, state.birth))
    if len(queue) < P:  # still filling the population: random genomes, no parents
      assert generation < 3
      np.testing.assert_array_equal(parents, -1)
    else:
      alive = {b for b, _, _ in queue}
      for k in range(K):
        assert all(birth[s] in alive for s in samples[k])  # tournaments draw live members
        sample_fitness = [fitness[s] for s in samples[k]]
        winner = samples[k][sample_fitness.index(max(sample_fitness))]  # first on a tie
        assert parents[k] == winner
        assert np.sum(children[k] != genomes[winner]) == 1  # one gene mutated
    scores = [fitness_of(c) for c in children]
    state = tell(state, children, jnp.asarray(scores))
    for child, score in zip(children, scores, strict=True):
      queue.append((len(evaluated), tuple(child), score))
      evaluated.append(score)
    while len(queue) > P:
      queue.popleft()  # remove the oldest
    order = [i for i in np.asarray(state.age_order()) if state.birth[i] >= 0]  # empty: last
    population = [(int(state.birth[i]), tuple(np.asarray(state.genomes[i])),
                   float(state.fitness[i])) for i in order]
    assert population == list(queue)  # same members, same ages, oldest first
  assert [b for b, _, _ in queue] == list(range(15, 20))
  assert int(state.num_evaluated) == 20 and int(state.generation) == 10
  assert float(state.best_fitness) == max(evaluated)
  assert fitness_of(state.best_genome) == max(evaluated)


def full_state(strategy, key, num_genes_fitness=None):
  """A full population of random genomes with random fitness."""
  state = strategy.init()
  genomes = nas.random_genomes(key, strategy.gene_sizes, strategy.population_size)
  fitness = jax.random.uniform(jax.random.fold_in(key, 1), (strategy.population_size,))
  k = strategy.num_children
  for i in range(0, strategy.population_size, k):
    state = strategy.tell(state, genomes[i:i + k], fitness[i:i + k])
  assert bool(state.is_full())
  return state


@pytest.mark.parametrize("expressed_only", [False, True])
def test_children_differ_from_parents_in_exactly_one_gene(expressed_only):
  space = nas.NB201Space()
  mutable = space.expressed_genes if expressed_only else None
  strategy = RegularizedEvolution(space.gene_sizes, population_size=16, tournament_size=3,
                                  num_children=16, mutable_genes=mutable)
  state = full_state(strategy, jax.random.key(0))
  ask = jax.jit(strategy.ask_with_parents)
  changed = []
  for seed in range(8):
    children, parents, _ = map(np.asarray, ask(jax.random.key(seed), state))
    parent_genomes = np.asarray(state.genomes)[parents]
    diff = children != parent_genomes
    np.testing.assert_array_equal(diff.sum(axis=1), 1)
    space.validate(children)
    gene = diff.argmax(axis=1)
    changed += list(gene)
    if expressed_only:
      expressed = np.asarray(space.expressed_genes(parent_genomes))
      assert expressed[np.arange(len(gene)), gene].all()
  # Both operation and rule genes (edge and macro) are mutated.
  changed = np.asarray(changed)
  assert (changed < 6).any() and ((changed >= 6) & (changed < 12)).any() and (changed >= 12).any()


def test_mutation_is_uniform_over_genes_and_other_values():
  sizes = (2, 3, 1, 5)  # gene 2 has a single value and can never change
  genome = jnp.asarray([1, 0, 0, 2], jnp.int32)
  keys = jax.random.split(jax.random.key(0), 6000)
  children = np.asarray(jax.vmap(lambda k: nas.mutate(k, genome, sizes))(keys))
  diff = children != np.asarray(genome)
  np.testing.assert_array_equal(diff.sum(axis=1), 1)
  gene = diff.argmax(axis=1)
  np.testing.assert_allclose(np.bincount(gene, minlength=4) / 6000, [1 / 3, 1 / 3, 0, 1 / 3],
                             atol=0.03)
  last = children[gene == 3, 3]
  assert 2 not in last
  np.testing.assert_allclose(np.bincount(last, minlength=5)[[0, 1, 3, 4]] / len(last), 0.25,
                             atol=0.04)
  # A mask restricts the choice; a mask that allows nothing falls back to every gene.
  mask = jnp.asarray([False, True, True, False])
  masked = np.asarray(jax.vmap(lambda k: nas.mutate(k, genome, sizes, mask))(keys[:200]))
  assert (masked != np.asarray(genome))[:, [0, 2, 3]].sum() == 0
  none = jnp.zeros(4, bool)
  fallback = np.asarray(jax.vmap(lambda k: nas.mutate(k, genome, sizes, none))(keys[:200]))
  np.testing.assert_array_equal((fallback != np.asarray(genome)).sum(axis=1), 1)
  with pytest.raises(ValueError, match="No gene can mutate"):
    nas.mutate(keys[0], jnp.zeros(2, jnp.int32), (1, 1))


def test_nan_fitness_is_worst_and_never_best():
  strategy = RegularizedEvolution((4, 4), population_size=4, tournament_size=4, num_children=2)
  state = strategy.tell(strategy.init(), jnp.asarray([[1, 1], [2, 2]]), jnp.asarray([jnp.nan,
                                                                                     0.5]))
  assert float(state.best_fitness) == 0.5
  np.testing.assert_array_equal(state.best_genome, [2, 2])
  assert -np.inf in np.asarray(state.fitness) and not np.isnan(np.asarray(state.fitness)).any()
  state = strategy.tell(state, jnp.asarray([[3, 3], [0, 0]]), jnp.asarray([jnp.nan, jnp.nan]))
  assert float(state.best_fitness) == 0.5
  # A NaN candidate never wins a tournament that holds a finite one.
  fitness = np.asarray(state.fitness)
  finite = np.flatnonzero(np.isfinite(fitness))
  assert len(finite) == 1
  wins = 0
  for seed in range(20):
    _, parents, samples = strategy.ask_with_parents(jax.random.key(seed), state)
    for parent, sample in zip(np.asarray(parents), np.asarray(samples), strict=True):
      if finite[0] in sample:
        assert parent == finite[0]
        wins += 1
  assert wins > 0


def test_jittable_and_deterministic_from_the_key():
  space = nas.NB201Space()
  strategy = RegularizedEvolution(space.gene_sizes, population_size=8, tournament_size=3,
                                  num_children=4, mutable_genes=space.expressed_genes)
  state = full_state(strategy, jax.random.key(1))
  jitted = jax.jit(strategy.ask)
  a, b = jitted(jax.random.key(5), state), jitted(jax.random.key(5), state)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, strategy.ask(jax.random.key(5), state))  # jit == eager
  assert not np.array_equal(a, jitted(jax.random.key(6), state))
  told = jax.jit(strategy.tell)(state, a, jnp.arange(4.0))
  assert told.genomes.shape == (8, 20) and int(told.num_evaluated) == 12
  with pytest.raises(ValueError):
    strategy.tell(state, a[:3], jnp.arange(3.0))  # K is static
  with pytest.raises(ValueError, match="num_children"):
    RegularizedEvolution((2, 2), population_size=2, num_children=3)


def test_random_search_shares_the_interface():
  strategy = RandomSearch((5,) * 6, population_size=6, num_children=4)
  state = strategy.init()
  for seed in range(3):
    children, parents, _ = strategy.ask_with_parents(jax.random.key(seed), state)
    np.testing.assert_array_equal(parents, -1)
    state = jax.jit(strategy.tell)(state, children, jnp.sum(children, axis=1) * 1.0)
  # The population holds the last 6 of the 12 genomes evaluated.
  np.testing.assert_array_equal(np.sort(np.asarray(state.birth)), np.arange(6, 12))
  assert int(state.num_evaluated) == 12


# ----------------------------------------------------------------------------- a toy race
TARGET = jnp.asarray(np.random.default_rng(0).integers(0, 5, 12), jnp.int32)


def toy_fitness(genomes):
  """OneMax with 5 values per gene: the number of genes equal to TARGET's."""
  return jnp.sum(genomes == TARGET, axis=-1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 2))
def best_after(strategy, keys, generations):
  """Best fitness after ``generations`` ask/tell rounds, for each key (the loop under scan)."""

  def run(key):
    def generation(state, key):
      children = strategy.ask(key, state)
      return strategy.tell(state, children, toy_fitness(children)), None

    state, _ = jax.lax.scan(generation, strategy.init(), jax.random.split(key, generations))
    return state.best_fitness

  return jax.vmap(run)(keys)


def test_regularized_evolution_beats_random_search():
  sizes, budget = (5,) * 12, 60  # 60 generations of 4 children: 240 evaluations
  keys = jax.random.split(jax.random.key(0), 10)
  evolution = best_after(RegularizedEvolution(sizes, population_size=20, tournament_size=5,
                                              num_children=4), keys, budget)
  random = best_after(RandomSearch(sizes, population_size=20, num_children=4), keys, budget)
  evolution, random = np.asarray(evolution), np.asarray(random)
  assert evolution.mean() > random.mean() + 2, (evolution, random)
  assert np.sum(evolution > random) >= 8, (evolution, random)
