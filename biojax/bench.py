"""Benchmarks: every figure is a ratio of two measurements taken in the same run.

    python -m biojax.bench --out=DIR [--full] [--tiny]

Writes ``bench.json`` and ``bench.md`` in DIR. Each timing is the median of several repeats,
after a warm-up call that compiles; programs being compared are measured interleaved
(round-robin), so slow drift of the machine affects them alike. Sections (issue 6):

1. ``rule_overhead``: train-step time of each rule relative to ``bp`` (MLP, ConvNet,
   NAS-Bench-201 network).
2. ``compilations``: XLA compilations while a search evaluates at least 64 distinct
   NAS-Bench-201 genomes through one :class:`biojax.nas.PopulationEvaluator`.
3. ``search_throughput``: candidates per minute of the population evaluator against a
   sequential loop that compiles one program per candidate, its genome baked in as Python
   constants (what a user writes without biojax), at the quickstart budget.
4. ``against_the_machine``: achieved FLOP/s of the MLP train step over the FLOP/s of a dense
   matrix product on the same machine.
5. ``evaluator_strategies``: per-candidate time of ``vmap``, ``map`` and ``chunked`` relative to
   a single-candidate program, for the MLP and the NAS-Bench-201 network.
6. ``memory``: memory of the evaluator program for 16 NAS-Bench-201 proxy candidates.

The NAS sections use the quickstart's search settings (``experiments/quickstart.py``) on
synthetic data of the quickstart's shapes (cost does not depend on pixel values). ``--tiny``
replaces the NAS-Bench-201 network by a small MLP with one rule gene per layer, so the test
stays cheap (each NAS-Bench-201 program compiles in tens of seconds on CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags

import biojax
from biojax import nn as bnn
from biojax import rules
from biojax import train as train_lib
from biojax.compilation import CompileCounter
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import genome as genome_lib
from biojax.nas import nb201
from biojax.nas import search as search_lib
from biojax.nas.candidate import as_candidate
from biojax.nn.assignment import Assignment, weight_layers

FLAGS = flags.DEFINE_string("out", "bench_out", "Output directory.")
FULL = flags.DEFINE_bool("full", False, "Larger workloads and more repeats.")
TINY = flags.DEFINE_bool("tiny", False, "Tiny workloads (for tests: checks it runs, not speed).")

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
QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "quickstart.py")


def machine() -> dict:
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  out = {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
         "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
  if jax.default_backend() != "cpu":
    out["device_kind"] = jax.devices()[0].device_kind
  return out


def _load_average() -> list[float] | None:
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


# ------------------------------------------------------------------ 1. rule overhead


def _workloads(tiny: bool, full: bool):
  """name -> (model, batch shape, architecture collection or None, also time the lean build
  and the plain jax.grad step (each a compile: for NAS-Bench-201 only with --full))."""
  if tiny:
    return {"mlp": (bnn.MLP(10, hidden=(32, 32)), (16, 28, 28, 1), None, False, True)}
  space = nb201.NB201Space()
  cell = "best_cifar10"
  out = {"mlp 784-1024-1024-10": (bnn.MLP(10, hidden=(1024, 1024)), (256, 28, 28, 1), None,
                                  True, True),
         "convnet": (bnn.ConvNet(10), (128, 28, 28, 1), None, True, True),
         # Every rule compiled in (the rule overhead is that of a search over all rules);
         # the cell is NAS-Bench-201's best CIFAR-10 cell (5 of 6 edges convolutions). The
         # network computes every operation of every edge whatever the cell (nb201.py).
         f"nb201 C=8 N=1 {cell}": (nb201.NB201Network(C=8, N=1, num_classes=10, dfa=True),
                                   (32, 28, 28, 1), space.architecture(space.named(cell)),
                                   full, full)}
  if full:
    out["resnet20"] = (bnn.resnet20(10), (128, 32, 32, 3), None, True, True)
  return out


def _initial_state(model: nn.Module, tx, sample: jax.Array, architecture=None):
  # Eager init with an rbg key: no compile of the whole init (for NAS-Bench-201 that is the
  # cheapest way on CPU, see KEY_IMPL).
  variables = flax.core.unfreeze(model.init(jax.random.key(0, impl=KEY_IMPL), sample,
                                            train=False))
  state = train_lib.train_state_from_variables(variables, tx,
                                               bnn.make_assignment(variables, "bp"))
  return state if architecture is None else as_candidate(state, architecture)


def _plain_step(model: nn.Module, state, batch: Mapping):
  """A jitted SGD step through ``jax.grad`` of the model's plain forward pass (no assignment
  collection: no rule machinery), with batch statistics updated as in training."""
  plain_tx = optax.sgd(0.01)
  fixed = {k: v for k, v in state.variables().items() if k not in ("params", "batch_stats")}

  @jax.jit
  def step(params, opt_state, batch_stats):
    def loss(p):
      variables = {"params": p, **fixed}
      if batch_stats:
        logits, new = model.apply({**variables, "batch_stats": batch_stats}, batch["image"],
                                  train=True, mutable=["batch_stats"])
      else:
        logits, new = model.apply(variables, batch["image"], train=True), {}
      return biojax.cross_entropy(logits, batch["label"]), new
    (value, new), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = plain_tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new.get("batch_stats"), value

  opt_state = plain_tx.init(state.params)
  return lambda: step(state.params, opt_state, state.batch_stats)[3]


def _random_batch(shape) -> dict:
  r = np.random.default_rng(0)
  return {"image": jnp.asarray(r.normal(size=shape), jnp.float32),
          "label": jnp.asarray(r.integers(0, NUM_CLASSES, shape[0]), jnp.int32)}


def _rule_overhead_one(model, shape, repeats: int, inner: int, architecture=None,
                       lean: bool = True, plain: bool = True) -> dict:
  batch = _random_batch(shape)
  tx = biojax.make_optimizer("sgd", 0.01)
  state = _initial_state(model, tx, batch["image"][:1], architecture)
  step = jax.jit(biojax.make_train_step(model, tx))
  key = jax.random.key(1)
  fns = {}
  for spec in list(rules.rule_names()) + ["eg"]:
    layer_specs = bnn.single_rule_specs(spec, len(state.assignment.layers))
    s = state.replace(assignment=bnn.make_assignment(state.variables(), layer_specs))
    fns[spec] = functools.partial(lambda s: step(s, batch, key)[1]["loss"], s)

  if lean:  # the same model compiled for the error-driven rules only (no local-rule branch)
    error_driven = tuple(r.name for r in rules.rules() if r.credit != "local")
    lean_model = model.clone(options=dataclasses.replace(model.options, rules=error_driven))
    lean_step = jax.jit(biojax.make_train_step(lean_model, tx))
    fns["bp (error-driven build)"] = lambda: lean_step(state, batch, key)[1]["loss"]
  if plain:
    fns["plain jax.grad"] = _plain_step(model, state, batch)
  seconds = time_interleaved(fns, repeats, inner)
  base = seconds["bp"]
  out = {
      "batch_shape": list(shape),
      "weight_layers": len(state.assignment.layers),
      "seconds_per_step": seconds,
      "ratio_to_bp": {k: v / base for k, v in seconds.items()},
  }
  if plain:
    out["bp_over_plain_jax_grad"] = base / seconds["plain jax.grad"]
  if lean and plain:
    out["error_driven_build_bp_over_plain_jax_grad"] = (
        seconds["bp (error-driven build)"] / seconds["plain jax.grad"])
  return out


def rule_overhead(tiny: bool, full: bool) -> dict:
  """Train-step time of each rule (same rule on every layer; for local rules every layer
  but the classifier) divided by ``bp``'s; and ``bp`` through biojax divided by a plain
  ``jax.grad`` SGD step on the same model (the cost of the rule machinery)."""
  repeats, inner = (2, 1) if tiny else ((9, 5) if full else (5, 3))
  return {name: _rule_overhead_one(model, shape, repeats, inner, *options)
          for name, (model, shape, *options) in _workloads(tiny, full).items()}


TARGETS = {"fa": 1.10, "usf": 1.10, "brsf": 1.10, "frsf": 1.10, "dfa": 1.15, "kp": 1.20,
           "eg": 1.10, "softhebb": 1.5}


# ------------------------------------------------------------------ NAS workloads


def _placeholder_quickstart() -> ml_collections.ConfigDict:
  """The quickstart's layout (biojax.nas.search), used while experiments/quickstart.py is
  missing."""
  return ml_collections.ConfigDict({
      "seed": 0, "image_crop": 24, "image_pool": 2, "rule_options": {},
      "space": {"name": "nb201", "rules": list(nb201.DEFAULT_RULES), "macro_rules": None,
                "C": 8, "N": 1, "dfa": None},
      "proxy": {"steps": 20, "batch_size": 64, "eval_batch_size": 256,
                "validation_examples": 512, "optimizer": "sgd", "learning_rate": 0.05,
                "momentum": 0.9, "weight_decay": 0.0, "clip_norm": 0.0, "schedule": "constant",
                "warmup_steps": 0, "strategy": None, "chunk_size": 8, "compiler_options": {}},
      "search": {"algorithm": "evolution", "population_size": 16, "num_children": 8,
                 "tournament_size": 4, "generations": 8},
  })


def quickstart_config() -> tuple[ml_collections.ConfigDict, str]:
  """The quickstart's config and where it came from."""
  if os.path.exists(QUICKSTART):
    spec = importlib.util.spec_from_file_location("_biojax_bench_quickstart", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(), "experiments/quickstart.py"
  return _placeholder_quickstart(), "placeholder (experiments/quickstart.py not found)"


@dataclasses.dataclass(frozen=True)
class LayerRuleSpace:
  """A genome of one rule gene per weight layer of a fixed network (``(num_layers,)`` int32,
  gene ``k`` of layer ``i`` = ``rules[k]``). Not a NAS space: it lets the MLP go through
  :class:`biojax.nas.PopulationEvaluator` (it has the methods the evaluator, the search
  strategies and the naive loop use)."""

  rules: tuple[str, ...]
  num_layers: int

  @property
  def gene_sizes(self) -> tuple[int, ...]:
    return (len(self.rules),) * self.num_layers

  @property
  def rule_names(self) -> tuple[str, ...]:
    ids = {rules.parse_rule_spec(s)[0] for s in self.rules}
    return tuple(rules.get_rule(i).name for i in sorted(ids))

  def random_genomes(self, key: jax.Array, num: int) -> jax.Array:
    return genome_lib.random_genomes(key, self.gene_sizes, num)

  def expressed_genes(self, genome: jax.Array) -> jax.Array:
    return jnp.ones(jnp.shape(genome), bool)

  def architecture(self, genome: jax.Array) -> dict:
    del genome
    return {}

  def assignment_fn(self, variables: Mapping, options=None) -> Callable[[jax.Array], Assignment]:
    del options
    layers = weight_layers(variables)
    if len(layers) != self.num_layers:
      raise ValueError(f"The model has {len(layers)} weight layers, the space {self.num_layers}.")
    parsed = [rules.parse_rule_spec(s) for s in self.rules]
    rule_table = np.asarray([r for r, _ in parsed], np.int32)
    geometry_table = np.asarray([g for _, g in parsed], np.int32)

    def assign(genome: jax.Array) -> Assignment:
      genome = jnp.asarray(genome, jnp.int32)
      return Assignment(rule={n: jnp.asarray(rule_table)[genome[..., i]]
                              for i, n in enumerate(layers)},
                        geometry={n: jnp.asarray(geometry_table)[genome[..., i]]
                                  for i, n in enumerate(layers)}, layers=layers)

    return assign


@dataclasses.dataclass(frozen=True, eq=False)
class NasWorkload:
  """A search space, its network and the search settings (quickstart layout) it runs with."""

  name: str
  config: ml_collections.ConfigDict
  space: Any
  model: nn.Module
  image_shape: tuple[int, ...]  # one input image, after the config's crop and pooling

  def describe(self, config: ml_collections.ConfigDict) -> dict:
    p = config.proxy
    return {"network": self.name, "input_shape": list(self.image_shape),
            "rules": list(getattr(self.space, "rules", ())),
            "steps": p.steps, "batch_size": p.batch_size,
            "validation_examples": p.validation_examples,
            "eval_batch_size": p.eval_batch_size, "optimizer": p.optimizer,
            "compiler_options": dict(p.compiler_options)}


def nb201_workload(config: ml_collections.ConfigDict) -> NasWorkload:
  space = search_lib.build_space(config)
  model = search_lib.build_network(config, space, NUM_CLASSES)
  shape = search_lib.transform_images(np.zeros((1, *MNIST_SHAPE), np.float32),
                                      config.image_crop, config.image_pool).shape[1:]
  return NasWorkload(f"nb201 C={model.C} N={model.N}", config, space, model, tuple(shape))


def mlp_workload(config: ml_collections.ConfigDict, hidden: tuple[int, ...]) -> NasWorkload:
  space = LayerRuleSpace(tuple(config.space.rules), len(hidden) + 1)
  options = rules.RuleOptions(**{**dict(config.rule_options), "rules": space.rule_names})
  model = bnn.MLP(NUM_CLASSES, hidden=hidden, options=options)
  name = "mlp " + "-".join(str(d) for d in (784, *hidden, NUM_CLASSES))
  return NasWorkload(name, config, space, model, MNIST_SHAPE)


def _evaluator(workload: NasWorkload, config) -> evaluator_lib.PopulationEvaluator:
  # The search's own builder (cached on the settings: equal settings share one program).
  return search_lib.build_evaluator(config, workload.space, workload.model)


def _proxy_data(workload: NasWorkload, config, seed: int = 0) -> tuple[dict, dict]:
  """Synthetic stacked proxy batches with the shapes biojax.nas.search.proxy_batches makes."""
  p, r = config.proxy, np.random.default_rng(seed)
  train = {"image": r.random((p.steps, p.batch_size, *workload.image_shape), np.float32),
           "label": r.integers(0, NUM_CLASSES, (p.steps, p.batch_size)).astype(np.int32)}
  examples = p.validation_examples or 1000
  batches = -(-examples // p.eval_batch_size)
  shape = (batches, p.eval_batch_size)
  mask = (np.arange(batches * p.eval_batch_size) < examples).astype(np.float32)
  validation = {"image": r.random((*shape, *workload.image_shape), np.float32),
                "label": r.integers(0, NUM_CLASSES, shape).astype(np.int32),
                "mask": mask.reshape(shape)}
  return jax.device_put(train), jax.device_put(validation)


def _distinct_genomes(space, key: jax.Array, num: int) -> np.ndarray:
  genomes = np.unique(np.asarray(space.random_genomes(key, 4 * num)), axis=0)
  genomes = genomes[np.random.default_rng(0).permutation(len(genomes))][:num]
  if len(genomes) < num:
    raise ValueError(f"The space holds fewer than {num} distinct genomes.")
  return genomes


def _evaluation_key() -> jax.Array:
  return jax.random.key(0, impl=KEY_IMPL)


# ------------------------------------------------------------------ 2. compilations


def _evaluator_programs(evaluator: evaluator_lib.PopulationEvaluator) -> dict[str, int]:
  """Compiled variants (jit cache sizes) of each program the evaluator runs: the one
  population program, or for ``"sequential"`` each single-candidate piece."""
  # noqa reasons: the jitted programs are private attributes of the evaluator.
  if evaluator.strategy == "sequential":
    pieces = evaluator._sequential_programs  # noqa: SLF001
    return {f"evaluator {name}": fn._cache_size()  # noqa: SLF001
            for name, fn in pieces._asdict().items()}
  return {"evaluator": evaluator._compile_count()}  # noqa: SLF001


# ------------------------------------------------------------------ 3. search throughput


def _naive_candidate(workload: NasWorkload, config, variables: Mapping, genome: np.ndarray,
                     train_steps: list, validation_batches: list, step_keys: list) -> dict:
  """What a user writes without biojax: a train step and an eval step jitted for this one
  candidate, its operations and rules Python constants baked into the programs (XLA folds
  the choices away and keeps only the chosen branches), a Python loop over the same batches.
  Returns its validation accuracy and the seconds of the first run (compiles included) and
  of a second run of the same compiled programs."""
  model, space, p = workload.model, workload.space, config.proxy
  schedule = train_lib.make_schedule(p.learning_rate, p.schedule, p.steps, p.warmup_steps)
  tx = train_lib.make_optimizer(p.optimizer, schedule, p.momentum, p.weight_decay,
                                p.clip_norm)
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
  evaluator = _evaluator(workload, config)
  train, validation = _proxy_data(workload, config)
  key = _evaluation_key()
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


# ------------------------------------------------------------------ 4. against the machine


def against_the_machine(tiny: bool, full: bool) -> dict:
  """FLOP/s of the MLP train step (FLOPs counted by hand: 2*m*n*k per product; the forward
  products, the weight-gradient products and the input-gradient products of every layer but
  the first) over the FLOP/s of one large square matrix product, measured interleaved."""
  hidden, b, n = ((32, 32), 16, 256) if tiny else ((1024, 1024), 256, 2048)
  repeats, inner = (2, 1) if tiny else ((9, 5) if full else (5, 3))
  dims = (784, *hidden, NUM_CLASSES)
  model = bnn.MLP(NUM_CLASSES, hidden=hidden)
  batch = _random_batch((b, *MNIST_SHAPE))
  tx = biojax.make_optimizer("sgd", 0.01)
  state = _initial_state(model, tx, batch["image"][:1])
  key = jax.random.key(1)
  step = jax.jit(biojax.make_train_step(model, tx))
  layers = list(zip(dims[:-1], dims[1:], strict=True))
  forward = sum(2 * b * i * o for i, o in layers)
  flops = 2 * forward + sum(2 * b * i * o for i, o in layers[1:])
  cost = step.lower(state, batch, key).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list | tuple) else cost
  xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0

  r = np.random.default_rng(0)
  a = jnp.asarray(r.normal(size=(n, n)), jnp.float32)
  c = jnp.asarray(r.normal(size=(n, n)), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  # The step's own products alone (same shapes, nothing else): what the step could reach.
  xs = [jnp.asarray(r.normal(size=(b, i)), jnp.float32) for i, _ in layers]
  ws = [jnp.asarray(r.normal(size=(i, o)), jnp.float32) for i, o in layers]
  gs = [jnp.asarray(r.normal(size=(b, o)), jnp.float32) for _, o in layers]

  @jax.jit
  def products(xs, ws, gs):
    out = [x @ w for x, w in zip(xs, ws, strict=True)]
    out += [x.T @ g for x, g in zip(xs, gs, strict=True)]
    out += [g @ w.T for g, w in zip(gs[1:], ws[1:], strict=True)]
    return out

  seconds = time_interleaved({
      "bp train step": lambda: step(state, batch, key)[1]["loss"],
      "plain jax.grad step": _plain_step(model, state, batch),
      "the step's products alone": lambda: products(xs, ws, gs),
      f"matmul {n}x{n}x{n}": lambda: matmul(a, c),
  }, repeats, inner)
  peak = 2 * n**3 / seconds[f"matmul {n}x{n}x{n}"]
  rates = {"bp train step": flops / seconds["bp train step"],
           "plain jax.grad step": flops / seconds["plain jax.grad step"],
           "the step's products alone": flops / seconds["the step's products alone"],
           f"matmul {n}x{n}x{n}": peak}
  ratio = rates["bp train step"] / peak
  return {
      "workload": {"network": "mlp " + "-".join(map(str, dims)), "batch": b,
                   "optimizer": "sgd", "rule": "bp", "matmul": [n, n, n], "dtype": "float32"},
      "flops_per_step_by_hand": flops, "flops_per_step_xla_cost_analysis": xla_flops,
      "seconds": seconds, "flops_per_second": rates,
      "ratio_to_matmul": {k: v / peak for k, v in rates.items()},
      "ratio": ratio, "target": 0.6, "met": ratio >= 0.6,
  }


# ------------------------------------------------------------------ 5. evaluator strategies


def strategy_config(config, strategy: str, chunk_size: int) -> ml_collections.ConfigDict:
  """``config`` with the evaluator's strategy set (sections 5 and 6 share these programs)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.proxy.strategy = strategy
    config.proxy.chunk_size = chunk_size
  return config


def workload_config(config, **proxy) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for k, v in proxy.items():
      config.proxy[k] = v
  return config


def _convolution_in_loop(shape: tuple[int, ...], features: int, calls: int, repeats: int
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
  train, validation = _proxy_data(workload, config)
  key = _evaluation_key()
  genomes = _distinct_genomes(workload.space, jax.random.key(2), population)
  ones = np.ones(population, np.float32)
  single = evaluator_lib.default_strategy()
  programs = {"single candidate": (single, genomes[:1], ones[:1])}
  for strategy in strategies:
    programs[strategy] = (strategy, genomes, ones)
  fns = {}
  for name, (strategy, g, s) in programs.items():
    evaluator = _evaluator(workload, strategy_config(config, strategy, chunk_size))
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


# ------------------------------------------------------------------ 6. memory


def memory(workload: NasWorkload, config, population: int, strategies: tuple[str, ...],
           chunk_size: int) -> dict:
  """Memory of the evaluator's population program for ``population`` candidates from XLA's
  buffer assignment (``compiled.memory_analysis()``: arguments, outputs, temporaries); on an
  accelerator also the device's peak bytes in use once it has run. (``"sequential"`` has no
  population program: it holds one candidate at a time, like ``map``.)"""
  train, validation = _proxy_data(workload, config)
  key = _evaluation_key()
  genomes = _distinct_genomes(workload.space, jax.random.key(2), population)
  ones = np.ones(population, np.float32)
  out = {"workload": {**workload.describe(config), "population": population,
                      "chunk_size": chunk_size}, "strategies": {}}
  for strategy in strategies:
    evaluator = _evaluator(workload, strategy_config(config, strategy, chunk_size))
    args = (genomes, train, validation, key, ones)
    compiled = evaluator._program.lower(*args).compile()  # noqa: SLF001 (the jitted program)
    m = compiled.memory_analysis()
    entry = {name: int(getattr(m, f"{name}_size_in_bytes"))
             for name in ("argument", "output", "alias", "temp", "generated_code")}
    entry["total_bytes"] = entry["argument"] + entry["output"] - entry["alias"] + entry["temp"]
    entry["bytes_per_candidate"] = entry["total_bytes"] / population
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
      before = stats.get("bytes_in_use", 0)
      jax.block_until_ready(evaluator.evaluate(*args))
      stats = jax.devices()[0].memory_stats()
      entry["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
      entry["device_bytes_in_use_before"] = int(before)
    out["strategies"][strategy] = entry
  return out


# ------------------------------------------------------------------ report


def _mib(x: float) -> str:
  return f"{x / 2**20:.1f} MiB"


def _describe(w: dict) -> str:
  return (f"{w['network']}, input {w['input_shape']}, rules {', '.join(w['rules'])}; "
          f"{w['steps']} steps of batch {w['batch_size']}, {w['validation_examples']} "
          f"validation examples")


def to_markdown(report: dict) -> str:
  m = report["machine"]
  lines = [
      "# biojax benchmarks", "",
      f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}"
      + (f" ({m['device_kind']})" if m.get("device_kind") else "")
      + f", jax {m['jax']}. Load average (1, 5, 15 min) at start / end: "
      f"{report['load_average_start']} / {report['load_average_end']}.",
      f"Command: `{report['command']}` ({report['wall_seconds']:.0f} s). NAS settings from "
      f"{report['nas_config_source']}; synthetic data of its shapes; PRNG keys `{KEY_IMPL}`.",
      "",
      "## 1. Rule overhead: train-step time relative to bp (same run, medians, interleaved)",
      ""]
  for name, r in report["rule_overhead"].items():
    lines += [f"### {name}, batch {r['batch_shape']}", "",
              "| rule | ms/step | ratio to bp | target |", "|---|---|---|---|"]
    for rule, ratio in r["ratio_to_bp"].items():
      target = TARGETS.get(rule)
      lines.append(f"| {rule} | {1e3 * r['seconds_per_step'][rule]:.2f} | {ratio:.3f} | "
                   f"{f'<= {target:.2f}' if target else ''} |")
    lean = r.get("error_driven_build_bp_over_plain_jax_grad")
    if "bp_over_plain_jax_grad" in r:
      lines += ["", f"bp through biojax / plain jax.grad step: "
                f"{r['bp_over_plain_jax_grad']:.3f} (all rules compiled in)"
                + (f"; {lean:.3f} (built for the error-driven rules only, "
                   "`RuleOptions(rules=...)`)" if lean is not None else "")]
    lines.append("")

  c = report["compilations"]
  w = c["workload"]
  lines += ["## 2. Compilations during a search", "",
            f"{_describe(w)}; regularised evolution, {w['generations']} generations of "
            f"{w['population']} children, evaluator strategy `{w['strategy']}`.", "",
            f"- genomes evaluated: {c['genomes_evaluated']} ({c['distinct_genomes']} distinct)",
            f"- compiled variants per program: {c['compiled_variants_per_program']}",
            f"- XLA compilations in all: {c['xla_compilations']}; per generation "
            f"{c['xla_compilations_per_generation']} (in the evaluator: "
            f"{c['evaluator_xla_compilations_per_generation']})",
            f"- target (one variant per program kind, none after the first generation): "
            f"{'met' if c['met'] else 'MISSED'}", ""]

  t = report["search_throughput"]
  w, s = t["workload"], t["generation_seconds"]
  naive = "; ".join(f"{r['seconds']:.1f} s ({r['xla_compilations']} compilations; "
                    f"{r['seconds_without_compiling']:.2f} s run again)" for r in t["naive"])
  accuracy = ", ".join(f"{d:+.4f}" for d in t["naive_accuracy_minus_evaluator"])
  lines += ["## 3. Search throughput against one compiled program per candidate", "",
            f"{_describe(w)}; regularised evolution, generations of {w['population']}, "
            f"strategy `{w['strategy']}`. Search: first generation {s[0]:.1f} s (compiles), "
            f"then median {statistics.median(s[1:]):.2f} s (of {len(s) - 1}); a search of 64 "
            f"candidates: {t['search_of_64_seconds_extrapolated']:.0f} s. Naive, per candidate: "
            f"{naive}. Validation accuracy, naive minus evaluator (same genome, same initial "
            f"state and batches): {accuracy}.", "",
            "| | candidates/minute |", "|---|---|"]
  lines += [f"| {k} | {r:.1f} |" for k, r in t["candidates_per_minute"].items()]
  lines += ["", f"Search / naive: **{t['ratio_search_to_naive']:.1f}x** (target >= 3: "
            f"{'met' if t['met'] else 'MISSED'}); after the first generation / naive: "
            f"{t['ratio_after_first_generation_to_naive']:.1f}x; after the first generation "
            f"/ naive without compiling: "
            f"{t['ratio_after_first_generation_to_naive_without_compiling']:.2f}x.", ""]

  a = report["against_the_machine"]
  w = a["workload"]
  lines += ["## 4. Against the machine: FLOP/s of the MLP train step / FLOP/s of a matmul", "",
            f"{w['network']}, batch {w['batch']}, `{w['rule']}`, SGD, float32; "
            f"{a['flops_per_step_by_hand'] / 1e9:.3f} GFLOP per step by hand "
            f"(XLA cost analysis: {a['flops_per_step_xla_cost_analysis'] / 1e9:.3f}).", "",
            "| program | ms | GFLOP/s | / matmul |", "|---|---|---|---|"]
  for k, v in a["flops_per_second"].items():
    lines.append(f"| {k} | {1e3 * a['seconds'][k]:.2f} | {v / 1e9:.1f} | "
                 f"{a['ratio_to_matmul'][k]:.2f} |")
  lines += ["", f"Train step / matmul: **{a['ratio']:.2f}** (target >= 0.6: "
            f"{'met' if a['met'] else 'MISSED'}).", ""]

  lines += ["## 5. Evaluator strategies: seconds per candidate relative to a single-candidate "
            "program", ""]
  for name, s in report["evaluator_strategies"].items():
    if name == "convolution in a loop":
      continue
    w = s["workload"]
    lines += [f"### {name}", "",
              f"{_describe(w)}; population {w['population']}, chunks of {w['chunk_size']}. "
              f"Single candidate: population 1, `{w['single_candidate_strategy']}`.", "",
              "| program | s/call | s/candidate | relative |", "|---|---|---|---|"]
    for k, v in s["per_candidate_relative_to_single"].items():
      lines.append(f"| {k} | {s['seconds_per_call'][k]:.3f} | "
                   f"{s['seconds_per_candidate'][k]:.4f} | {v:.2f} |")
    lines += ["", f"Fastest: `{s['fastest']}`; `default_strategy()` on this backend: "
              f"`{s['default_strategy']}`.", ""]
  conv = report["evaluator_strategies"].get("convolution in a loop")
  if conv:
    lines += [f"Convolution (3x3, input {conv['input_shape']}, {conv['features']} features, "
              f"forward and weight gradient), {conv['calls']} of them:", "",
              "| how | ms per convolution | relative |", "|---|---|---|"]
    for k, v in conv["seconds_per_convolution"].items():
      lines.append(f"| {k} | {1e3 * v:.3f} | {conv['relative_to_called_one_by_one'][k]:.2f} |")
    lines.append("")

  mem = report["memory"]
  w = mem["workload"]
  lines += ["## 6. Memory of the evaluator program", "",
            f"{_describe(w)}; {w['population']} candidates (chunks of {w['chunk_size']}); "
            "XLA's buffer assignment (`compiled.memory_analysis()`).", "",
            "| strategy | arguments | outputs | temporaries | total | per candidate "
            "| device peak |", "|---|---|---|---|---|---|---|"]
  for name, e in mem["strategies"].items():
    peak = e.get("device_peak_bytes_in_use")
    lines.append(f"| {name} | {_mib(e['argument'])} | {_mib(e['output'])} | "
                 f"{_mib(e['temp'])} | {_mib(e['total_bytes'])} | "
                 f"{_mib(e['bytes_per_candidate'])} | "
                 f"{_mib(peak) if peak is not None else '-'} |")
  return "\n".join(lines + [""])


# ------------------------------------------------------------------ main


def run(tiny: bool, full: bool) -> dict:
  """Every section; the NAS ones on the quickstart's settings."""
  start = time.perf_counter()
  quickstart, source = quickstart_config()
  report: dict[str, Any] = {"machine": machine(), "load_average_start": _load_average(),
                            "nas_config_source": source, "section_seconds": {}}

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
      "convolution in a loop", _convolution_in_loop, shape, channels, 8, repeats)
  report["evaluator_strategies"] = strategies
  report["against_the_machine"] = section("against_the_machine", against_the_machine, tiny,
                                          full)
  report["load_average_end"] = _load_average()
  report["wall_seconds"] = time.perf_counter() - start
  return report


def main(argv):
  del argv
  os.makedirs(FLAGS.value, exist_ok=True)
  command = ("python -m biojax.bench --out=" + FLAGS.value + (" --full" if FULL.value else "")
             + (" --tiny" if TINY.value else ""))
  report = {"command": command, **run(TINY.value, FULL.value)}
  with open(os.path.join(FLAGS.value, "bench.json"), "w") as f:
    json.dump(report, f, indent=2)
  markdown = to_markdown(report)
  with open(os.path.join(FLAGS.value, "bench.md"), "w") as f:
    f.write(markdown)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
