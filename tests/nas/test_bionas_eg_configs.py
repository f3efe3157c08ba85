"""The paper-scale BioNAS-EG config (experiments/bionas_eg_cifar10.py): its settings (EG-NAS's),
a dry run shrunk on TFDS mock CIFAR-10 that runs an EG step, and the full-size EG step (50
samples through the C=16, 8-cell supernet, in chunks) lowered to StableHLO."""

import os

import jax
import jax.numpy as jnp
import pytest

from biojax.nas import bionas, bionas_eg
from experiments import bionas_eg_cifar10

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.slow  # the full-size EG step traced and lowered


def test_settings_of_eg_nas():
  c = bionas_eg_cifar10.get_config()
  assert c.task == "bionas_eg" and (c.dataset, c.validation_size) == ("cifar10", 25_000)
  assert (c.supernet.C, c.supernet.layers, len(c.supernet.operations)) == (16, 8, 8)
  eg = c.search.eg
  assert (eg.population_size, eg.step_size, eg.similarity_weight, eg.warmup_epochs,
          eg.batch_size, c.search.epochs) == (50, 0.1, 0.4, 15, 128, 50)
  assert 50 % eg.chunk_size == 0
  bionas_eg.check_config(c)


def test_dry_run_on_mock_cifar10(tmp_path):
  config = bionas_eg_cifar10.get_config()
  config.data_dir = str(tmp_path / "tfds")
  config.validation_size = 16
  config.supernet.update(operations=("none", "skip_connect", "sep_conv_3x3"),
                         rules=("fa", "usf"), C=2, layers=3)
  config.search.update(epochs=1, steps_per_epoch=1, batch_size=8, validation_examples=16,
                       eval_batch_size=16)
  config.search.eg.update(population_size=4, generations=1, warmup_epochs=0, batch_size=8,
                          chunk_size=2)
  config.retrain.update(steps=0, batch_size=8, C=2, layers=3)
  with tfds.testing.mock_data(num_examples=48):
    report = bionas_eg.search(config, str(tmp_path / "run"))
  assert report["method"] == "eg" and report["steps"] == 1 and report["chunk_size"] == 2
  assert report["config"]["dataset"] == "cifar10"
  assert os.path.exists(tmp_path / "run" / "alpha.png")


def test_full_size_eg_step_lowered():
  config = bionas_eg_cifar10.get_config()
  model, alphabet, _ = bionas.build(config, 10)
  variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3))),
                             jax.random.key(0))
  p = bionas_eg.programs(model, bionas_eg.program_settings(config, alphabet.size))
  alpha = jax.eval_shape(lambda: bionas.init_alpha(jax.random.key(0), alphabet.size))
  state = jax.eval_shape(lambda v, a: bionas.initial_state(
      v, a, p["weight_tx"], alpha_opt_state=bionas_eg.init_es_state(
          p["es"], p["es_params"], a, jax.random.key(0))), variables, alpha)
  batch = {"image": jax.ShapeDtypeStruct((128, 32, 32, 3), jnp.float32),
           "label": jax.ShapeDtypeStruct((128,), jnp.int32)}
  text = p["eg_step"].lower(state, batch, jax.random.key(0), jnp.int32(15)).as_text()
  assert "stablehlo.convolution" in text
  # The CMA-ES runs over all 2 x 14 x 20 architecture weights.
  assert "tensor<560x560xf32>" in text
