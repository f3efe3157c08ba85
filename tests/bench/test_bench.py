"""The benchmark suite (biojax.bench) runs and writes well-formed output (it checks no
speeds); the targets of its rule-overhead section."""

import json
import pathlib
import subprocess
import sys

import pytest

from biojax import bench, rules
from biojax.nas import evaluator as evaluator_lib

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


def _positive(mapping):
  assert mapping, "empty"
  for name, value in mapping.items():
    assert value > 0, name


@pytest.mark.slow  # every bench section at its tiny size
def test_bench_tiny_writes_report(tmp_path):
  # From the repository root: the NAS settings come from experiments/quickstart.py (--config).
  subprocess.run([sys.executable, "-m", "biojax.bench", f"--out={tmp_path}", "--tiny"],
                 check=True, capture_output=True, timeout=600, cwd=REPO)
  report = json.loads((tmp_path / "bench.json").read_text())
  assert report["nas_config_source"] == "experiments/quickstart.py"
  for key in ("cpu", "cores", "jax", "backend"):
    assert report["machine"][key]
  assert report["machine"]["backend"] == "cpu"
  assert report["command"].endswith("--tiny")

  # 1. Rule overhead.
  (workload,) = report["rule_overhead"].values()
  for name in rules.rule_names():
    assert workload["seconds_per_step"][name] > 0
  _positive(workload["ratio_to_bp"])
  seconds = workload["seconds_per_step"]
  for name, ratio in workload["ratio_to_bp"].items():  # ratios of the times it reports
    assert abs(ratio - seconds[name] / seconds["bp"]) < 1e-9 * ratio, name

  # 2. Compilations: at least 64 distinct genomes; every program compiled exactly once.
  compiled = report["compilations"]
  assert compiled["distinct_genomes"] >= 64
  assert compiled["xla_compilations"] >= 1
  assert all(v == 1 for v in compiled["compiled_variants_per_program"].values())
  assert not any(compiled["xla_compilations_per_generation"][1:])

  # 3. Throughput: rates and ratios positive, the naive loop trained the same candidate.
  throughput = report["search_throughput"]
  _positive(throughput["candidates_per_minute"])
  assert throughput["ratio_search_to_naive"] > 0
  assert throughput["naive"][0]["xla_compilations"] >= 2  # its own train and eval programs
  assert all(abs(d) <= 1.0 for d in throughput["naive_accuracy_minus_evaluator"])

  # 4. Against the machine.
  machine = report["against_the_machine"]
  assert machine["flops_per_step_by_hand"] > 0
  _positive(machine["flops_per_second"])
  assert machine["ratio"] > 0

  # 5. Strategies (--tiny: vmap and sequential) against the single-candidate program.
  strategies_report = dict(report["evaluator_strategies"])
  _positive(strategies_report.pop("convolution in a loop")["seconds_per_convolution"])
  for strategies in strategies_report.values():
    relative = strategies["per_candidate_relative_to_single"]
    assert {"single candidate", "vmap", "sequential"} <= set(relative)
    assert set(relative) <= {"single candidate", *evaluator_lib.STRATEGIES}
    _positive(relative)
    assert strategies["fastest"] in evaluator_lib.STRATEGIES

  # 6. Memory of 16 candidates.
  memory = report["memory"]
  assert memory["workload"]["population"] == 16
  for entry in memory["strategies"].values():
    assert entry["total_bytes"] > 0 and entry["bytes_per_candidate"] > 0

  markdown = (tmp_path / "bench.md").read_text()
  for heading in ("ratio to bp", "## 2. Compilations", "## 3. Search throughput",
                  "## 4. Against the machine", "## 5. Evaluator strategies", "## 6. Memory"):
    assert heading in markdown


def test_every_rule_but_bp_has_a_step_time_target():
  assert bench.target_of("bp") is None
  assert bench.target_of("plain jax.grad") is None  # not a rule
  assert (bench.target_of("fa"), bench.target_of("kp"), bench.target_of("eg")) == (1.10, 1.20,
                                                                                  1.10)
  for name in rules.rule_names():
    if name != "bp":
      assert 1.0 < bench.target_of(name) <= 1.5, name


def test_rule_overhead_times_the_lean_build_and_plain_grad():
  """The default (non-tiny) bench also times bp in a build with only the error-driven rules
  and a plain jax.grad step; --tiny skips both, so they are run here on a tiny MLP."""
  from biojax import nn as bnn
  from biojax.bench import rule_overhead

  out = rule_overhead._rule_overhead_one(bnn.MLP(10, hidden=(8,)), (4, 28, 28, 1), 1, 1,
                                         None, True, True)
  ratios = out["ratio_to_bp"]
  assert set(rules.rule_names()) <= set(ratios) and ratios["bp"] == 1.0
  assert {"bp (error-driven build)", "plain jax.grad"} <= set(ratios)
  assert out["bp_over_plain_jax_grad"] > 0
