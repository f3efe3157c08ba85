"""The linear probe against an independent solver (SciPy's L-BFGS-B on a NumPy objective)."""

import numpy as np
import pytest
from scipy import optimize

from biojax import eval as bev


def numpy_objective(flat, z, y, classes, l2):
  """The probe's objective and gradient, written out in NumPy from the definition."""
  d = z.shape[1]
  w, b = flat[:d * classes].reshape(d, classes), flat[d * classes:]
  logits = z @ w + b
  logits -= logits.max(axis=1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(axis=1, keepdims=True)
  n = len(y)
  loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * l2 * np.sum(w ** 2)
  p[np.arange(n), y] -= 1.0
  grad_w = z.T @ p / n + l2 * w
  grad_b = p.mean(axis=0)
  return loss, np.concatenate([grad_w.ravel(), grad_b])


def blobs(n, seed, d=6, classes=3, spread=1.5):
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(classes, d)) * 1.2
  y = rng.integers(0, classes, n)
  return centres[y] + spread * rng.normal(size=(n, d)), y


def test_probe_matches_scipy_on_the_same_objective():
  x, y = blobs(300, 0)
  x_test, y_test = blobs(200, 1)
  l2 = 1e-2
  out = bev.linear_probe(x, y, x_test, y_test, l2=l2)
  # The reference: standardise by hand, minimise the NumPy objective with SciPy.
  mean, std = x.mean(axis=0), x.std(axis=0)
  z = (x - mean) / std
  d, classes = x.shape[1], 3
  ref = optimize.minimize(numpy_objective, np.zeros(d * classes + classes),
                          args=(z, y, classes, l2), jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 5000})
  w_ref, b_ref = ref.x[:d * classes].reshape(d, classes), ref.x[d * classes:]
  np.testing.assert_allclose(out["mean"], mean, rtol=1e-5)
  np.testing.assert_allclose(out["std"], std, rtol=1e-5)
  assert out["loss"] == pytest.approx(ref.fun, abs=1e-5)
  # The optimum is unique (l2 > 0) up to a shift of the bias shared by all classes.
  np.testing.assert_allclose(out["weights"], w_ref, atol=2e-3)
  np.testing.assert_allclose(out["bias"] - out["bias"].mean(), b_ref - b_ref.mean(), atol=2e-3)
  z_test = (x_test - mean) / std
  expected = np.mean(np.argmax(z_test @ w_ref + b_ref, axis=1) == y_test)
  assert out["test_accuracy"] == pytest.approx(expected, abs=1 / len(y_test))
  assert out["gradient_norm"] < 1e-4


def test_separable_features_are_read_perfectly_and_constant_ones_ignored():
  # One feature carries the class (0 -> -1, 1 -> +1), one is constant, one is noise.
  rng = np.random.default_rng(3)
  y = rng.integers(0, 2, 400)
  x = np.stack([2.0 * y - 1.0, np.full(400, 7.0), rng.normal(size=400)], axis=1)
  out = bev.linear_probe(x[:300], y[:300], x[300:], y[300:], l2=1e-3)
  assert out["train_accuracy"] == 1.0 and out["test_accuracy"] == 1.0
  assert out["std"][1] == 1.0 and out["mean"][1] == 7.0
  # A constant feature is zero after centring, so only the penalty acts on its weights.
  np.testing.assert_allclose(out["weights"][1], 0.0, atol=1e-6)
  assert abs(out["weights"][0, 1] - out["weights"][0, 0]) > 1.0


def test_probe_errors_name_the_problem():
  x, y = blobs(20, 0)
  with pytest.raises(ValueError, match="one per example"):
    bev.linear_probe(x, y[:10], x, y)
  with pytest.raises(ValueError, match="differ in width"):
    bev.linear_probe(x, y, x[:, :3], y)
  with pytest.raises(ValueError, match="l2 must be > 0"):
    bev.linear_probe(x, y, x, y, l2=0.0)
  with pytest.raises(ValueError, match="Flatten"):
    bev.linear_probe(x.reshape(20, 2, 3), y, x, y)
  with pytest.raises(ValueError, match="NaN"):
    bev.linear_probe(np.full_like(x, np.nan), y, x, y)
