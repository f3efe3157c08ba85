"""Section 6: memory of the evaluator's population program."""

from __future__ import annotations

import jax
import numpy as np

from biojax.bench.workloads import (
    NasWorkload,
    build_evaluator,
    distinct_genomes,
    evaluation_key,
    proxy_data,
    strategy_config,
)


def memory(workload: NasWorkload, config, population: int, strategies: tuple[str, ...],
           chunk_size: int) -> dict:
  """Memory of the evaluator's population program for ``population`` candidates from XLA's
  buffer assignment (``compiled.memory_analysis()``: arguments, outputs, temporaries); on an
  accelerator also the device's peak bytes in use once it has run. (``"sequential"`` has no
  population program: it holds one candidate at a time, like ``map``.)"""
  train, validation = proxy_data(workload, config)
  key = evaluation_key()
  genomes = distinct_genomes(workload.space, jax.random.key(2), population)
  ones = np.ones(population, np.float32)
  out = {"workload": {**workload.describe(config), "population": population,
                      "chunk_size": chunk_size}, "strategies": {}}
  for strategy in strategies:
    evaluator = build_evaluator(workload, strategy_config(config, strategy, chunk_size))
    # The population program's arguments: the common initial state from the set-up program.
    variables, step_keys = evaluator._setup(key, train["image"][0, :1])  # noqa: SLF001
    args = (genomes, train, validation, variables, step_keys, ones)
    compiled = evaluator._program.lower(*args).compile()  # noqa: SLF001 (the jitted program)
    m = compiled.memory_analysis()
    entry = {name: int(getattr(m, f"{name}_size_in_bytes"))
             for name in ("argument", "output", "alias", "temp", "generated_code")}
    entry["total_bytes"] = entry["argument"] + entry["output"] - entry["alias"] + entry["temp"]
    entry["bytes_per_candidate"] = entry["total_bytes"] / population
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
      before = stats.get("bytes_in_use", 0)
      jax.block_until_ready(evaluator.evaluate(genomes, train, validation, key, ones))
      stats = jax.devices()[0].memory_stats()
      entry["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
      entry["device_bytes_in_use_before"] = int(before)
    out["strategies"][strategy] = entry
  return out
