"""Section 5: per-candidate time of the evaluator's strategies relative to a single-candidate
program, and one convolution called alone against inside loops (``scan``, ``map``, ``vmap``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from biojax.bench.timing import time_interleaved
from biojax.bench.workloads import (
    NasWorkload,
    build_evaluator,
    distinct_genomes,
    evaluation_key,
    proxy_data,
    strategy_config,
)
from biojax.nas import evaluator as evaluator_lib


def convolution_in_loop(shape: tuple[int, ...], features: int, calls: int, repeats: int
                         ) -> dict:
  """One 3x3 convolution (forward and weight gradient), ``calls`` times: called from Python,
  one compiled call each; inside ``jax.lax.scan``; inside ``jax.lax.map``; batched by
  ``jax.vmap`` over ``calls`` kernels. Seconds per convolution."""
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(calls, *shape)), jnp.float32)
  w = jnp.asarray(r.normal(size=(calls, 3, 3, shape[-1], features)), jnp.float32)

  def conv(x, w):
    def loss(w):
      y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.sum(y * y)
    return jax.grad(loss)(w)

  one = jax.jit(conv)
  looped = jax.jit(lambda x, w: jax.lax.scan(lambda c, a: (c, conv(*a)), 0.0, (x, w))[1])
  mapped = jax.jit(lambda x, w: jax.lax.map(lambda a: conv(*a), (x, w)))
  batched = jax.jit(jax.vmap(conv))
  seconds = time_interleaved({
      "called one by one": lambda: [one(x[i], w[i]) for i in range(calls)][-1],
      "inside lax.scan": lambda: looped(x, w),
      "inside lax.map": lambda: mapped(x, w),
      "batched by vmap": lambda: batched(x, w),
  }, repeats, 1)
  per = {k: v / calls for k, v in seconds.items()}
  return {"input_shape": list(shape), "features": features, "calls": calls,
          "seconds_per_convolution": per,
          "relative_to_called_one_by_one": {k: v / per["called one by one"]
                                            for k, v in per.items()}}



def evaluator_strategies(workload: NasWorkload, config, population: int, chunk_size: int,
                         repeats: int, strategies: tuple[str, ...] = evaluator_lib.STRATEGIES
                         ) -> dict:
  """Seconds per candidate of each strategy on a population, relative to a single candidate
  evaluated on its own (population of 1, the backend's default strategy: on CPU
  ``"sequential"``, one compiled train step called per step)."""
  train, validation = proxy_data(workload, config)
  key = evaluation_key()
  genomes = distinct_genomes(workload.space, jax.random.key(2), population)
  ones = np.ones(population, np.float32)
  single = evaluator_lib.default_strategy()
  programs = {"single candidate": (single, genomes[:1], ones[:1])}
  for strategy in strategies:
    programs[strategy] = (strategy, genomes, ones)
  fns = {}
  for name, (strategy, g, s) in programs.items():
    evaluator = build_evaluator(workload, strategy_config(config, strategy, chunk_size))
    fns[name] = functools.partial(
        lambda e, g, s: e.evaluate(g, train, validation, key, s)[0], evaluator, g, s)
  seconds = time_interleaved(fns, repeats, 1)
  per_candidate = {name: seconds[name] / len(programs[name][1]) for name in fns}
  return {
      "workload": {**workload.describe(config), "population": population,
                   "chunk_size": chunk_size, "single_candidate_strategy": single},
      "seconds_per_call": seconds, "seconds_per_candidate": per_candidate,
      "per_candidate_relative_to_single": {
          k: v / per_candidate["single candidate"] for k, v in per_candidate.items()},
      "fastest": min(strategies, key=per_candidate.get),
      "default_strategy": evaluator_lib.default_strategy(),
  }
