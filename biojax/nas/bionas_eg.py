"""BioNAS-EG: evolution plus gradient over the (operation, rule) supernet, with CMA-ES.

``python -m biojax.main --config=experiments/bionas_eg.py --workdir=DIR`` (task
``"bionas_eg"``). Source paper A's second search method (Hamzaoui & Baghdadi 2025), on EG-NAS
(Cai et al., AAAI 2024); docs/bionas.md. The supernet, its data halves, checkpoints, history,
report and retrain are BioNAS-DARTS's (:func:`biojax.nas.bionas.run`); what differs is how
alpha moves:

* every training step is a **weight step** only (each layer's rule, then SGD) with mixing
  weights ``softmax(alpha)``; alpha gets no gradient;
* from epoch ``warmup_epochs`` on, before each epoch's weight steps, an **EG step**: CMA-ES
  (evosax's ``CMA_ES``) samples ``population_size`` architecture vectors (2 x 14 x K numbers)
  around the current ``softmax(alpha)``, for ``generations`` ask/tell rounds; each sample's
  fitness is the supernet's cross-entropy on one validation batch with the sample's mixing
  weights, plus EG-NAS's similarity term; then ``alpha += step_size * mixing(best sample)``.

The whole population's fitness is one compiled call: the mixing weights are data, so the
supernet's validation pass is vmapped over the samples (``jax.lax.map`` in chunks of
``chunk_size`` where memory requires).

Signs. evosax MINIMISES, so the fitness handed to ``es.tell`` is a loss:
``cross-entropy + similarity_weight * s * similarity``, with ``s = +1`` when the sample is at
least as accurate on the batch as the current alpha (a good sample is pushed away from alpha:
exploration) and ``s = -1`` otherwise (a worse sample is pulled towards it), as EG-NAS's
compound fitness function. A sample whose loss is not finite gets ``+inf`` (the worst).

Where biojax departs from EG-NAS's code (caicaicheng/EG-NAS, train_search.py), whose bugs
RESEARCH.md lists: one CMA-ES state lives through the whole search (checkpointed), so its
step size and covariance adapt (EG-NAS starts a fresh CMA-ES, with sigma stuck at 1 and the
same seed, three times each epoch); each epoch the CMA-ES mean is set to ``softmax(alpha)``
(EG-NAS: ``softmax(alpha)`` plus 0.01 noise); the best sample over the epoch's generations
is taken (EG-NAS keeps the best of three one-generation runs, judged by a second, accuracy
based pass).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from evosax.algorithms import CMA_ES
from jax import flatten_util

from biojax import learning
from biojax.nas import bionas
from biojax.nas.darts import supernet as supernet_lib

Array = jax.Array
CELLS = bionas.CELLS
# PRNG stream of the EG steps and data stream of their fitness batches (next to bionas's).
_EG_STREAM, _FITNESS_BATCH_STREAM = 10, 11


def sample_mixing(sample: Mapping[str, Array]) -> dict:
  """The mixing weights of a CMA-ES sample (EG-NAS): each edge's row scaled to unit L2 norm,
  then a softmax over the edge's candidates."""
  return {cell: jax.nn.softmax(_unit_rows(v), axis=-1) for cell, v in sample.items()}


def _unit_rows(v: Array) -> Array:
  return v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def similarity(sample: Mapping[str, Array], weights: Mapping[str, Array]) -> Array:
  """EG-NAS's similarity of a sample to the current mixing weights ``softmax(alpha)``: the
  cosine of each edge's rows mapped to [0, 1] by ``(cos + 1) / 2``, averaged over the edges,
  then over the two cell types."""
  per_cell = [jnp.mean((jnp.sum(_unit_rows(sample[c]) * _unit_rows(weights[c]), -1) + 1) / 2)
              for c in CELLS]
  return sum(per_cell) / len(per_cell)


def _no_nan(tree: Any) -> Array:
  leaves = [~jnp.any(jnp.isnan(x)) for x in map(jnp.asarray, jax.tree.leaves(tree))
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves))


def move_alpha(alpha: Mapping[str, Array], sample: Mapping[str, Array],
               step_size: float) -> dict:
  """EG-NAS's alpha update: ``alpha + step_size * sample_mixing(sample)``."""
  mixing = sample_mixing(sample)
  return {cell: alpha[cell] + step_size * mixing[cell] for cell in alpha}


