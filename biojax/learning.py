"""The learning signal of a whole model, and the rule-state update after a step.

:func:`learning_signal` is the one place where a model, its variables, a batch and an
assignment become an update pytree of the structure of ``params``. It runs one forward and
one backward pass: the backward pass is the models' rule-aware custom VJPs, and DFA's output
error is injected at the layers' taps in the same pass (the output error is known once the
forward pass has produced the logits, so ``jax.vjp`` receives it as the tap cotangents).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nn import _credit
from biojax.nn.assignment import Assignment
from biojax.nn.layers import ACTIVITY, DFA_TAPS

Array = jax.Array
# Collections that are inputs of a training step but never state to carry forward.
_TRANSIENT = ("params", "assignment", DFA_TAPS, ACTIVITY, "intermediates")


def cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def learning_signal(model: nn.Module, variables: Mapping, batch: Mapping,
                    assignment: Assignment, key: Array,
                    loss_fn: Callable[[Array, Array], Array] = cross_entropy
                    ) -> tuple[dict, dict, dict]:
  """The update of every parameter under the per-layer rules of ``assignment``.

  Args:
    model: a Flax model built from rule-aware layers; ``model.apply(v, x, train=True)``.
    variables: the model's variables: ``params``, ``feedback`` (rule state) and, where the
      model has them, ``batch_stats``.
    batch: ``{"image": x, "label": y}`` with integer labels.
    assignment: the rule of each weight layer (:func:`biojax.nn.make_assignment`).
    key: PRNG key of this step (brSF redraws its feedback magnitudes from it).
    loss_fn: ``loss_fn(logits, labels)``; its gradient w.r.t. the logits is the output error.

  Returns:
    ``(updates, state, metrics)``: ``updates`` has the structure of ``params`` and is a
    gradient-like quantity (the optimizer subtracts it); for ``bp`` everywhere it equals
    ``jax.grad`` of the loss. ``state`` holds the non-parameter collections after the step
    (batch statistics updated; the rule state is updated by :func:`update_rule_state` after
    the optimizer step; where the model may use the ``sparse`` rule, ``state`` also holds
    the firing rates of this batch under ``rule_activity``, which that update reads).
    ``metrics`` holds ``loss`` and ``accuracy``.
  """
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k not in _TRANSIENT}
  options = getattr(model, "options", None) or rules_lib.RuleOptions()
  mutable = [DFA_TAPS] + ([ACTIVITY] if options.allows("sparse") else []) + (
      ["batch_stats"] if "batch_stats" in state else [])
  collection = assignment.as_collection()

  def forward(p):
    logits, mutated = model.apply(
        {**state, "params": p, "assignment": collection}, batch["image"], train=True,
        rngs={"feedback": key}, mutable=mutable)
    mutated = dict(mutated)
    taps = mutated.pop(DFA_TAPS, {})
    return (logits, taps), mutated

  (logits, taps), backward, mutated = jax.vjp(forward, params, has_aux=True)
  loss, output_error = jax.value_and_grad(loss_fn)(logits, batch["label"])
  if options.allows("dfa"):
    tap_cotangents = _tap_cotangents(taps, variables, assignment, output_error)
  else:  # no layer can be DFA: skip the projections e B_l
    tap_cotangents = jax.tree.map(jnp.zeros_like, taps)
  (updates,) = backward((output_error, tap_cotangents))
  new_state = {**state, **mutated}
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return updates, new_state, {"loss": loss, "accuracy": accuracy}


def _tap_cotangents(taps: Mapping, variables: Mapping, assignment: Assignment,
                    output_error: Array) -> dict:
  """``e B_l`` at the tap of every DFA layer; zero at the taps of all other layers."""
  flat_taps = traverse_util.flatten_dict(flax.core.unfreeze(taps))
  flat_feedback = traverse_util.flatten_dict(flax.core.unfreeze(variables["feedback"]))
  cotangents = {}
  for path, sown in flat_taps.items():
    layer = "/".join(path[:-1])
    b = flat_feedback[(*path[:-1], "direct")]
    direct = _credit.is_direct(assignment.rule[layer])
    projected = rules_lib.direct_feedback(output_error, b)
    cotangents[path] = tuple(jnp.where(direct, projected, 0.0).astype(h.dtype) for h in sown)
  return traverse_util.unflatten_dict(cotangents)


def update_rule_state(feedback: Mapping, params_old: Mapping, params_new: Mapping,
                      assignment: Assignment, options: rules_lib.RuleOptions,
                      activity: Mapping | None = None) -> dict:
  """Rule state after an optimizer step.

  * Kolen-Pollack: the matrix ``learned`` follows ``W`` (layers whose rule is ``kp``);
  * sparse rule homeostasis: each unit's ``threshold`` moves towards the target firing rate,
    ``theta + eta_theta (r - rho)``, with ``r`` the unit's firing rate in the batch, read from
    ``activity`` (the ``rule_activity`` collection that :func:`learning_signal` returns in its
    state; layers whose rule is ``sparse``, when ``options.sparse_homeostasis``).

  Every other entry is returned unchanged (and nothing is computed for rules that
  ``options`` leave out).
  """
  homeostasis = (options.allows("sparse") and options.sparse_homeostasis
                 and activity is not None)
  if not options.allows("kp") and not homeostasis:
    return feedback
  flat = traverse_util.flatten_dict(flax.core.unfreeze(feedback))
  old = traverse_util.flatten_dict(flax.core.unfreeze(params_old))
  new = traverse_util.flatten_dict(flax.core.unfreeze(params_new))
  rates = traverse_util.flatten_dict(flax.core.unfreeze(activity)) if homeostasis else {}
  out = dict(flat)
  for path, value in flat.items():
    layer = path[:-1]
    rule = assignment.rule.get("/".join(layer))
    if path[-1] == "learned" and options.allows("kp"):
      stepped = rules_lib.kp_feedback_update(value, old[(*layer, "kernel")],
                                             new[(*layer, "kernel")], options.kp_decay)
      out[path] = jnp.where(rule == rules_lib.rule_id("kp"), stepped, value)
    elif path[-1] == "threshold" and (*layer, "rate") in rates:
      stepped = rules_lib.homeostatic_threshold(
          value, rates[(*layer, "rate")][0], options.sparse_target_rate,
          options.sparse_homeostasis_rate)
      out[path] = jnp.where(rule == rules_lib.rule_id("sparse"), stepped, value)
  return traverse_util.unflatten_dict(out)


def structural_plasticity(params: Mapping, assignment: Assignment,
                          options: rules_lib.RuleOptions) -> dict:
  """Parameters after the sparse rule's structural elimination (applied after each step).

  In every layer whose rule is ``sparse`` (when ``options.sparse_elimination``), a synapse
  weaker than ``sparse_elimination_threshold`` times its unit's strongest synapse becomes
  exactly zero (:func:`biojax.rules.eliminate_weak_synapses`). Other layers are unchanged.
  """
  if not (options.allows("sparse") and options.sparse_elimination):
    return params
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  out = dict(flat)
  for path, value in flat.items():
    layer = "/".join(path[:-1])
    if path[-1] != "kernel" or layer not in assignment.rule:
      continue
    pruned = rules_lib.eliminate_weak_synapses(value, options.sparse_elimination_threshold)
    out[path] = jnp.where(assignment.rule[layer] == rules_lib.rule_id("sparse"), pruned, value)
  return traverse_util.unflatten_dict(out)
