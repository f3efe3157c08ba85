"""The search loop: evolution over the genomes of any registered space, checkpointed every
generation.

``search(config, workdir)`` (run by ``python -m biojax.main`` for a config with
``task = "search"``, e.g. experiments/quickstart.py):

1. builds the data and the space registered as ``config.space.name``
   (:func:`biojax.nas.space.get_space`), then through the space's own protocol methods
   (:class:`biojax.nas.space.SearchSpace`) its network and its evaluator: for ``"nb201"``
   one :class:`biojax.nas.PopulationEvaluator`, one compiled program for the whole search;
   for ``"darts"`` a :class:`~biojax.nas.darts.DartsEvaluator`, programs compiled once per
   distinct architecture;
2. stacks the proxy training batches and the validation batches once: every candidate of
   every generation trains on the same batches from the same initial state (common random
   numbers, docs/design.md), so fitness is a deterministic function of the genome;
3. runs ``generations`` rounds of ``ask -> evaluate -> tell``
   (:class:`biojax.nas.RegularizedEvolution` or :class:`biojax.nas.RandomSearch`); after each
   one, appends a line to ``history.jsonl`` and one per candidate to ``candidates.jsonl``,
   then checkpoints the whole search state (orbax). The ask key of generation ``g`` is
   ``fold_in(key(seed), g)``, so a search killed at any point and started again on the same
   workdir ends exactly as an uninterrupted one (lines written after the last checkpoint are
   dropped and recomputed);
4. evaluates the baselines (:func:`run_baselines`) in the same harness, budget and compiled
   program: the best architecture with one rule everywhere (each rule of the space), and
   with random rule assignments (the control of Hamzaoui & Baghdadi 2025);
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

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from biojax import builders
from biojax import data as data_lib
from biojax import loop as loop_lib
from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.checkpoint import Checkpointer
from biojax.compilation import CompileCounter
from biojax.metrics import append_jsonl, read_jsonl, rewrite_jsonl, to_json
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import space as space_lib
from biojax.nas.candidate import as_candidate
from biojax.nas.evolution import EvolutionState, RandomSearch, RegularizedEvolution
from biojax.preemption import Preemption, format_eta
from biojax.workdir import workdir_lock

HISTORY_FILE = "history.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
FITNESS_PLOT = "fitness.png"
RULE_FREQUENCY_PLOT = "rule_frequency.png"
ACCURACY_PARAMS_PLOT = "accuracy_vs_params.png"
ALGORITHMS = ("evolution", "random")
Space = space_lib.SearchSpace
Network = nn.Module

# Streams of the search's PRNG keys, all derived from key(config.seed).
_INIT_STREAM, _ASK_STREAM, _BASELINE_STREAM, _RETRAIN_STREAM = range(4)


class SearchFailedError(RuntimeError):
  """Every candidate of the search failed (non-finite training): nothing to retrain."""


# ------------------------------------------------------------------------------ building


def build_space(config: ml_collections.ConfigDict) -> Space:
  """The space registered as ``config.space.name`` (:func:`biojax.nas.space.space_names`),
  built from ``config.space`` (``rules``, ``macro_rules``, ...)."""
  return space_lib.get_space(config.space.name, config.space)


def build_network(config: ml_collections.ConfigDict, space: Space, num_classes: int,
                  C: int | None = None, N: int | None = None, *, layers: int | None = None,
                  genome: np.ndarray | None = None) -> Network:
  """The network of ``config.space`` (``space.build_network``), compiling exactly the
  space's rules (``RuleOptions(rules=space.rule_names)`` plus ``config.rule_options``).

  ``C``, ``N`` and ``layers``, when given, replace the ``config.space`` entries of those
  names (the retrain's wider or deeper network: NAS-Bench-201 reads ``C`` and ``N``, DARTS
  ``C``, ``layers`` and ``variant``). ``genome`` chooses the architecture where the space
  compiles it in (DARTS; None: the space's default, which its evaluator replaces per
  architecture). ``config.space.dfa`` (None or absent: when a gene can choose a
  direct-feedback rule) creates the DFA matrices.
  """
  options = {**config.rule_options.to_dict(), "rules": space.rule_names}
  dfa = config.space.get("dfa")
  if dfa is None:  # DFA matrices only when a gene can choose a direct-feedback rule
    dfa = any(rules_lib.get_rule(name).credit == "direct" for name in space.rule_names)
  options = rules_lib.RuleOptions.from_dict(options)
  settings = config.space.to_dict()
  settings.update({name: value for name, value in (("C", C), ("N", N), ("layers", layers))
                   if value})
  return space.build_network(settings, num_classes, options, bool(dfa), genome=genome)


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
                    ) -> space_lib.Evaluator:
  """The space's population evaluator (``space.evaluator``) for ``config.proxy``, sharded
  over every device when there are several. Cached on the space, the model and the proxy
  settings, so searches with equal settings in one process (a resumed search, the tests)
  share their compiled programs.

  NAS-Bench-201: one :class:`biojax.nas.PopulationEvaluator` (one program). DARTS: a
  :class:`biojax.nas.darts.DartsEvaluator` (one program per distinct architecture;
  ``config.proxy.group_size`` and ``.cache_size``, see
  :meth:`biojax.nas.darts.DartsSpace.evaluator`).
  """
  return _cached_evaluator(space, model, jax.device_count(), _hashable(config.proxy))


def _hashable(section: ml_collections.ConfigDict) -> tuple:
  """A config section as sorted ``(name, value)`` pairs, nested mappings (such as
  ``compiler_options``) and lists as tuples: a cache key that ``dict()`` turns back into
  the section."""
  def freeze(value):
    if isinstance(value, Mapping):
      return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return tuple(freeze(v) for v in value) if isinstance(value, list | tuple) else value
  return freeze(section.to_dict())


@functools.cache
def _cached_evaluator(space, model, device_count, proxy):
  mesh = evaluator_lib.population_mesh() if device_count > 1 else None
  return space.evaluator(model, dict(proxy), mesh)


def parameter_counter(space: Space, model: Network, sample: np.ndarray, key: jax.Array
                      ) -> Callable[[np.ndarray], int]:
  """``genome -> parameters of its architecture`` (``space.parameter_count``; nothing
  compiled: ``jax.eval_shape`` of ``space.network_for(model, genome)``, once per
  ``space.program_key``: once for NAS-Bench-201, whose network holds every operation, and
  once per architecture for DARTS)."""
  shapes = {}

  def count(genome) -> int:
    program = space.program_key(genome)
    if program not in shapes:
      network = space.network_for(model, genome)
      shapes[program] = jax.eval_shape(lambda k: network.init(k, sample, train=False),
                                       key)["params"]
    return space.parameter_count(shapes[program], genome)

  return count


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


def image_transform(config: ml_collections.ConfigDict) -> Callable[[Mapping], dict]:
  """The batch transform of ``config.image_crop`` and ``config.image_pool``
  (:func:`transform_images`), float32 images."""
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
  p, transform = config.proxy, image_transform(config)
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
  evaluates it once on the test split. Returns test accuracy and loss, the step whose loss
  was not finite (``failed_step``; None when training went well) and seconds.
  ``model`` is the network of ``genome``'s architecture (DARTS: built with ``genome=``);
  ``config.retrain.compiler_options`` (optional) are passed to the compiled steps."""
  r, transform = config.retrain, image_transform(config)
  options = dict(r.get("compiler_options") or {}) or None
  start = time.time()
  tx, _ = builders.build_optimizer(r)
  init_key, train_key = jax.random.split(key)
  first = transform(next(dataset.train_batches(r.batch_size, config.seed + 1)))
  # The initialisation program of this network: the search's own when the retrain network
  # is the search's (config.retrain.C and .N None), so it compiles once.
  variables = train_lib.init_program(model, tuple(sorted((options or {}).items())))(
      init_key, first["image"][:1])
  assign = space.assignment_fn(variables, model.options)
  state = train_lib.train_state_from_variables(variables, tx, assign(jnp.asarray(genome)))
  state = as_candidate(state, space.architecture(jnp.asarray(genome)))
  train_step = jax.jit(train_lib.make_train_step(model, tx), compiler_options=options)
  eval_step = jax.jit(train_lib.make_eval_step(model), compiler_options=options)
  batches = map(transform, dataset.train_batches(r.batch_size, config.seed + 1))
  try:
    state = loop_lib.fit(train_step, state, batches, train_key, r.steps,
                         log_every=config.log_every, name="retrain step").state
  except loop_lib.NonFiniteLossError as error:
    logging.warning("The retrain diverged: %s", error)
    return {"test_accuracy": None, "test_loss": None, "failed_step": error.step,
            "seconds": time.time() - start}
  test = loop_lib.evaluate(eval_step, state,
                           map(transform, dataset.eval_batches("test", r.eval_batch_size)))
  return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "failed_step": None,
          "seconds": time.time() - start}


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