def make_sample_fitness(model: supernet_lib.DartsSupernet,
                        similarity_weight: float) -> Callable:
  """``one(state, sample, batch, reference_accuracy) -> (fitness, loss, accuracy,
  similarity)`` of one sample: the supernet's validation pass (running batch statistics)
  with the sample's mixing weights. evosax minimises: ``fitness`` is the loss plus
  ``similarity_weight * s * similarity``, ``s = +1`` when the sample's batch accuracy is at
  least ``reference_accuracy`` (the current alpha's), else ``-1``; ``+inf`` when not finite."""

  def one(state, sample, batch, reference_accuracy):
    variables = {**state.variables(), "mixing": sample_mixing(sample)}
    logits = model.apply(variables, batch["image"], train=False)
    loss = learning.cross_entropy(logits, batch["label"])
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    sim = similarity(sample, bionas.mixing_weights(state.alpha))
    sign = jnp.where(accuracy >= reference_accuracy, 1.0, -1.0)
    fitness = loss + similarity_weight * sign * sim
    return jnp.where(jnp.isfinite(fitness), fitness, jnp.inf), loss, accuracy, sim

  return one


def reference_accuracy(model: supernet_lib.DartsSupernet, state: bionas.SupernetState,
                       batch: Mapping) -> Array:
  """The current alpha's accuracy on ``batch`` (validation pass, running statistics): what
  each sample's similarity sign compares with."""
  logits = model.apply(state.variables(), batch["image"], train=False)
  return jnp.mean(jnp.argmax(logits, -1) == batch["label"])


def make_population_fitness(model: supernet_lib.DartsSupernet, similarity_weight: float,
                            chunk_size: int | None = None) -> Callable:
  """``fitness(state, population, batch, reference=None) -> dict`` of a whole population (a dict of
  ``(P, 14, K)`` arrays) in one call: :func:`make_sample_fitness` vmapped over the samples,
  ``chunk_size`` at a time (``jax.lax.map``; None: all at once). The dict holds ``fitness``,
  ``loss``, ``accuracy`` and ``similarity`` (each ``(P,)``) and ``reference_accuracy``, the
  current alpha's accuracy on the batch (:func:`reference_accuracy`, computed unless
  given)."""
  one = make_sample_fitness(model, similarity_weight)

  def fitness(state, population, batch, reference=None):
    if reference is None:
      reference = reference_accuracy(model, state, batch)
    size = jax.tree.leaves(population)[0].shape[0]
    each = lambda sample: one(state, sample, batch, reference)  # noqa: E731
    if chunk_size is None or chunk_size >= size:
      values = jax.vmap(each)(population)
    else:
      values = jax.lax.map(each, population, batch_size=chunk_size)
    return {"fitness": values[0], "loss": values[1], "accuracy": values[2],
            "similarity": values[3], "reference_accuracy": reference}

  return fitness


