"""Few-shot read-outs of label-free hidden layers (a second few-shot protocol for issue 5).

    python -m experiments.sparse_rule_label_free --workdir=runs/sparse_rule [--l2=1e-3]

Run after ``launch/sparse_rule.py`` on the same workdir: it reuses the trained networks. The
main protocol (``biojax.eval.few_shot``) trains every network from scratch on ``k`` labelled
examples per class. Here the hidden layer is the one trained on all 55,000 training images,
and only a linear read-out (``biojax.eval.linear_probe``, L2 weight ``l2``, fixed in advance,
not tuned on test data) is fitted on the ``k`` labelled examples per class (the same subsets
as the main protocol, ``few_shot_subset(dataset, k, seed)``), then scored on the 10,000 test
images. Raw pixels, read out the same way, are the floor.

This is a fair few-shot test only for rules whose hidden layer learns without labels: the
local rules (``sparse``, ``softhebb``), whose update uses no error. A ``bp``, ``fa`` or ``eg``
hidden layer was trained with all 55,000 labels, so its row is reported as a reference, marked
``label_free: false``, and is not a few-shot result. Writes ``label_free_few_shot.json`` in the
workdir; docs/sparse_rule.md section 5 reports it.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
import numpy as np

from experiments import sparse_rule

OUTPUT = "label_free_few_shot.json"


def label_free(cfg: ml_collections.ConfigDict) -> bool:
  """True when no hidden layer of the rule's network used an error (all are local rules)."""
  from biojax import rules

  specs = list(cfg.rule.split(",")) if isinstance(cfg.rule, str) else list(cfg.rule)
  hidden = [rules.parse_rule_spec(spec)[0] for spec in specs[:-1]]
  return all(rules.get_rule(rule).credit == "local" for rule in hidden)


def run(config: ml_collections.ConfigDict, workdir: str, l2: float = 1e-3) -> dict:
  """``{"pixels" | rule: {"label_free", "few_shot": {k: {"mean", "std", "accuracies"}}}}``."""
  from biojax import eval as bev
  from biojax import experiment

  config = sparse_rule.resolve(config)
  workdir = os.path.abspath(workdir)
  missing = [rule for rule in config.rules
             if not os.path.exists(os.path.join(workdir, rule, "train", experiment.REPORT_FILE))]
  if missing:  # before any work
    raise FileNotFoundError(
        f"No trained network for {', '.join(missing)} in {workdir}: run "
        f"`python launch/sparse_rule.py --workdir={workdir}` first (same config).")
  dataset = sparse_rule.load_dataset(config)
  shots = list(config.few_shot.shots)
  seeds = list(range(int(config.few_shot.seeds)))
  test_images = dataset._normalise(dataset.test_images)
  subsets = {(k, s): bev.few_shot_subset(dataset, k, s) for k in shots for s in seeds}

  def protocol(features) -> dict:
    test = features(test_images)
    out = {}
    for k in shots:
      accuracies = []
      for s in seeds[:1] if k == "all" else seeds:  # "all" is one subset: no seeds
        subset = subsets[(k, s)]
        accuracies.append(bev.linear_probe(
            features(dataset._normalise(subset.train_images)), subset.train_labels, test,
            dataset.test_labels, num_classes=dataset.num_classes, l2=l2)["test_accuracy"])
      out[str(k)] = {"mean": float(np.mean(accuracies)),
                     "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
                     "accuracies": accuracies}
    return out

  results = {"pixels": {"label_free": True,
                        "few_shot": protocol(lambda x: x.reshape(len(x), -1))}}
  for rule in config.rules:
    train_dir = os.path.join(workdir, rule, "train")
    cfg = sparse_rule.rule_config(config, rule)
    model = experiment.build_model(cfg, dataset.num_classes)
    variables = sparse_rule.load_variables(train_dir)
    hidden = [name for name in bev.kernels(variables["params"]) if name != "classifier"][-1]

    def features(x, model=model, variables=variables, hidden=hidden):
      return bev.hidden_activations(model, variables, x)[hidden]

    results[rule] = {"label_free": label_free(cfg), "layer": hidden,
                     "few_shot": protocol(features)}
  report = {"l2": l2, "shots": [str(k) for k in shots], "seeds": seeds, "rules": results}
  with open(os.path.join(workdir, OUTPUT), "w") as f:
    json.dump(report, f, indent=2)
  return report


def table(report: dict) -> str:
  shots = report["shots"]
  lines = ["| features | label-free | " + " | ".join(f"k={k}" for k in shots) + " |",
           "|---|---|" + "---|" * len(shots)]
  for name, result in report["rules"].items():
    cells = [f"{result['few_shot'][k]['mean']:.3f} +- {result['few_shot'][k]['std']:.3f}"
             for k in shots]
    lines.append(f"| {name} | {'yes' if result['label_free'] else 'no'} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  workdir, l2 = "runs/sparse_rule", 1e-3
  for arg in argv:
    if arg.startswith("--workdir="):
      workdir = arg.split("=", 1)[1]
    elif arg.startswith("--l2="):
      l2 = float(arg.split("=", 1)[1])
    else:
      raise SystemExit(f"Unknown argument {arg!r}. Usage: python -m "
                       "experiments.sparse_rule_label_free --workdir=DIR [--l2=X]")
  print(table(run(sparse_rule.get_config(), workdir, l2)))


if __name__ == "__main__":
  main(sys.argv[1:])
