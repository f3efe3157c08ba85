"""The paper-scale BioNAS-DARTS config (experiments/bionas_darts_cifar10.py): its settings,
a dry run shrunk on TFDS mock CIFAR-10, and the full-size supernet counted (against a
parameter count derived by hand from the DARTS operations) and its search step lowered.

Lowering to StableHLO traces every layer, rule and shape of the full supernet without
compiling it (a full XLA compilation takes far too long on a CPU: docs/bionas.md)."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from biojax.nas import bionas
from biojax.nas.darts import supernet as sn

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow  # the full-size step traced and lowered: about 3 min on a CPU
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config():
  spec = importlib.util.spec_from_file_location(
      "experiments_bionas_darts_cifar10",
      os.path.join(REPO, "experiments", "bionas_darts_cifar10.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_settings_of_the_paper():
  c = load_config()
  assert (c.dataset, c.validation_size, c.augment) == ("cifar10", 25_000, True)
  assert c.supernet.operations == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                   "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                                   "dil_conv_5x5")
  assert c.supernet.rules == ("fa", "usf", "brsf", "frsf")
  assert (c.supernet.C, c.supernet.layers) == (16, 8)
  s = c.search
  assert (s.epochs, s.batch_size, s.order, s.steps_per_epoch) == (50, 64, 1, 391)
  assert dict(s.weights) == {"optimizer": "sgd", "learning_rate": 0.025,
                             "min_learning_rate": 0.001, "momentum": 0.9,
                             "weight_decay": 3e-4, "clip_norm": 5.0}
  assert dict(s.alpha) == {"learning_rate": 3e-4, "b1": 0.5, "b2": 0.999,
                           "weight_decay": 1e-3, "init_scale": 1e-3}
  r = c.retrain
  assert (r.C, r.layers, r.steps, r.batch_size, r.learning_rate, r.momentum, r.weight_decay,
          r.clip_norm) == (36, 20, 600 * 521, 96, 0.025, 0.9, 3e-4, 5.0)
  bionas.check_config(c)


def test_dry_run_on_mock_cifar10(tmp_path):
  config = load_config()
  config.data_dir = str(tmp_path / "tfds")
  config.validation_size = 16
  config.supernet.update(operations=("none", "skip_connect", "sep_conv_3x3"),
                         rules=("fa", "usf"), C=2, layers=3)
  config.search.update(epochs=1, steps_per_epoch=1, batch_size=8, validation_examples=16,
                       eval_batch_size=16)
  config.retrain.update(steps=0, batch_size=8, C=2, layers=3)
  with tfds.testing.mock_data(num_examples=48):
    report = bionas.search(config, str(tmp_path / "run"))
  assert report["method"] == "darts" and report["steps"] == 1
  assert report["candidates"] == ["none", "skip_connect", "sep_conv_3x3:fa", "sep_conv_3x3:usf"]
  assert report["config"]["dataset"] == "cifar10"
  assert os.path.exists(tmp_path / "run" / "alpha.png")


def _sep(k, c):  # (ReLU, depthwise kxk, 1x1, BN) twice
  return 2 * (k * k * c + c * c + 2 * c)


def _dil(k, c):  # ReLU, depthwise kxk dilated, 1x1, BN
  return k * k * c + c * c + 2 * c


def _factorized_reduce(c_in, c):  # two 1x1 convs to c/2 each, BN over c
  return 2 * c_in * (c // 2) + 2 * c


def _relu_conv_bn(c_in, c):
  return c_in * c + 2 * c


def hand_count(C, layers, num_rules, in_channels=3, classes=10):
  """The supernet's parameters from the DARTS operations' shapes (no biases in the
  convolutions; BN scale and offset), the paper's 8 operations with ``num_rules`` copies of
  each convolution, one parameter-free skip_connect (a FactorizedReduce on stride 2)."""
  convs = lambda c: _sep(3, c) + _sep(5, c) + _dil(3, c) + _dil(5, c)  # noqa: E731
  stem = 3 * C
  total = 9 * in_channels * stem + 2 * stem
  c_pp, c_p, c, reduction_prev = stem, stem, C, False
  for i in range(layers):
    reduction = i in (layers // 3, 2 * layers // 3)
    if reduction:
      c *= 2
    total += _factorized_reduce(c_pp, c) if reduction_prev else _relu_conv_bn(c_pp, c)
    total += _relu_conv_bn(c_p, c)
    for _, j in sn.EDGES:
      total += num_rules * convs(c)
      if reduction and j < 2:
        total += _factorized_reduce(c, c)
    c_pp, c_p, reduction_prev = c_p, 4 * c, reduction
  return total + c_p * classes + classes


def test_full_size_supernet_counted_and_its_step_lowered():
  config = load_config()
  model, alphabet, macro = bionas.build(config, 10)
  assert alphabet.size == 20
  sample = jnp.zeros((1, 32, 32, 3))
  variables = jax.eval_shape(lambda k: model.init(k, sample), jax.random.key(0))
  count = sum(x.size for x in jax.tree.leaves(variables["params"]))
  assert count == hand_count(16, 8, 4)
  assignment = sn.supernet_assignment(variables, alphabet, macro)
  step, _, weight_tx, alpha_tx = bionas.programs(model, bionas.program_settings(config))
  alpha = jax.eval_shape(lambda: bionas.init_alpha(jax.random.key(0), alphabet.size))
  state = jax.eval_shape(lambda v, a: bionas.initial_state(v, a, weight_tx, alpha_tx),
                         variables, alpha)
  batch = {"image": jax.ShapeDtypeStruct((64, 32, 32, 3), jnp.float32),
           "label": jax.ShapeDtypeStruct((64,), jnp.int32)}
  lowered = step.lower(state, assignment, batch, batch, jax.random.key(0))
  text = lowered.as_text()
  assert "stablehlo.convolution" in text
