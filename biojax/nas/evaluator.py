"""The population evaluator: genomes ``(P, G)`` -> fitness ``(P,)`` in one jitted program.

Each candidate is initialised from the caller's key (the same initial state for every
candidate: common random numbers), trains for a proxy budget of ``steps`` on the
same stacked training batches (``jax.lax.scan`` over steps), and is scored by its
mask-weighted accuracy on the stacked validation batches (DESIGN.md section 5). The
candidates are evaluated by one of three strategies, all inside the same program:

- ``"vmap"``: ``jax.vmap`` over the whole population;
- ``"map"``: ``jax.lax.map`` over candidates, one at a time;
- ``"chunked"``: ``jax.lax.map`` over chunks of ``chunk_size`` candidates, each chunk
  vmapped (the population is padded to a multiple of ``chunk_size`` with copies of its first
  genome, whose results are dropped).

Operations and rules are genome data, so a new population never recompiles (only a new
population size, batch shape or budget does). A candidate whose training loss, parameters,
rule state or batch statistics, or validation loss become NaN/Inf gets fitness ``-inf`` and
a reason code (:data:`REASONS`); the other candidates' computations are independent of it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from biojax import train as train_lib
from biojax.nas.candidate import as_candidate
from biojax.nas.nb201 import NB201Space

Array = jax.Array

STRATEGIES = ("vmap", "map", "chunked")

# Reason codes of info["reason"] (int32 per candidate).
OK = 0
NONFINITE_LOSS = 1  # a training step's loss was NaN/Inf
NONFINITE_STATE = 2  # parameters, rule state or batch statistics became NaN/Inf in training
NONFINITE_VALIDATION = 3  # training stayed finite, but the validation loss is NaN/Inf
REASONS = {OK: "ok", NONFINITE_LOSS: "non-finite training loss",
           NONFINITE_STATE: "non-finite parameters or state",
           NONFINITE_VALIDATION: "non-finite validation loss"}


def default_strategy(backend: str | None = None) -> str:
  """The strategy used when none is given: ``"map"`` on CPU (XLA's CPU convolutions batched
  by ``vmap`` are slow, DESIGN.md section 5), ``"vmap"`` on accelerators."""
  backend = backend or jax.default_backend()
  return "map" if backend == "cpu" else "vmap"


class _ScaleState(NamedTuple):  # a NamedTuple, so optax.tree_utils.tree_set finds `scale`
  scale: Array


def _step_scale() -> optax.GradientTransformation:
  """Multiplies the final parameter step by a scale held in the optimizer state (1 by
  default; the evaluator sets it per candidate)."""

  def init(params):
    del params
    return _ScaleState(scale=jnp.ones((), jnp.float32))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates), state

  return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True, eq=False)
class PopulationEvaluator:
  """Static settings of the population evaluator; :meth:`evaluate` is the program.

  Attributes:
    space: the search space (genome layout, genome -> assignment and architecture).
    model: the network, e.g. :class:`biojax.nas.NB201Network`; its ``options`` must compile
      every rule of ``space`` (``RuleOptions(rules=space.rule_names)``).
    steps: proxy budget in training steps; ``train_batches`` must hold exactly this many.
    batch_size: training batch size; ``train_batches`` must have it.
    optimizer, learning_rate, momentum, weight_decay, clip_norm: as
      :func:`biojax.make_optimizer`.
    schedule, warmup_steps: as :func:`biojax.make_schedule`, over ``steps``.
    strategy: one of :data:`STRATEGIES`; ``None`` picks :func:`default_strategy`.
    chunk_size: candidates per vmapped chunk for ``"chunked"``.
    compiler_options: XLA options for compiling the program, as ``(name, value)`` pairs
      (``jax.jit``'s ``compiler_options``); e.g. ``(("xla_backend_optimization_level", 0),)``
      compiles faster on CPU and runs slower (the tests use it).
  """

  space: NB201Space
  model: nn.Module
  steps: int
  batch_size: int
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.0
  weight_decay: float = 0.0
  clip_norm: float = 0.0
  schedule: str = "constant"
  warmup_steps: int = 0
  strategy: str | None = None
  chunk_size: int = 8
  compiler_options: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    if self.strategy is None:
      object.__setattr__(self, "strategy", default_strategy())
    if self.strategy not in STRATEGIES:
      raise ValueError(f"Unknown strategy {self.strategy!r}. Valid strategies: "
                       f"{', '.join(STRATEGIES)}.")
    if self.chunk_size < 1:
      raise ValueError(f"chunk_size={self.chunk_size} must be >= 1.")
    if self.steps < 1 or self.batch_size < 1:
      raise ValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1.")

  @functools.cached_property
  def tx(self) -> optax.GradientTransformationExtraArgs:
    """The optimizer: :func:`biojax.make_optimizer` followed by the per-candidate step
    scale (``step_scale`` of :meth:`evaluate`)."""
    lr = train_lib.make_schedule(self.learning_rate, self.schedule, self.steps,
                                 self.warmup_steps)
    base = train_lib.make_optimizer(self.optimizer, lr, self.momentum, self.weight_decay,
                                    self.clip_norm)
    return optax.chain(base, _step_scale())

  def evaluate(self, genomes: Array, train_batches: Mapping, validation_batches: Mapping,
               key: Array, step_scale: Array | None = None) -> tuple[Array, dict]:
    """Fitness of every genome (larger is better) and per-candidate information.

    Args:
      genomes: int32 ``(P, G)``.
      train_batches: ``{"image": (steps, batch_size, ...), "label": (steps, batch_size)}``
        (:func:`stack_train_batches`); every candidate trains on these, in this order.
      validation_batches: ``{"image": (V, b, ...), "label": (V, b), "mask": (V, b)}``
        (:func:`stack_eval_batches`); without ``mask`` every example counts.
      key: PRNG key (a typed key, e.g. ``jax.random.key(0, impl="rbg")``) for the initial
        weights and the per-step keys of the rules (the same for every candidate).
      step_scale: optional float ``(P,)`` multiplying each candidate's parameter steps
        (default 1; an exact no-op at 1).

    Returns:
      ``(fitness, info)``: ``fitness`` float32 ``(P,)`` is the validation accuracy, ``-inf``
      for a failed candidate. ``info`` holds, per candidate: ``validation_accuracy`` and
      ``validation_loss`` (mask-weighted means), ``train_loss`` (the last step's),
      ``failed`` (bool), ``reason`` (int32, :data:`REASONS`) and ``failed_step`` (int32:
      the first training step whose loss or resulting state was non-finite; ``steps`` for a
      validation failure; -1 if none).
    """
    genomes = jnp.asarray(genomes, jnp.int32)
    if step_scale is None:
      step_scale = jnp.ones(genomes.shape[:1], jnp.float32)
    return self._program(genomes, train_batches, validation_batches, key,
                         jnp.asarray(step_scale, jnp.float32))

  def _compile_count(self) -> int:
    """Number of compiled variants of the program (``jax.jit``'s cache size)."""
    return self._program._cache_size()

  @functools.cached_property
  def _program(self):
    model, space, tx = self.model, self.space, self.tx
    train_step = train_lib.make_train_step(model, tx)
    eval_step = train_lib.make_eval_step(model)

    def init_variables(key, sample):
      return flax.core.unfreeze(model.init(key, sample, train=False))

    def run(genomes, train_batches, validation_batches, key, step_scale):
      images = train_batches["image"]
      if images.shape[:2] != (self.steps, self.batch_size):
        raise ValueError(f"train_batches['image'] has shape {images.shape}: expected "
                         f"(steps={self.steps}, batch_size={self.batch_size}, ...).")
      if genomes.ndim != 2 or genomes.shape[1] != len(space.gene_sizes):
        raise ValueError(f"genomes must be (P, {len(space.gene_sizes)}), got {genomes.shape}.")
      init_key, train_key = jax.random.split(key)
      step_keys = jax.vmap(functools.partial(jax.random.fold_in, train_key))(
          jnp.arange(self.steps))
      sample = images[0, :1]
      # Common random numbers: one initial state for every candidate. The assignment is
      # built from these variables (inside this trace their dict lists the layers in the
      # order of application).
      variables = init_variables(init_key, sample)
      assign = space.assignment_fn(variables, getattr(model, "options", None))

      def candidate(genome, scale):
        state = train_lib.train_state_from_variables(variables, tx, assign(genome))
        state = as_candidate(state, space.architecture(genome)).replace(
            opt_state=optax.tree_utils.tree_set(state.opt_state, scale=scale))

        def body(carry, xs):
          state, failed_step, reason = carry
          batch, step_key = xs
          state, metrics = train_step(state, batch, step_key)
          loss_ok = jnp.isfinite(metrics["loss"])
          state_ok = train_lib.all_finite((state.params, state.feedback, state.batch_stats))
          first = (reason == OK) & ~(loss_ok & state_ok)
          failed_step = jnp.where(first, state.step - 1, failed_step)
          reason = jnp.where(first, jnp.where(loss_ok, NONFINITE_STATE, NONFINITE_LOSS),
                             reason)
          return (state, failed_step, reason), metrics["loss"]

        init_carry = (state, jnp.asarray(-1, jnp.int32), jnp.asarray(OK, jnp.int32))
        (state, failed_step, reason), losses = jax.lax.scan(
            body, init_carry, (train_batches, step_keys))

        def eval_body(total, batch):
          metrics = eval_step(state, batch)
          return jax.tree.map(jnp.add, total, metrics), None

        zero = jnp.zeros((), jnp.float32)
        totals, _ = jax.lax.scan(eval_body, {"loss_sum": zero, "correct": zero, "count": zero},
                                 validation_batches)
        count = jnp.maximum(totals["count"], 1.0)
        accuracy, val_loss = totals["correct"] / count, totals["loss_sum"] / count
        bad_val = (reason == OK) & ~jnp.isfinite(val_loss)
        failed_step = jnp.where(bad_val, self.steps, failed_step)
        reason = jnp.where(bad_val, NONFINITE_VALIDATION, reason)
        failed = reason != OK
        fitness = jnp.where(failed, -jnp.inf, accuracy)
        info = {"validation_accuracy": accuracy, "validation_loss": val_loss,
                "train_loss": losses[-1], "failed": failed, "reason": reason,
                "failed_step": failed_step}
        return fitness, info

      population = genomes.shape[0]
      args = (genomes, step_scale)
      if self.strategy == "vmap":
        return jax.vmap(candidate)(*args)
      if self.strategy == "map":
        return jax.lax.map(lambda a: candidate(*a), args)
      chunk = self.chunk_size
      chunks = -(-population // chunk)
      pad = chunks * chunk - population
      padded = jax.tree.map(
          lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]).reshape(
              (chunks, chunk) + x.shape[1:]), args)
      out = jax.lax.map(lambda a: jax.vmap(candidate)(*a), padded)
      return jax.tree.map(lambda x: x.reshape((chunks * chunk,) + x.shape[2:])[:population],
                          out)

    return jax.jit(run, compiler_options=dict(self.compiler_options) or None)


def stack_train_batches(batches: Iterable[Mapping], steps: int) -> dict[str, np.ndarray]:
  """The first ``steps`` batches of an iterator (``Dataset.train_batches(...)``), stacked:
  ``{"image": (steps, b, ...), "label": (steps, b)}``."""
  taken = list(itertools.islice(iter(batches), steps))
  if len(taken) != steps:
    raise ValueError(f"Needed {steps} training batches, got {len(taken)}.")
  return {k: np.stack([np.asarray(b[k]) for b in taken]) for k in taken[0]}


def stack_eval_batches(batches: Iterable[Mapping]) -> dict[str, np.ndarray]:
  """All batches of ``Dataset.eval_batches(split, batch_size)``, stacked (padded rows have
  ``mask`` 0 and do not count)."""
  taken = list(batches)
  if not taken:
    raise ValueError("No evaluation batches.")
  return {k: np.stack([np.asarray(b[k]) for b in taken]) for k in taken[0]}
