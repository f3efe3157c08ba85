"""Few-shot learning: train on ``k`` examples per class, report test accuracy over seeds.

Protocol (docs/eval.md): for each ``k`` and each seed, draw ``k`` training examples of every
class without replacement from the data set's training split (after its validation carve),
train a fresh network on them with the caller's config (any rule assignment: the model,
optimizer and loop are :mod:`biojax.builders`' and :func:`biojax.loop.fit`, the same code as
the main pipeline), and measure the accuracy on the whole test split. The seed fixes the
subset, the initialisation, the batch order and every per-step key, so a run is
reproducible.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biojax import builders
from biojax import loop as loop_lib
from biojax import train as train_lib
from biojax.data import ArrayDataset
from biojax.nn.assignment import make_assignment, validate_assignment

Shots = int | str  # a number of examples per class, or "all"
DEFAULT_SHOTS: tuple[Shots, ...] = (1, 5, 10, 50, 100, "all")
_SUBSET_STREAM = 0xF5  # NumPy SeedSequence word that separates the draw from other streams


def few_shot_subset(dataset: ArrayDataset, k: Shots, seed: int) -> ArrayDataset:
  """``dataset`` with its training split cut to ``k`` examples of every class.

  The examples are drawn without replacement, class by class, with
  ``np.random.default_rng([seed, 0xF5])``, and kept in their original order. ``k="all"``
  returns ``dataset`` unchanged. Validation and test splits are untouched.

  Raises:
    ValueError: ``k`` is not positive, or a class has fewer than ``k`` training examples.
    TypeError: ``dataset`` is not an in-memory :class:`biojax.data.ArrayDataset`.
  """
  if not isinstance(dataset, ArrayDataset):
    raise TypeError(f"Few-shot subsets need an in-memory ArrayDataset, got {type(dataset)}.")
  if k == "all":
    return dataset
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k={k!r} must be a positive number of examples per class or 'all'.")
  rng = np.random.default_rng([int(seed) % 2**64, _SUBSET_STREAM])
  labels = dataset.train_labels
  chosen = []
  for c in range(dataset.num_classes):
    pool = np.flatnonzero(labels == c)
    if len(pool) < k:
      raise ValueError(f"Class {c} has {len(pool)} training examples, fewer than k={k}.")
    chosen.append(rng.choice(pool, size=int(k), replace=False))
  indices = np.sort(np.concatenate(chosen))
  return dataclasses.replace(dataset, train_images=dataset.train_images[indices],
                             train_labels=labels[indices], num_train=len(indices))


def _steps_for(num_steps: int | Mapping | Callable | None, k: Shots,
               config: ml_collections.ConfigDict) -> int:
  if num_steps is None:
    return int(config.num_steps)
  if isinstance(num_steps, Mapping):
    return int(num_steps[k])
  if callable(num_steps):
    return int(num_steps(k))
  return int(num_steps)


def few_shot(config: ml_collections.ConfigDict, dataset: ArrayDataset,
             shots: Sequence[Shots] = DEFAULT_SHOTS, seeds: int | Sequence[int] = 3,
             num_steps: int | Mapping | Callable[[Shots], int] | None = None
             ) -> dict[Shots, dict]:
  """Test accuracy after training on ``k`` examples per class, per ``k``, over seeds.

  Args:
    config: a training config with the fields of ``experiments/train.py`` (model,
      model_kwargs, rule, rule_options, optimizer, learning_rate, schedule, batch_size, ...).
      The data fields and ``seed`` are ignored: the data come from ``dataset`` and the seeds
      from ``seeds``. The batch is ``min(config.batch_size, k * classes)``.
    dataset: an in-memory data set (``biojax.data.get_dataset("fashion_mnist")``).
    shots: the values of ``k`` (examples per class), ``"all"`` for the whole training split.
    seeds: a number of seeds (``0 .. seeds-1``) or the seeds themselves.
    num_steps: training steps for each ``k``: an int, a ``{k: steps}`` dict or a function of
      ``k``; default ``config.num_steps``. The learning-rate schedule spans these steps.

  Returns:
    ``{k: {"mean", "std", "accuracies", "seeds", "num_train", "num_steps"}}``: test accuracy
    mean and sample standard deviation (ddof=1; 0 for one seed) over the seeds.
  """
  builders.check_config(config)
  seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
  model = builders.build_model(config, dataset.num_classes)
  spec = builders.parse_rule(config.rule)
  sample = jnp.zeros((1, *dataset.image_shape), jnp.float32)
  eval_step = jax.jit(train_lib.make_eval_step(model))
  test_batches = [jax.tree.map(jnp.asarray, b)
                  for b in dataset.eval_batches("test", config.eval_batch_size)]
  programs: dict[int, tuple] = {}

  def programs_for(steps: int):
    """(init, train_step) for a schedule of ``steps`` steps (one compilation per length)."""
    if steps not in programs:
      tx, _ = builders.build_optimizer(config, total_steps=steps)
      programs[steps] = (tx, jax.jit(train_lib.make_train_step(model, tx)))
    return programs[steps]

  # Initialisation is one jitted program; the assignment is built from its (concrete) output,
  # as create_train_state does, since validate_assignment reads the rule ids on the host.
  init_variables = jax.jit(lambda key: model.init(key, sample, train=False))

  def init_state(key, tx):
    variables = flax.core.unfreeze(init_variables(key))
    assignment = make_assignment(variables, spec)
    validate_assignment(assignment, variables, getattr(model, "options", None))
    return train_lib.train_state_from_variables(variables, tx, assignment)

  results: dict[Shots, dict] = {}
  for k in shots:
    steps = _steps_for(num_steps, k, config)
    tx, train_step = programs_for(steps)
    accuracies, num_train = [], 0
    for seed in seeds:
      subset = few_shot_subset(dataset, k, seed)
      num_train = subset.num_train
      root = jax.random.key(seed)
      state = init_state(jax.random.fold_in(root, 0), tx)
      train_key = jax.random.fold_in(root, 1)
      batches = subset.train_batches(min(int(config.batch_size), subset.num_train), seed)
      # check_finite=False: a diverging run scores what its parameters score (as before).
      state = loop_lib.fit(train_step, state, batches, train_key, steps,
                           log_every=config.log_every, check_finite=False,
                           name=f"few-shot k={k} seed={seed} step").state
      accuracies.append(loop_lib.evaluate(eval_step, state, test_batches)["accuracy"])
    results[k] = {
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "accuracies": accuracies, "seeds": seeds, "num_train": int(num_train),
        "num_steps": steps,
    }
  return results


def plot_few_shot(results: Mapping[str, Mapping] | Mapping[Shots, Mapping], path: str,
                  title: str | None = None) -> str:
  """Mean test accuracy (error bars: std over seeds) against ``k``; returns ``path``.

  ``results`` is one :func:`few_shot` result or ``{model: result}`` for several (e.g. one
  per rule). The ``k`` axis is categorical (1, 5, ..., all), in the order given.
  """
  from matplotlib.figure import Figure  # no pyplot: no global backend state

  first = next(iter(results.values()))
  single = isinstance(first, Mapping) and "mean" in first
  by_model = {"": results} if single else results
  shots = list(dict.fromkeys(str(k) for r in by_model.values() for k in r))
  figure = Figure(figsize=(5, 3.5), layout="constrained")
  ax = figure.subplots()
  for model, result in by_model.items():
    points = [(shots.index(str(k)), v["mean"], v["std"]) for k, v in result.items()]
    xs, means, stds = zip(*points, strict=True)
    ax.errorbar(xs, means, yerr=stds, fmt="o-", markersize=3, capsize=2, label=model or None)
  ax.set_xticks(range(len(shots)), shots)
  ax.set_xlabel("training examples per class (k)")
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  if not single:
    ax.legend(fontsize=7)
  if title:
    ax.set_title(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  return path
