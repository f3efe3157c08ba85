"""The sparse-rule study (biojax.studies.sparse_rule, experiments/sparse_rule.py) end to end in
its quick mode, dispatched by biojax.main, and the label-free protocol on its networks.

Checks the report's structure and value ranges, the files it writes and two properties that
hold at any training length (Dale adherence 1 from the E/I initialisation under
multiplicative steps, below 1 from the mixed one); not the floors of docs/sparse_rule.md,
which need the full run. The mixed-sign initialisation's Dale adherence is
tests/rules/test_sparse.py's.
"""

import json
import math

import pytest

from biojax import eval as bev
from biojax import main
from biojax.studies import sparse_rule, sparse_rule_label_free
from experiments import sparse_rule as sparse_rule_config
from experiments import sparse_rule_label_free as label_free_config

# A subset, to stay within a minute (each model compiles its programs once; the full run has
# every rule of experiments/sparse_rule.py).
RULES = ("sparse", "bp")
SHOTS = ("1", "5", "10", "50", "100", "all")
QUICK_EPSILONS = ["0.0", "0.05", "0.1"]  # experiments/sparse_rule.py QUICK, as JSON keys


def _fraction(value):
  return isinstance(value, float) and 0.0 <= value <= 1.0


def quick(config):
  config.quick = True
  config.train.dataset = "synthetic"  # no download: the generated 8x8 data set
  config.rules = RULES
  return config


@pytest.mark.slow
def test_quick_study_writes_a_complete_report(tmp_path):
  config = quick(sparse_rule_config.get_config())
  report = main.run(config, str(tmp_path))

  with open(tmp_path / "report.json") as f:
    assert json.load(f) == report
  for name in ("results.md", "robustness.png", "few_shot.png"):
    assert (tmp_path / name).stat().st_size > 0
  assert list(report["rules"]) == list(RULES)
  assert report["config"]["hidden"] == [32]  # the quick settings were applied
  for rule, result in report["rules"].items():
    for name in ("weights.png", "receptive_fields.png", "evaluation.json"):
      assert (tmp_path / rule / name).stat().st_size > 0, (rule, name)
    assert _fraction(result["test_accuracy"])
    layers = {"dense_0", "classifier"}
    assert set(result["dale_adherence"]) == layers | {"overall"}
    assert all(_fraction(v["adherence"]) for v in result["dale_adherence"].values())
    fit = result["lognormal_ks"]
    assert set(fit) == layers | {"overall", "init"}
    for layer in layers:
      assert _fraction(fit[layer]["ks_lognormal"]) and _fraction(fit[layer]["ks_normal"])
    assert _fraction(fit["init"]["dense_0"]["ks_lognormal"])
    for stats in result["synapse_sparsity"].values():
      assert _fraction(stats["zero_fraction"]) and _fraction(stats["small_fraction"])
      assert stats["small_fraction"] >= stats["zero_fraction"]
    (activity,) = result["activity_sparsity"].values()
    assert _fraction(activity["active_fraction"])
    population = activity["population_treves_rolls"]
    assert population is None or 1 / 32 - 1e-6 <= population <= 1.0
    robustness = result["robustness"]
    assert set(robustness) == {"fgsm", "pgd", "square", "transfer"}
    clean = {curve["0.0"] for curve in robustness.values()}
    assert len(clean) == 1  # every attack returns its input at epsilon 0
    for curve in robustness.values():
      assert list(curve) == QUICK_EPSILONS and all(_fraction(a) for a in curve.values())
    assert list(result["few_shot"]) == list(SHOTS)
    assert all(_fraction(a) for a in result["few_shot"].values())
    for k, detail in result["few_shot_detail"].items():
      assert math.isclose(detail["mean"], result["few_shot"][k])
      assert detail["num_train"] == (detail["num_train"] if k == "all" else int(k) * 10)
    summary = report["summary"][rule]
    assert summary["epsilon"] == 0.05 and _fraction(summary["pgd"])
    assert summary["test_accuracy"] == result["test_accuracy"]

  # Multiplicative steps keep every sign: the E/I network obeys Dale's law at any length.
  assert report["rules"]["sparse"]["dale_adherence"]["dense_0"]["adherence"] == 1.0
  assert report["rules"]["sparse"]["dale_adherence"]["classifier"]["adherence"] == 1.0
  assert report["rules"]["bp"]["dale_adherence"]["dense_0"]["adherence"] < 0.5
  assert report["rules"]["bp"]["synapse_sparsity"]["overall"]["zero_fraction"] == 0.0
  table = (tmp_path / "results.md").read_text()
  assert all(f"| {rule} |" in table for rule in RULES)

  # Resumable: a second run reuses every training and evaluation.
  again = sparse_rule.run(config, str(tmp_path))
  assert again["rules"] == report["rules"]

  # The label-free few-shot protocol reads out the trained networks' hidden layers; its
  # config is the study's with the read-out's L2 weight.
  free_config = quick(label_free_config.get_config())
  assert free_config.l2 == 1e-3
  free = main.run(free_config, str(tmp_path))
  assert list(free["rules"]) == ["pixels", *RULES]
  assert free["rules"]["sparse"]["label_free"] and not free["rules"]["bp"]["label_free"]
  assert (tmp_path / sparse_rule_label_free.OUTPUT).stat().st_size > 0
  for result in free["rules"].values():
    assert list(result["few_shot"]) == list(SHOTS)
    assert all(_fraction(v["mean"]) for v in result["few_shot"].values())
  # The pixel row is the probe on the same subset, computed here directly.
  dataset = sparse_rule.load_dataset(sparse_rule.resolve(config))
  subset = bev.few_shot_subset(dataset, 5, 0)
  flat = lambda x: dataset._normalise(x).reshape(len(x), -1)  # noqa: E731
  direct = bev.linear_probe(flat(subset.train_images), subset.train_labels,
                            flat(dataset.test_images), dataset.test_labels,
                            num_classes=dataset.num_classes, l2=1e-3)["test_accuracy"]
  assert free["rules"]["pixels"]["few_shot"]["5"]["accuracies"][0] == direct