def make_eg_step(model: supernet_lib.DartsSupernet, es: Any, es_params: Any, *,
                 similarity_weight: float, step_size: float, generations: int = 1,
                 chunk_size: int | None = None) -> Callable:
  """``eg_step(state, batch, key, epoch) -> (state, metrics)``: one EG step (pure; wrap in
  ``jax.jit``). The CMA-ES state is ``state.alpha_opt_state``; its mean is set to
  ``softmax(alpha)``; ``generations`` rounds of ``es.ask``, the population's fitness on
  ``batch`` (:func:`make_population_fitness`) and ``es.tell``; then alpha moves towards the
  best sample of all rounds (:func:`move_alpha`). When no sample has a finite fitness,
  alpha stays. ``es`` is evosax's ``CMA_ES`` (or any object with its ``ask``/``tell``)."""
  population_fitness = make_population_fitness(model, similarity_weight, chunk_size)

  def eg_step(state: bionas.SupernetState, batch: Mapping, key: Array, epoch: Array):
    key = jax.random.fold_in(key, epoch)
    mean, _ = flatten_util.ravel_pytree(bionas.mixing_weights(state.alpha))
    es_state = state.alpha_opt_state.replace(mean=mean)
    none = jnp.zeros(())
    best0 = {"sample": jax.tree.map(jnp.zeros_like, state.alpha), "fitness": jnp.inf + none,
             "loss": jnp.nan + none, "accuracy": jnp.nan + none, "similarity": jnp.nan + none}

    def generation(carry, k):
      es_state, best = carry
      k_ask, k_tell = jax.random.split(k)
      population, es_state = es.ask(k_ask, es_state, es_params)
      out = population_fitness(state, population, batch, reference)
      told, _ = es.tell(k_tell, population, out["fitness"], es_state, es_params)
      # A CMA-ES update whose distribution holds NaN (from a population holding NaN) is
      # skipped. (The best solution so far starts as NaN in evosax's state.)
      kept = ~_no_nan(told.replace(best_solution=0.0, best_fitness=0.0))
      es_state = jax.tree.map(lambda new, old: jnp.where(kept, old, new), told, es_state)
      i = jnp.argmin(out["fitness"])
      better = out["fitness"][i] < best["fitness"]
      here = {"sample": jax.tree.map(lambda p: p[i], population), "fitness": out["fitness"][i],
              "loss": out["loss"][i], "accuracy": out["accuracy"][i],
              "similarity": out["similarity"][i]}
      best = jax.tree.map(lambda h, b: jnp.where(better, h, b), here, best)
      finite = jnp.isfinite(out["fitness"])
      stats = {"failed": jnp.sum(~finite), "skipped": kept,
               "mean_loss": jnp.sum(jnp.where(finite, out["loss"], 0.0)) / jnp.maximum(
                   jnp.sum(finite), 1)}
      return (es_state, best), stats

    reference = reference_accuracy(model, state, batch)  # once: alpha is the same each round
    keys = jax.random.split(key, generations)
    (es_state, best), stats = jax.lax.scan(generation, (es_state, best0), keys)
    found = jnp.isfinite(best["fitness"])
    moved = move_alpha(state.alpha, best["sample"], step_size)
    alpha = jax.tree.map(lambda m, a: jnp.where(found, m, a), moved, state.alpha)
    metrics = {"found": found, "failed_samples": jnp.sum(stats["failed"]),
               "best_fitness": best["fitness"], "best_loss": best["loss"],
               "best_accuracy": best["accuracy"], "best_similarity": best["similarity"],
               "population_mean_loss": jnp.mean(stats["mean_loss"]),
               "alpha_batch_accuracy": reference,
               "cma_std": es_state.std, "cma_updates_skipped": jnp.sum(stats["skipped"])}
    return state.replace(alpha=alpha, alpha_opt_state=es_state), metrics

  return eg_step


# ------------------------------------------------------------------------------ config


def check_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for every value the BioNAS-EG search reads, before anything is touched."""
  eg = config.search.eg
  if eg.population_size < 2:
    raise ValueError(f"config.search.eg.population_size={eg.population_size} must be >= 2 "
                     "(CMA-ES weights the better half of its population; EG-NAS: 50).")
  for name in ("generations", "batch_size"):
    if eg[name] < 1:
      raise ValueError(f"config.search.eg.{name}={eg[name]} must be >= 1.")
  if eg.chunk_size is not None and eg.chunk_size < 1:
    raise ValueError(f"config.search.eg.chunk_size={eg.chunk_size} must be >= 1 or None "
                     "(the whole population in one vmapped pass).")
  if not 0 <= eg.warmup_epochs < config.search.epochs:
    raise ValueError(f"config.search.eg.warmup_epochs={eg.warmup_epochs} must be in [0, "
                     f"config.search.epochs={config.search.epochs}): no epoch would search "
                     "the architecture.")
  if not eg.std_init > 0:
    raise ValueError(f"config.search.eg.std_init={eg.std_init} must be > 0.")
  if eg.step_size <= 0:
    raise ValueError(f"config.search.eg.step_size={eg.step_size} must be > 0.")
  bionas.check_supernet_config(config)


def program_settings(config: ml_collections.ConfigDict, num_candidates: int) -> tuple:
  """The hashable settings the EG programs are compiled for."""
  s = config.search
  return (tuple(sorted(s.weights.to_dict().items())), s.epochs * s.steps_per_epoch,
          tuple(sorted(s.eg.to_dict().items())), num_candidates)


def make_es(population_size: int, num_candidates: int, std_init: float) -> tuple[Any, Any]:
  """evosax's CMA-ES over the architecture weights (a ``{"normal", "reduce"}`` dict of
  (14, K) arrays) and its parameters (evosax's defaults, ``std_init`` as given)."""
  template = {cell: jnp.zeros((supernet_lib.NUM_EDGES, num_candidates)) for cell in CELLS}
  es = CMA_ES(population_size=population_size, solution=template)
  return es, es.default_params.replace(std_init=jnp.asarray(std_init, jnp.float32))


def init_es_state(es: Any, es_params: Any, alpha: Mapping[str, Array], key: Array) -> Any:
  """``es.init`` with mean ``softmax(alpha)``, its scalars made strongly typed: the state the
  EG step returns has the same types, so no program compiles twice."""
  state = es.init(key, bionas.mixing_weights(alpha), es_params)
  return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state)


