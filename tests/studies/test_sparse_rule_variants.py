"""The sparse rule's ablation and tuning sweep (biojax.studies.sparse_rule_ablation and
sparse_rule_sweep; experiments/sparse_rule_ablation.py and sparse_rule_sweep.py): the merged
settings of the variants against values written out by hand, their errors, the measurement's
NumPy helpers against hand counts, and a tiny ablation run on synthetic data."""

import json

import numpy as np
import pytest

from biojax import main
from biojax import workdir as workdir_lib
from biojax.studies import sparse_rule_ablation as ablation
from biojax.studies import sparse_rule_sweep as sweep
from experiments import sparse_rule as sparse_rule_config
from experiments import sparse_rule_ablation as ablation_config
from experiments import sparse_rule_sweep as sweep_config


def sweep_variant(name: str):
  config = sweep_config.get_config()
  settings = sweep.variant_settings(config, config.variants[name])
  return ablation.variant_config(config.train, settings)


def ablation_variant(name: str, earlier: bool = False):
  config = ablation_config.get_config()
  changes = [config.earlier_settings] if earlier else []
  return ablation.variant_config(
      config.train, ablation.merge_settings(config.preset, config.ablations[name], *changes))


def test_merge_settings_merges_dicts_key_by_key_and_leaves_its_inputs():
  base = {"a": 1, "mlp": {"hidden": (4,), "weight_init": "dale"},
          "rule_options": {"sparse": {"temperature": 0.1, "target_rate": 0.18}}}
  merged = ablation.merge_settings(base, {"mlp": {"hidden": (8,)}},
                                   {"rule_options": {"sparse": {"target_rate": 0.1}}, "a": 2})
  assert merged == {"a": 2, "mlp": {"hidden": (8,), "weight_init": "dale"},
                    "rule_options": {"sparse": {"temperature": 0.1, "target_rate": 0.1}}}
  assert base["mlp"]["hidden"] == (4,) and base["rule_options"]["sparse"]["target_rate"] == 0.18


@pytest.mark.parametrize("name, hidden, steps, learning_rate, target_rate", [
    ("preset", (4000,), 8000, 2e-2, 0.18),
    ("base", (1000,), 3000, 1e-2, 0.1),
    ("w2000_steps8k", (2000,), 8000, 1e-2, 0.1),
    ("rho005", (1000,), 3000, 1e-2, 0.05),
    ("w2000_rho018_steps8k_lr2e-2", (2000,), 8000, 2e-2, 0.18),
    ("two_layers", (1000, 1000), 3000, 1e-2, 0.1),
])
def test_sweep_variants_start_from_the_preset_or_the_earlier_one(name, hidden, steps,
                                                                 learning_rate, target_rate):
  cfg = sweep_variant(name)
  assert (cfg.model_kwargs.mlp.hidden, cfg.num_steps, cfg.learning_rate) == (
      hidden, steps, learning_rate)
  assert cfg.rule_options.sparse.target_rate == target_rate
  # Kept from the preset in every variant of this list.
  assert cfg.model_kwargs.mlp.weight_init == "dale"
  assert cfg.model_kwargs.mlp.inhibitory_fraction == 0.2
  assert cfg.rule_options.sparse.elimination_threshold == 0.05
  assert cfg.rule_options.rules == ("bp", "sparse")
  assert cfg.model == "mlp" and cfg.seed == 0 and cfg.augment is True


def test_sweep_and_ablation_variants_replace_plain_fields():
  sgd = sweep_variant("sgd_lr1")
  assert (sgd.optimizer, sgd.momentum, sgd.learning_rate, sgd.num_steps) == ("sgd", 0.9, 1.0,
                                                                            3000)
  assert sgd.model_kwargs.mlp.hidden == (1000,)
  assert sgd.rule_options.sparse.temperature == 0.1
  assert sweep_variant("two_layers").rule == ("sparse+eg", "sparse+eg", "bp+eg")
  assert ablation_variant("full").rule == ("sparse+eg", "bp+eg")
  assert ablation_variant("no_homeostasis").rule_options.sparse.homeostasis is False
  additive = ablation_variant("additive", earlier=True)
  assert additive.rule == ("sparse", "bp+eg")
  assert (additive.model_kwargs.mlp.hidden, additive.num_steps) == ((1000,), 3000)
  assert ablation_variant("mixed_init").model_kwargs.mlp.weight_init == "mixed"
  # The tables in the configs are those of experiments/sparse_rule.py, run in its order.
  config = ablation_config.get_config()
  assert config.ablations.to_dict() == sparse_rule_config.ABLATIONS
  assert config.names == ("full", "no_competition", "no_homeostasis", "no_elimination",
                          "additive", "mixed_init")
  assert sweep_config.get_config().names[:4] == ("preset", "base", "steps8k", "w2000")


