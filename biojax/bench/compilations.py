"""Sections 2 and 3: XLA compilations during a search, and the search's throughput against a
loop that compiles one program per candidate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import flax
import jax
import numpy as np

from biojax import builders
from biojax import train as train_lib
from biojax.bench.workloads import NasWorkload, build_evaluator, evaluation_key, proxy_data
from biojax.compilation import CompileCounter
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import search as search_lib
from biojax.nas.candidate import as_candidate


def _evaluator_programs(evaluator: evaluator_lib.PopulationEvaluator) -> dict[str, int]:
  """Compiled variants (jit cache sizes) of each program the evaluator runs: the set-up and
  the population program, or for ``"sequential"`` each single-candidate piece."""
  # noqa reasons: the jitted programs are private attributes of the evaluator.
  if evaluator.strategy == "sequential":
    pieces = evaluator._sequential_programs._asdict()  # noqa: SLF001
  else:
    pieces = {"": evaluator._program}  # noqa: SLF001
  setup = evaluator._setup.programs  # noqa: SLF001 (the set-up's keys and init programs)
  return {f"evaluator {name}".strip(): fn._cache_size()  # noqa: SLF001
          for name, fn in {**{f"setup {k}": v for k, v in setup.items()}, **pieces}.items()}



def _naive_candidate(workload: NasWorkload, config, variables: Mapping, genome: np.ndarray,
                     train_steps: list, validation_batches: list, step_keys: list) -> dict:
  """What a user writes without biojax: a train step and an eval step jitted for this one
  candidate, its operations and rules Python constants baked into the programs (XLA folds
  the choices away and keeps only the chosen branches), a Python loop over the same batches.
  Returns its validation accuracy and the seconds of the first run (compiles included) and
  of a second run of the same compiled programs."""
  model, space, p = workload.model, workload.space, config.proxy
  tx, _ = builders.build_optimizer(p)
  train_step = train_lib.make_train_step(model, tx)
  eval_step = train_lib.make_eval_step(model)
  # NumPy values: constants of the traced programs, not arguments.
  assignment = jax.tree.map(np.asarray, space.assignment_fn(variables, model.options)(genome))
  architecture = jax.tree.map(np.asarray, space.architecture(genome))

  def bake(state):
    return state.replace(assignment=assignment, architecture=architecture)

  def run(step, evaluate):
    state = as_candidate(train_lib.train_state_from_variables(variables, tx, assignment),
                         architecture)
    for batch, key in zip(train_steps, step_keys, strict=True):
      state, _ = step(state, batch, key)
    totals = jax.device_get([evaluate(state, batch) for batch in validation_batches])
    return sum(t["correct"] for t in totals) / max(sum(t["count"] for t in totals), 1.0)

  start = time.perf_counter()
  with CompileCounter() as counter:
    step = jax.jit(lambda s, b, k: train_step(bake(s), b, k))
    evaluate = jax.jit(lambda s, b: eval_step(bake(s), b))
    accuracy = run(step, evaluate)
  first = time.perf_counter() - start
  start = time.perf_counter()
  run(step, evaluate)
  again = time.perf_counter() - start
  return {"validation_accuracy": float(accuracy), "seconds": first,
          "seconds_without_compiling": again, "xla_compilations": counter.count}



def _search_loop(workload: NasWorkload, config, distinct: int, generations: int) -> dict:
  """Regularised evolution (the search's own builders and settings, ``config.search``):
  generations of ``ask -> evaluate -> tell`` through one evaluator until at least
  ``distinct`` distinct genomes and ``generations`` generations, each generation timed and
  its XLA compilations counted."""
  space, k = workload.space, config.search.num_children
  strategy = search_lib.build_strategy(config, space)
  evaluator = build_evaluator(workload, config)
  train, validation = proxy_data(workload, config)
  key = evaluation_key()
  ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
  state = strategy.init()
  seen: set[tuple[int, ...]] = set()
  out = {"seconds": [], "compilations": [], "evaluator_compilations": [], "children": [],
         "validation_accuracy": []}
  start = time.perf_counter()
  while len(seen) < distinct or len(out["seconds"]) < generations:
    t0 = time.perf_counter()
    with CompileCounter() as counter:
      children = np.asarray(ask(jax.random.key(len(out["seconds"])), state))
      with CompileCounter() as evaluation:
        fitness, info = evaluator.evaluate(children, train, validation, key,
                                           np.ones(k, np.float32))
        fitness = np.asarray(fitness)
      state = jax.block_until_ready(tell(state, children, fitness))
    out["seconds"].append(time.perf_counter() - t0)
    out["compilations"].append(counter.count)
    out["evaluator_compilations"].append(evaluation.count)
    out["children"].append(children)
    out["validation_accuracy"].append(np.asarray(info["validation_accuracy"]))
    seen.update(map(tuple, children.tolist()))
    if len(out["seconds"]) * k >= 4 * max(distinct, 1) + generations * k:
      break  # a space too small for `distinct` genomes
  out["total_seconds"] = time.perf_counter() - start
  out["distinct"] = len(seen)
  out["programs"] = {**_evaluator_programs(evaluator),
                     "ask": ask._cache_size(), "tell": tell._cache_size()}  # noqa: SLF001
  out["workload"] = {**workload.describe(config), "strategy": evaluator.strategy,
                     "population": k, "generations": len(out["seconds"])}
  out["data"] = (train, validation, key)
  return out



def compilations(workload: NasWorkload, config) -> dict:
  """XLA compilations during a search over at least 64 distinct genomes: compiled variants
  of each program (the evaluator's, ask, tell) and all XLA compilations per generation."""
  loop = _search_loop(workload, config, distinct=64, generations=2)
  programs = loop["programs"]
  return {
      "workload": loop["workload"],
      "genomes_evaluated": sum(len(c) for c in loop["children"]),
      "distinct_genomes": loop["distinct"],
      "xla_compilations": sum(loop["compilations"]),
      "compiled_variants_per_program": programs,
      "xla_compilations_per_generation": loop["compilations"],
      "evaluator_xla_compilations_per_generation": loop["evaluator_compilations"],
      "target": "one compiled variant per program kind; no compilation after the first "
                "generation",
      "met": all(v == 1 for v in programs.values()) and not any(loop["compilations"][1:]),
  }



def search_throughput(workload: NasWorkload, config, generations: int, naive: int) -> dict:
  """Candidates per minute at ``config``'s budget: the search (``generations`` generations,
  the first one compiling; a 64-candidate search is extrapolated from them) and the naive
  loop on ``naive`` of the first generation's children, on the same batches from the same
  initial state."""
  k = config.search.num_children
  loop = _search_loop(workload, config, distinct=0, generations=generations)
  train, validation, key = loop["data"]
  # The naive loop, from the evaluator's initial state (common random numbers), so its
  # accuracy is comparable; its initialisation is not timed (in its favour).
  init_key, train_key = jax.random.split(key)
  sample = train["image"][0, :1]
  variables = flax.core.unfreeze(workload.model.init(init_key, sample, train=False))
  steps = config.proxy.steps
  step_keys = [jax.random.fold_in(train_key, i) for i in range(steps)]
  train_steps = [jax.tree.map(lambda x, i=i: x[i], train) for i in range(steps)]
  validation_batches = [jax.tree.map(lambda x, i=i: x[i], validation)
                        for i in range(validation["label"].shape[0])]
  jax.block_until_ready((train_steps, validation_batches, step_keys))
  naive_runs = [_naive_candidate(workload, config, variables, loop["children"][0][i],
                                 train_steps, validation_batches, step_keys)
                for i in range(naive)]
  t_naive = statistics.median(r["seconds"] for r in naive_runs)
  t_naive_run = statistics.median(r["seconds_without_compiling"] for r in naive_runs)
  first, t_generation = loop["seconds"][0], statistics.median(loop["seconds"][1:])
  search_seconds = first + (64 / k - 1) * t_generation  # one compile, then generations
  rate = {
      "biojax search of 64 (its compiles included)": 60 * 64 / search_seconds,
      "biojax search, after its first generation": 60 * k / t_generation,
      "naive (a compile per candidate)": 60 / t_naive,
      "naive, if compiling were free": 60 / t_naive_run,
  }
  ratio = rate["biojax search of 64 (its compiles included)"] / rate[
      "naive (a compile per candidate)"]
  after = rate["biojax search, after its first generation"]
  return {
      "workload": loop["workload"],
      "generation_seconds": loop["seconds"],
      "generation_xla_compilations": loop["compilations"],
      "search_of_64_seconds_extrapolated": search_seconds,
      "naive": naive_runs,
      "naive_accuracy_minus_evaluator": [
          r["validation_accuracy"] - float(loop["validation_accuracy"][0][i])
          for i, r in enumerate(naive_runs)],
      "candidates_per_minute": rate,
      "ratio_search_to_naive": ratio,
      "ratio_after_first_generation_to_naive": after / rate["naive (a compile per candidate)"],
      "ratio_after_first_generation_to_naive_without_compiling":
          after / rate["naive, if compiling were free"],
      "target": 3.0, "met": ratio >= 3.0,
  }