def run_baselines(config: ml_collections.ConfigDict, space: Space, evaluator, best: np.ndarray,
                  train: Mapping, validation: Mapping, eval_key: jax.Array, key: jax.Array,
                  size: int) -> dict[str, Any]:
  """Evaluates the baselines of ``best`` (:func:`baseline_genomes`, random rules drawn from
  ``key``) in the search's harness: the same evaluator, batches and initial key
  ``eval_key``, in calls of the search's population size ``size`` (so no program compiles
  again).

  Returns:
    ``results``: the report's ``single_rule_validation_accuracy`` (``{rule: fitness}``, with
    ``config.baselines.single_rule``), ``random_rules_validation_accuracy`` and
    ``random_rules_genomes`` (with ``config.baselines.random_rules``); ``best_single_rule``
    and ``best_single_rule_validation_accuracy`` (among the finite ones; None if none);
    ``random_rules_validation_accuracy_mean`` and ``_max`` (None without random rules);
    ``compiles`` (XLA compilations while evaluating them).
  """
  single, random = baseline_genomes(space, best, config.baselines.random_rules, key)
  results: dict[str, Any] = {}
  with CompileCounter() as counter:
    if config.baselines.single_rule:
      fit, _ = _evaluate_padded(evaluator, np.stack(list(single.values())), size, train,
                                validation, eval_key)
      results["single_rule_validation_accuracy"] = dict(zip(single, fit.tolist(), strict=True))
    if len(random):
      fit, _ = _evaluate_padded(evaluator, random, size, train, validation, eval_key)
      results["random_rules_validation_accuracy"] = fit.tolist()
      results["random_rules_genomes"] = [space.to_string(g) for g in random]
  single_fit = results.get("single_rule_validation_accuracy", {})
  finite_single = {r: f for r, f in single_fit.items() if np.isfinite(f)}
  random_fit = np.asarray(results.get("random_rules_validation_accuracy", []))
  return {
      "results": results,
      "best_single_rule": max(finite_single, key=finite_single.get) if finite_single else None,
      "best_single_rule_validation_accuracy": max(finite_single.values()) if finite_single
                                              else None,
      "random_rules_validation_accuracy_mean": float(np.mean(random_fit)) if random_fit.size
                                               else None,
      "random_rules_validation_accuracy_max": float(np.max(random_fit)) if random_fit.size
                                              else None,
      "compiles": counter.count,
  }


