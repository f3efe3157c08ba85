import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import nn as bnn


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def blobs(n: int = 512, dim: int = 16, classes: int = 4, seed: int = 0):
  """A small separable problem: Gaussian blobs around random class means."""
  r = np.random.default_rng(seed)
  means = r.normal(0, 1.5, (classes, dim))
  labels = r.integers(0, classes, n)
  x = means[labels] + r.normal(0, 1.0, (n, dim))
  return x.astype(np.float32), labels.astype(np.int32)


MLP_DIMS = (12, 9, 7, 5)  # input, hidden, hidden, classes: distinct shapes per layer


@functools.lru_cache
def mlp_setup():
  """A 12-9-7-5 ReLU MLP, its variables (non-zero biases, so ReLU masks are not trivial) and
  a batch of 6: shared by the NumPy-reference tests of tests/test_learning.py and
  tests/rules/test_contract.py."""
  model = bnn.MLP(num_classes=MLP_DIMS[-1], hidden=MLP_DIMS[1:-1])
  r = np.random.default_rng(1)
  x = r.normal(size=(6, MLP_DIMS[0])).astype(np.float32)
  y = r.integers(0, MLP_DIMS[-1], 6).astype(np.int32)
  variables = flax.core.unfreeze(model.init(jax.random.key(0), x))
  for layer in variables["params"].values():
    layer["bias"] = jnp.asarray(r.normal(size=layer["bias"].shape) * 0.1, jnp.float32)
  return model, variables, {"image": x, "label": y}
