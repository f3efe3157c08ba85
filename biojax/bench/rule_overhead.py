"""Section 1: train-step time of each rule relative to ``bp``, and of ``bp`` through biojax
relative to a plain ``jax.grad`` step (the cost of the rule machinery)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import biojax
from biojax import nn as bnn
from biojax import rules
from biojax import train as train_lib
from biojax.bench.timing import KEY_IMPL, NUM_CLASSES, time_interleaved
from biojax.nas import nb201
from biojax.nas.candidate import as_candidate


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



def initial_state(model: nn.Module, tx, sample: jax.Array, architecture=None):
  # Eager init with an rbg key: no compile of the whole init (for NAS-Bench-201 that is the
  # cheapest way on CPU, see KEY_IMPL).
  variables = flax.core.unfreeze(model.init(jax.random.key(0, impl=KEY_IMPL), sample,
                                            train=False))
  state = train_lib.train_state_from_variables(variables, tx,
                                               bnn.make_assignment(variables, "bp"))
  return state if architecture is None else as_candidate(state, architecture)



def plain_step(model: nn.Module, state, batch: Mapping):
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



def random_batch(shape) -> dict:
  r = np.random.default_rng(0)
  return {"image": jnp.asarray(r.normal(size=shape), jnp.float32),
          "label": jnp.asarray(r.integers(0, NUM_CLASSES, shape[0]), jnp.int32)}



def _rule_overhead_one(model, shape, repeats: int, inner: int, architecture=None,
                       lean: bool = True, plain: bool = True) -> dict:
  batch = random_batch(shape)
  tx = biojax.make_optimizer("sgd", 0.01)
  state = initial_state(model, tx, batch["image"][:1], architecture)
  step = jax.jit(biojax.make_train_step(model, tx))
  key = jax.random.key(1)
  fns = {}
  for spec in list(rules.rule_names()) + ["eg"]:
    layer_specs = bnn.single_rule_specs(spec, len(state.assignment.layers))
    s = state.replace(assignment=bnn.make_assignment(state.variables(), layer_specs))
    fns[spec] = functools.partial(lambda s: step(s, batch, key)[1]["loss"], s)

  if lean:  # the same model compiled for the error-driven rules only (no local-rule branch)
    error_driven = tuple(r.name for r in rules.rules() if r.credit != "local")
    lean_model = model.clone(options=model.options.replace(rules=error_driven))
    lean_step = jax.jit(biojax.make_train_step(lean_model, tx))
    fns["bp (error-driven build)"] = lambda: lean_step(state, batch, key)[1]["loss"]
  if plain:
    fns["plain jax.grad"] = plain_step(model, state, batch)
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


# Step-time targets relative to bp (docs/performance.md), by rule or geometry: every
# registered rule but bp has one, from this table or else DEFAULT_TARGET (the loosest of the
# table: the local rules').
TARGETS = {"fa": 1.10, "usf": 1.10, "brsf": 1.10, "frsf": 1.10, "dfa": 1.15, "kp": 1.20,
           "eg": 1.10, "softhebb": 1.5}
DEFAULT_TARGET = 1.5


def target_of(name: str) -> float | None:
  """The target of a row of section 1: a registered rule (bp: none) or ``eg``; None for the
  other rows (the error-driven build, plain ``jax.grad``)."""
  if name == "bp" or name not in (*rules.rule_names(), "eg"):
    return None
  return TARGETS.get(name, DEFAULT_TARGET)
