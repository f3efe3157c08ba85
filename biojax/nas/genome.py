"""Genomes as integer arrays, and the variation operators every search space shares.

A genome is an int32 vector of ``G`` genes; gene ``g`` takes the values ``0 .. sizes[g] - 1``.
A search space says what each gene means (:mod:`biojax.nas.nb201`); the search algorithms
(:mod:`biojax.nas.evolution`) only need ``sizes``. Every function here is pure and jittable,
and works on a leading population axis through ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def random_genomes(key: Array, sizes: Sequence[int], num: int) -> Array:
  """``num`` genomes drawn uniformly: ``(num, G)`` int32, gene ``g`` uniform in
  ``[0, sizes[g])``."""
  high = jnp.asarray(sizes, jnp.int32)
  return jax.random.randint(key, (num, len(sizes)), 0, high, jnp.int32)


def mutate(key: Array, genome: Array, sizes: Sequence[int],
           mutable: Array | None = None) -> Array:
  """Changes exactly one gene of ``genome`` (G,) to a different value.

  The gene is drawn uniformly among the genes that can change (``sizes[g] > 1`` and, if
  given, ``mutable[g]``); its new value uniformly among the ``sizes[g] - 1`` other values
  (Real et al. 2019: "mutation ... of one operation", here of one operation or rule gene).

  Args:
    key: PRNG key.
    genome: (G,) int32.
    sizes: number of values of each gene (static).
    mutable: optional (G,) bool, genes allowed to change (e.g. only expressed genes,
      :meth:`biojax.nas.nb201.NB201Space.expressed_genes`). If it allows no gene that can
      change, every gene with ``sizes[g] > 1`` is allowed instead.
  """
  sizes_np = np.asarray(sizes, np.int32)
  if not np.any(sizes_np > 1):
    raise ValueError(f"No gene can mutate: every gene has a single value (sizes={sizes}).")
  high = jnp.asarray(sizes_np)
  can_change = high > 1
  if mutable is not None:
    allowed = can_change & jnp.asarray(mutable, bool)
    can_change = jnp.where(jnp.any(allowed), allowed, can_change)
  gene_key, value_key = jax.random.split(key)
  gene = jax.random.categorical(gene_key, jnp.where(can_change, 0.0, -jnp.inf))
  # old + (1 .. n-1) mod n: uniform over the other values, never the old one.
  shift = jax.random.randint(value_key, (), 1, jnp.maximum(high[gene], 2), jnp.int32)
  return genome.at[gene].set((genome[gene] + shift) % high[gene])


def check_genomes(genomes, sizes: Sequence[int], describe_gene=None) -> np.ndarray:
  """Validates concrete genomes ``(G,)`` or ``(..., G)`` against ``sizes``.

  Returns them as an int32 NumPy array. Raises ValueError naming the first bad gene
  (``describe_gene(g)`` gives its meaning, if supplied) and its valid range.
  """
  array = np.asarray(genomes)
  if array.dtype.kind not in "iu":
    if array.dtype.kind == "f" and np.all(array == np.round(array)):
      array = array.astype(np.int64)
    else:
      raise ValueError(f"A genome must hold integers, got dtype {array.dtype}.")
  if array.ndim == 0 or array.shape[-1] != len(sizes):
    raise ValueError(
        f"A genome has {len(sizes)} genes (shape (..., {len(sizes)})), got shape {array.shape}.")
  high = np.asarray(sizes)
  bad = (array < 0) | (array >= high)
  if np.any(bad):
    index = tuple(np.argwhere(bad)[0])
    g = index[-1]
    what = f" ({describe_gene(g)})" if describe_gene else ""
    where = f" of genome {index[:-1]}" if len(index) > 1 else ""
    raise ValueError(
        f"Gene {g}{what}{where} is {int(array[index])}; valid values are 0..{int(high[g]) - 1}.")
  return array.astype(np.int32)
