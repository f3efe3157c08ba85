"""The experiment pipeline: ``train_and_evaluate(config, workdir)`` -> report.

config (experiments/train.py) -> data set -> model + rule assignment -> jitted, data-parallel
train loop -> orbax checkpoints, ``metrics.jsonl`` + TensorBoard, plots and ``report.json`` in
the workdir (DESIGN.md section 7; docs/pipeline.md).

Determinism: everything follows from ``(config, seed)``. The PRNG key of step ``k`` is
``fold_in(train_key, k)`` and its batch is the ``k``-th of ``Dataset.train_batches``, so a run
resumed from a checkpoint at step ``k`` continues exactly as the uninterrupted run did (bitwise
on CPU).
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import difflib
import functools
import json
import logging as python_logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from biojax import data as data_lib
from biojax import diagnostics
from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.nn import get_model
from biojax.nn.assignment import validate_assignment

# The fields of a training config (experiments/train.py documents each).
CONFIG_KEYS = (
    "dataset", "data_dir", "fashion_mnist_dir", "validation_size", "limit_train", "augment",
    "image_size", "model", "model_kwargs", "rule", "rule_options", "seed", "batch_size",
    "num_steps", "optimizer", "learning_rate", "momentum", "schedule", "warmup_steps",
    "weight_decay", "clip_norm", "eval_batch_size", "eval_every", "checkpoint_every",
    "keep_checkpoints", "log_every",
)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_CHECKPOINT_DIR = "checkpoints_corrupt"
METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
TENSORBOARD_DIR = "tensorboard"
CURVES_PLOT = "curves.png"
ALIGNMENT_PLOT = "alignment.png"

DATA_AXIS = "data"


class QuietOrbax(python_logging.Filter):
  """Drops orbax's INFO chatter (dozens of lines per checkpoint); its warnings still show."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return (record.levelno >= python_logging.WARNING
            or f"{os.sep}orbax{os.sep}" not in record.pathname)


class NonFiniteLossError(FloatingPointError):
  """The training loss (or the parameters) became NaN or infinite."""


# --------------------------------------------------------------------------------- config


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming any unknown or missing field, or an invalid value."""
  keys = set(config.keys())
  unknown = sorted(keys - set(CONFIG_KEYS))
  if unknown:
    hints = []
    for key in unknown:
      close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
      hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"Unknown config field(s): {', '.join(hints)}. Valid fields: "
                     f"{', '.join(CONFIG_KEYS)}.")
  missing = [key for key in CONFIG_KEYS if key not in keys]
  if missing:
    raise ValueError(f"Config field(s) missing: {', '.join(missing)} (start from "
                     "experiments/train.py's get_config()).")
  for key in ("batch_size", "num_steps", "eval_batch_size", "eval_every", "checkpoint_every",
              "log_every"):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ValueError(f"config.{key}={config[key]!r} must be a positive integer.")
  if config.keep_checkpoints < 2:
    raise ValueError(f"config.keep_checkpoints={config.keep_checkpoints} must be >= 2, so that "
                     "a corrupt latest checkpoint has a predecessor to fall back to.")
  devices = jax.device_count()
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % devices:
      raise ValueError(f"config.{key}={config[key]} must be a multiple of the {devices} "
                       "devices the batch is split across.")


def parse_rule(rule: Any) -> str | list[str] | dict[str, str]:
  """The assignment spec of ``config.rule``: ``"fa"``, a list or a ``{layer: spec}`` dict.

  From the command line a per-layer list arrives as a string: ``"('fa','bp','bp')"``,
  ``"['fa', 'bp', 'bp']"`` or ``"fa,bp,bp"`` all give ``["fa", "bp", "bp"]``.
  """
  if isinstance(rule, ml_collections.ConfigDict):
    rule = rule.to_dict()
  if isinstance(rule, Mapping):
    return {str(k): str(v) for k, v in rule.items()}
  if isinstance(rule, (list, tuple)):
    return [str(r).strip() for r in rule]
  if not isinstance(rule, str):
    raise ValueError(f"config.rule={rule!r} must be a rule spec, a list of them or a dict.")
  text = rule.strip()
  if text[:1] in "([{":
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
      raise ValueError(f"config.rule={rule!r} is not a valid list of rule specs.") from error
    return parse_rule(value)
  if "," in text:
    return [part.strip() for part in text.split(",")]
  return text


def _model_kwargs(config: ml_collections.ConfigDict) -> dict:
  kwargs = config.model_kwargs.get(config.model, ml_collections.ConfigDict())
  kwargs = kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs)
  # Flax modules are hashed (the compiled programs are cached by model): lists -> tuples.
  return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The model of ``config`` with its ``model_kwargs`` entry and the rule options."""
  options = rules_lib.RuleOptions.from_dict(config.rule_options.to_dict())
  kwargs = _model_kwargs(config)
  try:
    return get_model(config.model, num_classes, options=options, **kwargs)
  except TypeError as error:
    raise ValueError(f"config.model_kwargs.{config.model}={kwargs} does not fit model "
                     f"{config.model!r}: {error}") from error


