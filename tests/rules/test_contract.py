"""The contract every registered rule meets, run over the registry (a new rule is checked by
the same tests for free), and each rule's learning signal against a NumPy reference.

REFERENCES maps every registered rule name to an independent NumPy computation of the
updates of a small ReLU MLP; its keys must equal the registry's names, so a rule added
without a reference fails here.
"""

import dataclasses
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MLP_DIMS, blobs, mlp_setup

import biojax
from biojax import nn as bnn
from biojax import rules
from biojax.compilation import CompileCounter
from biojax.rules import _feedback

RULES = rules.rule_names()
DIMS = MLP_DIMS
LAYERS = ("dense_0", "dense_1", "classifier")


# --------------------------------------------------------------------- NumPy references


def _softmax(z):
  z = np.exp(z - z.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def _forward(variables, x):
  """Inputs, pre-activations (no bias) and hidden outputs of the MLP, in float64."""
  p = variables["params"]
  ws = [np.asarray(p[n]["kernel"], np.float64) for n in LAYERS]
  bs = [np.asarray(p[n]["bias"], np.float64) for n in LAYERS]
  thresholds = [np.asarray(variables["feedback"][n]["threshold"], np.float64) for n in LAYERS]
  inputs, pre, h = [], [], np.asarray(x, np.float64)
  for i in range(3):
    inputs.append(h)
    pre.append(h @ ws[i])
    a = pre[-1] + bs[i] - thresholds[i]
    h = np.maximum(a, 0) if i < 2 else a
  return ws, inputs, pre, h


def _output_error(logits, labels):
  return (_softmax(logits) - np.eye(DIMS[-1])[labels]) / logits.shape[0]


def _error_driven(variables, batch, feedback=None, direct=None):
  """Updates when the hidden errors come through ``feedback[l]`` (the matrix of layer ``l``
  carrying the error below it) or, with ``direct``, as ``(e D_l) * relu'(a_l)``."""
  ws, inputs, pre, logits = _forward(variables, batch["image"])
  bs = [np.asarray(variables["params"][n]["bias"], np.float64) for n in LAYERS]
  e = _output_error(logits, batch["label"])
  deltas = [None, None, e]
  for i in (1, 0):
    arriving = deltas[i + 1] @ feedback[i + 1].T if direct is None else e @ direct[i]
    deltas[i] = arriving * (pre[i] + bs[i] > 0)
  return {n: {"kernel": inputs[i].T @ deltas[i], "bias": deltas[i].sum(0)}
          for i, n in enumerate(LAYERS)}


def _feedback_reference(matrices):
  def reference(variables, batch, draws):
    del draws
    return _error_driven(variables, batch, feedback=matrices(variables))
  return reference


def _kernels(v):
  return [np.asarray(v["params"][n]["kernel"], np.float64) for n in LAYERS]


def _state(v, name):
  return [np.asarray(v["feedback"][n][name], np.float64) for n in LAYERS]


def _glorot(w):
  return np.sqrt(2.0 / (w.shape[0] + w.shape[1]))


def _brsf(variables, batch, draws):
  ws = _kernels(variables)
  return _error_driven(variables, batch,
                       feedback=[np.abs(draws[w.shape]) * np.sign(w) for w in ws])


def _dfa(variables, batch, draws):
  del draws
  direct = [np.asarray(variables["feedback"][n]["direct"], np.float64) for n in LAYERS[:2]]
  return _error_driven(variables, batch, direct=direct)


def _local(postsynaptic, finish):
  """Hidden layers learn locally from their own input and pre-activation; no error crosses
  them (so no bias update); the classifier learns by the delta rule."""
  def reference(variables, batch, draws):
    del draws
    ws, inputs, pre, logits = _forward(variables, batch["image"])
    e = _output_error(logits, batch["label"])
    out = {"classifier": {"kernel": inputs[2].T @ e, "bias": e.sum(0)}}
    for i in (0, 1):
      x, u, w = inputs[i], pre[i], ws[i]
      y = postsynaptic(u)
      delta = (x.T @ y - (y * u).sum(0) * w) / x.shape[0]
      out[LAYERS[i]] = {"kernel": finish(delta, w), "bias": np.zeros(w.shape[1])}
    return out
  return reference


def _softhebb_y(u):  # Journe et al. 2023, tau = 1, anti-Hebbian losers
  y = _softmax(u)
  winner = np.eye(u.shape[1])[u.argmax(1)].astype(bool)
  return np.where(winner, y, -y)


def _softhebb_finish(delta, w):
  delta = delta / np.abs(delta).max()
  return -np.sqrt(np.abs(np.linalg.norm(w, axis=0) - 1) + 1e-10) * delta


def _sparse_y(u):  # tau = 0.1, thresholds 0 at initialisation, covariance form
  y = _softmax(u / 0.1)
  return y - y.mean(0)


REFERENCES = {
    "bp": _feedback_reference(_kernels),
    "fa": _feedback_reference(lambda v: _state(v, "fixed")),
    "usf": _feedback_reference(lambda v: [np.sign(w) * _glorot(w) for w in _kernels(v)]),
    "brsf": _brsf,
    "frsf": _feedback_reference(
        lambda v: [np.abs(f) * np.sign(w) for f, w in zip(_state(v, "fixed"), _kernels(v),
                                                          strict=True)]),
    "kp": _feedback_reference(lambda v: _state(v, "learned")),
    "dfa": _dfa,
    "softhebb": _local(_softhebb_y, _softhebb_finish),
    "sparse": _local(_sparse_y, lambda delta, w: -delta),
}


def test_every_registered_rule_has_a_numpy_reference():
  assert sorted(REFERENCES) == sorted(RULES)


@pytest.mark.parametrize("rule", RULES)
def test_learning_signal_matches_numpy_reference(rule, monkeypatch):
  model, variables, batch = mlp_setup()
  r, draws = np.random.default_rng(5), {}

  def recorded_random_feedback(key, shape, dtype=jnp.float32):  # brSF's per-batch draws
    del key
    draws[shape] = r.normal(size=shape)
    return jnp.asarray(draws[shape], dtype)

  monkeypatch.setattr(_feedback, "random_feedback", recorded_random_feedback)
  assignment = bnn.make_assignment(variables, bnn.single_rule_specs(rule, len(LAYERS)))
  updates, _, _ = biojax.learning_signal(model, variables, batch, assignment,
                                         jax.random.key(7))
  chex.assert_trees_all_close(updates, REFERENCES[rule](variables, batch, draws),
                              atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------ the record


@pytest.mark.parametrize("rule", RULES)
def test_spec_round_trip(rule):
  i = rules.rule_id(rule)
  assert rules.get_rule(i).name == rule
  for geometry in range(len(rules.GEOMETRIES)):
    spec = rules.format_rule_spec(i, geometry)
    assert rules.parse_rule_spec(spec) == (i, geometry)
  assert rules.parse_rule_spec(f"{rule}+eg") == (i, rules.geometry_id("eg"))


@pytest.mark.parametrize("rule", RULES)
def test_options_are_a_frozen_hashable_dataclass_that_round_trips(rule):
  record = rules.get_rule(rule)
  defaults = rules.RuleOptions().of(rule)
  assert isinstance(defaults, record.options)
  hash(defaults)
  fields = dataclasses.fields(record.options)
  if fields:  # a changed field survives the config round trip
    field = fields[0]
    value = (not field.default) if isinstance(field.default, bool) else field.default * 2 + 1
    options = rules.RuleOptions(**{rule: {field.name: value}})
    assert getattr(options.of(rule), field.name) == value
    assert rules.RuleOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ValueError, match=f"Valid options: {fields[0].name}"):
      rules.RuleOptions(**{rule: {"no_such_field": 1}})


def _kernel_state(shape):
  """Every registered rule's state variables for a layer with this kernel."""
  shapes = rules.LayerShapes(shape, (5, 5, shape[-1]) if len(shape) == 4 else (shape[-1],),
                             jnp.float32, num_classes=3)
  return {v.name: v.init(jax.random.key(i) if v.random else None, shapes)
          for i, v in enumerate(rules.state_variables())}, shapes


@pytest.mark.parametrize("shape", [(6, 4), (3, 3, 2, 4)], ids=["dense", "conv"])
@pytest.mark.parametrize("rule", RULES)
def test_signals_have_the_right_shapes(rule, shape):
  record = rules.get_rule(rule)
  w = jax.random.normal(jax.random.key(0), shape)
  state, shapes = _kernel_state(shape)
  options = rules.RuleOptions().of(rule)
  if record.credit == "feedback":
    b = record.feedback(w, state, jax.random.key(1))
    assert b.shape == w.shape and bool(jnp.all(jnp.isfinite(b)))
  elif record.credit == "direct":
    e = jax.random.normal(jax.random.key(2), (2, 3))
    assert record.direct(e, state).shape == (2, *shapes.output)
  else:
    u = jax.random.normal(jax.random.key(3), (2, *shapes.output))
    s = record.local_signal(u, state, options)
    assert s.shape == u.shape
    hebbian = jax.random.normal(jax.random.key(4), shape)
    assert record.local_update(hebbian, w, u, s, options).shape == w.shape
  for variable in record.state:
    assert variable.name in state


# ------------------------------------------------------------------ in a training step

X, Y = blobs()


def batch(step: int, size: int = 64):
  idx = np.random.default_rng(step).choice(len(X), size, replace=False)
  return {"image": jnp.asarray(X[idx]), "label": jnp.asarray(Y[idx])}


@functools.lru_cache
def training_setup():
  model = bnn.MLP(num_classes=4, hidden=(32, 32))
  tx = biojax.make_optimizer("adam", 1e-2, weight_decay=1e-2)
  state = biojax.create_train_state(model, tx, jax.random.key(0), jnp.asarray(X[:2]), "bp")
  step = jax.jit(biojax.make_train_step(model, tx))
  jax.block_until_ready(step(state, batch(0), jax.random.key(0)))  # compiled once, here
  return model, state, step


def _specs(rule, variables):
  return bnn.single_rule_specs(rule, len(bnn.weight_layers(variables)))


@pytest.mark.parametrize("rule", RULES)
def test_one_compilation_serves_every_rule(rule):
  _, state, step = training_setup()
  mixed = [rule, RULES[(rules.rule_id(rule) + 1) % len(RULES)], "bp"]
  with CompileCounter() as counter:
    for spec in (_specs(rule, state.variables()), mixed, f"{rule}+eg"):
      assignment = bnn.make_assignment(state.variables(), spec)
      jax.block_until_ready(step(state.replace(assignment=assignment), batch(1),
                                 jax.random.key(1)))
  assert counter.count == 0


@pytest.mark.parametrize("rule", RULES)
def test_rule_state_changes_only_where_its_hook_says(rule):
  """Weight decay and Adam run on params only: rule state moves only through the rule's
  own after-step hook (the variables it returns), and only in the layers that use the rule."""
  _, state, step = training_setup()
  record = rules.get_rule(rule)
  specs = _specs(rule, state.variables())
  state = state.replace(assignment=bnn.make_assignment(state.variables(), specs))
  new = state
  for i in range(3):
    new, _ = step(new, batch(i), jax.random.key(i))
  for layer, spec in zip(LAYERS, specs, strict=True):
    old_state = {k: np.asarray(v) for k, v in state.feedback[layer].items()}
    new_state = {k: np.asarray(v) for k, v in new.feedback[layer].items()}
    declared = set()
    if spec == rule and record.after_step is not None:
      rate = jnp.full((old_state["threshold"].shape[0],), 0.5)
      kernel = state.params[layer]["kernel"]
      declared = set(record.after_step(old_state, kernel, kernel + 1.0, rate,
                                       rules.RuleOptions().of(rule)))
    for name in old_state:
      if name in declared:
        assert not np.array_equal(old_state[name], new_state[name]), (layer, name)
      else:
        np.testing.assert_array_equal(old_state[name], new_state[name], err_msg=name)


class StridedGroupedNet(nn.Module):
  """A strided convolution, a grouped convolution and a classifier, each rule-aware."""

  options: rules.RuleOptions = rules.RuleOptions()

  @nn.compact
  def __call__(self, x, train=False):
    del train
    layer = bnn.Conv(4, (3, 3), strides=2, dfa_classes=3, options=self.options, name="strided")
    x = layer.tap(nn.relu(layer(x)))
    layer = bnn.Conv(4, (3, 3), feature_group_count=2, dfa_classes=3, options=self.options,
                     name="grouped")
    x = layer.tap(nn.relu(layer(x)))
    return bnn.Dense(3, options=self.options, name="classifier")(x.reshape((x.shape[0], -1)))


@functools.lru_cache
def conv_setup():
  model = StridedGroupedNet()
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 2))
  variables = model.init(jax.random.key(1), x)
  return model, variables, {"image": x, "label": jnp.arange(4) % 3}


