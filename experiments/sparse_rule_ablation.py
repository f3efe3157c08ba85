"""Trains every variant of experiments/sparse_rule.py and measures the issue-5 floors.

    python -m experiments.sparse_rule_ablation [--earlier] [variant ...]   # default: all

Prints one JSON line per variant: test accuracy, exact-zero fraction of all kernels and of
the hidden kernel, KS distance of log|w| (non-zero hidden weights) from a fitted normal (also
at initialisation), Dale adherence (fraction of presynaptic units whose non-zero outgoing
weights share one sign) of the hidden layer and the classifier, and the mean fraction of
hidden units active per test input. Measured with plain NumPy/SciPy, independently of
biojax/eval. With ``probe=True`` (the sweep's ``--probe``) also the linear-probe accuracy of the
hidden layer (``biojax.eval.linear_probe``: the best regularised softmax read-out of its ReLU
output, fitted on the 55,000 training images), which tells feature quality apart from how well
the network's own sign-constrained classifier learned to read the features. Training follows
experiments/train.py's data pipeline (55,000 training images, no augmentation here, seed 0).
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import biojax
from biojax import data, rules
from biojax import nn as bnn
from experiments import sparse_rule


def log_ks(w: np.ndarray) -> float:
  nonzero = np.abs(w[w != 0])
  logs = np.log(nonzero)
  # Against N(mean, std) of the data: standardise and compare with the standard normal.
  return float(stats.kstest((logs - logs.mean()) / logs.std(), "norm").statistic)


def dale(w: np.ndarray) -> float:
  rows = w.reshape(-1, w.shape[-1])
  return float(np.mean([np.all(r[r != 0] > 0) or np.all(r[r != 0] < 0) for r in rows]))


def run(variant: str, seed: int = 0, extra: dict | None = None, probe: bool = False) -> dict:
  config = sparse_rule.train_config(variant, extra)
  options = rules.RuleOptions.from_dict(config.rule_options.to_dict())
  model = bnn.MLP(num_classes=10, options=options, **config.model_kwargs.mlp.to_dict())
  dataset = data.get_dataset("fashion_mnist", augment=False, seed=seed,
                             fashion_mnist_dir=config.fashion_mnist_dir)
  tx = biojax.make_optimizer(config.optimizer, biojax.make_schedule(
      config.learning_rate, config.schedule, config.num_steps), momentum=config.momentum)
  state = biojax.create_train_state(model, tx, jax.random.key(seed),
                                    jnp.zeros((1, 28, 28, 1)), list(config.rule))
  w_init = np.asarray(state.params["dense_0"]["kernel"])
  step = jax.jit(biojax.make_train_step(model, tx))
  for i, batch in enumerate(dataset.train_batches(config.batch_size, seed)):
    if i >= config.num_steps:
      break
    state, _ = step(state, batch, jax.random.key(i))

  @jax.jit
  def forward(variables, x):
    logits, inter = model.apply(variables, x, capture_intermediates=True,
                                mutable=["intermediates"])
    return logits, inter["intermediates"]["dense_0"]["__call__"][0]

  correct, active, count = 0, 0.0, 0
  for batch in dataset.eval_batches("test", 1000):
    logits, hidden = forward(state.variables(), batch["image"])
    correct += int(np.sum(np.argmax(logits, -1) == batch["label"]))
    active += float(np.sum(np.mean(np.asarray(hidden) > 0, axis=-1)))
    count += len(batch["label"])
  kernels = {k: np.asarray(v["kernel"]) for k, v in state.params.items() if "kernel" in v}
  hidden = kernels["dense_0"]
  every = np.concatenate([k.ravel() for k in kernels.values()])
  result = {"variant": variant, "extra": extra or {}, "test_accuracy": correct / count,
            "zeros_all": float(np.mean(every == 0)), "zeros_hidden": float(np.mean(hidden == 0)),
            "lognormal_ks_hidden": log_ks(hidden), "lognormal_ks_hidden_init": log_ks(w_init),
            "dale_hidden": dale(hidden), "dale_classifier": dale(kernels["classifier"]),
            "active_fraction": active / count}
  if probe:
    result["linear_probe_accuracy"] = probe_accuracy(model, state, dataset)
  return result


def probe_accuracy(model, state, dataset) -> float:
  """Linear-probe test accuracy of the first hidden layer's ReLU output (train -> test)."""
  from biojax import eval as bev

  def features(images):
    return bev.hidden_activations(model, state.variables(), dataset._normalise(images))["dense_0"]

  out = bev.linear_probe(features(dataset.train_images), dataset.train_labels,
                         features(dataset.test_images), dataset.test_labels)
  return out["test_accuracy"]


if __name__ == "__main__":
  # --earlier: on the preset before the tuning sweep (experiments/sparse_rule.py EARLIER).
  earlier = "--earlier" in sys.argv[1:]
  names = [a for a in sys.argv[1:] if a != "--earlier"]
  for name in names or list(sparse_rule.ABLATIONS):
    if name not in sparse_rule.ABLATIONS:
      raise SystemExit(f"Unknown variant {name!r}. Valid variants: "
                       f"{', '.join(sparse_rule.ABLATIONS)}.")
    print(json.dumps(run(name, extra=sparse_rule.EARLIER if earlier else None)), flush=True)
