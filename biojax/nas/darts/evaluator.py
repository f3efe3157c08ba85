"""Fitness of a DARTS population: one program set per distinct architecture, the rule genes
batched inside (an architecture changes the program; a rule assignment is data,
docs/design.md).

:class:`DartsEvaluator` groups a population by its compiled genes
(:meth:`biojax.nas.darts.DartsSpace.program_key`: the 32 architecture genes) and evaluates
each group with one cached :class:`biojax.nas.PopulationEvaluator` per architecture, whose
model is ``space.network_for(model, genome)``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from biojax.nas.evaluator import PopulationEvaluator
from biojax.nas.space import SearchSpace

Array = jax.Array


def group_plan(size: int, group_size: int | None) -> list[tuple[int, int, int]]:
  """How :class:`DartsEvaluator` splits a group of ``size`` genomes of one architecture into
  calls: ``(start, stop, padded size)`` for each. ``group_size=None``: one call padded to the
  next power of two (at most ``log2`` programs per architecture, less than 2x padding);
  an int: calls of exactly ``group_size`` (one program per architecture)."""
  if size < 1:
    return []
  if group_size is None:
    return [(0, size, 1 << (size - 1).bit_length())]
  return [(start, min(start + group_size, size), group_size)
          for start in range(0, size, group_size)]


@dataclasses.dataclass(frozen=True, eq=False)
class DartsEvaluator:
  """Fitness of a DARTS population: programs compiled once per distinct architecture, the
  rule genes batched inside (a rule assignment is data: docs/design.md).

  :meth:`evaluate` groups the genomes by their architecture genes
  (:meth:`~biojax.nas.darts.DartsSpace.program_key`), takes (or builds and caches) one
  :class:`biojax.nas.PopulationEvaluator` per architecture, whose model is ``model`` with
  that genotype, evaluates each group (padded by :func:`group_plan` with copies of its first
  genome, whose results are dropped) and returns fitness and info in population order. A
  repeated architecture reuses its program; only a new architecture (or a new padded group
  size, batch shape or budget) compiles.

  Attributes:
    space: the :class:`~biojax.nas.darts.DartsSpace`.
    model: a :class:`~biojax.nas.darts.DartsNetwork` (its ``genotype`` is replaced per
      architecture: ``space.network_for(model, genome)``); its
      ``options`` must compile every rule of ``space``.
    steps, batch_size: the proxy budget, as :class:`biojax.nas.PopulationEvaluator`.
    group_size: see :func:`group_plan`. ``None`` (powers of two) wastes least compute when
      most architectures are met once; a fixed size compiles one program per architecture.
    cache_size: architectures whose evaluator (and compiled programs) are kept, least
      recently used dropped first; ``None`` keeps all. A dropped architecture met again
      compiles again.
    settings: further :class:`biojax.nas.PopulationEvaluator` settings (``optimizer``,
      ``learning_rate``, ``strategy``, ``compiler_options``, ...).
  """

  space: SearchSpace
  model: nn.Module
  steps: int
  batch_size: int
  group_size: int | None = None
  cache_size: int | None = 128
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.group_size is not None and self.group_size < 1:
      raise ValueError(f"group_size={self.group_size} must be >= 1 (or None).")
    if self.cache_size is not None and self.cache_size < 1:
      raise ValueError(f"cache_size={self.cache_size} must be >= 1 (or None).")
    object.__setattr__(self, "_cache", collections.OrderedDict())
    object.__setattr__(self, "_dropped_programs", 0)

  def evaluator(self, architecture_key: tuple[int, ...]):
    """The (cached) :class:`biojax.nas.PopulationEvaluator` of one architecture."""
    cache = self._cache
    if architecture_key in cache:
      cache.move_to_end(architecture_key)
      return cache[architecture_key]
    genome = np.zeros(self.space.num_genes, np.int32)
    genome[self.space.architecture_genes] = architecture_key
    model = self.space.network_for(self.model, genome)
    evaluator = PopulationEvaluator(self.space, model, steps=self.steps,
                                    batch_size=self.batch_size, **dict(self.settings))
    cache[architecture_key] = evaluator
    if self.cache_size is not None and len(cache) > self.cache_size:
      _, dropped = cache.popitem(last=False)
      object.__setattr__(self, "_dropped_programs",
                         self._dropped_programs + dropped._compile_count())
    return evaluator

  @property
  def num_programs(self) -> int:
    """Programs compiled so far (one per architecture and padded group size), including
    those of architectures dropped from the cache."""
    return self._dropped_programs + sum(e._compile_count() for e in self._cache.values())

  @property
  def num_architectures(self) -> int:
    """Architectures whose evaluator is cached."""
    return len(self._cache)

  def evaluate(self, genomes, train_batches: Mapping, validation_batches: Mapping,
               key: Array, step_scale=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fitness of every genome (larger is better) and per-candidate information, in
    population order; as :meth:`biojax.nas.PopulationEvaluator.evaluate` (the same
    ``train_batches``, ``validation_batches`` and ``key`` for every group, so candidates of
    one architecture share their initial weights).

    Args:
      genomes: concrete int32 ``(P, 51)`` (validated here).
      step_scale: optional ``(P,)`` per-candidate step scale (default 1).

    Returns:
      ``(fitness (P,), info)`` as NumPy arrays; ``info`` as the population evaluator's, plus
      ``program`` (int32: the index, in first-appearance order within this call, of the
      architecture group each candidate was evaluated in).
    """
    genomes = self.space.validate(genomes)
    if genomes.ndim != 2:
      raise ValueError(f"genomes must be (P, {self.space.num_genes}), got {genomes.shape}.")
    population = genomes.shape[0]
    scale = (np.ones(population, np.float32) if step_scale is None
             else np.asarray(step_scale, np.float32).reshape(population))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(genomes):
      groups.setdefault(self.space.program_key(g), []).append(i)
    pending = []  # dispatch every call first (JAX runs them asynchronously), then gather
    for program, (arch, members) in enumerate(groups.items()):
      evaluator = self.evaluator(arch)
      members = np.asarray(members)
      for start, stop, size in group_plan(len(members), self.group_size):
        chosen = members[start:stop]
        padded = np.concatenate([chosen, np.repeat(chosen[:1], size - len(chosen))])
        out = evaluator.evaluate(genomes[padded], train_batches, validation_batches, key,
                                 scale[padded])
        pending.append((program, chosen, out))
    fitness = np.full(population, -np.inf, np.float32)
    info: dict[str, np.ndarray] = {}
    for program, chosen, (group_fitness, group_info) in pending:
      n = len(chosen)
      fitness[chosen] = np.asarray(group_fitness)[:n]
      for name, values in group_info.items():
        values = np.asarray(values)
        if name not in info:
          info[name] = np.zeros((population,) + values.shape[1:], values.dtype)
        info[name][chosen] = values[:n]
      info.setdefault("program", np.zeros(population, np.int32))[chosen] = program
    return fitness, info
