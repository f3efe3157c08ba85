"""Config -> objects: the model, its rule options and assignment spec, and the optimizer.

Every place that builds one of these from an ``ml_collections.ConfigDict`` calls these
functions (the pipeline, the NAS retrain, few-shot training, the studies), so a config field
means the same thing everywhere. The fields are those of experiments/train.py's
``get_config()``; :func:`build_optimizer` also reads the optimizer sections of the NAS configs
(``proxy``, ``retrain``: ``steps`` instead of ``num_steps``).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax

from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.nn import get_model

# The fields of a training config (experiments/train.py documents each).
CONFIG_KEYS = (
    "dataset", "data_dir", "fashion_mnist_dir", "validation_size", "limit_train", "augment",
    "image_size", "model", "model_kwargs", "rule", "rule_options", "seed", "batch_size",
    "num_steps", "optimizer", "learning_rate", "momentum", "schedule", "warmup_steps",
    "weight_decay", "clip_norm", "eval_batch_size", "eval_every", "checkpoint_every",
    "keep_checkpoints", "log_every",
)
# Fields a training config may have: ``task`` names what biojax.main runs ("train").
OPTIONAL_CONFIG_KEYS = ("task",)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming any unknown or missing field, or an invalid value."""
  keys = set(config.keys())
  valid = (*CONFIG_KEYS, *OPTIONAL_CONFIG_KEYS)
  unknown = sorted(keys - set(valid))
  if unknown:
    hints = []
    for key in unknown:
      close = difflib.get_close_matches(key, valid, n=1)
      hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(f"Unknown config field(s): {', '.join(hints)}. Valid fields: "
                     f"{', '.join(valid)}.")
  if config.get("task", "train") != "train":
    raise ValueError(f"config.task={config.task!r}: a training config has task 'train'.")
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


def build_rule_options(config: ml_collections.ConfigDict) -> rules_lib.RuleOptions:
  """The :class:`biojax.rules.RuleOptions` of ``config.rule_options``."""
  options = config.rule_options
  options = options.to_dict() if isinstance(options, ml_collections.ConfigDict) else dict(options)
  return rules_lib.RuleOptions.from_dict(options)


def _model_kwargs(config: ml_collections.ConfigDict) -> dict:
  kwargs = config.model_kwargs.get(config.model, ml_collections.ConfigDict())
  kwargs = kwargs.to_dict() if isinstance(kwargs, ml_collections.ConfigDict) else dict(kwargs)
  # Flax modules are hashed (the compiled programs are cached by model): lists -> tuples.
  return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  """The model of ``config`` with its ``model_kwargs`` entry and the rule options."""
  options = build_rule_options(config)
  kwargs = _model_kwargs(config)
  try:
    return get_model(config.model, num_classes, options=options, **kwargs)
  except TypeError as error:
    raise ValueError(f"config.model_kwargs.{config.model}={kwargs} does not fit model "
                     f"{config.model!r}: {error}") from error


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """The optimizer fields of a config section, hashable (compiled programs are cached on
  them). The names are the config's; ``num_steps`` is the length of the schedule."""

  optimizer: str
  learning_rate: float
  schedule: str
  num_steps: int
  warmup_steps: int
  momentum: float
  weight_decay: float
  clip_norm: float


def optimizer_settings(section: Any, total_steps: int | None = None) -> OptimizerSettings:
  """The :class:`OptimizerSettings` of ``section`` (a ConfigDict with ``optimizer``,
  ``learning_rate`` and optionally ``schedule`` (default constant), ``warmup_steps``,
  ``momentum``, ``weight_decay``, ``clip_norm`` (default 0), or OptimizerSettings).

  The schedule spans ``total_steps``, default the section's ``num_steps`` or ``steps``.
  """
  def field(name: str, default: Any = None) -> Any:
    value = getattr(section, name, None)
    return default if value is None else value

  if total_steps is None:
    total_steps = field("num_steps", field("steps", 0))
  return OptimizerSettings(
      optimizer=section.optimizer, learning_rate=float(section.learning_rate),
      schedule=field("schedule", "constant"), num_steps=int(total_steps),
      warmup_steps=int(field("warmup_steps", 0)), momentum=float(field("momentum", 0.0)),
      weight_decay=float(field("weight_decay", 0.0)), clip_norm=float(field("clip_norm", 0.0)))


def build_optimizer(section: Any, total_steps: int | None = None
                    ) -> tuple[optax.GradientTransformationExtraArgs, Callable]:
  """``(tx, schedule)``: the optax chain of ``section`` (see :func:`optimizer_settings`) and
  its learning-rate schedule (step -> rate).

  The chain is :func:`biojax.make_optimizer`'s (``[clip] -> [weight decay] -> optimizer ->
  geometry``) over :func:`biojax.make_schedule`'s schedule.
  """
  s = optimizer_settings(section, total_steps)
  schedule = train_lib.make_schedule(s.learning_rate, s.schedule, s.num_steps, s.warmup_steps)
  tx = train_lib.make_optimizer(s.optimizer, schedule, momentum=s.momentum,
                                weight_decay=s.weight_decay, clip_norm=s.clip_norm)
  return tx, schedule
