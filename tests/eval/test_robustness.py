"""Attacks: hand formulas, true gradients whatever the rule, the eps ball, black-box and
transfer attacks on a small trained network."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import biojax
from biojax import eval as bev
from biojax import nn as bnn
from biojax import rules
from biojax.data import get_dataset

OPTIONS = rules.RuleOptions(rules=("bp", "fa"))  # small compiled programs


def linear(variables, x):
  """A linear classifier ``x W + b`` on flattened inputs (hashable: a module-level function)."""
  return x.reshape(x.shape[0], -1) @ variables["w"] + variables["b"]


MODEL = bnn.MLP(num_classes=10, hidden=(32,), options=OPTIONS)
QUERIES, STEPS = 200, 10  # shared by the tests, so each attack compiles once


TX = biojax.make_optimizer("adam", 3e-3)
INIT = jax.jit(MODEL.init)
TRAIN_STEP = jax.jit(biojax.make_train_step(MODEL, TX))


@functools.cache
def trained(seed=0):
  """MODEL trained by bp on the synthetic 8x8 data set (test accuracy about 1)."""
  data = get_dataset("synthetic", validation_size=1000)
  variables = INIT(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))
  state = biojax.train.train_state_from_variables(variables, TX,
                                                  bnn.make_assignment(variables, "bp"))
  batches = data.train_batches(64, seed)
  for i in range(120):
    state, _ = TRAIN_STEP(state, next(batches), jax.random.key(i))
  test = next(data.eval_batches("test", 200))
  return state.variables(), test["image"], test["label"], bev.InputRange.from_dataset(data)


def accuracy(apply_fn, variables, x, y):
  return float(np.mean(np.argmax(apply_fn(variables, jnp.asarray(x)), -1) == y))


def test_fgsm_on_a_linear_model_is_the_hand_formula():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(6, 2)).astype(np.float32)
  variables = {"w": jnp.asarray(w), "b": jnp.zeros(2)}
  x = rng.uniform(0.3, 0.7, size=(5, 6)).astype(np.float32)
  y = np.array([0, 1, 1, 0, 1], np.int32)
  # Two classes: d CE / dx = p_other (w_other - w_y), p_other > 0, so the sign is that of
  # w_other - w_y for every example.
  direction = np.sign(w[:, 1 - y].T - w[:, y].T)
  adversarial = bev.fgsm(linear, variables, x, y, 0.1)
  np.testing.assert_allclose(adversarial, x + 0.1 * direction, rtol=0, atol=1e-6)
  # A large epsilon is clipped to the valid range [0, 1].
  adversarial = bev.fgsm(linear, variables, x, y, 0.5)
  np.testing.assert_allclose(adversarial, np.clip(x + 0.5 * direction, 0, 1), atol=1e-6)
  # The margin loss gives the same direction for two classes.
  adversarial = bev.fgsm(linear, variables, x, y, 0.1, loss="margin")
  np.testing.assert_allclose(adversarial, x + 0.1 * direction, atol=1e-6)


def rule_forward(variables, x):
  """The forward pass WITH the assignment collection: jax.grad through it follows the rules'
  backward passes (what an attack must not do, except when every rule is bp)."""
  return MODEL.apply(variables, x, rngs={"feedback": jax.random.key(0)})


def test_attacks_use_true_gradients_whatever_the_assignment():
  variables, x, y, _ = trained()
  x, y = x[:64], y[:64]
  with_rule = {name: {**variables, "assignment": bnn.make_assignment(variables, name)
                      .as_collection()} for name in ("fa", "bp")}
  true = bev.TrueForward(MODEL)
  epsilon = 0.3
  on_fa = bev.fgsm(true, with_rule["fa"], x, y, epsilon)
  on_bp = bev.fgsm(rule_forward, with_rule["bp"], x, y, epsilon)  # bp's backward pass is exact
  np.testing.assert_array_equal(on_fa, on_bp)
  # The test can fail: through FA's backward pass (the error reaches the input through a
  # random B instead of W) the input gradient, hence the adversarial examples, differ.
  through_fa = bev.fgsm(rule_forward, with_rule["fa"], x, y, epsilon)
  assert np.mean(np.asarray(through_fa) != np.asarray(on_fa)) > 0.2
  # TrueForward takes a TrainState too (its variables; the assignment is set aside).
  state = biojax.train.train_state_from_variables(
      variables, biojax.make_optimizer("sgd", 0.1), bnn.make_assignment(variables, "fa"))
  np.testing.assert_array_equal(true(state, x), true(with_rule["fa"], x))


def test_pgd_stays_in_the_ball_and_the_valid_range():
  rng = np.random.default_rng(2)
  mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
  input_range = bev.InputRange.normalised(mean, std)
  pixels = rng.uniform(0, 1, size=(16, 4, 4, 3))
  pixels[:, 0] = 0.0  # inputs on the boundary of the valid range
  pixels[:, 1] = 1.0
  x = ((pixels - mean) / std).astype(np.float32)
  y = rng.integers(0, 3, 16).astype(np.int32)
  variables = {"w": jnp.asarray(rng.normal(size=(48, 3)), jnp.float32), "b": jnp.zeros(3)}
  epsilon = 0.1
  adversarial = np.asarray(bev.pgd(linear, variables, x, y, epsilon, jax.random.key(0),
                                   input_range, steps=10, restarts=2))
  back_to_pixels = adversarial * std + mean
  assert np.all(np.abs(back_to_pixels - pixels) <= epsilon + 1e-5)
  assert np.all(back_to_pixels >= -1e-5) and np.all(back_to_pixels <= 1 + 1e-5)
  assert np.any(np.abs(back_to_pixels - pixels) > 0.9 * epsilon)  # it does move
  np.testing.assert_array_equal(
      bev.pgd(linear, variables, x, y, 0.0, jax.random.key(0), input_range), x)


def test_square_attack_fools_a_trained_model_within_the_ball():
  variables, x, y, input_range = trained()
  forward = bev.TrueForward(MODEL)
  clean = accuracy(forward, variables, x, y)
  epsilon = 0.15
  adversarial = np.asarray(bev.square_attack(forward, variables, x, y, epsilon,
                                             jax.random.key(0), input_range, queries=QUERIES))
  attacked = accuracy(forward, variables, adversarial, y)
  assert clean > 0.95
  assert attacked < clean - 0.3, (clean, attacked)
  # Every pixel stays within epsilon and in [0, 1] (the range of the normalised data).
  pixels, std, mean = x * 0.329 + 0.4955, 0.329, 0.4955
  change = np.abs(adversarial * std + mean - pixels)
  assert np.all(change <= epsilon + 1e-5)
  assert np.all(adversarial >= input_range.lower - 1e-6)
  assert np.all(adversarial <= input_range.upper + 1e-6)
  # Same key, same examples.
  again = bev.square_attack(forward, variables, x, y, epsilon, jax.random.key(0), input_range,
                            queries=QUERIES)
  np.testing.assert_array_equal(again, adversarial)


def test_robustness_curves_and_transfer_from_a_surrogate(tmp_path):
  variables, x, y, input_range = trained()
  surrogate, _, _, _ = trained(seed=1)
  forward = bev.TrueForward(MODEL)
  attacks = bev.default_attacks(forward, surrogate, pgd_steps=STEPS, square_queries=QUERIES)
  epsilons = [0.0, 0.1, 0.2]
  x, y = x[:100], y[:100]  # two batches of 64, the second padded
  curves = bev.robustness_curves(forward, variables, x, y, epsilons, jax.random.key(0),
                                 input_range, attacks, batch_size=64)
  assert set(curves) == {"fgsm", "pgd", "square", "transfer"}
  clean = accuracy(forward, variables, x, y)
  for name, curve in curves.items():
    assert list(curve) == epsilons
    assert curve[0.0] == pytest.approx(clean), name
    assert curve[0.2] < clean - 0.2, (name, curve)
  # White-box PGD is at least as strong as its transferred version, and as FGSM here.
  assert curves["pgd"][0.1] <= curves["transfer"][0.1]
  assert curves["pgd"][0.1] <= curves["fgsm"][0.1]
  # The transferred examples are PGD on the surrogate.
  key = jax.random.key(7)
  chex.assert_trees_all_equal(
      attacks["transfer"](forward, variables, x[:64], y[:64], 0.1, key, input_range),
      bev.pgd(forward, surrogate, x[:64], y[:64], 0.1, key, input_range, steps=STEPS))
  path = bev.plot_robustness({"bp": curves, "other": curves}, str(tmp_path / "curves.png"))
  with open(path, "rb") as f:
    assert f.read(4) == b"\x89PNG"