# ------------------------------------------------------------------------- compiled programs


@dataclasses.dataclass(frozen=True)
class _OptimizerSettings:
  name: str
  learning_rate: float
  schedule: str
  num_steps: int
  warmup_steps: int
  momentum: float
  weight_decay: float
  clip_norm: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> _OptimizerSettings:
    return cls(config.optimizer, float(config.learning_rate), config.schedule,
               int(config.num_steps), int(config.warmup_steps), float(config.momentum),
               float(config.weight_decay), float(config.clip_norm))


@dataclasses.dataclass(frozen=True)
class _Programs:
  replicated: NamedSharding  # the train state
  batch: NamedSharding  # batches: leading axis split over the mesh's data axis
  tx: Any
  schedule: Callable  # jitted: step -> learning rate
  train_step: Callable  # (state, batch, train_key) -> (state, metrics)
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
def _programs(model: nn.Module, settings: _OptimizerSettings, mesh: Mesh) -> _Programs:
  """The jitted programs of one model and optimizer, cached so that runs in one process
  that differ only in data, seed or rule assignment share their compilations (an assignment
  is data: DESIGN.md section 2)."""
  schedule = train_lib.make_schedule(settings.learning_rate, settings.schedule,
                                     settings.num_steps, settings.warmup_steps)
  tx = train_lib.make_optimizer(settings.name, schedule, momentum=settings.momentum,
                                weight_decay=settings.weight_decay,
                                clip_norm=settings.clip_norm)
  train_step = train_lib.make_train_step(model, tx)
  replicated = NamedSharding(mesh, PartitionSpec())
  batch = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

  def keyed_train_step(state, batch, train_key):
    # The key of a step depends only on (seed, step): resuming reproduces it exactly.
    return train_step(state, batch, jax.random.fold_in(train_key, state.step))

  eval_step, alignment, all_finite = _model_programs(model, mesh)
  return _Programs(
      replicated=replicated, batch=batch, tx=tx, schedule=jax.jit(schedule),
      train_step=jax.jit(keyed_train_step, in_shardings=(replicated, batch, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=0),
      eval_step=eval_step, alignment=alignment, all_finite=all_finite)


def _init_program(model: nn.Module, programs: _Programs, image_shape: tuple[int, ...],
                  spec: str | list | dict) -> Callable:
  """``key -> TrainState``, jitted: one compilation instead of many small eager ones."""
  sample = jnp.zeros((1, *image_shape), jnp.float32)
  replicated = programs.replicated

  def init(key):
    return train_lib.create_train_state(model, programs.tx, key, sample, spec)

  jitted = jax.jit(init, out_shardings=replicated)

  def checked(key):
    state = jitted(key)
    # The rule ids are tracers inside jit; check them against the model's rule universe here.
    validate_assignment(state.assignment, state.variables(), getattr(model, "options", None))
    return state

  return checked


# ---------------------------------------------------------------------------- checkpoints


class Checkpointer:
  """Orbax checkpoints of the train state (and a little JSON metadata) under ``directory``.

  Keeps the latest ``keep`` checkpoints. Orbax writes each one to a temporary directory and
  renames it when complete, so a run killed while saving leaves no half-written checkpoint.
  """

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: train_lib.TrainState, meta: Mapping) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))), force=True)
    self._manager.wait_until_finished()

  def restore_latest(self, abstract_state: train_lib.TrainState
                     ) -> tuple[train_lib.TrainState, dict] | None:
    """The latest readable checkpoint, or None when there is none.

    An unreadable checkpoint is reported with a warning and moved to
    ``<workdir>/checkpoints_corrupt/`` once an older one has been read; if none is readable,
    raises RuntimeError and moves nothing.
    """
    failures = []
    for step in reversed(self.steps()):
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as error:  # any failure to read means "corrupt"
        logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                        "the previous one.", step, self.directory, type(error).__name__,
                        str(error).splitlines()[0][:300] if str(error) else "")
        failures.append(step)
        continue
      if failures:
        self._set_aside(failures)
      return restored.state, dict(restored.meta)
    if failures:
      raise RuntimeError(
          f"No checkpoint in {self.directory} is readable (steps {failures}). Move the "
          "directory away to start afresh.")
    return None

  def _set_aside(self, steps: Iterable[int]) -> None:
    aside = os.path.join(os.path.dirname(self.directory), CORRUPT_CHECKPOINT_DIR)
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        target = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(os.path.join(self.directory, str(step)), target)
        logging.warning("Moved the unreadable checkpoint of step %d to %s.", step, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("biojax_checkpoints_set_aside")
    self._manager.reload()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def load_checkpoint(workdir: str, step: int | None = None) -> dict:
  """The train state saved in ``workdir`` at ``step`` (default: the latest), as nested dicts
  of NumPy arrays (``params``, ``feedback``, ``opt_state``, ``assignment``, ``step``, ...).

  Works on any device count: a checkpoint written by an 8-device run loads on one device.
  """
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if step is None:
    steps = sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    step = steps[-1]
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  device = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          tree)
  return jax.device_get(checkpointer.restore(path, abstract))


