"""``python -m biojax.bench.supernet_layouts [--cells=1] [--C=4] [--batch=32]``: the
BioNAS-DARTS supernet's rule copies as one vmapped module against separate modules.

Both layouts build the same supernet (the operations and rules of
experiments/bionas_darts.py, ``--cells`` cells, ``--C`` channels, 12x12 inputs). For each
layout it measures, in one run, the seconds to compile the search step (first order,
rules' alpha gradient) and the median seconds per step (round-robin, after a warm-up). It
prints both and their ratios (docs/bionas.md quotes them).
"""

from __future__ import annotations

import json
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from biojax.bench.timing import load_average, machine, time_interleaved
from biojax.nas import bionas
from biojax.nas.darts import supernet as supernet_lib
from experiments import bionas_darts

_CELLS = flags.DEFINE_integer("cells", 3, "Cells of the supernet (>= 3: a normal cell).")
_C = flags.DEFINE_integer("C", 4, "Initial channels.")
_BATCH = flags.DEFINE_integer("batch", 64, "Batch size of both halves.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed rounds per layout.")


def measure(cells: int, channels: int, batch: int, repeats: int) -> dict:
  config = bionas_darts.get_config()
  config.supernet.layers, config.supernet.C = cells, channels
  rng = np.random.default_rng(0)
  data = {"image": jnp.asarray(rng.normal(size=(batch, 12, 12, 1)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 10, batch), jnp.int32)}
  steps, out = {}, {}
  for layout in supernet_lib.LAYOUTS:
    config.supernet.layout = layout
    model, alphabet, macro = bionas.build(config, 10)
    variables = flax.core.unfreeze(model.init(jax.random.key(0), data["image"][:1]))
    assignment = supernet_lib.supernet_assignment(variables, alphabet, macro)
    step, _, weight_tx, alpha_tx = bionas.programs(model, bionas.program_settings(config))
    alpha = bionas.init_alpha(jax.random.key(1), alphabet.size)
    state = bionas.initial_state(variables, alpha, weight_tx, alpha_tx)
    start = time.perf_counter()
    compiled = step.lower(state, assignment, data, data, jax.random.key(2)).compile()
    out[layout] = {"compile_seconds": time.perf_counter() - start}
    steps[layout] = (lambda c=compiled, s=state, a=assignment:
                     c(s, a, data, data, jax.random.key(2))[1]["train_loss"])
  per_step = time_interleaved(steps, repeats=repeats, inner=1)
  for layout in supernet_lib.LAYOUTS:
    out[layout]["step_seconds"] = per_step[layout]
  return {
      "workload": {"cells": cells, "C": channels, "batch": batch, "image": [12, 12, 1],
                   "candidates": list(alphabet.names())},
      "layouts": out,
      "separate_over_vmap": {
          "compile": out["separate"]["compile_seconds"] / out["vmap"]["compile_seconds"],
          "step": out["separate"]["step_seconds"] / out["vmap"]["step_seconds"]},
      "machine": machine(), "load_average": load_average(),
      "platform": jax.devices()[0].platform,
  }


def main(argv: list[str]) -> None:
  del argv
  print(json.dumps(measure(_CELLS.value, _C.value, _BATCH.value, _REPEATS.value), indent=2))


if __name__ == "__main__":
  app.run(main)