_conv_signal = jax.jit(biojax.learning_signal, static_argnums=0)


@pytest.mark.parametrize("rule", RULES)
def test_finite_updates_on_strided_and_grouped_convolutions(rule):
  model, variables, batch_ = conv_setup()
  assignment = bnn.make_assignment(variables, _specs(rule, variables))
  updates, _, _ = _conv_signal(model, variables, batch_, assignment, jax.random.key(2))
  chex.assert_trees_all_equal_shapes(updates, variables["params"])
  chex.assert_tree_all_finite(updates)
  assert float(jnp.abs(updates["strided"]["kernel"]).sum()) > 0  # the first layer learns


def accuracy(model, state):
  logits = model.apply(state.variables(), jnp.asarray(X))
  return float(np.mean(np.argmax(logits, -1) == Y))


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_learns_a_small_problem(rule):
  """Hidden layers learn by ``rule``; the classifier by the same rule unless the rule is
  local (then by the delta rule, bp at the output). Chance is 0.25."""
  model, state, step = training_setup()
  state = state.replace(assignment=bnn.make_assignment(state.variables(),
                                                       _specs(rule, state.variables())))
  start = accuracy(model, state)
  losses = []
  for i in range(150):
    state, metrics = step(state, batch(i), jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all()
  assert accuracy(model, state) > max(0.6, start + 0.2), (rule, start, accuracy(model, state))
