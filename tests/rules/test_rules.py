"""Rule functions on plain arrays, against NumPy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from biojax import rules


def test_unknown_rule_lists_valid_names():
  with pytest.raises(ValueError) as info:
    rules.rule_id("feedback_alignment")
  message = str(info.value)
  assert "feedback_alignment" in message
  for name in ("bp", "fa", "usf", "brsf", "frsf", "kp", "dfa", "softhebb"):
    assert name in message


def test_registry_ids_and_specs():
  names = rules.rule_names()
  assert names[:8] == ("bp", "fa", "usf", "brsf", "frsf", "kp", "dfa", "softhebb")
  assert [rules.rule_id(n) for n in names] == list(range(len(names)))
  assert rules.parse_rule_spec("usf+eg") == (rules.rule_id("usf"), 1)
  assert rules.parse_rule_spec("eg") == (rules.rule_id("bp"), 1)
  assert rules.format_rule_spec(*rules.parse_rule_spec("kp+eg")) == "kp+eg"
  with pytest.raises(ValueError, match="additive, eg"):
    rules.parse_rule_spec("fa+lognormal")
  with pytest.raises(ValueError, match="already registered"):
    rules.register(rules.get_rule("fa"))


def test_fans_match_glorot_convention():
  # Dense (in, out); conv (kh, kw, in, out): both fans include the window (Glorot 2010).
  assert rules.fans((784, 256)) == (784, 256)
  assert rules.fans((3, 5, 8, 16)) == (3 * 5 * 8, 3 * 5 * 16)
  np.testing.assert_allclose(rules.glorot_std((3, 3, 4, 6)), np.sqrt(2 / (36 + 54)))


@pytest.fixture
def weight(rng):
  return jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)


def test_feedback_matrices(weight):
  key = jax.random.key(3)
  state = rules.init_feedback_state(jax.random.key(1), weight.shape)
  w = np.asarray(weight)
  std = np.sqrt(2 / (6 + 5))
  np.testing.assert_array_equal(rules.bp_feedback(weight, state, key), w)
  np.testing.assert_array_equal(rules.fa_feedback(weight, state, key), state["fixed"])
  np.testing.assert_allclose(rules.usf_feedback(weight, state, key), np.sign(w) * std, rtol=1e-6)
  np.testing.assert_allclose(rules.frsf_feedback(weight, state, key),
                             np.abs(np.asarray(state["fixed"])) * np.sign(w), rtol=1e-6)
  np.testing.assert_array_equal(rules.kp_feedback(weight, state, key), state["learned"])
  b1 = np.asarray(rules.brsf_feedback(weight, state, key))
  b2 = np.asarray(rules.brsf_feedback(weight, state, jax.random.key(4)))
  # Sign-concordant with W, magnitudes redrawn with a new key.
  np.testing.assert_array_equal(np.sign(b1), np.sign(w))
  assert not np.allclose(np.abs(b1), np.abs(b2))


def test_random_feedback_scale():
  r = np.asarray(rules.random_feedback(jax.random.key(0), (400, 600)))
  np.testing.assert_allclose(r.std(), np.sqrt(2 / 1000), rtol=0.02)


def test_kp_update_contracts_difference(rng):
  w0, b0 = rng.normal(size=(2, 4, 3))
  w1 = w0 + rng.normal(size=(4, 3)) * 0.1
  lam = 0.1
  b1 = np.asarray(rules.kp_feedback_update(b0, w0, w1, lam))
  np.testing.assert_allclose(b1 - w1, (1 - lam) * (b0 - w0), rtol=1e-6, atol=1e-12)
  # Akrout et al. form when W's own step is -eta*g - lam*W:
  g = rng.normal(size=(4, 3))
  eta = 0.5
  w1 = w0 - eta * g - lam * w0
  np.testing.assert_allclose(rules.kp_feedback_update(b0, w0, w1, lam), b0 - eta * g - lam * b0,
                             rtol=1e-6)


def test_exponentiated_update_formula_and_signs(rng):
  w = rng.normal(size=(5, 7)).astype(np.float32)
  g = rng.normal(size=(5, 7)).astype(np.float32)
  lr = 0.3
  expected = w * (np.exp(-lr * np.sign(w) * g) - 1)
  np.testing.assert_allclose(rules.exponentiated_update(w, g, lr), expected, rtol=1e-5, atol=1e-7)
  # As an optax optimizer, many large steps never flip a sign.
  tx = rules.exponentiated_gradient(lr)
  params = {"w": jnp.asarray(w)}
  state = tx.init(params)
  for i in range(50):
    grads = {"w": jnp.asarray(np.random.default_rng(i).normal(size=w.shape) * 5, jnp.float32)}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert np.all(np.sign(np.asarray(params["w"])) == np.sign(w))


def test_multiplicative_geometry_is_data(rng):
  w = {"a": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
       "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}
  u = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), w)
  tx = rules.multiplicative()
  out, _ = jax.jit(tx.update)(u, tx.init(w), w, geometry={"a": jnp.int32(1), "b": jnp.int32(0)})
  np.testing.assert_allclose(out["a"], np.asarray(w["a"]) * np.expm1(0.1 * np.sign(w["a"])),
                             rtol=1e-6)
  np.testing.assert_allclose(out["b"], 0.1, rtol=1e-6)


def _softhebb_numpy(x, w, tau=1.0, anti=True):
  """Per-example loop over the published SoftHebb rule (Journe et al. 2023)."""
  n = x.shape[0]
  total = np.zeros_like(w)
  for xb in x:
    u = xb @ w  # (out,)
    y = np.exp(u / tau - np.max(u / tau))
    y /= y.sum()
    if anti:
      winner = np.argmax(u)
      y = np.where(np.arange(len(u)) == winner, y, -y)
    for k in range(w.shape[1]):
      total[:, k] += y[k] * (xb - u[k] * w[:, k])
  return total / n


@pytest.mark.parametrize("anti", [True, False])
def test_softhebb_delta_matches_published_formula(rng, anti):
  x = rng.normal(size=(7, 5))
  w = rng.normal(size=(5, 4)) * 0.5
  got = rules.softhebb_delta(rules.dense_forward, jnp.asarray(x), jnp.asarray(w),
                             anti_hebbian=anti)
  np.testing.assert_allclose(got, _softhebb_numpy(x, w, anti=anti), rtol=1e-4, atol=1e-6)


def test_softhebb_update_adaptive_rate(rng):
  x = rng.normal(size=(7, 5))
  w = rng.normal(size=(5, 4)) * 0.5
  delta = _softhebb_numpy(x, w)
  rate = np.sqrt(np.abs(np.linalg.norm(w, axis=0) - 1) + 1e-10)
  got = rules.softhebb_update(rules.dense_forward, jnp.asarray(x), jnp.asarray(w),
                              normalize=False)
  np.testing.assert_allclose(got, -rate * delta, rtol=1e-4, atol=1e-6)
  got = rules.softhebb_update(rules.dense_forward, jnp.asarray(x), jnp.asarray(w))
  np.testing.assert_allclose(got, -rate * delta / np.abs(delta).max(), rtol=1e-4, atol=1e-6)


def test_direct_feedback_projection(rng):
  e = rng.normal(size=(3, 4))
  b = rng.normal(size=(4, 2, 5))
  expected = np.einsum("bk,khw->bhw", e, b)
  chex.assert_trees_all_close(rules.direct_feedback(jnp.asarray(e), jnp.asarray(b)), expected,
                              rtol=1e-5)
