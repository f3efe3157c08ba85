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
from biojax.nn._credit import known_rule
from biojax.nn.assignment import Assignment, leading_axes
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
    the optimizer step; where the model compiles rules with an ``activity`` hook, ``state``
    also holds what they recorded in this batch under ``rule_activity``, which that update
    reads).
    ``metrics`` holds ``loss`` and ``accuracy``.
  """
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k not in _TRANSIENT}
  options = getattr(model, "options", None) or rules_lib.RuleOptions()
  compiled = options.compiled_rules()
  records_activity = any(r.activity is not None for r in compiled)
  mutable = [DFA_TAPS] + ([ACTIVITY] if records_activity else []) + (
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
  direct = [r for r in compiled if r.credit == "direct"]
  if direct:
    tap_cotangents = _tap_cotangents(taps, variables, assignment, output_error, direct)
  else:  # no layer can be direct: skip the projections e B_l
    tap_cotangents = jax.tree.map(jnp.zeros_like, taps)
  (updates,) = backward((output_error, tap_cotangents))
  # A rule id outside the compiled rules (a stale or corrupt assignment) ran as a clamped
  # branch of lax.switch: every update is NaN instead, so the step cannot pass for a valid
  # one (outside jit, validate_assignment refuses such an id with its layer).
  if assignment.rule:
    known = jnp.all(jnp.stack([jnp.all(known_rule(r, options))
                               for r in assignment.rule.values()]))
    updates = jax.tree.map(lambda u: jnp.where(known, u, jnp.nan), updates)
  new_state = {**state, **mutated}
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return updates, new_state, {"loss": loss, "accuracy": accuracy}


def _tap_cotangents(taps: Mapping, variables: Mapping, assignment: Assignment,
                    output_error: Array, direct: tuple[rules_lib.Rule, ...]) -> dict:
  """The projected output error at the tap of every layer whose rule is direct (``e B_l``
  for DFA); zero at the taps of all other layers."""
  flat_taps = traverse_util.flatten_dict(flax.core.unfreeze(taps))
  cotangents = {}
  for path, sown in flat_taps.items():
    layer = "/".join(path[:-1])
    state = _layer_state(variables["feedback"], path[:-1])
    projected = 0.0
    for r in direct:
      is_rule = assignment.rule[layer] == rules_lib.rule_id(r.name)
      projected = jnp.where(is_rule, r.direct(output_error, state), projected)
    cotangents[path] = tuple(jnp.asarray(projected).astype(h.dtype) for h in sown)
  return traverse_util.unflatten_dict(cotangents)


def _layer_state(feedback: Mapping, layer: tuple[str, ...]) -> dict:
  """The rule-state variables of one layer (``feedback/<layer>/*``) as a flat dict."""
  node = flax.core.unfreeze(feedback)
  for part in layer:
    node = node[part]
  return {k: v for k, v in node.items() if not isinstance(v, Mapping)}


def update_rule_state(feedback: Mapping, params_old: Mapping, params_new: Mapping,
                      assignment: Assignment, options: rules_lib.RuleOptions,
                      activity: Mapping | None = None) -> dict:
  """Rule state after an optimizer step: each compiled rule's ``after_step`` hook, in the
  layers whose rule it is (for example Kolen-Pollack's ``B`` follows ``W``; the sparse
  rule's thresholds move towards the target firing rate).

  ``activity`` is the ``rule_activity`` collection that :func:`learning_signal` returns in
  its state. Every other entry is returned unchanged.
  """
  hooked = [r for r in options.compiled_rules() if r.after_step is not None]
  if not hooked:
    return feedback
  flat = traverse_util.flatten_dict(flax.core.unfreeze(feedback))
  old = traverse_util.flatten_dict(flax.core.unfreeze(params_old))
  new = traverse_util.flatten_dict(flax.core.unfreeze(params_new))
  recorded = traverse_util.flatten_dict(flax.core.unfreeze(activity)) if activity else {}
  out = dict(flat)
  for layer_name in assignment.layers or tuple(assignment.rule):
    layer = tuple(layer_name.split("/"))
    rule = assignment.rule[layer_name]
    state = {path[-1]: value for path, value in out.items() if path[:-1] == layer}
    for r in hooked:
      sown = recorded.get((*layer, r.name))
      changes = r.after_step(state, old[(*layer, "kernel")], new[(*layer, "kernel")],
                             None if sown is None else sown[0], options.of(r))
      for name, value in changes.items():
        if name not in state:
          raise KeyError(f"Rule {r.name!r}: after_step returned {name!r}, which is not a "
                         f"state variable of layer {layer_name} ({', '.join(state)}).")
        out[(*layer, name)] = jnp.where(
            leading_axes(rule == rules_lib.rule_id(r.name), value), value,
            out[(*layer, name)])
  return traverse_util.unflatten_dict(out)


def structural_plasticity(params: Mapping, assignment: Assignment,
                          options: rules_lib.RuleOptions) -> dict:
  """Parameters after the compiled rules' ``structural`` hooks (applied after each step) in
  the layers whose rule it is; for example the sparse rule's elimination of weak synapses
  (:func:`biojax.rules.eliminate_weak_synapses`). Other layers are unchanged."""
  hooked = [r for r in options.compiled_rules() if r.structural is not None]
  if not hooked:
    return params
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  out = dict(flat)
  for path in flat:
    layer = "/".join(path[:-1])
    if path[-1] != "kernel" or layer not in assignment.rule:
      continue
    for r in hooked:
      changed = r.structural(out[path], options.of(r))
      if changed is not out[path]:
        out[path] = jnp.where(
            leading_axes(assignment.rule[layer] == rules_lib.rule_id(r.name), changed),
            changed, out[path])
  return traverse_util.unflatten_dict(out)
