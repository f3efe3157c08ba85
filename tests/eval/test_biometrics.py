"""Biological metrics against hand-computed values on small arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import eval as bev
from biojax import nn as bnn
from biojax import rules


def normal_cdf(x, mu, sigma):
  return 0.5 * (1.0 + math.erf((x - mu) / (sigma * math.sqrt(2.0))))


def ks_by_hand(data):
  """sup |F_n - Phi| for the normal of the data's mean and ddof=0 std, from the definition."""
  data = sorted(data)
  n = len(data)
  mu = sum(data) / n
  sigma = math.sqrt(sum((d - mu) ** 2 for d in data) / n)
  gaps = []
  for i, d in enumerate(data):
    f = normal_cdf(d, mu, sigma)
    gaps += [(i + 1) / n - f, f - i / n]
  return max(gaps)


def test_synapse_sparsity_by_hand():
  params = {"dense_0": {"kernel": np.array([[0.0, 0.005], [1.0, -0.5]]), "bias": np.zeros(2)},
            "classifier": {"kernel": np.array([[0.0, 0.0, 2.0], [0.019, 0.021, -1.0]])}}
  out = bev.synapse_sparsity(params)
  # dense_0: one exact zero of 4; |w| < 0.01 * 1: 0 and 0.005.
  assert out["dense_0"] == {"zero_fraction": 0.25, "small_fraction": 0.5, "count": 4}
  # classifier: max 2 -> threshold 0.02: 0, 0, 0.019 are small; 0.021 is not.
  assert out["classifier"] == {"zero_fraction": 2 / 6, "small_fraction": 3 / 6, "count": 6}
  assert out["overall"] == {"zero_fraction": 3 / 10, "small_fraction": 5 / 10, "count": 10}
  # The bias is not a synapse; a bare array is one layer.
  assert set(out) == {"dense_0", "classifier", "overall"}
  assert bev.synapse_sparsity(np.zeros((2, 2)))[""]["small_fraction"] == 1.0


def test_treves_rolls_on_a_two_by_three_example():
  # rows: inputs, columns: units. Hand values:
  # population, input 0: (2/3)^2 / (4/3) = 1/3; input 1: (2/3)^2 / (2/3) = 2/3 -> mean 1/2.
  # lifetime, unit 0: 1.5^2 / 2.5 = 0.9; unit 1: 0.5^2 / 0.5 = 0.5; unit 2 never fires.
  r = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
  out = bev.activity_sparsity(r)
  np.testing.assert_allclose(out["population_treves_rolls"], 0.5)
  np.testing.assert_allclose(out["lifetime_treves_rolls"], 0.7)
  np.testing.assert_allclose(out["population_sparseness"], (1 - 0.5) / (1 - 1 / 3))
  np.testing.assert_allclose(out["lifetime_sparseness"], (1 - 0.7) / (1 - 1 / 2))
  np.testing.assert_allclose(out["active_fraction"], 0.5)
  np.testing.assert_allclose(out["dead_unit_fraction"], 1 / 3)
  assert out["silent_input_fraction"] == 0.0


def test_treves_rolls_extremes_and_conventions():
  one_hot = np.eye(4)  # every input drives exactly one unit: as sparse as possible
  out = bev.activity_sparsity(one_hot)
  np.testing.assert_allclose(out["population_treves_rolls"], 1 / 4)
  np.testing.assert_allclose(out["population_sparseness"], 1.0)
  dense = np.ones((3, 5))  # everything equal: not sparse at all
  out = bev.activity_sparsity(dense)
  np.testing.assert_allclose(out["population_treves_rolls"], 1.0)
  np.testing.assert_allclose(out["lifetime_sparseness"], 0.0)
  np.testing.assert_allclose(out["active_fraction"], 1.0)
  silent = np.array([[0.0, 0.0], [1.0, 3.0]])  # input 0 drives nothing: left out of the mean
  out = bev.activity_sparsity(silent)
  np.testing.assert_allclose(out["population_treves_rolls"], 2.0**2 / 5.0)
  assert out["silent_input_fraction"] == 0.5
  with pytest.raises(ValueError, match="non-negative"):
    bev.activity_sparsity(-np.ones((2, 2)))


def test_lognormal_fit_matches_a_hand_ks_computation():
  signs = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
  logs = np.array([-1.0, 0.0, 1.0, 0.5, -2.0])
  w = signs * np.exp(logs)
  out = bev.lognormal_fit({"layer": {"kernel": np.append(w, 0.0).reshape(2, 3)}})["layer"]
  assert out["count"] == 5  # the zero is left out
  np.testing.assert_allclose(out["ks_lognormal"], ks_by_hand(logs), rtol=1e-12)
  np.testing.assert_allclose(out["ks_normal"], ks_by_hand(w), rtol=1e-12)
  np.testing.assert_allclose(out["log_mean"], logs.mean())
  np.testing.assert_allclose(out["log_std"], logs.std())
  # Three points (-1, 0, 1): sigma = sqrt(2/3), and the largest gap is at x = 1 (and, by
  # symmetry, x = -1): D = Phi(sqrt(3/2)) - 2/3 = 0.2230.
  three = bev.lognormal_fit(np.exp(np.array([[-1.0, 0.0, 1.0]])))[""]["ks_lognormal"]
  np.testing.assert_allclose(three, normal_cdf(math.sqrt(1.5), 0.0, 1.0) - 2 / 3, rtol=1e-12)


