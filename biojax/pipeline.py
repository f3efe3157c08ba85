"""The experiment pipeline: ``train_and_evaluate(config, workdir)`` -> report.

config (experiments/train.py) -> data set -> model + rule assignment (biojax.builders) ->
jitted, data-parallel :func:`biojax.loop.fit` -> orbax checkpoints (biojax.checkpoint),
``metrics.jsonl`` + TensorBoard (biojax.metrics), plots (biojax.plots) and ``report.json`` in
the workdir (docs/design.md, docs/pipeline.md).

Determinism: everything follows from ``(config, seed)``. The PRNG key of step ``k`` is
``fold_in(train_key, k)`` and its batch is the ``k``-th of ``Dataset.train_batches``, so a run
resumed from a checkpoint at step ``k`` continues exactly as the uninterrupted run did (bitwise
on CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from biojax import builders, diagnostics
from biojax import data as data_lib
from biojax import loop as loop_lib
from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.checkpoint import CHECKPOINT_DIR, Checkpointer
from biojax.loop import NonFiniteLossError
from biojax.metrics import MetricsWriter, read_metrics, to_json
from biojax.nn.assignment import validate_assignment
from biojax.plots import plot_alignment, plot_curves
from biojax.preemption import Preemption
from biojax.workdir import workdir_lock

__all__ = ["NonFiniteLossError", "train_and_evaluate"]

REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
CURVES_PLOT = "curves.png"
ALIGNMENT_PLOT = "alignment.png"
DATA_AXIS = "data"


# ------------------------------------------------------------------------- compiled programs


@dataclasses.dataclass(frozen=True)
class _Programs:
  replicated: NamedSharding  # the train state
  batch: NamedSharding  # batches: leading axis split over the mesh's data axis
  tx: Any
  schedule: Callable  # jitted: step -> learning rate
  train_step: Callable  # (state, batch, step_key) -> (state, metrics)
  eval_step: Callable  # (state, batch) -> sums
  alignment: Callable  # (state, key) -> {layer: {"angle", "norm_ratio"}}
  all_finite: Callable  # (tree) -> bool


@functools.lru_cache(maxsize=8)
def _model_programs(model: nn.Module, mesh: Mesh) -> tuple[Callable, Callable, Callable]:
  """``(eval_step, alignment, all_finite)``: the jitted programs that do not depend on the
  optimizer, cached by model (runs that differ in optimizer settings share them)."""
  replicated = NamedSharding(mesh, PartitionSpec())
  batch = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

  def alignment(state, key):
    return diagnostics.alignment(state.variables(), state.assignment, key)

  return (jax.jit(train_lib.make_eval_step(model), in_shardings=(replicated, batch),
                  out_shardings=replicated),
          jax.jit(alignment, out_shardings=replicated),
          jax.jit(train_lib.all_finite, out_shardings=replicated))


@functools.lru_cache(maxsize=8)
def _programs(model: nn.Module, settings: builders.OptimizerSettings, mesh: Mesh) -> _Programs:
  """The jitted programs of one model and optimizer, cached so that runs in one process
  that differ only in data, seed or rule assignment share their compilations (an assignment
  is data: docs/design.md)."""
  tx, schedule = builders.build_optimizer(settings)
  replicated = NamedSharding(mesh, PartitionSpec())
  batch = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  eval_step, alignment, all_finite = _model_programs(model, mesh)
  return _Programs(
      replicated=replicated, batch=batch, tx=tx, schedule=jax.jit(schedule),
      train_step=jax.jit(train_lib.make_train_step(model, tx),
                         in_shardings=(replicated, batch, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=0),
      eval_step=eval_step, alignment=alignment, all_finite=all_finite)


def _init_program(model: nn.Module, programs: _Programs, image_shape: tuple[int, ...],
                  spec: str | list | dict) -> Callable:
  """``key -> TrainState``, jitted: one compilation instead of many small eager ones."""
  sample = jnp.zeros((1, *image_shape), jnp.float32)

  def init(key):
    return train_lib.create_train_state(model, programs.tx, key, sample, spec)

  jitted = jax.jit(init, out_shardings=programs.replicated)

  def checked(key):
    state = jitted(key)
    # The rule ids are tracers inside jit; check them against the model's rule universe here.
    validate_assignment(state.assignment, state.variables(), getattr(model, "options", None))
    return state

  return checked


# ---------------------------------------------------------------------------------- report


def bp_weight_share(params: Mapping, assignment) -> float:
  """Fraction of the weights (kernel entries of the rule-aware layers) trained by bp."""
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  bp = rules_lib.rule_id("bp")
  total = by_bp = 0
  for layer in assignment.layers or tuple(assignment.rule):
    size = int(np.prod(flat[(*layer.split("/"), "kernel")].shape))
    total += size
    by_bp += size * int(int(np.asarray(assignment.rule[layer])) == bp)
  return by_bp / total if total else 0.0


def _warn_config_changes(workdir: str, config_json: dict) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  changed = sorted(k for k in set(previous) | set(config_json)
                   if previous.get(k) != config_json.get(k))
  if changed:
    logging.warning("Resuming in %s with a config that differs from the checkpointed run in: "
                    "%s. The result is not that of one uninterrupted run.", workdir,
                    ", ".join(changed))


# -------------------------------------------------------------------------------- training


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.model`` under the rule assignment ``config.rule`` and evaluates it.

  Resumes from the latest checkpoint in ``workdir/checkpoints`` when there is one. Writes
  ``metrics.jsonl``, TensorBoard events, ``curves.png``, ``alignment.png`` and
  ``report.json`` in ``workdir`` (docs/pipeline.md describes every field).

  Returns:
    The report (also written to ``report.json``). If SIGTERM arrived, the run saves a
    checkpoint and returns ``{"interrupted": True, "step": ...}`` without a report; running
    again with the same workdir finishes it.

  Raises:
    ValueError: an unknown or missing config field, or an invalid value.
    biojax.data.DatasetNotFoundError: the data set is missing (the message says how to
      prepare it).
    NonFiniteLossError: the loss became NaN/Inf; the last good checkpoint is kept.
  """
  builders.check_config(config)  # a bad config fails before the workdir is touched
  with workdir_lock(workdir):  # one run per workdir (biojax.workdir)
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  start_time = time.time()
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  config_json = to_json(config)
  is_chief = jax.process_index() == 0

  dataset = data_lib.get_dataset(
      config.dataset, data_dir=config.data_dir, validation_size=config.validation_size,
      seed=config.seed, augment=config.augment, fashion_mnist_dir=config.fashion_mnist_dir,
      limit_train=config.limit_train, image_size=config.image_size)
  model = builders.build_model(config, dataset.num_classes)
  mesh = Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
  programs = _programs(model, builders.optimizer_settings(config), mesh)
  replicated, batch_sharding = programs.replicated, programs.batch

  root_key = jax.random.key(config.seed)
  init_key, train_key, alignment_key = (jax.random.fold_in(root_key, i) for i in range(3))
  train_key = jax.device_put(train_key, replicated)
  state = _init_program(model, programs, tuple(dataset.image_shape),
                        builders.parse_rule(config.rule))(init_key)
  layers = state.assignment.layers

  checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), config.keep_checkpoints)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
  restored = checkpointer.restore_latest(abstract)
  previous_seconds, pending = 0.0, ()
  if restored is not None:
    state, meta = restored
    if "rule_names" in meta:  # the same rules, perhaps registered in another order
      state = state.replace(assignment=jax.device_put(
          state.assignment.with_ids_from(meta["rule_names"]), replicated))
    previous_seconds, pending = meta.get("wall_seconds", 0.0), meta.get("pending", ())
    _warn_config_changes(workdir, config_json)
  start_step = int(state.step)
  if start_step > config.num_steps:
    raise ValueError(f"The checkpoint in {checkpointer.directory} is at step {start_step}, "
                     f"beyond config.num_steps={config.num_steps}.")
  if restored is not None:
    logging.info("Resuming from the checkpoint at step %d in %s.", start_step,
                 checkpointer.directory)
  if is_chief:
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      json.dump(config_json, f, indent=2)

  def to_global(batch: Mapping) -> dict:
    return {k: jax.make_array_from_process_local_data(batch_sharding, v)
            for k, v in batch.items()}

  def elapsed() -> float:
    return previous_seconds + time.time() - start_time

  writer = MetricsWriter(workdir, start_step if restored is not None else None)
  train_metrics = loop_lib.TrainMetrics(pending)
  last_saved = start_step if restored is not None else None

  def checkpoint_note() -> str:
    where = (f"The last good checkpoint (step {last_saved}) is kept in "
             f"{checkpointer.directory}" if last_saved is not None
             else "No checkpoint had been saved yet")
    return (f"{where}. Lower config.learning_rate (now {config.learning_rate}) or set "
            "config.clip_norm, then run again in a fresh workdir.")

  eval_cache: dict[str, list] = {}

  def eval_batches(split: str) -> Iterable[dict]:
    """The split's global batches. In-memory data sets are normalised and sent to the
    devices once; their evaluation splits are fixed (same order, no augmentation)."""
    if not isinstance(dataset, data_lib.ArrayDataset):
      return map(to_global, dataset.eval_batches(split, config.eval_batch_size))
    if split not in eval_cache:
      eval_cache[split] = [to_global(b)
                           for b in dataset.eval_batches(split, config.eval_batch_size)]
    return eval_cache[split]

  def evaluate(split: str, step: int, state) -> tuple[dict, dict | None]:
    """The metrics record of ``split``, and for validation the raw alignment per layer."""
    result = loop_lib.evaluate(programs.eval_step, state, eval_batches(split))
    record = {"step": step, "split": split, "loss": result["loss"],
              "accuracy": result["accuracy"]}
    alignment = None
    if split == "validation":
      alignment = jax.device_get(
          programs.alignment(state, jax.random.fold_in(alignment_key, step)))
      record["alignment"] = {layer: alignment[layer]["angle"] for layer in layers}
    record["wall_seconds"] = elapsed()
    writer.write(record)
    return record, alignment

  validation = None

  def validate(step: int, state) -> None:
    nonlocal validation
    validation = evaluate("validation", step, state)
    logging.info("step %d  validation loss %.4f  accuracy %.4f", step,
                 validation[0]["loss"] or float("nan"),
                 validation[0]["accuracy"] or float("nan"))

  def save(step: int, state) -> None:
    nonlocal last_saved
    train_metrics.check()  # no checkpoint of a state after a non-finite loss
    if not bool(programs.all_finite(state.params)):
      raise NonFiniteLossError(f"The parameters became NaN or infinite by step {step}.", step)
    checkpointer.save(step, state, {"wall_seconds": elapsed(), "pending": train_metrics.host})
    last_saved = step

  def log_train(step: int, summary: dict) -> None:
    writer.write({"step": step, "split": "train", **summary,
                  "learning_rate": float(programs.schedule(step - 1)),
                  "wall_seconds": elapsed()})

  try:
    with Preemption() as preemption:
      if start_step == 0:
        validation = evaluate("validation", 0, state)
      batches = loop_lib.prefetch(
          map(to_global, dataset.train_batches(config.batch_size, config.seed, start_step)))
      result = loop_lib.fit(
          programs.train_step, state, batches, train_key, config.num_steps,
          log_every=config.log_every, metrics=train_metrics, on_log=log_train,
          hooks=(loop_lib.every(config.eval_every, validate, config.num_steps),
                 loop_lib.every(config.checkpoint_every, save, config.num_steps)),
          should_stop=lambda step: preemption.stop(step, config.log_every))
      state, step = result.state, result.step
      if result.interrupted:
        logging.warning("SIGTERM: saving a checkpoint at step %d and stopping. Run the same "
                        "command again to resume.", step)
        if last_saved != step:
          save(step, state)
        return {"interrupted": True, "step": step}

    if last_saved != step:
      save(step, state)
    if validation is None or validation[0]["step"] != step:  # resumed at the end
      validation = evaluate("validation", step, state)
    test, _ = evaluate("test", step, state)
    record, alignment = validation
    params = state.params  # only shapes are read: no copy to the host
    report = {
        "config": config_json,
        "step": step,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "validation_accuracy": record["accuracy"],
        "validation_loss": record["loss"],
        "rules": state.assignment.describe(),
        "bp_weight_share": bp_weight_share(params, state.assignment),
        "alignment": {layer: {"angle": alignment[layer]["angle"],
                              "norm_ratio": alignment[layer]["norm_ratio"]}
                      for layer in layers},
        "wall_seconds": elapsed(),
        "steps_per_second": result.steps_per_second,
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        "dataset": {"name": dataset.name, "num_classes": dataset.num_classes,
                    "image_shape": list(dataset.image_shape), "train": dataset.num_train,
                    "validation": dataset.num_validation, "test": dataset.num_test},
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "resumed_from_step": start_step if restored is not None else None,
    }
    report = to_json(report)
    if is_chief:
      with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
      records = read_metrics(writer.path)
      plot_curves(records, os.path.join(workdir, CURVES_PLOT))
      plot_alignment(records, layers, os.path.join(workdir, ALIGNMENT_PLOT))
    logging.info("Done at step %d: test accuracy %s, validation accuracy %s, %.1f s. "
                 "Report: %s", step, report["test_accuracy"], report["validation_accuracy"],
                 report["wall_seconds"], os.path.join(workdir, REPORT_FILE))
    return report
  except NonFiniteLossError as error:
    raise NonFiniteLossError(f"{error} {checkpoint_note()}", error.step) from None
  finally:
    writer.close()
    checkpointer.close()
