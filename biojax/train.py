"""Functional training: ``train_step(state, batch, key) -> (state, metrics)``.

The assignment is part of the state (data), so one compiled step serves every assignment,
and ``jax.vmap`` over a stacked state trains a population of candidates at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from biojax import learning
from biojax import rules as rules_lib
from biojax.nn.assignment import (
  Assignment,
  geometry_tree,
  make_assignment,
  validate_assignment,
)
from biojax.nn.layers import ACTIVITY

Array = jax.Array

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree)."""

  step: Array
  params: Any
  opt_state: Any
  feedback: Any  # rule state: never seen by the optimizer
  batch_stats: Any  # {} for models without batch norm
  assignment: Assignment

  def variables(self) -> dict:
    out = {"params": self.params, "feedback": self.feedback}
    if self.batch_stats:
      out["batch_stats"] = self.batch_stats
    return out


def all_finite(tree: Any) -> Array:
  """True when every floating-point leaf of ``tree`` is finite (integer leaves are skipped)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_schedule(learning_rate: float, schedule: str = "constant", total_steps: int = 0,
                  warmup_steps: int = 0) -> optax.Schedule:
  """An optax learning-rate schedule by name (see :data:`SCHEDULES`)."""
  if schedule == "constant":
    return optax.constant_schedule(learning_rate)
  if schedule == "cosine":
    return optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
  if schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps,
                                              max(total_steps, warmup_steps + 1))
  raise ValueError(f"Unknown schedule {schedule!r}. Valid schedules: {', '.join(SCHEDULES)}.")


def make_optimizer(name: str = "adam", learning_rate: float | optax.Schedule = 1e-3,
                   momentum: float = 0.0, weight_decay: float = 0.0,
                   clip_norm: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """An optax optimizer whose last stage applies each layer's step geometry.

  The chain is ``[clip] -> [weight decay] -> optimizer -> geometry``; ``geometry`` (0
  additive, 1 exponentiated gradient, per leaf) is passed at update time as data
  (:func:`biojax.rules.multiplicative`).
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")
  parts = []
  if clip_norm:
    parts.append(optax.clip_by_global_norm(clip_norm))
  if weight_decay and name != "adamw":
    parts.append(optax.add_decayed_weights(weight_decay))
  if name == "sgd":
    parts.append(optax.sgd(learning_rate, momentum=momentum or None))
  elif name == "adam":
    parts.append(optax.adam(learning_rate))
  else:
    parts.append(optax.adamw(learning_rate, weight_decay=weight_decay))
  parts.append(rules_lib.multiplicative())
  return optax.chain(*parts)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, key: Array,
                       sample_input: Array, assignment: Assignment | str = "bp"
                       ) -> TrainState:
  """Initialises parameters and rule state from ``key``; ``assignment`` may be a spec."""
  variables = flax.core.unfreeze(model.init(key, sample_input, train=False))
  if not isinstance(assignment, Assignment):
    assignment = make_assignment(variables, assignment)
  validate_assignment(assignment, variables, getattr(model, "options", None))
  return train_state_from_variables(variables, tx, assignment)


@functools.lru_cache(maxsize=32)
def init_program(model: nn.Module, compiler_options: tuple[tuple[str, Any], ...] = ()
                 ) -> Callable[[Array, Array], dict]:
  """``(key, sample) -> variables``: ``model.init(key, sample, train=False)`` as one jitted
  program, one per model and ``compiler_options`` (``(name, value)`` pairs) in the process.
  Equal models (Flax modules compare by their fields) share it, so a search's evaluator and
  the retrain of the same network compile the initialisation once."""
  def init(key, sample):
    return flax.core.unfreeze(model.init(key, sample, train=False))
  return jax.jit(init, compiler_options=dict(compiler_options) or None)


def train_state_from_variables(variables: Mapping, tx: optax.GradientTransformation,
                               assignment: Assignment) -> TrainState:
  """A step-0 :class:`TrainState` from a model's initialised variables."""
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    feedback=variables["feedback"],
                    batch_stats=variables.get("batch_stats", {}), assignment=assignment)


def make_train_step(model: nn.Module, tx: optax.GradientTransformationExtraArgs,
                    options: rules_lib.RuleOptions | None = None,
                    loss_fn: Callable = learning.cross_entropy) -> Callable:
  """``train_step(state, batch, key) -> (state, metrics)`` (pure; wrap in ``jax.jit``).

  ``options`` defaults to the model's own ``options`` attribute (the biojax models have one),
  so the layers and the rule-state update see the same hyper-parameters.
  """
  if options is None:
    options = getattr(model, "options", None) or rules_lib.RuleOptions()

  def train_step(state: TrainState, batch: Mapping, key: Array):
    updates, new_vars, metrics = learning.learning_signal(
        model, state.variables(), batch, state.assignment, key, loss_fn)
    steps, opt_state = tx.update(updates, state.opt_state, state.params,
                                 geometry=geometry_tree(state.assignment, state.params))
    params = optax.apply_updates(state.params, steps)
    params = learning.structural_plasticity(params, state.assignment, options)
    feedback = learning.update_rule_state(state.feedback, state.params, params,
                                          state.assignment, options, new_vars.get(ACTIVITY))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              feedback=feedback,
                              batch_stats=new_vars.get("batch_stats", state.batch_stats))
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, loss_fn: Callable = learning.cross_entropy) -> Callable:
  """``eval_step(state, batch) -> metrics`` with sums (``loss_sum``, ``correct``, ``count``)
  so that metrics over many batches add up exactly.

  If the batch has a ``mask`` (float, 1 for real examples, 0 for padding, as in
  ``Dataset.eval_batches``), every sum is weighted by it, so padding never counts.
  """

  def eval_step(state: TrainState, batch: Mapping):
    # No assignment collection: the plain forward pass (subclasses such as the NAS
    # candidate state add their own collections, e.g. architecture genes, in variables()).
    logits = model.apply(state.variables(), batch["image"], train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    mask = batch.get("mask")
    mask = jnp.ones(losses.shape, losses.dtype) if mask is None else mask.astype(losses.dtype)
    hits = (jnp.argmax(logits, -1) == batch["label"]).astype(losses.dtype)
    return {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum(hits * mask),
            "count": jnp.sum(mask)}

  return eval_step