@functools.lru_cache(maxsize=8)
def programs(model: supernet_lib.DartsSupernet, settings: tuple) -> dict:
  """The jitted weight step, validation pass and EG step of ``model`` and
  :func:`program_settings`, with the weight optimizer and the CMA-ES; one set per process."""
  weights, total_steps, eg, num_candidates = settings
  weights, eg = ml_collections.ConfigDict(dict(weights)), ml_collections.ConfigDict(dict(eg))
  weight_tx, _ = bionas.weight_optimizer(weights, total_steps)
  es, es_params = make_es(eg.population_size, num_candidates, eg.std_init)
  eg_step = make_eg_step(model, es, es_params, similarity_weight=eg.similarity_weight,
                         step_size=eg.step_size, generations=eg.generations,
                         chunk_size=eg.chunk_size)
  weight_step = bionas.make_weight_step(model, weight_tx)

  def keyed_weight_step(state, assignment, batch, key):
    return weight_step(state, assignment, batch, jax.random.fold_in(key, state.step))

  return {"weight_step": jax.jit(keyed_weight_step),
          "eval_step": bionas.eval_program(model), "eg_step": jax.jit(eg_step),
          "weight_tx": weight_tx, "es": es, "es_params": es_params}


def eg_method(config: ml_collections.ConfigDict, model: supernet_lib.DartsSupernet,
              alphabet: supernet_lib.Alphabet, half: Mapping, root: Array) -> bionas.Method:
  """BioNAS-EG as a :class:`biojax.nas.bionas.Method`."""
  s, eg = config.search, config.search.eg
  p = programs(model, program_settings(config, alphabet.size))
  step_key = jax.random.fold_in(root, bionas.STEP_STREAM)
  eg_key = jax.random.fold_in(root, _EG_STREAM)

  def train_step(state, assignment, batch, g):
    del g  # the step folds state.step into the key
    return p["weight_step"](state, assignment, batch, step_key)

  def before_epoch(state, assignment, epoch):
    if epoch < eg.warmup_epochs:
      return state, {"eg": None}
    batch = bionas.half_batch(half, eg.batch_size, config.seed, epoch,
                              stream=_FITNESS_BATCH_STREAM)
    start = time.perf_counter()
    state, metrics = p["eg_step"](state, batch, eg_key, np.int32(epoch))
    metrics = {k: v.item() for k, v in jax.device_get(metrics).items()}
    seconds = time.perf_counter() - start  # the first EG epoch's includes the compile
    samples = eg.population_size * eg.generations
    return state, {"eg": {**metrics, "seconds": seconds, "samples_per_second": samples / seconds}}

  def alpha_opt_state(alpha):
    return init_es_state(p["es"], p["es_params"], alpha, jax.random.fold_in(root, _EG_STREAM))

  return bionas.Method(
      name="eg", title="BioNAS-EG", weight_tx=p["weight_tx"], alpha_opt_state=alpha_opt_state,
      train_step=train_step, eval_step=p["eval_step"], before_epoch=before_epoch,
      diverged=f"config.search.weights.learning_rate (now {s.weights.learning_rate})",
      report={"population_size": eg.population_size, "generations": eg.generations,
              "step_size": eg.step_size, "similarity_weight": eg.similarity_weight,
              "warmup_epochs": eg.warmup_epochs, "chunk_size": eg.chunk_size})


def search(config: ml_collections.ConfigDict, workdir: str,
           on_epoch: Callable[[dict], Any] | None = None) -> dict:
  """Runs (or resumes) the BioNAS-EG search of ``config`` in ``workdir``; returns the report
  (the fields of :func:`biojax.nas.bionas.search`'s, ``method`` = "eg"). ``on_epoch`` and
  SIGTERM as there; each epoch's checkpoint holds the CMA-ES state, so a resumed search
  continues it bitwise.

  Raises:
    ValueError: an invalid config value.
    biojax.data.DatasetNotFoundError: the data set is missing (the message says how to
      prepare it).
    SearchFailedError: the supernet's weights diverged (a diverging CMA-ES sample does not
      stop the search: it gets the worst fitness and is counted in the history).
  """
  check_config(config)
  return bionas.run(config, workdir, eg_method, on_epoch)
