"""The single-rule baselines (biojax.studies.baselines, experiments/baselines.py): the training
config of each run against values written out by hand, the alignment summary, and a tiny run
of two rules on synthetic data dispatched by biojax.main."""

import json
import math

import pytest

from biojax import main, rules
from biojax.studies import baselines
from experiments import baselines as baselines_config


def test_the_config_covers_every_rule_on_both_models():
  config = baselines_config.get_config()
  assert config.task == "baselines"
  assert config.models == ("mlp", "convnet")
  assert set(config.rules) == {*rules.rule_names(), "eg"}
  assert dict(config.num_steps) == {"mlp": 8600, "convnet": 2000}


def test_each_run_is_train_with_the_model_the_rule_and_its_paper_settings():
  config = baselines_config.get_config()
  fa = baselines.baseline_config(config, "mlp", "fa")
  # MLP 784-256-256-10: three weight layers; experiments/train.py's optimizer.
  assert (fa.model, fa.rule, fa.num_steps) == ("mlp", "fa,fa,fa", 8600)
  assert (fa.optimizer, fa.learning_rate) == ("adam", 1e-3)
  # A local rule trains the hidden layers; the classifier learns by the delta rule (bp).
  softhebb = baselines.baseline_config(config, "mlp", "softhebb")
  assert softhebb.rule == "softhebb,softhebb,bp"
  assert (softhebb.optimizer, softhebb.learning_rate) == ("sgd", 0.05)
  assert softhebb.model_kwargs.mlp.center_hidden is True
  assert softhebb.model_kwargs.mlp.hidden_init_scale == 25.0
  assert softhebb.model_kwargs.mlp.hidden == (256, 256)
  # ConvNet: two convolutions, a hidden dense layer and the classifier; the MLP's
  # constructor settings are not applied to it.
  conv = baselines.baseline_config(config, "convnet", "softhebb")
  assert (conv.rule, conv.num_steps, conv.optimizer) == ("softhebb,softhebb,softhebb,bp", 2000,
                                                         "sgd")
  assert conv.model_kwargs.convnet.to_dict() == {"channels": (32, 64), "hidden": 128}
  assert baselines.baseline_config(config, "convnet", "usf+eg").rule == "usf+eg," * 3 + "usf+eg"


def test_mean_angle_leaves_out_the_first_layer_and_missing_angles():
  report = {"rules": {"dense_0": "fa", "dense_1": "fa", "dense_2": "dfa", "classifier": "fa"},
            "alignment": {"dense_0": {"angle": 80.0}, "dense_1": {"angle": 10.0},
                          "dense_2": {"angle": None}, "classifier": {"angle": 30.0}}}
  assert baselines.mean_angle(report) == 20.0
  report["alignment"]["classifier"]["angle"] = math.nan
  assert baselines.mean_angle(report) == 10.0
  assert baselines.mean_angle({"rules": {"dense_0": "dfa"}, "alignment": {}}) is None


@pytest.mark.slow
def test_a_tiny_run_writes_the_table_and_reuses_finished_runs(tmp_path):
  config = baselines_config.get_config()
  config.models = ("mlp",)
  config.rules = ("bp", "softhebb")
  config.num_steps.mlp = 20
  config.train.dataset = "synthetic"
  config.train.model_kwargs.mlp.hidden = (16,)
  config.train.update({"eval_every": 20, "checkpoint_every": 20, "log_every": 10})
  out = main.run(config, str(tmp_path))
  assert json.loads((tmp_path / baselines.RESULTS_JSON).read_text())["results"] == out["results"]
  results = out["results"]["mlp"]
  assert list(results) == ["bp", "softhebb"]
  for rule, result in results.items():
    report = json.loads((tmp_path / "mlp" / rule / "report.json").read_text())
    assert report["step"] == 20
    assert result["test_accuracy"] == report["test_accuracy"]
    assert 0.0 <= result["test_accuracy"] <= 1.0
  assert results["softhebb"]["rules"] == {"dense_0": "softhebb", "classifier": "bp"}
  assert results["bp"]["mean_alignment_angle"] == pytest.approx(0.0, abs=0.1)  # B = W
  table = (tmp_path / baselines.RESULTS_MD).read_text()
  assert "| mlp | bp |" in table and "| mlp | softhebb |" in table
  # A second run reads the finished runs' reports and trains nothing.
  stamp = (tmp_path / "mlp" / "bp" / "report.json").stat().st_mtime_ns
  assert main.run(config, str(tmp_path))["results"] == out["results"]
  assert (tmp_path / "mlp" / "bp" / "report.json").stat().st_mtime_ns == stamp