def test_lognormal_fit_tells_lognormal_from_normal_weights(rng):
  lognormal = rng.choice([-1.0, 1.0], (200, 100)) * rng.lognormal(-3.0, 1.0, (200, 100))
  normal = rng.normal(0.0, 0.1, (200, 100))
  fit = bev.lognormal_fit({"a": {"kernel": lognormal}, "b": {"kernel": normal}})
  assert fit["a"]["ks_lognormal"] < 0.02 < 0.1 < fit["a"]["ks_normal"]
  assert fit["b"]["ks_normal"] < 0.02 < 0.05 < fit["b"]["ks_lognormal"]
  np.testing.assert_allclose(fit["overall"]["ks_lognormal"],
                             (fit["a"]["ks_lognormal"] + fit["b"]["ks_lognormal"]) / 2)


def test_dale_adherence_on_a_hand_built_matrix():
  # Dense (in=5, out=4): presynaptic units are rows.
  w = np.array([[1.0, 2.0, 0.0, 3.0],  # excitatory
                [-1.0, 0.0, -2.0, -1.0],  # inhibitory
                [1.0, -1.0, 0.0, 0.0],  # mixed
                [0.0, 0.0, 0.0, 0.0],  # silent: excluded
                [2.0, 2.0, 2.0, -0.001]])  # mixed, unless tiny weights are ignored
  out = bev.dale_adherence({"dense_0": {"kernel": w}})["dense_0"]
  assert out["adherence"] == 2 / 4
  assert out["excitatory_fraction"] == 1 / 4 and out["inhibitory_fraction"] == 1 / 4
  assert out["units"] == 5 and out["silent_units"] == 1
  out = bev.dale_adherence({"d": {"kernel": w}}, relative_threshold=0.01)["d"]
  assert out["adherence"] == 3 / 4
  # The transpose mixes signs along every row: a test that the presynaptic axis is rows.
  assert bev.dale_adherence(w.T)[""]["adherence"] == 0.0


def test_dale_adherence_of_a_convolution_uses_input_channels():
  kernel = np.zeros((3, 3, 2, 4))  # HWIO
  kernel[..., 0, :] = np.abs(np.random.default_rng(1).normal(size=(3, 3, 4)))  # excitatory
  kernel[..., 1, :] = -1.0  # inhibitory
  kernel[0, 0, 1, 3] = 0.5  # one excitatory synapse makes input channel 1 mixed
  out = bev.dale_adherence({"conv": {"kernel": kernel}, "dense": {"kernel": -np.ones((2, 3))}})
  assert out["conv"]["adherence"] == 0.5 and out["conv"]["units"] == 2
  assert out["dense"]["adherence"] == 1.0
  assert out["overall"]["adherence"] == 3 / 4


def test_hidden_activations_are_the_relu_outputs():
  model = bnn.MLP(num_classes=3, hidden=(5, 4), options=rules.RuleOptions(rules=("bp", "fa")))
  x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  variables = model.init(jax.random.key(0), jnp.asarray(x[:1]))
  p = variables["params"]
  h0 = np.maximum(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"], 0)
  h1 = np.maximum(h0 @ p["dense_1"]["kernel"] + p["dense_1"]["bias"], 0)
  # With an assignment collection in the variables it is still the plain forward pass.
  assigned = {**variables,
              "assignment": bnn.make_assignment(variables, "fa").as_collection()}
  acts = bev.hidden_activations(model, assigned, x, batch_size=3)  # 3 batches, last padded
  assert list(acts) == ["dense_0", "dense_1"]
  np.testing.assert_allclose(acts["dense_0"], h0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(acts["dense_1"], h1, rtol=1e-5, atol=1e-6)


def test_plots_write_png_files(tmp_path):
  rng = np.random.default_rng(0)
  dense = rng.normal(size=(64, 10))
  path = bev.plot_receptive_fields(dense, str(tmp_path / "rf.png"), order="norm")
  conv = rng.normal(size=(3, 3, 3, 6))
  conv_path = bev.plot_receptive_fields(conv, str(tmp_path / "sub" / "conv.png"))
  hist = bev.plot_weight_histograms({"a": {"kernel": dense}}, str(tmp_path / "hist.png"))
  for p in (path, conv_path, hist):
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="image_shape"):
    bev.plot_receptive_fields(rng.normal(size=(10, 3)), str(tmp_path / "x.png"))
  model = bnn.MLP(num_classes=3, hidden=(4,), options=rules.RuleOptions(rules=("bp",)))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))
  assert bev.first_layer_kernel(variables).shape == (4, 4)
