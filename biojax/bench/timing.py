"""Machine info and timing helpers shared by every section of the benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax

from biojax.metrics import machine

__all__ = ["FAST_COMPILE", "KEY_IMPL", "MNIST_SHAPE", "NUM_CLASSES", "load_average", "machine",
           "time_interleaved"]

NUM_CLASSES = 10
MNIST_SHAPE = (28, 28, 1)
# PRNG implementation of the NAS sections' keys. "rbg" rather than the default threefry: on
# CPU every threefry draw of a network's initialisation expands into its own hash code, and
# the NAS-Bench-201 network draws hundreds of tensors (its init compiled in 37 s with
# threefry, 19 s with rbg, for the quickstart network on the 2-core CPU).
KEY_IMPL = "rbg"
# XLA's CPU option that compiles faster and runs slower: --tiny only (it checks that the
# suite runs, not speeds).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def load_average() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None



def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, inner: int
                     ) -> dict[str, float]:
  """Median seconds per call of each function, measured round-robin after one warm-up."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  samples = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(inner):
        out = fn()
      jax.block_until_ready(out)
      samples[name].append((time.perf_counter() - start) / inner)
  return {name: statistics.median(s) for name, s in samples.items()}