def dataset_of(config: ml_collections.ConfigDict, validation_size: int) -> data_lib.Dataset:
  """``config.dataset`` with ``validation_size`` examples carved out of its training split
  (``config.image_size``, if the config has it, goes to imagenet2012)."""
  extra = {}
  if config.get("image_size") is not None:
    extra["image_size"] = config.image_size
  return data_lib.get_dataset(
      config.dataset, data_dir=config.data_dir, validation_size=validation_size,
      seed=config.seed, augment=config.augment, fashion_mnist_dir=config.fashion_mnist_dir,
      limit_train=config.limit_train, **extra)


def check_search_config_retrain(config: ml_collections.ConfigDict) -> None:
  """Clear errors for the retrain's budget (``config.retrain``)."""
  for name in ("steps", "batch_size", "eval_batch_size"):
    if config.retrain[name] < 0 or (name != "steps" and config.retrain[name] < 1):
      raise ValueError(f"config.retrain.{name}={config.retrain[name]} must be "
                       f"{'>= 0' if name == 'steps' else '>= 1'}.")


def check_search_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for values the builders would not catch early."""
  for name in ("steps", "batch_size", "eval_batch_size"):
    if config.proxy[name] < 1:
      raise ValueError(f"config.proxy.{name}={config.proxy[name]} must be >= 1.")
  check_search_config_retrain(config)
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
  check_search_config(config)  # a bad config fails before the workdir is touched
  with workdir_lock(workdir):  # one run per workdir (biojax.workdir)
    return _search(config, workdir, on_generation)


def _search(config: ml_collections.ConfigDict, workdir: str,
           on_generation: Callable[[dict], Any] | None = None) -> dict:
  start_time = time.time()
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  config_json = to_json(config)

  dataset = dataset_of(config, config.validation_size)
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
  checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), config.keep_checkpoints)
  # The search state holds genomes, whose rule genes index the config's alphabets (rule
  # names): it does not depend on the registry's ids.
  restored = checkpointer.restore_latest(_abstract(state), check_rules=False)
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
    history = [r for r in read_jsonl(history_path) if r["generation"] < done]
    candidates = [c for c in read_jsonl(candidates_path) if c["generation"] < done]
    rewrite_jsonl(history_path, history)
    rewrite_jsonl(candidates_path, candidates)
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      json.dump(config_json, f, indent=2)

  def elapsed() -> float:
    return meta["wall_seconds"] + time.time() - start_time

  generations = config.search.generations
  k = config.search.num_children
  session_start, session_candidates = None, 0
  try:
    with Preemption() as preemption:
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
          append_jsonl(candidates_path, rows)
          append_jsonl(history_path, [record])
        logging.info(
            "generation %d/%d: best %.4f, population best %s median %s, %d failed, "
            "%.2f candidates/s, ETA %s", generation + 1, generations, record["best_fitness"],
            _fmt(pop_best), _fmt(pop_median), record["failed"], rate,
            format_eta(record["eta_seconds"] or 0))
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

    baselines = run_baselines(config, space, evaluator, best, train, validation, eval_key,
                              jax.random.fold_in(root, _BASELINE_STREAM), k)

    retrained = None
    if config.retrain.steps:
      retrain_model = build_network(config, space, dataset.num_classes, config.retrain.C,
                                    config.retrain.get("N"),
                                    layers=config.retrain.get("layers"), genome=best)
      # The retrain may use more of the training split (validation_size; None: the same
      # split as the search).
      retrain_validation = config.retrain.get("validation_size")
      retrain_data = (dataset if retrain_validation is None
                      else dataset_of(config, retrain_validation))
      retrained = retrain(config, space, retrain_model, best, retrain_data,
                          jax.random.fold_in(root, _RETRAIN_STREAM))
      logging.info("Retrained the best genome for %d steps: test accuracy %s (%.1f s).",
                   config.retrain.steps, retrained["test_accuracy"], retrained["seconds"])

    history = read_jsonl(history_path) if is_chief else []
    candidates = read_jsonl(candidates_path) if is_chief else []
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
        "baseline_compiles": baselines["compiles"],
        "best_genome": space.to_string(best),
        "best_genome_genes": best.tolist(),
        "best_cell": space.cell_string(best),
        "best_validation_accuracy": best_fitness,
        "best_num_params": num_params(best),
        "best_single_rule": baselines["best_single_rule"],
        "best_single_rule_validation_accuracy":
            baselines["best_single_rule_validation_accuracy"],
        **baselines["results"],
        "random_rules_validation_accuracy_mean":
            baselines["random_rules_validation_accuracy_mean"],
        "random_rules_validation_accuracy_max": baselines["random_rules_validation_accuracy_max"],
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
    report = to_json(report)
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
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR),
                              config.keep_checkpoints)
  try:
    restored = checkpointer.restore_latest(_abstract(state), check_rules=False)
  finally:
    checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f"No search checkpoint in {workdir}.")
  return restored[0]
