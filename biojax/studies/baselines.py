"""Single-rule baselines: every rule of ``config.rules`` on every model of ``config.models``.

    python -m biojax.main --config=experiments/baselines.py --workdir=runs/baselines \
        [--config.models="('mlp',)"] [--config.num_steps.mlp=2000]

Each run is ``config.train`` (experiments/train.py's fields) with ``model``, ``num_steps``
(``config.num_steps[model]``) and the rule on every weight layer set, then the rule's own
settings (``config.rule_overrides[rule]``: config fields, and model constructor arguments
under the model's name). A local rule (SoftHebb) trains the hidden layers and the classifier
learns by the delta rule (``bp`` at the output layer is exactly the delta rule;
:func:`biojax.nn.single_rule_specs`). Runs are sequential, one sub-directory
``<model>/<rule>`` each, trained by :func:`biojax.pipeline.train_and_evaluate`: a run whose
``report.json`` exists is not repeated, an interrupted one resumes from its checkpoint.
Writes ``results.md`` and ``results.json`` (test accuracy, steps/s and mean final alignment
angle per run) in the workdir; docs/results.md holds the latest table.
"""

from __future__ import annotations

import json
import math
import os
import platform

import jax
import ml_collections
from absl import logging

from biojax import builders, pipeline
from biojax.metrics import machine
from biojax.nn import single_rule_specs, weight_layers

RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"


def mean_angle(report: dict) -> float | None:
  """Mean final alignment angle over the layers that have a feedback matrix, excluding the
  first layer (its B carries no error: nothing lies below it)."""
  angles = report.get("alignment") or {}
  layers = list(report.get("rules") or angles)[1:]
  values = [angles[n]["angle"] for n in layers
            if n in angles and angles[n].get("angle") is not None
            and not math.isnan(angles[n]["angle"])]
  return sum(values) / len(values) if values else None


def run_directory(workdir: str, model: str, rule: str) -> str:
  return os.path.join(workdir, model, rule.replace("+", "_"))


def baseline_config(config: ml_collections.ConfigDict, model: str, rule: str
                    ) -> ml_collections.ConfigDict:
  """The training config of one baseline run (a config of experiments/train.py)."""
  cfg = config.train.copy_and_resolve_references()
  cfg.model = model
  cfg.num_steps = config.num_steps[model]
  overrides = config.rule_overrides.get(rule)
  if overrides is not None:
    with cfg.unlocked():
      for key, value in overrides.items():
        if key in cfg.model_kwargs:  # model constructor arguments
          if key == model:
            cfg.model_kwargs[model].update(dict(value))
        else:
          setattr(cfg, key, value)
  # The number of weight layers (for local rules) from an abstract init: no compute. The
  # count does not depend on the image size.
  shapes = jax.eval_shape(builders.build_model(cfg, 10).init, jax.random.key(0),
                          jax.numpy.zeros((1, 28, 28, 1)))
  cfg.rule = ",".join(single_rule_specs(rule, len(weight_layers(shapes))))
  return cfg


def table(results: dict, config: ml_collections.ConfigDict) -> str:
  """The markdown table of docs/results.md, headed by the machine and the budget."""
  m = machine()
  lines = ["| model | rule | test accuracy | steps/s | mean final alignment angle (deg) |",
           "|---|---|---|---|---|"]
  for model, by_rule in results.items():
    for rule, r in by_rule.items():
      angle = r["mean_alignment_angle"]
      lines.append(f"| {model} | {rule} | {r['test_accuracy']:.4f} | "
                   f"{r['steps_per_second']:.1f} | "
                   f"{'-' if angle is None else f'{angle:.1f}'} |")
  header = [f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}, "
            f"jax {m['jax']}.",
            f"Budget: {dict(config.num_steps)} steps of batch {config.train.batch_size}, "
            f"{config.train.optimizer} lr {config.train.learning_rate} "
            f"({config.train.schedule}).", ""]
  return "\n".join(header + lines) + "\n"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every (model, rule) of the config in turn; returns the content of
  ``results.json`` (``{"machine", "python", "devices", "config", "results": {model: {rule:
  {test_accuracy, steps_per_second, mean_alignment_angle, rules, wall_seconds}}}}``), or
  ``{"interrupted": True, "run": DIR, "step": N}`` when SIGTERM stopped a run."""
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for model in config.models:
    results[model] = {}
    for rule in config.rules:
      path = run_directory(workdir, model, rule)
      report_path = os.path.join(path, pipeline.REPORT_FILE)
      if os.path.exists(report_path):
        with open(report_path) as f:
          report = json.load(f)
      else:
        logging.info("baseline %s / %s -> %s", model, rule, path)
        report = pipeline.train_and_evaluate(baseline_config(config, model, rule), path)
        if report.get("interrupted"):
          return {"interrupted": True, "run": path, "step": report["step"]}
      results[model][rule] = {
          "test_accuracy": report["test_accuracy"],
          "steps_per_second": report["steps_per_second"],
          "mean_alignment_angle": mean_angle(report),
          "rules": report.get("rules"),
          "wall_seconds": report.get("wall_seconds"),
      }
  markdown = table(results, config)
  out = {"machine": machine(), "python": platform.python_version(),
         "devices": jax.device_count(), "config": config.to_dict(), "results": results}
  with open(os.path.join(workdir, RESULTS_MD), "w") as f:
    f.write(markdown)
  with open(os.path.join(workdir, RESULTS_JSON), "w") as f:
    json.dump(out, f, indent=2, default=str)
  print(markdown)
  return out
