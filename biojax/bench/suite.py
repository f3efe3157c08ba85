"""Every section in one run, in the order that lets them share compiled programs."""

from __future__ import annotations

import sys
import time
from typing import Any

import ml_collections

from biojax.bench.against_the_machine import against_the_machine
from biojax.bench.compilations import compilations, search_throughput
from biojax.bench.memory import memory
from biojax.bench.rule_overhead import rule_overhead
from biojax.bench.strategies import convolution_in_loop, evaluator_strategies
from biojax.bench.timing import FAST_COMPILE, load_average, machine
from biojax.bench.workloads import mlp_workload, nb201_workload, strategy_config, workload_config
from biojax.nas import evaluator as evaluator_lib


def run(quickstart: ml_collections.ConfigDict, *, tiny: bool = False, full: bool = False,
        config_source: str = "experiments/quickstart.py") -> dict:
  """Every section; the NAS ones on the search settings ``quickstart`` (the layout of
  experiments/quickstart.py; ``config_source`` says where they came from, for the report)."""
  start = time.perf_counter()
  report: dict[str, Any] = {"machine": machine(), "load_average_start": load_average(),
                            "nas_config_source": config_source, "section_seconds": {}}

  def section(name, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    report["section_seconds"][name] = time.perf_counter() - t0
    print(f"[bench] {name}: {report['section_seconds'][name]:.1f} s", file=sys.stderr,
          flush=True)
    return out

  p = quickstart.proxy
  if tiny:
    config = workload_config(quickstart, steps=2, batch_size=8, eval_batch_size=16,
                             validation_examples=16, compiler_options=FAST_COMPILE)
    with config.unlocked():  # fewer rules compile faster; 4**4 genomes
      config.space.rules = ("bp", "fa", "usf", "kp")
    nas = mlp = mlp_workload(config, (8, 8, 8))
    strategies_config = mlp_config = config
  else:
    config = quickstart
    nas = nb201_workload(quickstart)
    mlp = mlp_workload(quickstart, (1024, 1024))
    mlp_config = workload_config(quickstart, steps=2, batch_size=256, validation_examples=512,
                                 eval_batch_size=256)
    # Strategies, memory and the compilation count on a short budget (2 steps; --full: 10):
    # per candidate, the ratios hardly depend on it, and memory does not (only the stacked
    # batches grow with it); the in-program strategies run slowly on CPU, and every one of
    # them compiles for about a minute.
    strategies_config = workload_config(
        quickstart, steps=min(p.steps, 10 if full else 2),
        validation_examples=min(p.validation_examples or 1000, 1000 if full else 128),
        eval_batch_size=min(p.eval_batch_size, 500 if full else 128))
  population, chunk = 16, 4
  default = evaluator_lib.default_strategy()
  repeats = 2 if tiny else (5 if full else 2)

  # Memory first: on an accelerator the device's peak bytes are then those of its programs.
  # It compiles the in-program strategies' programs that section 5 reuses.
  # Every NAS-Bench-201 population program compiles for about a minute on the 2-core CPU, so
  # by default only vmap (all candidates at once: the accelerators' default and the largest
  # footprint) and sequential (the CPU default) of them; --full: every strategy. (--tiny
  # likewise, for the MLP: map and chunked differ from vmap only in the strategy's name.)
  in_program = ("vmap", "map", "chunked") if full else ("vmap",)
  nas_strategies = evaluator_lib.STRATEGIES if full else ("vmap", "sequential")
  report["memory"] = section("memory", memory, nas, strategies_config, population, in_program,
                             chunk)
  report["rule_overhead"] = section("rule_overhead", rule_overhead, tiny, full)
  # Compilations on the strategies' budget: its "sequential" programs are shared with
  # section 5 (the count does not depend on the budget).
  search_config = strategy_config(strategies_config, default, chunk)
  report["compilations"] = section("compilations", compilations, nas, search_config)
  report["search_throughput"] = section(
      "search_throughput", search_throughput, nas, search_config if tiny else config,
      2 if tiny else (5 if full else 3), 1 if tiny else (4 if full else 2))
  strategies = {}
  # The MLP on populations of 8 (16 of the 784-1024-1024-10 MLP take long on CPU).
  for w, c, size, chosen in [(mlp, mlp_config, 8 if not tiny else population,
                              nas_strategies if tiny else evaluator_lib.STRATEGIES)] + (
      [] if tiny else [(nas, strategies_config, population, nas_strategies)]):
    strategies[w.name] = section(f"strategies {w.name}", evaluator_strategies, w, c, size,
                                 chunk, repeats, chosen)
  # A convolution of the first NAS-Bench-201 stage, alone and inside loops.
  channels = 4 if tiny else nas.model.C
  shape = (8, 8, 8, channels) if tiny else (p.batch_size, *nas.image_shape[:2], channels)
  strategies["convolution in a loop"] = section(
      "convolution in a loop", convolution_in_loop, shape, channels, 8, repeats)
  report["evaluator_strategies"] = strategies
  report["against_the_machine"] = section("against_the_machine", against_the_machine, tiny,
                                          full)
  report["load_average_end"] = load_average()
  report["wall_seconds"] = time.perf_counter() - start
  return report
