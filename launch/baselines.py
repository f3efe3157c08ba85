"""Runs the single-rule baselines and writes a table (markdown + JSON).

    python launch/baselines.py --config=experiments/baselines.py --workdir=runs/baselines \
        [--config.models="('mlp',)"] [--config.train.num_steps=...]

Runs are sequential and each is resumable: a run whose report.json exists is not repeated,
and an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from biojax import experiment  # noqa: E402
from biojax.bench import machine  # noqa: E402
from biojax.nn import single_rule_specs, weight_layers  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/baselines.py",
                                          "Baselines config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/baselines", "Output directory.")


def mean_angle(report: dict) -> float | None:
  """Mean final alignment angle over the layers that have a feedback matrix, excluding the
  first layer (its B carries no error: nothing lies below it)."""
  angles = report.get("alignment") or {}
  layers = list(report.get("rules") or angles)[1:]
  values = [angles[n]["angle"] for n in layers
            if n in angles and angles[n].get("angle") is not None
            and not math.isnan(angles[n]["angle"])]
  return sum(values) / len(values) if values else None


def run_one(config, model: str, rule: str, workdir: str) -> dict:
  path = os.path.join(workdir, model, rule.replace("+", "_"))
  report_path = os.path.join(path, "report.json")
  if os.path.exists(report_path):
    with open(report_path) as f:
      return json.load(f)
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
  shapes = jax.eval_shape(experiment.build_model(cfg, 10).init, jax.random.key(0),
                          jax.numpy.zeros((1, 28, 28, 1)))
  cfg.rule = ",".join(single_rule_specs(rule, len(weight_layers(shapes))))
  logging.info("baseline %s / %s -> %s", model, rule, path)
  return experiment.train_and_evaluate(cfg, path)


def table(results: dict, config) -> str:
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


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(experiment.QuietOrbax())
  config = _CONFIG.value
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for model in config.models:
    results[model] = {}
    for rule in config.rules:
      report = run_one(config, model, rule, workdir)
      results[model][rule] = {
          "test_accuracy": report["test_accuracy"],
          "steps_per_second": report["steps_per_second"],
          "mean_alignment_angle": mean_angle(report),
          "rules": report.get("rules"),
          "wall_seconds": report.get("wall_seconds"),
      }
  markdown = table(results, config)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"machine": machine(), "python": platform.python_version(),
               "devices": jax.device_count(), "config": config.to_dict(),
               "results": results}, f, indent=2, default=str)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