def test_quick_settings_replace_the_sizes():
  config = sparse_rule_config.get_config()
  assert sparse_rule.resolve(config).hidden == (4000,)  # quick off: unchanged
  config.quick = True
  resolved = sparse_rule.resolve(config)
  assert resolved.hidden == (32,)
  assert (resolved.train.num_steps, resolved.train.batch_size) == (30, 10)
  assert resolved.robustness.epsilons == (0.0, 0.05, 0.1)
  assert resolved.few_shot.num_steps == (5,) * 6
  assert config.train.num_steps == 8000  # the caller's config is left as it was


def test_rule_configs_carry_each_rule_preset():
  config = sparse_rule_config.get_config()
  sparse = sparse_rule.rule_config(config, "sparse")
  assert sparse.rule == "sparse+eg,bp+eg"
  assert (sparse.learning_rate, sparse.num_steps) == (2e-2, 8000)
  assert sparse.model_kwargs.mlp.hidden == (4000,)
  assert sparse.model_kwargs.mlp.weight_init == "dale"
  assert sparse.rule_options.rules == ("bp", "sparse")
  assert sparse.rule_options.sparse.target_rate == 0.18
  assert sparse.rule_options.kp.decay == 1e-3  # not in the preset: experiments/train.py's
  assert sparse_rule.rule_config(config, "sparse_mixed").model_kwargs.mlp.weight_init == "mixed"
  softhebb = sparse_rule.rule_config(config, "softhebb")
  assert softhebb.rule == "softhebb,bp"  # the classifier learns by the delta rule
  assert (softhebb.optimizer, softhebb.learning_rate) == ("sgd", 0.05)
  assert softhebb.model_kwargs.mlp.hidden_init_scale == 25.0
  bp = sparse_rule.rule_config(config, "bp", seed=1)
  assert (bp.rule, bp.learning_rate, bp.seed, bp.optimizer) == ("bp,bp", 1e-3, 1, "adam")


def test_label_free_protocol_needs_the_trained_networks(tmp_path):
  config = quick(label_free_config.get_config())
  config.rules = ("sparse", "sparse_mixed", "bp")
  with pytest.raises(FileNotFoundError, match="No trained network for sparse, sparse_mixed, bp"):
    sparse_rule_label_free.run(config, str(tmp_path))
  assert not (tmp_path / sparse_rule_label_free.OUTPUT).exists()