# -------------------------------------------------------------------------------- metrics


def to_json(value: Any) -> Any:
  """A JSON-ready copy: NumPy/JAX scalars -> Python, NaN/Inf -> None, tuples -> lists."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return to_json(value.tolist()) if value.ndim else to_json(value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` (a torn last line, from a killed run, is skipped)."""
  records = []
  if not os.path.exists(path):
    return records
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        logging.warning("Skipping a malformed line of %s: %r", path, line[:200])
  return records


class MetricsWriter:
  """Appends records to ``metrics.jsonl`` and scalars to TensorBoard (process 0 only).

  ``resume_step``: records after it (written by a run killed after its last checkpoint) are
  dropped, as are TensorBoard events after it, so a resumed run's files read as an
  uninterrupted run's; a record whose ``(step, split)`` is already there is not written again
  (a finished run that is run again). None starts both afresh.
  """

  def __init__(self, workdir: str, resume_step: int | None):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tensorboard = None
    if not self.active:
      return
    kept = ([r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            if resume_step is not None else [])
    self._written = {(r.get("step"), r.get("split")) for r in kept}
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    self._file = open(self.path, "a")  # closed in close()
    try:
      from tensorboardX import SummaryWriter  # light; TensorFlow is never imported here
    except ImportError:
      logging.warning("tensorboardX is not installed: no TensorBoard events are written "
                      "(metrics.jsonl holds every metric).")
    else:
      self._tensorboard = SummaryWriter(
          os.path.join(workdir, TENSORBOARD_DIR),
          purge_step=None if resume_step is None else resume_step + 1)

  def write(self, record: Mapping) -> None:
    if not self.active or (record["step"], record["split"]) in self._written:
      return
    self._written.add((record["step"], record["split"]))
    record = to_json(record)
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tensorboard is not None:
      step, split = record["step"], record["split"]
      for name, value in record.items():
        if name in ("step", "split"):
          continue
        if name == "alignment":
          for layer, angle in value.items():
            if angle is not None:
              self._tensorboard.add_scalar(f"alignment/{layer}", angle, step)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tensorboard.add_scalar(f"{split}/{name}", value, step)

  def close(self) -> None:
    if not self.active:
      return
    self._file.close()
    if self._tensorboard is not None:
      self._tensorboard.close()


class _TrainMetrics:
  """Training metrics of the steps since the last log, checked for NaN/Inf on the host."""

  def __init__(self, pending: Iterable[Iterable[float]] = ()):
    self._device: list[tuple[int, dict]] = []
    self.host: list[tuple[int, float, float]] = [tuple(p) for p in pending]

  def add(self, step: int, metrics: dict) -> None:
    self._device.append((step, metrics))

  def check(self, checkpoint: str) -> None:
    """Moves the metrics to the host; raises NonFiniteLossError at the first bad step."""
    if not self._device:
      return
    values = jax.device_get([m for _, m in self._device])
    for (step, _), m in zip(self._device, values, strict=True):
      loss = float(m["loss"])
      if not math.isfinite(loss):
        raise NonFiniteLossError(f"The training loss is {loss} at step {step}. {checkpoint}")
      self.host.append((step, loss, float(m["accuracy"])))
    self._device = []

  def summary(self) -> dict:
    losses = [loss for _, loss, _ in self.host]
    accuracies = [acc for _, _, acc in self.host]
    self.host = []
    return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies)),
            "steps": len(losses)}


