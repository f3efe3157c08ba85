"""The sparse rule with one ingredient off at a time, measured against the floors of
docs/sparse_rule.md (section 4).

    python -m biojax.main --config=experiments/sparse_rule_ablation.py --workdir=DIR \
        [--config.earlier=True] [--config.names="('no_competition','additive')"]

A variant's settings are the preset ``config.preset`` with its changes
``config.ablations[name]`` (and, with ``config.earlier``, the preset before the tuning sweep,
``config.earlier_settings``) merged in turn by :func:`merge_settings`, applied on top of
``config.train`` (experiments/train.py's fields) by :func:`variant_config`. Each variant
trains with :func:`biojax.loop.fit` and is measured by :func:`measure` with plain
NumPy/SciPy, independently of :mod:`biojax.eval`: test accuracy, exact-zero fraction of all
kernels and of the hidden kernel, KS distance of log|w| (non-zero hidden weights) from a
fitted normal (also at initialisation), Dale adherence (fraction of presynaptic units whose
non-zero outgoing weights share one sign) of the hidden layer and the classifier, and the mean
fraction of hidden units active per test input. With ``config.probe`` also the linear-probe
accuracy of the hidden layer (:func:`biojax.eval.linear_probe`: the best regularised softmax
read-out of its ReLU output, fitted on the training images), which tells feature quality
apart from how well the network's own sign-constrained classifier reads the features.

Each variant's record is printed as one JSON line and appended to ``results.jsonl`` in the
workdir; a variant already recorded there with the same settings is not trained again.
``report.json`` gathers them at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from scipy import stats

from biojax import builders, loop
from biojax import data as data_lib
from biojax import eval as bev
from biojax import train as train_lib
from biojax.metrics import append_jsonl, read_jsonl, to_json

RESULTS_FILE = "results.jsonl"
REPORT_FILE = "report.json"
# The settings of a variant that are not plain fields of the training config.
_SPECIAL = ("rule", "learning_rate", "num_steps", "mlp", "rule_options")


def _merge(base: Mapping, change: Mapping) -> dict:
  out = dict(base)
  for key, value in change.items():
    if isinstance(value, Mapping):
      out[key] = _merge(out[key] if isinstance(out.get(key), Mapping) else {}, value)
    else:
      out[key] = value
  return out


def merge_settings(base: Mapping, *changes: Mapping) -> dict:
  """``base`` with each of ``changes`` applied in turn; dict values (``mlp``,
  ``rule_options`` and its per-rule dicts) are merged key by key, others replaced."""
  out = _merge({}, _plain(base))
  for change in changes:
    out = _merge(out, _plain(change))
  return out


def _plain(settings: Mapping) -> dict:
  return settings.to_dict() if isinstance(settings, ml_collections.ConfigDict) else dict(settings)


def variant_config(train: ml_collections.ConfigDict, settings: Mapping
                   ) -> ml_collections.ConfigDict:
  """``train`` (experiments/train.py's fields) with a variant's merged ``settings``: ``rule``,
  ``learning_rate``, ``num_steps``, ``mlp`` (the MLP's constructor arguments, replacing
  ``train``'s), ``rule_options`` (merged per rule) and any other field of ``train``."""
  values = _plain(train)
  values.update(model="mlp", rule=settings["rule"], learning_rate=settings["learning_rate"],
                num_steps=settings["num_steps"])
  values["model_kwargs"]["mlp"] = dict(settings["mlp"])
  values["rule_options"] = _merge(values["rule_options"], settings["rule_options"])
  for key, value in settings.items():
    if key not in _SPECIAL:
      if key not in values:
        raise KeyError(f"Unknown config field {key!r}. Valid fields: {', '.join(values)}.")
      values[key] = value
  return ml_collections.ConfigDict(values)


def log_ks(w: np.ndarray) -> float:
  """KS distance of log|w| (non-zero entries) from the normal of its own mean and std."""
  nonzero = np.abs(w[w != 0])
  logs = np.log(nonzero)
  return float(stats.kstest((logs - logs.mean()) / logs.std(), "norm").statistic)


def dale(w: np.ndarray) -> float:
  """Fraction of presynaptic units (rows) whose non-zero outgoing weights share one sign."""
  rows = w.reshape(-1, w.shape[-1])
  return float(np.mean([np.all(r[r != 0] > 0) or np.all(r[r != 0] < 0) for r in rows]))


def _dataset(cfg: ml_collections.ConfigDict) -> data_lib.Dataset:
  # No augmentation: the measurement is of the rule, on the same images every variant.
  return data_lib.get_dataset(
      cfg.dataset, data_dir=cfg.data_dir, validation_size=cfg.validation_size, seed=cfg.seed,
      augment=False, fashion_mnist_dir=cfg.fashion_mnist_dir, limit_train=cfg.limit_train,
      image_size=cfg.image_size)


def measure(cfg: ml_collections.ConfigDict, probe: bool = False, name: str = "variant") -> dict:
  """Trains the MLP of ``cfg`` (a :func:`variant_config`) from ``cfg.seed`` and measures it."""
  seed = cfg.seed
  dataset = _dataset(cfg)
  model = builders.build_model(cfg, dataset.num_classes)
  tx, _ = builders.build_optimizer(cfg)
  state = train_lib.create_train_state(model, tx, jax.random.key(seed),
                                       jnp.zeros((1, *dataset.image_shape)), list(cfg.rule))
  w_init = np.asarray(state.params["dense_0"]["kernel"])
  state = loop.fit(jax.jit(train_lib.make_train_step(model, tx)), state,
                   dataset.train_batches(cfg.batch_size, seed), jax.random.key(seed),
                   cfg.num_steps, log_every=cfg.log_every, name=name).state

  @jax.jit
  def forward(variables, x):
    logits, inter = model.apply(variables, x, capture_intermediates=True,
                                mutable=["intermediates"])
    return logits, inter["intermediates"]["dense_0"]["__call__"][0]

  correct, active, count = 0, 0.0, 0
  for batch in dataset.eval_batches("test", 1000):
    real = np.asarray(batch["mask"]) > 0  # the padding of a last batch does not count
    logits, hidden = forward(state.variables(), batch["image"])
    correct += int(np.sum((np.argmax(logits, -1) == np.asarray(batch["label"]))[real]))
    active += float(np.sum(np.mean(np.asarray(hidden) > 0, axis=-1)[real]))
    count += int(np.sum(real))
  kernels = {k: np.asarray(v["kernel"]) for k, v in state.params.items() if "kernel" in v}
  hidden = kernels["dense_0"]
  every = np.concatenate([k.ravel() for k in kernels.values()])
  result = {"test_accuracy": correct / count,
            "zeros_all": float(np.mean(every == 0)), "zeros_hidden": float(np.mean(hidden == 0)),
            "lognormal_ks_hidden": log_ks(hidden), "lognormal_ks_hidden_init": log_ks(w_init),
            "dale_hidden": dale(hidden), "dale_classifier": dale(kernels["classifier"]),
            "active_fraction": active / count}
  if probe:
    result["linear_probe_accuracy"] = probe_accuracy(model, state, dataset)
  return result


def probe_accuracy(model, state, dataset) -> float:
  """Linear-probe test accuracy of the first hidden layer's ReLU output (train -> test)."""

  def features(images):
    return bev.hidden_activations(model, state.variables(), dataset._normalise(images))["dense_0"]

  out = bev.linear_probe(features(dataset.train_images), dataset.train_labels,
                         features(dataset.test_images), dataset.test_labels,
                         num_classes=dataset.num_classes)
  return out["test_accuracy"]


def check_names(names: Sequence[str], table: Mapping, kind: str) -> list[str]:
  """``names`` in their order (all of ``table`` if empty; ``"a,b"`` is ``a`` and ``b``, as a
  command line gives it), each checked against ``table``."""
  names = [name.strip() for entry in names for name in str(entry).split(",") if name.strip()]
  names = names or list(table)
  for name in names:
    if name not in table:
      raise ValueError(f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(table)}.")
  return names


def run_variants(config: ml_collections.ConfigDict, workdir: str,
                 variants: Mapping[str, dict]) -> dict:
  """Trains and measures each ``{name: settings}`` in turn on ``config.train``, records each
  in ``workdir/results.jsonl`` (skipping those recorded already) and writes the report."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, RESULTS_FILE)
  configs = {name: variant_config(config.train, settings)  # every config before any work
             for name, settings in variants.items()}
  done = {r["name"]: r for r in read_jsonl(path)}
  records = {}
  for name, settings in variants.items():
    cfg = configs[name]
    settings = to_json(settings)
    old = done.get(name)
    if (old is not None and old.get("settings") == settings and old.get("seed") == cfg.seed
        and ("linear_probe_accuracy" in old or not config.probe)):
      logging.info("%s: recorded in %s already", name, path)
      records[name] = old
      continue
    start = time.time()
    record = {"name": name, "seed": cfg.seed, "settings": settings,
              **measure(cfg, probe=config.probe, name=name),
              "seconds": round(time.time() - start, 1)}
    append_jsonl(path, [record])
    print(json.dumps(to_json(record), default=str), flush=True)
    records[name] = to_json(record)
  report = {"variants": records, "config": to_json(config)}
  with open(os.path.join(workdir, REPORT_FILE), "w") as f:
    json.dump(report, f, indent=2)
  return report


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Every ablation of ``config.names``, in order (all of ``config.ablations`` if empty); returns
  ``{"variants": {name: record}, "config"}`` (also ``workdir/report.json``)."""
  names = check_names(config.names, config.ablations, "ablation")
  earlier = [config.earlier_settings] if config.earlier else []
  return run_variants(config, workdir, {
      name: merge_settings(config.preset, config.ablations[name], *earlier) for name in names})
