"""The search loop: evolution over NAS-Bench-201 or DARTS genomes, checkpointed every generation.

``search(config, workdir)`` (run by ``python -m biojax.main`` for a config with
``task = "search"``, e.g. experiments/quickstart.py):

1. builds the data, the space of ``config.space.name`` (``"nb201"``:
   :class:`biojax.nas.NB201Space`, :class:`biojax.nas.NB201Network` and one
   :class:`biojax.nas.PopulationEvaluator`, one compiled program for the whole search;
   ``"darts"``: :class:`biojax.nas.darts.DartsSpace`, :class:`~biojax.nas.darts.DartsNetwork`
   and a :class:`~biojax.nas.darts.DartsEvaluator`, programs compiled once per distinct
   architecture);
2. stacks the proxy training batches and the validation batches once: every candidate of
   every generation trains on the same batches from the same initial state (common random
   numbers, DESIGN.md section 5), so fitness is a deterministic function of the genome;
3. runs ``generations`` rounds of ``ask -> evaluate -> tell``
   (:class:`biojax.nas.RegularizedEvolution` or :class:`biojax.nas.RandomSearch`); after each
   one, appends a line to ``history.jsonl`` and one per candidate to ``candidates.jsonl``,
   then checkpoints the whole search state (orbax). The ask key of generation ``g`` is
   ``fold_in(key(seed), g)``, so a search killed at any point and started again on the same
   workdir ends exactly as an uninterrupted one (lines written after the last checkpoint are
   dropped and recomputed);
4. evaluates the baselines in the same harness, budget and compiled program: the best
   architecture with one rule everywhere (each rule of the space), and with random rule
   assignments (the control of source paper A);
5. retrains the best genome with the full budget and evaluates it once on the test split;
6. writes ``report.json`` and the plots ``fitness.png``, ``rule_frequency.png`` and
   ``accuracy_vs_params.png``.

A candidate whose training diverges gets fitness ``-inf`` and its reason in
``candidates.jsonl``; the search goes on. See docs/nas.md.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from biojax import data as data_lib
from biojax import experiment
from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.compilation import CompileCounter
from biojax.nas import darts, nb201
from biojax.nas import evaluator as evaluator_lib
from biojax.nas.candidate import as_candidate
from biojax.nas.evolution import EvolutionState, RandomSearch, RegularizedEvolution

HISTORY_FILE = "history.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
FITNESS_PLOT = "fitness.png"
RULE_FREQUENCY_PLOT = "rule_frequency.png"
ACCURACY_PARAMS_PLOT = "accuracy_vs_params.png"
ALGORITHMS = ("evolution", "random")
SPACES = ("nb201", "darts")
Space = nb201.NB201Space | darts.DartsSpace
Network = nb201.NB201Network | darts.DartsNetwork

# Streams of the search's PRNG keys, all derived from key(config.seed).
_INIT_STREAM, _ASK_STREAM, _BASELINE_STREAM, _RETRAIN_STREAM = range(4)


class SearchFailedError(RuntimeError):
  """Every candidate of the search failed (non-finite training): nothing to retrain."""


# ------------------------------------------------------------------------------ building


def build_space(config: ml_collections.ConfigDict) -> Space:
  """The search space of ``config.space`` (``name``: ``"nb201"`` or ``"darts"``; ``rules``,
  ``macro_rules``)."""
  if config.space.name not in SPACES:
    raise ValueError(f"Unknown search space {config.space.name!r}. Valid spaces: "
                     f"{', '.join(SPACES)}.")
  macro = config.space.macro_rules
  cls = nb201.NB201Space if config.space.name == "nb201" else darts.DartsSpace
  return cls(rules=tuple(config.space.rules), macro_rules=None if macro is None else tuple(macro))


def build_network(config: ml_collections.ConfigDict, space: Space, num_classes: int,
                  C: int | None = None, N: int | None = None, *, layers: int | None = None,
                  genome: np.ndarray | None = None) -> Network:
  """The network of ``config.space``, compiling exactly the space's rules
  (``RuleOptions(rules=space.rule_names)`` plus ``config.rule_options``).

  NAS-Bench-201: ``NB201Network(C, N)`` (``config.space.C``, ``.N`` unless given).
  DARTS: ``DartsNetwork(genotype, C, layers, variant)`` (``config.space.C``, ``.layers``,
  ``.variant`` unless given), whose genotype is ``genome``'s architecture (default DARTS-V2:
  the :class:`~biojax.nas.darts.DartsEvaluator` replaces it per architecture).
  ``config.space.dfa`` (None: when a gene can choose DFA) creates the DFA matrices.
  """
  options = dict(config.rule_options)
  options["rules"] = space.rule_names
  dfa = config.space.dfa
  if dfa is None:  # DFA matrices only when a gene can choose DFA
    dfa = "dfa" in space.rule_names
  options = rules_lib.RuleOptions(**options)
  if isinstance(space, darts.DartsSpace):
    genotype = (darts.NAMED_GENOTYPES["darts_v2"] if genome is None
                else space.genotype(genome))
    return darts.DartsNetwork(genotype=genotype, C=C or config.space.C,
                              layers=layers or config.space.layers, num_classes=num_classes,
                              variant=config.space.variant, dfa=bool(dfa), options=options)
  return nb201.NB201Network(C=C or config.space.C, N=N or config.space.N,
                            num_classes=num_classes, dfa=bool(dfa), options=options)


def build_strategy(config: ml_collections.ConfigDict, space: Space):
  """Regularised evolution or random search over ``space`` (``config.search``)."""
  s = config.search
  if s.algorithm == "evolution":
    return RegularizedEvolution(space.gene_sizes, population_size=s.population_size,
                                num_children=s.num_children,
                                tournament_size=s.tournament_size,
                                mutable_genes=space.expressed_genes)
  if s.algorithm == "random":
    return RandomSearch(space.gene_sizes, population_size=s.population_size,
                        num_children=s.num_children)
  raise ValueError(f"Unknown search algorithm {s.algorithm!r}. Valid algorithms: "
                   f"{', '.join(ALGORITHMS)}.")


def build_evaluator(config: ml_collections.ConfigDict, space: Space, model: Network
                    ) -> evaluator_lib.PopulationEvaluator | darts.DartsEvaluator:
  """The population evaluator of ``config.proxy``, sharded over every device when there
  are several. Cached on the settings, so searches with equal settings in one process
  (a resumed search, the tests) share their compiled programs.

  NAS-Bench-201: one :class:`biojax.nas.PopulationEvaluator` (one program). DARTS: a
  :class:`biojax.nas.darts.DartsEvaluator` (one program per distinct architecture) with
  ``config.proxy.group_size`` (None: 1 under the ``"sequential"`` strategy, whose programs
  do not depend on the number of candidates, so no padded copies are trained; else padding
  to powers of two) and ``config.proxy.cache_size`` (architectures kept compiled).
  """
  p = config.proxy
  strategy = p.strategy or evaluator_lib.default_strategy()
  settings = dict(steps=p.steps, batch_size=p.batch_size, optimizer=p.optimizer,
                  learning_rate=p.learning_rate, momentum=p.momentum,
                  weight_decay=p.weight_decay, clip_norm=p.clip_norm, schedule=p.schedule,
                  warmup_steps=p.warmup_steps, strategy=strategy, chunk_size=p.chunk_size,
                  compiler_options=tuple(sorted(dict(p.compiler_options).items())))
  if isinstance(space, darts.DartsSpace):
    group_size = p.get("group_size")
    if group_size is None and strategy == "sequential":
      group_size = 1
    return _cached_darts_evaluator(space, model, jax.device_count(), group_size,
                                   p.get("cache_size", 128), **settings)
  return _cached_evaluator(space, model, jax.device_count(), **settings)


@functools.cache
def _cached_evaluator(space, model, device_count, **settings):
  mesh = evaluator_lib.population_mesh() if device_count > 1 else None
  return evaluator_lib.PopulationEvaluator(space, model, mesh=mesh, **settings)


@functools.cache
def _cached_darts_evaluator(space, model, device_count, group_size, cache_size, **settings):
  if device_count > 1:
    settings["mesh"] = evaluator_lib.population_mesh()
  steps, batch_size = settings.pop("steps"), settings.pop("batch_size")
  return darts.DartsEvaluator(space, model, steps=steps, batch_size=batch_size,
                              group_size=group_size, cache_size=cache_size, settings=settings)


def parameter_counter(space: Space, model: Network, sample: np.ndarray, key: jax.Array
                      ) -> Callable[[np.ndarray], int]:
  """``genome -> parameters of its architecture`` (nothing compiled: ``jax.eval_shape``).

  NAS-Bench-201: one shape evaluation of ``model`` (which holds every operation) and the
  chosen operations' share of it. DARTS: a shape evaluation of each architecture's
  network, cached per architecture.
  """
  def shapes(network):
    return jax.eval_shape(lambda k: network.init(k, sample, train=False), key)["params"]

  if isinstance(space, darts.DartsSpace):
    @functools.cache
    def count_architecture(arch: tuple[int, ...]) -> int:
      genome = np.zeros(space.num_genes, np.int32)
      genome[space.architecture_genes] = arch
      return darts.parameter_count(shapes(model.clone(genotype=space.genotype(genome))))

    return lambda genome: count_architecture(space.architecture_key(genome))
  abstract_params = shapes(model)
  return lambda genome: space.parameter_count(abstract_params, genome)


def transform_images(images: np.ndarray, crop: int | None, pool: int) -> np.ndarray:
  """Centre crop to ``crop x crop`` (None: none), then ``pool x pool`` average pooling: a
  cheaper input for a quick search (NB201's H and W must be divisible by 4)."""
  if crop:
    h, w = images.shape[-3:-1]
    if crop > min(h, w):
      raise ValueError(f"image_crop={crop} is larger than the images ({h}x{w}).")
    top, left = (h - crop) // 2, (w - crop) // 2
    images = images[..., top:top + crop, left:left + crop, :]
  if pool > 1:
    *lead, h, w, c = images.shape
    if h % pool or w % pool:
      raise ValueError(f"image_pool={pool} does not divide the image size {h}x{w}.")
    images = images.reshape(*lead, h // pool, pool, w // pool, pool, c).mean(axis=(-4, -2))
  return images


def _transform(config: ml_collections.ConfigDict) -> Callable[[Mapping], dict]:
  def apply(batch: Mapping) -> dict:
    out = dict(batch)
    out["image"] = transform_images(np.asarray(batch["image"]), config.image_crop,
                                    config.image_pool).astype(np.float32)
    return out
  return apply


def proxy_batches(config: ml_collections.ConfigDict, dataset: data_lib.Dataset
                  ) -> tuple[dict, dict]:
  """The stacked proxy training batches ``(steps, b, ...)`` and validation batches
  ``(V, b, ...)`` (the first ``config.proxy.validation_examples`` of the validation split;
  None: all of it)."""
  p, transform = config.proxy, _transform(config)
  train = evaluator_lib.stack_train_batches(
      map(transform, dataset.train_batches(p.batch_size, config.seed)), p.steps)
  limit = p.validation_examples or dataset.num_validation
  batches = []
  for batch in dataset.eval_batches("validation", p.eval_batch_size):
    if sum(int(b["mask"].sum()) for b in batches) >= limit:
      break
    batches.append(transform(batch))
  validation = evaluator_lib.stack_eval_batches(batches)
  # Keep exactly `limit` examples: rows beyond it are masked out.
  mask = validation["mask"].reshape(-1)
  mask[np.cumsum(mask) > limit] = 0
  validation["mask"] = mask.reshape(validation["mask"].shape)
  return train, validation


# ------------------------------------------------------------------------------ records


def _rule_frequency(space: Space, genomes: np.ndarray) -> dict[str, dict]:
  """For each rule gene (``space.rule_genes()``: edges and macro layers): the fraction of
  the genomes whose gene is expressed that choose each rule."""
  expressed = np.asarray(space.expressed_genes(genomes))
  out = {}
  for g, name, alphabet in space.rule_genes():
    values = genomes[expressed[:, g], g]
    counts = np.bincount(values, minlength=len(alphabet))
    total = max(int(counts.sum()), 1)
    out[name] = {rule: counts[k] / total for k, rule in enumerate(alphabet)}
  return out


def _finite_stats(values: np.ndarray) -> tuple[float | None, float | None]:
  finite = values[np.isfinite(values)]
  if not finite.size:
    return None, None
  return float(finite.max()), float(np.median(finite))


def _read_jsonl(path: str) -> list[dict]:
  return experiment.read_metrics(path)


def _rewrite_jsonl(path: str, records: list[dict]) -> None:
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


def _append_jsonl(path: str, records: list[dict]) -> None:
  with open(path, "a") as f:
    f.writelines(json.dumps(experiment.to_json(r)) + "\n" for r in records)


# --------------------------------------------------------------------------------- plots


def plot_search(history: list[dict], candidates: list[dict], space: Space,
                workdir: str) -> None:
  """``fitness.png`` (best and median fitness per generation), ``rule_frequency.png`` (how
  often each rule is chosen per layer in the final population) and
  ``accuracy_vs_params.png`` (every evaluated candidate)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  generations = [r["generation"] for r in history]
  fig, ax = plt.subplots(figsize=(6, 4))
  for key, label in (("best_fitness", "best so far"), ("population_best", "population best"),
                     ("population_median", "population median")):
    ax.plot(generations, [np.nan if r[key] is None else r[key] for r in history], marker="o",
            label=label)
  ax.set(xlabel="generation", ylabel="validation accuracy (proxy budget)",
         title="Search progress")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, FITNESS_PLOT), dpi=120)
  plt.close(fig)

  if history:
    frequency = history[-1]["rule_frequency"]
    layers = list(frequency)
    rules = list(dict.fromkeys(r for layer in layers for r in frequency[layer]))
    table = np.asarray([[frequency[layer].get(r, np.nan) for r in rules] for layer in layers])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(rules), 1.5 + 0.35 * len(layers)))
    image = ax.imshow(table, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(rules)), rules, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), layers)
    for i in range(len(layers)):
      for j in range(len(rules)):
        if np.isfinite(table[i, j]):
          ax.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=7,
                  color="white" if table[i, j] < 0.5 else "black")
    ax.set_title(f"Rule per layer in the final population (generation {history[-1]['generation']})")
    fig.colorbar(image, ax=ax, label="fraction (expressed genes)")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, RULE_FREQUENCY_PLOT), dpi=120)
    plt.close(fig)

  ok = [c for c in candidates if c["fitness"] is not None]
  fig, ax = plt.subplots(figsize=(6, 4))
  if ok:
    ax.scatter([c["num_params"] for c in ok], [c["fitness"] for c in ok], s=12, alpha=0.6,
               label="candidates")
    best = max(ok, key=lambda c: c["fitness"])
    ax.scatter([best["num_params"]], [best["fitness"]], s=60, color="red", marker="*",
               label="best")
    ax.legend()
  ax.set(xlabel="parameters (chosen operations)", ylabel="validation accuracy (proxy budget)",
         title="Accuracy against size")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, ACCURACY_PARAMS_PLOT), dpi=120)
  plt.close(fig)


# ------------------------------------------------------------------------------ retrain


def retrain(config: ml_collections.ConfigDict, space: Space, model: Network,
            genome: np.ndarray, dataset: data_lib.Dataset, key: jax.Array) -> dict:
  """Trains ``genome`` from scratch for ``config.retrain.steps`` on the training split and
  evaluates it once on the test split. Returns test accuracy and loss, and seconds.
  ``model`` is the network of ``genome``'s architecture (DARTS: built with ``genome=``);
  ``config.retrain.compiler_options`` (optional) are passed to the compiled steps."""
  r, transform = config.retrain, _transform(config)
  options = dict(r.get("compiler_options") or {}) or None
  start = time.time()
  schedule = train_lib.make_schedule(r.learning_rate, r.schedule, r.steps, r.warmup_steps)
  tx = train_lib.make_optimizer(r.optimizer, schedule, r.momentum, r.weight_decay,
                                r.clip_norm)
  init_key, train_key = jax.random.split(key)
  first = transform(next(dataset.train_batches(r.batch_size, config.seed + 1)))
  variables = jax.jit(lambda k: model.init(k, first["image"][:1], train=False),
                      compiler_options=options)(init_key)
  assign = space.assignment_fn(variables, model.options)
  state = train_lib.train_state_from_variables(variables, tx, assign(jnp.asarray(genome)))
  state = as_candidate(state, space.architecture(jnp.asarray(genome)))
  train_step = jax.jit(train_lib.make_train_step(model, tx), compiler_options=options)
  eval_step = jax.jit(train_lib.make_eval_step(model), compiler_options=options)
  losses = []
  batches = map(transform, dataset.train_batches(r.batch_size, config.seed + 1))
  for step in range(r.steps):
    state, metrics = train_step(state, next(batches), jax.random.fold_in(train_key, step))
    if (step + 1) % config.log_every == 0 or step + 1 == r.steps:
      loss = float(metrics["loss"])
      losses.append(loss)
      logging.info("retrain step %d/%d  loss %.4f", step + 1, r.steps, loss)
      if not np.isfinite(loss):
        return {"test_accuracy": None, "test_loss": None, "failed_step": step + 1,
                "seconds": time.time() - start}
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  for batch in map(transform, dataset.eval_batches("test", r.eval_batch_size)):
    for name, value in jax.device_get(eval_step(state, batch)).items():
      totals[name] += float(value)
  count = max(totals["count"], 1.0)
  return {"test_accuracy": totals["correct"] / count, "test_loss": totals["loss_sum"] / count,
          "failed_step": None, "seconds": time.time() - start}


# --------------------------------------------------------------------------------- search


def _evaluate_padded(evaluator, genomes: np.ndarray, size: int, train, validation, key
                     ) -> tuple[np.ndarray, dict]:
  """Evaluates any number of genomes in batches of ``size`` (the compiled population size;
  the last batch is padded with copies of its first genome, whose results are dropped)."""
  fitness, infos = [], []
  for start in range(0, len(genomes), size):
    part = genomes[start:start + size]
    pad = size - len(part)
    batch = np.concatenate([part, np.repeat(part[:1], pad, axis=0)])
    f, info = evaluator.evaluate(batch, train, validation, key, np.ones(size, np.float32))
    f, info = jax.device_get((f, info))
    fitness.append(np.asarray(f)[:len(part)])
    infos.append({k: np.asarray(v)[:len(part)] for k, v in info.items()})
  return np.concatenate(fitness), {k: np.concatenate([i[k] for i in infos]) for k in infos[0]}


def baseline_genomes(space: Space, best: np.ndarray, num_random: int,
                     key: jax.Array) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The baselines on the architecture of ``best``: ``{rule: genome}`` with that rule on
  every layer (for each rule of the space; a layer whose alphabet lacks the rule, such as
  the layers outside the cells with a smaller macro alphabet, keeps ``best``'s rule), and
  ``num_random`` genomes with random rules on every layer (``(num_random, G)``)."""
  best = space.validate(best)
  single = {}
  for rule in space.rules:
    genome = best.copy()
    for g, _, alphabet in space.rule_genes():
      if rule in alphabet:
        genome[g] = alphabet.index(rule)
    single[rule] = genome
  random = np.array(space.random_genomes(key, num_random)) if num_random else np.zeros(
      (0, space.num_genes), np.int32)
  random[:, space.architecture_genes] = best[space.architecture_genes]
  return single, random.astype(np.int32)


def _dataset(config: ml_collections.ConfigDict, validation_size: int) -> data_lib.Dataset:
  """``config.dataset`` with ``validation_size`` examples carved out of its training split
  (``config.image_size``, if the config has it, goes to imagenet2012)."""
  extra = {}
  if config.get("image_size") is not None:
    extra["image_size"] = config.image_size
  return data_lib.get_dataset(
      config.dataset, data_dir=config.data_dir, validation_size=validation_size,
      seed=config.seed, augment=config.augment, fashion_mnist_dir=config.fashion_mnist_dir,
      limit_train=config.limit_train, **extra)


def check_search_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for values the builders would not catch early."""
  for name in ("steps", "batch_size", "eval_batch_size"):
    if config.proxy[name] < 1:
      raise ValueError(f"config.proxy.{name}={config.proxy[name]} must be >= 1.")
  for name in ("steps", "batch_size", "eval_batch_size"):
    if config.retrain[name] < 0 or (name != "steps" and config.retrain[name] < 1):
      raise ValueError(f"config.retrain.{name}={config.retrain[name]} is invalid.")
  if config.search.generations < 1:
    raise ValueError(f"config.search.generations={config.search.generations} must be >= 1.")
  if config.baselines.random_rules < 0:
    raise ValueError("config.baselines.random_rules must be >= 0.")


def search(config: ml_collections.ConfigDict, workdir: str,
           on_generation: Callable[[dict], Any] | None = None) -> dict:
  """Runs (or resumes) the search of ``config`` in ``workdir``; returns the report.

  ``on_generation(record)`` is called with each generation's history record after it is
  written and before the generation is checkpointed (the tests use it to kill a search at
  the worst moment). If SIGTERM arrives, the search stops after the current generation and
  returns ``{"interrupted": True, "generation": g}``; the same command resumes it.

  Raises:
    ValueError: an invalid config value (unknown space, algorithm, rule or strategy, ...).
    biojax.data.DatasetNotFoundError: the data set is missing (the message says how to
      prepare it).
    SearchFailedError: every candidate failed, so there is nothing to retrain.
  """
  start_time = time.time()
  check_search_config(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  config_json = experiment.to_json(config)

  dataset = _dataset(config, config.validation_size)
  space = build_space(config)
  strategy = build_strategy(config, space)
  model = build_network(config, space, dataset.num_classes)
  evaluator = build_evaluator(config, space, model)
  train, validation = proxy_batches(config, dataset)
  root = jax.random.key(config.seed)
  eval_key = jax.random.fold_in(root, _INIT_STREAM)
  num_params = parameter_counter(space, model, train["image"][0, :1], eval_key)

  ask = jax.jit(strategy.ask)
  tell = jax.jit(strategy.tell)
  state = strategy.init()
  checkpointer = experiment.Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                         config.keep_checkpoints)
  restored = checkpointer.restore_latest(_abstract(state))
  meta: dict[str, Any] = {"wall_seconds": 0.0, "search_seconds": 0.0, "compiles": 0,
                          "xla_compilations": 0}
  if restored is not None:
    state, saved = restored
    state = jax.tree.map(jnp.asarray, state)
    meta.update(saved)
    logging.info("Resuming the search after generation %d from %s.", int(state.generation),
                 checkpointer.directory)
  done = int(state.generation)
  history_path = os.path.join(workdir, HISTORY_FILE)
  candidates_path = os.path.join(workdir, CANDIDATES_FILE)
  if is_chief:
    # Lines of generations after the checkpoint (a search killed before saving) go.
    history = [r for r in _read_jsonl(history_path) if r["generation"] < done]
    candidates = [c for c in _read_jsonl(candidates_path) if c["generation"] < done]
    _rewrite_jsonl(history_path, history)
    _rewrite_jsonl(candidates_path, candidates)
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      json.dump(config_json, f, indent=2)

  def elapsed() -> float:
    return meta["wall_seconds"] + time.time() - start_time

  generations = config.search.generations
  k = config.search.num_children
  session_start, session_candidates = None, 0
  try:
    with experiment._Preemption() as preemption:  # noqa: SLF001 (the pipeline's handler)
      for generation in range(done, generations):
        if preemption.stop(generation, 1):
          logging.warning("SIGTERM: the search is checkpointed after generation %d; run the "
                          "same command again to resume.", generation)
          return {"interrupted": True, "generation": generation}
        children = np.asarray(ask(jax.random.fold_in(
            jax.random.fold_in(root, _ASK_STREAM), generation), state))
        t0 = time.time()
        with CompileCounter() as counter:
          fitness, info = evaluator.evaluate(children, train, validation, eval_key,
                                             np.ones(k, np.float32))
          fitness, info = jax.device_get((fitness, info))
        seconds = time.time() - t0
        meta["compiles"] += counter.count
        meta["search_seconds"] += seconds
        state = tell(state, children, fitness)
        if counter.count == 0:  # rates from generations that compiled nothing
          session_start = session_start or (time.time() - seconds)
          session_candidates += k
        rate = session_candidates / (time.time() - session_start) if session_candidates else (
            k / seconds)
        fitness = np.asarray(fitness)
        pop_best, pop_median = _finite_stats(np.asarray(state.fitness))
        gen_best, gen_median = _finite_stats(fitness)
        population = np.asarray(state.genomes)[np.asarray(state.birth) >= 0]
        best_genome = np.asarray(state.best_genome)
        record = {
            "generation": generation, "num_evaluated": int(state.num_evaluated),
            "best_fitness": float(state.best_fitness),
            "best_genome": space.to_string(best_genome) if np.isfinite(
                float(state.best_fitness)) else None,
            "population_best": pop_best, "population_median": pop_median,
            "generation_best": gen_best, "generation_median": gen_median,
            "failed": int(np.sum(info["failed"])),
            "candidates_per_second": rate, "evaluation_seconds": seconds,
            "compiles": counter.count,
            "eta_seconds": (generations - generation - 1) * k / rate if rate > 0 else None,
            "wall_seconds": elapsed(),
            "rule_frequency": _rule_frequency(space, population),
        }
        rows = []
        for i, genome in enumerate(children):
          rows.append({
              "generation": generation, "index": i, "genome": genome.tolist(),
              "string": space.to_string(genome), "fitness": float(fitness[i]),
              "validation_accuracy": float(info["validation_accuracy"][i]),
              "validation_loss": float(info["validation_loss"][i]),
              "train_loss": float(info["train_loss"][i]), "failed": bool(info["failed"][i]),
              "reason": evaluator_lib.REASONS[int(info["reason"][i])],
              "failed_step": int(info["failed_step"][i]),
              "num_params": num_params(genome)})
          if info["failed"][i]:
            logging.warning("Candidate %s failed at step %d: %s; it gets fitness -inf and the "
                            "search goes on.", rows[-1]["string"], rows[-1]["failed_step"],
                            rows[-1]["reason"])
        if is_chief:
          _append_jsonl(candidates_path, rows)
          _append_jsonl(history_path, [record])
        logging.info(
            "generation %d/%d: best %.4f, population best %s median %s, %d failed, "
            "%.2f candidates/s, ETA %s", generation + 1, generations, record["best_fitness"],
            _fmt(pop_best), _fmt(pop_median), record["failed"], rate,
            experiment._format_eta(record["eta_seconds"] or 0))  # noqa: SLF001
        if on_generation is not None:
          on_generation(record)
        checkpointer.save(generation + 1, state, {**meta, "wall_seconds": elapsed()})

    best_fitness = float(state.best_fitness)
    if not np.isfinite(best_fitness):
      raise SearchFailedError(
          f"All {int(state.num_evaluated)} candidates failed (see {candidates_path}). Lower "
          f"config.proxy.learning_rate (now {config.proxy.learning_rate}) or set "
          "config.proxy.clip_norm.")
    best = np.asarray(state.best_genome)

    # Baselines, in the same compiled program (population size k) and on the same data.
    single, random = baseline_genomes(
        space, best, config.baselines.random_rules,
        jax.random.fold_in(root, _BASELINE_STREAM))
    baseline_report: dict[str, Any] = {}
    with CompileCounter() as counter:
      if config.baselines.single_rule:
        fit, _ = _evaluate_padded(evaluator, np.stack(list(single.values())), k, train,
                                  validation, eval_key)
        baseline_report["single_rule_validation_accuracy"] = dict(
            zip(single, fit.tolist(), strict=True))
      if len(random):
        fit, _ = _evaluate_padded(evaluator, random, k, train, validation, eval_key)
        baseline_report["random_rules_validation_accuracy"] = fit.tolist()
        baseline_report["random_rules_genomes"] = [space.to_string(g) for g in random]
    single_fit = baseline_report.get("single_rule_validation_accuracy", {})
    finite_single = {r: f for r, f in single_fit.items() if np.isfinite(f)}
    random_fit = np.asarray(baseline_report.get("random_rules_validation_accuracy", []))

    retrained = None
    if config.retrain.steps:
      retrain_model = build_network(config, space, dataset.num_classes, config.retrain.C,
                                    config.retrain.get("N"),
                                    layers=config.retrain.get("layers"), genome=best)
      # The retrain may use more of the training split (validation_size; None: the same
      # split as the search).
      retrain_validation = config.retrain.get("validation_size")
      retrain_data = (dataset if retrain_validation is None
                      else _dataset(config, retrain_validation))
      retrained = retrain(config, space, retrain_model, best, retrain_data,
                          jax.random.fold_in(root, _RETRAIN_STREAM))
      logging.info("Retrained the best genome for %d steps: test accuracy %s (%.1f s).",
                   config.retrain.steps, retrained["test_accuracy"], retrained["seconds"])

    history = _read_jsonl(history_path) if is_chief else []
    candidates = _read_jsonl(candidates_path) if is_chief else []
    failed = [c for c in candidates if c["failed"]]
    report = {
        "config": config_json,
        "space": config.space.name,
        "algorithm": config.search.algorithm,
        "candidates_evaluated": int(state.num_evaluated),
        "generations": int(state.generation),
        "compiles": int(meta["compiles"]),
        # Distinct architectures among the candidates (DARTS: one program set each).
        "architectures_evaluated": len({tuple(c["genome"][space.architecture_genes])
                                        for c in candidates}),
        "baseline_compiles": counter.count,
        "best_genome": space.to_string(best),
        "best_genome_genes": best.tolist(),
        "best_cell": space.cell_string(best),
        "best_validation_accuracy": best_fitness,
        "best_num_params": num_params(best),
        "best_single_rule": max(finite_single, key=finite_single.get) if finite_single
                            else None,
        "best_single_rule_validation_accuracy": max(finite_single.values()) if finite_single
                                                else None,
        **baseline_report,
        "random_rules_validation_accuracy_mean": float(np.mean(random_fit))
                                                 if random_fit.size else None,
        "random_rules_validation_accuracy_max": float(np.max(random_fit))
                                                if random_fit.size else None,
        "test_accuracy": retrained["test_accuracy"] if retrained else None,
        "test_loss": retrained["test_loss"] if retrained else None,
        "retrain_steps": config.retrain.steps,
        "retrain_seconds": retrained["seconds"] if retrained else None,
        "failed_candidates": len(failed),
        "failure_reasons": dict(collections.Counter(c["reason"] for c in failed)),
        "search_seconds": meta["search_seconds"],
        "candidates_per_second": history[-1]["candidates_per_second"] if history else None,
        "strategy": config.proxy.strategy or evaluator_lib.default_strategy(),
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "resumed_from_generation": done if restored is not None else None,
        "wall_seconds": elapsed(),
    }
    report = experiment.to_json(report)
    if is_chief:
      with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
      plot_search(history, candidates, space, workdir)
    logging.info("Search done: %d candidates, %d compiles, best validation accuracy %.4f "
                 "(best single rule %s), test accuracy %s, %.1f s. Report: %s",
                 report["candidates_evaluated"], report["compiles"], best_fitness,
                 report["best_single_rule_validation_accuracy"], report["test_accuracy"],
                 report["wall_seconds"], os.path.join(workdir, REPORT_FILE))
    return report
  finally:
    checkpointer.close()


def _abstract(state: EvolutionState) -> EvolutionState:
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)


def _fmt(value: float | None) -> str:
  return "-" if value is None else f"{value:.4f}"


def load_search_state(workdir: str, config: ml_collections.ConfigDict) -> EvolutionState:
  """The latest checkpointed search state in ``workdir`` (for analysis in a notebook)."""
  strategy = build_strategy(config, build_space(config))
  state = strategy.init()
  checkpointer = experiment.Checkpointer(os.path.join(os.path.abspath(workdir),
                                                      CHECKPOINT_DIR), config.keep_checkpoints)
  try:
    restored = checkpointer.restore_latest(_abstract(state))
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f"No search checkpoint in {workdir}.")
  return restored[0]
