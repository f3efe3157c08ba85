import numpy as np
import pytest


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
