"""The sparse rule (competition, homeostasis, elimination, multiplicative steps) against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import biojax
from biojax import nn as bnn
from biojax import rules


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _sparse_numpy(x, w, theta, tau=1.0, competition=True):
  """Per-example loop over the equations of docs/sparse_rule.md (covariance form)."""
  u = x @ w
  if competition:
    y = np.stack([_softmax((ub - theta) / tau) for ub in u])
  else:
    y = (u - theta > 0).astype(float)
  y = y - y.mean(0)
  delta = np.zeros_like(w)
  for xb, ub, yb in zip(x, u, y, strict=True):
    for k in range(w.shape[1]):
      delta[:, k] += yb[k] * (xb - ub[k] * w[:, k])
  return y, delta / len(x)


@pytest.mark.parametrize("competition", [True, False])
def test_update_matches_numpy(rng, competition):
  x = rng.normal(size=(9, 6))
  w = rng.normal(size=(6, 4)) * 0.5
  theta = rng.normal(size=(4,))
  y_np, delta_np = _sparse_numpy(x, w, theta, tau=0.7, competition=competition)
  u = jnp.asarray(x @ w, jnp.float32)
  y = rules.sparse_postsynaptic(u, jnp.asarray(theta, jnp.float32), 0.7, competition)
  np.testing.assert_allclose(y, y_np, rtol=1e-5, atol=1e-6)
  hebbian = jnp.asarray(x, jnp.float32).T @ y
  got = rules.sparse_update(hebbian, jnp.asarray(w, jnp.float32), u, y)
  np.testing.assert_allclose(got, -delta_np, rtol=1e-4, atol=1e-5)


def test_homeostasis_moves_thresholds_towards_target_rate(rng):
  # A unit that fires too often raises its threshold; one that fires too rarely lowers it.
  theta = np.zeros(3)
  rate = np.array([0.5, 0.05, 0.0])
  got = rules.homeostatic_threshold(theta, rate, 0.05, 0.1)
  np.testing.assert_allclose(got, 0.1 * (rate - 0.05), atol=1e-7)
  # Iterated on a fixed input distribution, every unit's rate converges to the target.
  u = rng.normal(size=(4000, 3)) * np.array([1.0, 5.0, 0.2]) + np.array([0.0, 3.0, -1.0])
  theta = jnp.zeros(3)
  for _ in range(3000):
    rate = rules.firing_rate(jnp.asarray(u, jnp.float32) - theta)
    theta = rules.homeostatic_threshold(theta, rate, 0.1, 0.05)
  np.testing.assert_allclose(rules.firing_rate(jnp.asarray(u, jnp.float32) - theta), 0.1,
                             atol=0.01)


def test_elimination_by_numpy():
  w = np.array([[1.0, -0.2], [0.005, -0.001], [-0.5, 0.0005], [0.02, 0.3]])
  # Per postsynaptic unit (column): zero where |w| < 0.01 * max |w| of that column.
  expected = np.array([[1.0, -0.2], [0.0, 0.0], [-0.5, 0.0], [0.02, 0.3]])
  got = rules.eliminate_weak_synapses(jnp.asarray(w, jnp.float32), 0.01)
  np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_signs_survive_large_multiplicative_updates_without_clipping(rng):
  """The mechanism that makes Dale's law emerge: one unit with outgoing weights of BOTH signs.

  Large random pseudo-gradients of the sparse rule, applied by the eg geometry, never flip
  a sign: nothing in the path clips or projects, the step is w exp(sign(w) s). The mixed
  unit stays mixed (no sign projection), and the single-sign units keep their sign.
  """
  w = np.array([[0.3, -0.7, 0.2, -0.05],   # presynaptic unit 0: both signs (not Dale)
                [0.1, 0.4, 0.9, 0.02],     # unit 1: excitatory
                [-0.6, -0.1, -0.3, -0.8]])  # unit 2: inhibitory
  tx = biojax.make_optimizer("sgd", 2.0)
  params = {"w": jnp.asarray(w, jnp.float32)}
  state = tx.init(params)
  for i in range(200):
    r = np.random.default_rng(i)
    x = jnp.asarray(r.normal(size=(16, 3)) * 3, jnp.float32)
    u = x @ params["w"]
    y = rules.sparse_postsynaptic(u, jnp.zeros(4), 0.5)
    g = rules.sparse_update(x.T @ y, params["w"], u, y)
    updates, state = tx.update({"w": g}, state, params, geometry={"w": jnp.int32(1)})
    params = optax.apply_updates(params, updates)
  out = np.asarray(params["w"])
  assert np.all((np.sign(out) == np.sign(w)) | (out == 0))
  assert not np.allclose(out, w)  # the updates were large, not absent
  # Additive steps with the same signals do flip signs: the sign is kept by the geometry.
  flipped = w - 2.0 * np.asarray(rules.sparse_update(
      x.T @ y, jnp.asarray(w, jnp.float32), x @ jnp.asarray(w, jnp.float32),
      rules.sparse_postsynaptic(x @ jnp.asarray(w, jnp.float32), jnp.zeros(4), 0.5)))
  assert np.any(np.sign(flipped) != np.sign(w))


def test_eliminated_synapse_stays_zero_under_multiplicative_steps():
  w = jnp.asarray([[0.0, 0.5], [0.3, -0.2]])
  step = rules.multiplicative_step(w, jnp.full_like(w, 3.0))
  assert step[0, 0] == 0.0 and np.all(np.asarray(step)[w != 0] != 0)


@pytest.fixture(scope="module")
def trained():
  """A small MLP trained by the sparse rule (hidden) and the delta rule (classifier)."""
  from conftest import blobs
  x, labels = blobs()
  options = rules.RuleOptions(
      rules=("bp", "sparse"), sparse=rules.SparseOptions(
          target_rate=0.1, homeostasis_rate=0.05, temperature=0.3, elimination_threshold=0.05))
  model = bnn.MLP(num_classes=4, hidden=(64,), weight_init="dale", center_hidden=True,
                  options=options)
  tx = biojax.make_optimizer("adam", 3e-2)
  state = biojax.create_train_state(model, tx, jax.random.key(0), jnp.asarray(x[:2]),
                                    ["sparse+eg", "bp+eg"])
  w0 = np.asarray(state.params["dense_0"]["kernel"])
  step = jax.jit(biojax.make_train_step(model, tx))
  rates = []
  for i in range(300):
    idx = np.random.default_rng(i).choice(len(x), 64, replace=False)
    state, _ = step(state, {"image": jnp.asarray(x[idx]), "label": jnp.asarray(labels[idx])},
                    jax.random.key(i))
  h = model.apply(state.variables(), jnp.asarray(x), capture_intermediates=True,
                  mutable=["intermediates"])[1]["intermediates"]["dense_0"]["__call__"][0]
  rates = np.asarray(h > 0).mean()
  return w0, state, rates


def test_training_keeps_dale_eliminates_and_adapts_thresholds(trained):
  w0, state, active = trained
  w = np.asarray(state.params["dense_0"]["kernel"])
  # Every presynaptic unit's surviving outgoing weights keep the unit's initial sign.
  assert np.all((np.sign(w) == np.sign(w0)) | (w == 0))
  rows_single_sign = [np.all(r[r != 0] > 0) or np.all(r[r != 0] < 0) for r in w]
  assert np.mean(rows_single_sign) == 1.0
  assert np.mean(w == 0) > 0.05  # weak synapses were eliminated by the dynamics
  theta = np.asarray(state.feedback["dense_0"]["threshold"])
  assert np.all(theta != 0)  # homeostasis moved every threshold
  assert active < 0.2, active  # towards the 10% target (exactly 10% per unit at its fixed point)
  # The classifier's rule state holds no thresholds of its own: it is not a sparse layer.
  np.testing.assert_array_equal(state.feedback["classifier"]["threshold"], 0.0)


def test_dale_and_mixed_initialisations():
  key = jax.random.key(0)
  w = np.asarray(bnn.signed_uniform(0.2)(key, (500, 300)))
  signs = np.sign(w)
  single = np.all(signs == signs[:, :1], axis=1)
  assert single.all() and np.sum(signs[:, 0] < 0) == 100  # exactly 20% inhibitory units
  # Balanced: the expected input of a unit is zero; magnitudes are uniform, not lognormal.
  assert abs(w.sum(0).mean()) < 0.1 * np.abs(w).sum(0).mean()
  excitatory = w[w > 0]
  np.testing.assert_allclose(excitatory.max(), np.sqrt(3 / 500), rtol=1e-3)
  mixed = np.asarray(bnn.signed_uniform(0.2, per_synapse=True)(key, (500, 300)))
  assert np.mean(np.all(np.sign(mixed) == np.sign(mixed[:, :1]), axis=1)) < 0.01
  np.testing.assert_allclose(np.mean(mixed < 0), 0.2, atol=0.01)
