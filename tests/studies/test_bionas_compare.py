"""The BioNAS-DARTS against BioNAS-EG study: its statistics against SciPy's paired t-test and
numbers worked by hand, and its loop (with stand-in searches) resuming from finished runs."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from biojax.studies import bionas_compare
from experiments import bionas_compare as compare_config


def test_paired_difference_is_the_paired_t_interval():
  a, b = [0.5, 0.6, 0.7], [0.6, 0.65, 0.9]
  d = bionas_compare.paired_difference(a, b)
  # By hand: d = (0.1, 0.05, 0.2), mean 0.11667, sd 0.076376, t(0.975, 2) = 4.302653.
  assert d["mean"] == pytest.approx(0.116667, abs=1e-6)
  half = 4.302653 * 0.076376 / np.sqrt(3)
  assert d["interval"] == pytest.approx([0.116667 - half, 0.116667 + half], abs=1e-5)
  ci = stats.ttest_rel(b, a).confidence_interval(0.95)
  assert d["interval"] == pytest.approx([ci.low, ci.high], rel=1e-9)
  assert bionas_compare.verdict("darts", "eg", d).startswith("Within the seed spread")
  clear = bionas_compare.paired_difference([0.5, 0.6, 0.7], [0.61, 0.70, 0.82])
  assert bionas_compare.verdict("darts", "eg", clear).startswith("eg beats darts by 0.1100")
  worse = bionas_compare.paired_difference([0.61, 0.70, 0.82], [0.5, 0.6, 0.7])
  assert bionas_compare.verdict("darts", "eg", worse).startswith("darts beats eg by 0.1100")


def test_summary_is_mean_and_sample_std():
  s = bionas_compare.summary([1.0, 2.0, 4.0])
  assert (s["mean"], s["n"]) == (pytest.approx(7 / 3), 3)
  assert s["std"] == pytest.approx(np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                            + (4 - 7 / 3) ** 2) / 2))
  assert bionas_compare.summary([1.0])["std"] is None


def test_unknown_method_lists_the_valid_ones(tmp_path):
  config = compare_config.get_config()
  config.methods = ("darts", "random")
  with pytest.raises(ValueError, match="Valid methods: darts, eg"):
    bionas_compare.run(config, str(tmp_path))


def test_runs_every_method_and_seed_and_reads_finished_ones(tmp_path, monkeypatch):
  calls = []

  def fake(method, accuracy):
    def search(config, workdir):
      calls.append((method, config.seed, config.retrain.steps))
      report = {"test_accuracy": accuracy[config.seed], "search_seconds": 10.0 + config.seed,
                "wall_seconds": 20.0, "bp_weight_share": {"derived": 0.0},
                "validation_accuracy": 0.5, "genotype": f"{method}{config.seed}",
                "compiles": 3}
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(report, f)
      return report
    return search

  monkeypatch.setattr(bionas_compare, "SEARCHES", {
      "darts": fake("darts", {0: 0.70, 1: 0.72, 2: 0.71}),
      "eg": fake("eg", {0: 0.69, 1: 0.74, 2: 0.70})})
  config = compare_config.get_config()
  config.overrides = {"retrain": {"steps": 7}}
  out = bionas_compare.run(config, str(tmp_path))
  assert calls == [("darts", 0, 7), ("darts", 1, 7), ("darts", 2, 7), ("eg", 0, 7),
                   ("eg", 1, 7), ("eg", 2, 7)]
  assert out["methods"]["darts"]["test_accuracy"]["mean"] == pytest.approx(0.71)
  assert out["difference"]["values"] == pytest.approx([-0.01, 0.02, -0.01])
  assert out["verdict"].startswith("Within the seed spread")
  assert "| eg | 3 | 0.7100 ± 0.0265 |" in open(tmp_path / "comparison.md").read()
  calls.clear()
  again = bionas_compare.run(config, str(tmp_path))  # every run finished: nothing searched
  assert calls == [] and again["difference"] == out["difference"]