# ------------------------------------------------------------------------------ preemption


class _Preemption:
  """Sets a flag on SIGTERM, so the loop can save a checkpoint and stop between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> _Preemption:
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    else:
      logging.warning("Not in the main thread: SIGTERM will not save a checkpoint.")
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.requested = True

  def stop(self, step: int, check_every: int) -> bool:
    """Whether to stop before this step. With several processes the flag is shared (every
    ``check_every`` steps), so that all of them save the same step."""
    if jax.process_count() == 1:
      return self.requested
    if step % check_every:
      return False
    flags = multihost_utils.process_allgather(np.asarray(self.requested))
    return bool(np.any(flags))

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


# --------------------------------------------------------------------------------- plots


def plot_curves(records: list[dict], path: str) -> None:
  """Loss and accuracy against step: training (per log interval), validation and test."""
  from matplotlib.figure import Figure  # no pyplot: no global backend state

  figure = Figure(figsize=(10, 4), layout="constrained")
  axes = figure.subplots(1, 2)
  for split, style in (("train", "-"), ("validation", "o-"), ("test", "s")):
    rows = [r for r in records if r.get("split") == split and r.get("loss") is not None]
    if not rows:
      continue
    steps = [r["step"] for r in rows]
    axes[0].plot(steps, [r["loss"] for r in rows], style, label=split, markersize=4)
    axes[1].plot(steps, [r["accuracy"] for r in rows], style, label=split, markersize=4)
  for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_yscale("log")
  figure.savefig(path, dpi=100)


def plot_alignment(records: list[dict], layers: Iterable[str], path: str) -> None:
  """Angle between each layer's W and its feedback matrix B against step."""
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6, 4), layout="constrained")
  ax = figure.subplots()
  rows = [r for r in records if r.get("split") == "validation" and "alignment" in r]
  plotted = False
  for layer in layers:
    points = [(r["step"], r["alignment"].get(layer)) for r in rows]
    points = [(s, a) for s, a in points if a is not None]
    if points:
      ax.plot(*zip(*points, strict=True), "o-", label=layer, markersize=3)
      plotted = True
  ax.set_xlabel("step")
  ax.set_ylabel("angle(W, B) [degrees]")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  if plotted:
    ax.legend()
  else:
    ax.text(0.5, 0.5, "no layer has a feedback matrix\n(bp is 0 degrees by definition;\n"
            "dfa and softhebb have none)", ha="center", va="center", transform=ax.transAxes)
  figure.savefig(path, dpi=100)


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


# -------------------------------------------------------------------------------- training


def _evaluate(programs: _Programs, state, batches: Iterable[dict]) -> dict:
  """Loss and accuracy over a whole split (padding masked out); ``batches`` are global."""
  totals = None
  for batch in batches:
    sums = programs.eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    return {"loss": None, "accuracy": None, "count": 0}
  totals = jax.device_get(totals)
  count = float(totals["count"])
  if not count:
    return {"loss": None, "accuracy": None, "count": 0}
  return {"loss": float(totals["loss_sum"]) / count,
          "accuracy": float(totals["correct"]) / count, "count": int(round(count))}


