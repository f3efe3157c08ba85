"""Shared test set-up.

Compilation, not computation, is what the suite waits for: every test here runs tiny shapes
for a few steps, so each of its programs (and those of the subprocesses it starts, which
inherit the environment) is compiled without XLA's backend optimisations, and compiled
programs are kept for the whole session in a persistent cache shared by the pytest-xdist
workers and the subprocesses (a rerun after a kill, the 8-device runs, the CLI). Neither
changes what a program computes. Both are set before JAX starts its backend.
"""

import atexit
import os
import shutil
import tempfile

if "BIOJAX_TEST_XLA_FLAGS_SET" not in os.environ:  # once: workers inherit the controller's
  os.environ["BIOJAX_TEST_XLA_FLAGS_SET"] = "1"
  os.environ["XLA_FLAGS"] = " ".join(
      filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="biojax-test-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

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


def xla_flags(*flags: str) -> str:
  """XLA_FLAGS for a subprocess: the session's flags plus ``flags``."""
  return " ".join(filter(None, [os.environ.get("XLA_FLAGS"), *flags]))


def _xdist_scope(nodeid: str) -> str:
  """The unit pytest-xdist's --dist loadscope hands to one worker: the module, or the class
  for test methods."""
  return "::".join(nodeid.split("[")[0].split("::")[:-1])


def pytest_collection_modifyitems(config, items):
  """Units that hold a slow test run first (pyproject: --no-loadscope-reorder keeps this
  order), so that the longest ones do not start last and leave a worker idle at the end."""
  del config
  slow = {_xdist_scope(i.nodeid) for i in items if i.get_closest_marker("slow")}
  items.sort(key=lambda item: _xdist_scope(item.nodeid) not in slow)