def test_unknown_fields_and_names_fail_before_any_work(tmp_path):
  config = ablation_config.get_config()
  with pytest.raises(KeyError, match="Unknown config field 'optimiser'"):
    ablation.variant_config(config.train, ablation.merge_settings(config.preset,
                                                                  {"optimiser": "sgd"}))
  config = sweep_config.get_config()
  config.names = ("preset", "w9999")
  with pytest.raises(ValueError, match="Unknown variant 'w9999'. Valid variants: "):
    main.run(config, str(tmp_path))
  config.variants["preset"]["start"] = "later"
  with pytest.raises(ValueError, match="Unknown start 'later'. Valid starts: preset, earlier"):
    sweep.variant_settings(config, config.variants["preset"])
  config = ablation_config.get_config()
  config.names = ("full,no_such",)  # a comma list from the command line
  with pytest.raises(ValueError, match="Unknown ablation 'no_such'. Valid ablations: "):
    main.run(config, str(tmp_path))
  # Nothing was started: the workdir holds only main.run's lock, released and empty.
  assert [p.name for p in tmp_path.iterdir()] == [workdir_lib.LOCK_FILE]
  assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == ""


def test_dale_and_log_ks_against_hand_counts():
  w = np.array([[1.0, 2.0], [-1.0, -3.0], [1.0, -1.0], [0.0, 2.0]])
  assert ablation.dale(w) == 0.75  # rows 1, 2 and 4 keep one sign (zeros do not count)
  lognormal = np.exp(np.random.default_rng(0).normal(size=20000))
  assert ablation.log_ks(lognormal) < 0.01
  # log|w| of two point masses: the empirical CDF jumps by 1/2 at -1 and 1 (standardised).
  assert ablation.log_ks(np.array([np.e, 1 / np.e] * 50)) == pytest.approx(0.5 - 0.1587, abs=1e-3)


@pytest.mark.slow
def test_a_tiny_ablation_records_each_variant_once(tmp_path):
  config = ablation_config.get_config()
  config.train.dataset = "synthetic"
  config.train.batch_size = 32
  config.preset.num_steps = 5
  config.preset.mlp.hidden = (16,)
  config.names = ("full", "no_elimination")
  config.probe = True
  report = main.run(config, str(tmp_path))
  assert list(report["variants"]) == ["full", "no_elimination"]
  for name, record in report["variants"].items():
    assert record["name"] == name and record["seed"] == 0
    assert record["settings"]["mlp"]["hidden"] == [16]
    for key in ("test_accuracy", "zeros_all", "zeros_hidden", "active_fraction",
                "dale_classifier", "linear_probe_accuracy"):
      assert 0.0 <= record[key] <= 1.0, key
    # The E/I initialisation under multiplicative steps keeps every sign.
    assert record["dale_hidden"] == 1.0
  assert report["variants"]["no_elimination"]["zeros_all"] == 0.0
  assert report["variants"]["no_elimination"]["settings"]["rule_options"]["sparse"][
      "elimination"] is False
  lines = (tmp_path / ablation.RESULTS_FILE).read_text().splitlines()
  assert [json.loads(line)["name"] for line in lines] == ["full", "no_elimination"]
  # A second run trains nothing: every variant is recorded with the same settings.
  again = main.run(config, str(tmp_path))
  assert again["variants"] == report["variants"]
  assert len((tmp_path / ablation.RESULTS_FILE).read_text().splitlines()) == 2