def _prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Keeps ``size`` items in flight (device transfers overlap the running step)."""
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) >= size:
      yield queue.popleft()
  yield from queue


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
  start_time = time.time()
  check_config(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  config_json = to_json(config)
  is_chief = jax.process_index() == 0

  dataset = data_lib.get_dataset(
      config.dataset, data_dir=config.data_dir, validation_size=config.validation_size,
      seed=config.seed, augment=config.augment, fashion_mnist_dir=config.fashion_mnist_dir,
      limit_train=config.limit_train, image_size=config.image_size)
  model = build_model(config, dataset.num_classes)
  mesh = Mesh(np.asarray(jax.devices()), (DATA_AXIS,))
  programs = _programs(model, _OptimizerSettings.from_config(config), mesh)
  replicated, batch_sharding = programs.replicated, programs.batch

  root_key = jax.random.key(config.seed)
  init_key, train_key, alignment_key = (jax.random.fold_in(root_key, i) for i in range(3))
  train_key = jax.device_put(train_key, replicated)
  state = _init_program(model, programs, tuple(dataset.image_shape),
                        parse_rule(config.rule))(init_key)
  layers = state.assignment.layers

  checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), config.keep_checkpoints)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
  restored = checkpointer.restore_latest(abstract)
  previous_seconds, pending = 0.0, ()
  if restored is not None:
    state, meta = restored
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
  train_metrics = _TrainMetrics(pending)
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

  def evaluate(split: str, step: int) -> tuple[dict, dict | None]:
    """The metrics record of ``split``, and for validation the raw alignment per layer."""
    result = _evaluate(programs, state, eval_batches(split))
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

  def save(step: int) -> None:
    nonlocal last_saved
    train_metrics.check(checkpoint_note())
    if not bool(programs.all_finite(state.params)):
      raise NonFiniteLossError(f"The parameters became NaN or infinite by step {step}. "
                               + checkpoint_note())
    checkpointer.save(step, state, {"wall_seconds": elapsed(), "pending": train_metrics.host})
    last_saved = step

  try:
    with _Preemption() as preemption:
      validation = None
      if start_step == 0:
        validation = evaluate("validation", 0)
      batches = _prefetch(
          map(to_global, dataset.train_batches(config.batch_size, config.seed, start_step)))
      step = start_step
      # Throughput excludes the first step of a session (compilation), evaluations and saves.
      timed_steps, timed_seconds = 0, 0.0
      interval_steps, interval_start, interval_paused = 0, None, 0.0
      while step < config.num_steps:
        if preemption.stop(step, config.log_every):
          logging.warning("SIGTERM: saving a checkpoint at step %d and stopping. Run the same "
                          "command again to resume.", step)
          if last_saved != step:
            save(step)
          return {"interrupted": True, "step": step}
        state, metrics = programs.train_step(state, next(batches), train_key)
        step += 1
        train_metrics.add(step, metrics)
        if interval_start is None:
          jax.block_until_ready(metrics)
          interval_start = time.time()
        else:
          interval_steps += 1
        if step % config.log_every == 0 or step == config.num_steps:
          train_metrics.check(checkpoint_note())
          seconds = time.time() - interval_start - interval_paused
          rate = interval_steps / seconds if interval_steps else float("nan")
          timed_steps, timed_seconds = timed_steps + interval_steps, timed_seconds + seconds
          summary = train_metrics.summary()
          writer.write({"step": step, "split": "train", **summary, "steps_per_second": rate,
                        "learning_rate": float(programs.schedule(step - 1)),
                        "wall_seconds": elapsed()})
          logging.info("step %d/%d  loss %.4f  accuracy %.4f  %.1f steps/s  ETA %s", step,
                       config.num_steps, summary["loss"], summary["accuracy"], rate,
                       _format_eta((config.num_steps - step) / rate) if rate > 0 else "?")
          interval_steps, interval_start, interval_paused = 0, time.time(), 0.0
        pause_start = time.time()
        if step % config.eval_every == 0 or step == config.num_steps:
          validation = evaluate("validation", step)
          logging.info("step %d  validation loss %.4f  accuracy %.4f", step,
                       validation[0]["loss"] or float("nan"),
                       validation[0]["accuracy"] or float("nan"))
        if step % config.checkpoint_every == 0 or step == config.num_steps:
          save(step)
        interval_paused += time.time() - pause_start

    if last_saved != step:
      save(step)
    if validation is None or validation[0]["step"] != step:  # resumed at the end
      validation = evaluate("validation", step)
    test, _ = evaluate("test", step)
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
        "steps_per_second": timed_steps / timed_seconds if timed_steps else None,
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
  finally:
    writer.close()
    checkpointer.close()
