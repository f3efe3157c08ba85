"""``python -m biojax.bench.eg_population [--population=16] [--batch=128] [--chunks=4]``:
BioNAS-EG's population fitness as one vmapped call against a Python loop over the samples.

The supernet is experiments/bionas_eg.py's (its operations, rules, C and cells; 12x12
inputs). Measured in one run, round-robin after a warm-up:

- ``loop``: one jitted sample's fitness (:func:`biojax.nas.bionas_eg.make_sample_fitness`)
  called once per sample from Python (the current alpha's accuracy, which every sample's
  sign needs, computed once first);
- ``vmap``: the whole population in one call (:func:`make_population_fitness`, no chunks);
- ``chunk<n>``: the same call with ``chunk_size=n`` (``jax.lax.map`` over chunks of n).

It prints each variant's compile seconds, seconds per population, samples per second and
its speed-up over the loop (docs/bionas.md quotes them).
"""

from __future__ import annotations

import functools
import json
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from biojax.bench.timing import load_average, machine, time_interleaved
from biojax.nas import bionas, bionas_eg
from biojax.nas.darts import supernet as supernet_lib
from experiments import bionas_eg as eg_config

_POPULATION = flags.DEFINE_integer("population", 16, "Samples per population.")
_BATCH = flags.DEFINE_integer("batch", 128, "Images in the fitness batch.")
_CHUNKS = flags.DEFINE_list("chunks", ["4"], "chunk_size values to measure besides the "
                            "unchunked vmap.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds per variant.")


def measure(population: int, batch: int, chunks: list[int], repeats: int) -> dict:
  config = eg_config.get_config()
  model, alphabet, _ = bionas.build(config, 10)
  rng = np.random.default_rng(0)
  data = {"image": jnp.asarray(rng.normal(size=(batch, 12, 12, 1)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 10, batch), jnp.int32)}
  variables = flax.core.unfreeze(model.init(jax.random.key(0), data["image"][:1]))
  alpha = bionas.init_alpha(jax.random.key(1), alphabet.size)
  state = bionas.initial_state(variables, alpha, bionas.weight_optimizer(
      config.search.weights, 1)[0], alpha_opt_state={})
  pop = {cell: jnp.asarray(1 / alphabet.size + 0.0625 * rng.normal(
      size=(population, supernet_lib.NUM_EDGES, alphabet.size)), jnp.float32)
      for cell in bionas.CELLS}
  weight = config.search.eg.similarity_weight

  out, calls = {}, {}
  one = jax.jit(bionas_eg.make_sample_fitness(model, weight))
  reference = jax.jit(functools.partial(bionas_eg.reference_accuracy, model))
  start = time.perf_counter()
  samples = [{c: pop[c][i] for c in bionas.CELLS} for i in range(population)]
  jax.block_until_ready(one(state, samples[0], data, reference(state, data)))
  out["loop"] = {"compile_seconds": time.perf_counter() - start}

  def loop():
    ref = reference(state, data)
    return jnp.stack([one(state, s, data, ref)[0] for s in samples])

  calls["loop"] = loop
  for chunk in [None, *chunks]:
    name = "vmap" if chunk is None else f"chunk{chunk}"
    fn = jax.jit(bionas_eg.make_population_fitness(model, weight, chunk))
    start = time.perf_counter()
    compiled = fn.lower(state, pop, data).compile()
    out[name] = {"compile_seconds": time.perf_counter() - start}
    calls[name] = lambda c=compiled: c(state, pop, data)["fitness"]
  # The variants agree (the same fitness, up to float reassociation).
  fitness = {name: np.asarray(call()) for name, call in calls.items()}
  agree = max(float(np.max(np.abs(f - fitness["loop"]))) for f in fitness.values())
  per_call = time_interleaved(calls, repeats=repeats, inner=1)
  for name, seconds in per_call.items():
    out[name].update(seconds_per_population=seconds, samples_per_second=population / seconds,
                     speedup_over_loop=per_call["loop"] / seconds)
  return {
      "workload": {"population": population, "batch": batch, "image": [12, 12, 1],
                   "C": config.supernet.C, "cells": config.supernet.layers,
                   "candidates": list(alphabet.names())},
      "variants": out, "max_fitness_difference_to_loop": agree,
      "machine": machine(), "load_average": load_average(),
      "platform": jax.devices()[0].platform,
  }


def main(argv: list[str]) -> None:
  del argv
  print(json.dumps(measure(_POPULATION.value, _BATCH.value, [int(c) for c in _CHUNKS.value],
                           _REPEATS.value), indent=2))


if __name__ == "__main__":
  app.run(main)
