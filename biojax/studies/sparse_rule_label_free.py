"""Few-shot read-outs of label-free hidden layers: a second few-shot protocol for the
sparse-rule study (docs/sparse_rule.md, section 5).

    python -m biojax.main --config=experiments/sparse_rule_label_free.py \
        --workdir=runs/sparse_rule [--config.l2=1e-3]

Run after the sparse-rule study (:mod:`biojax.studies.sparse_rule`) on the same workdir and
config: it reuses the trained networks. The main protocol (:func:`biojax.eval.few_shot`)
trains every network from scratch on ``k`` labelled examples per class. Here the hidden layer
is the one trained on all training images, and only a linear read-out
(:func:`biojax.eval.linear_probe`, L2 weight ``config.l2``, fixed in advance, not tuned on
test data) is fitted on the ``k`` labelled examples per class (the same subsets as the main
protocol, ``few_shot_subset(dataset, k, seed)``), then scored on the test images. Raw pixels,
read out the same way, are the floor.

This is a fair few-shot test only for rules whose hidden layer learns without labels: the
local rules (``sparse``, ``softhebb``), whose update uses no error. A ``bp``, ``fa`` or ``eg``
hidden layer was trained with all labels, so its row is reported as a reference, marked
``label_free: false``, and is not a few-shot result. Writes ``label_free_few_shot.json`` in the
workdir.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from biojax import builders, rules
from biojax import eval as bev
from biojax.studies import sparse_rule

OUTPUT = "label_free_few_shot.json"


def label_free(cfg: ml_collections.ConfigDict) -> bool:
  """True when no hidden layer of the rule's network used an error (all are local rules)."""
  specs = list(cfg.rule.split(",")) if isinstance(cfg.rule, str) else list(cfg.rule)
  hidden = [rules.parse_rule_spec(spec)[0] for spec in specs[:-1]]
  return all(rules.get_rule(rule).credit == "local" for rule in hidden)


def table(report: dict) -> str:
  """The markdown table of docs/sparse_rule.md: mean +- std per features and ``k``."""
  shots = report["shots"]
  lines = ["| features | label-free | " + " | ".join(f"k={k}" for k in shots) + " |",
           "|---|---|" + "---|" * len(shots)]
  for name, result in report["rules"].items():
    cells = [f"{result['few_shot'][k]['mean']:.3f} +- {result['few_shot'][k]['std']:.3f}"
             for k in shots]
    lines.append(f"| {name} | {'yes' if result['label_free'] else 'no'} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``{"l2", "shots", "seeds", "rules": {"pixels" | rule: {"label_free", "few_shot": {k:
  {"mean", "std", "accuracies"}}}}}`` (also ``workdir/label_free_few_shot.json``)."""
  config = sparse_rule.resolve(config)
  l2 = float(config.l2)
  workdir = os.path.abspath(workdir)
  missing = [rule for rule in config.rules
             if sparse_rule.trained_report(os.path.join(workdir, rule, "train")) is None]
  if missing:  # before any work
    raise FileNotFoundError(
        f"No trained network for {', '.join(missing)} in {workdir}: run `python -m "
        f"biojax.main --config=experiments/sparse_rule.py --workdir={workdir}` first (same "
        "config).")
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
    model = builders.build_model(cfg, dataset.num_classes)
    variables = sparse_rule.load_variables(train_dir)
    hidden = [name for name in bev.kernels(variables["params"]) if name != "classifier"][-1]

    def features(x, model=model, variables=variables, hidden=hidden):
      return bev.hidden_activations(model, variables, x)[hidden]

    results[rule] = {"label_free": label_free(cfg), "layer": hidden,
                     "few_shot": protocol(features)}
  report = {"l2": l2, "shots": [str(k) for k in shots], "seeds": seeds, "rules": results}
  with open(os.path.join(workdir, OUTPUT), "w") as f:
    json.dump(report, f, indent=2)
  print(table(report))
  return report
