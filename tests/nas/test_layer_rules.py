"""The layer-rule space: one rule gene per weight layer of an MLP. Genome format and errors,
the assignment of a real MLP against a hand mapping, the benchmark's use of the space, and a
whole search over it through the registry (the search loop needs nothing else)."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from biojax import nas, rules
from biojax import nn as bnn
from biojax.nas import search as search_lib

SPACE = nas.LayerRuleSpace(("bp", "fa", "usf+eg"), 3)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_layout_and_strings():
  assert SPACE.gene_sizes == (3, 3, 3) and SPACE.num_genes == 3
  assert list(range(3))[SPACE.architecture_genes] == []
  assert SPACE.rule_genes() == tuple((i, f"layer_{i}", ("bp", "fa", "usf+eg")) for i in range(3))
  assert SPACE.rule_names == ("bp", "fa", "usf")
  g = SPACE.encode(["usf+eg", "bp", "fa"])
  np.testing.assert_array_equal(g, [2, 0, 1])
  assert SPACE.to_string(g) == "usf+eg,bp,fa"
  np.testing.assert_array_equal(SPACE.from_string("usf+eg,,fa", rule="bp"), g)
  np.testing.assert_array_equal(SPACE.from_string("", rule="fa"), [1, 1, 1])
  assert SPACE.decode(g).rules == ("usf+eg", "bp", "fa")
  assert SPACE.cell_string(g) == "" and SPACE.architecture(g) == {}
  assert np.asarray(SPACE.expressed_genes(np.zeros((4, 3), np.int32))).all()


@pytest.mark.parametrize("call, message", [
    (lambda: SPACE.encode(["bp", "fa"]), "3 weight layers; got 2 rules"),
    (lambda: SPACE.encode("kp"), "Rule 'kp' .*layer 0.* Valid rules: bp, fa, usf\\+eg"),
    (lambda: SPACE.from_string("bp,,fa"), "No rule for layer 1"),
    (lambda: SPACE.validate([0, 0, 3]), r"Gene 2 \(rule of weight layer 2: 0=bp, 1=fa, "
                                        r"2=usf\+eg\) is 3"),
    (lambda: nas.LayerRuleSpace(("bp",), 0), "num_layers=0"),
    (lambda: nas.LayerRuleSpace(("bp", "bp"), 2), "lists a rule twice"),
])
def test_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_assignment_of_an_mlp_by_hand():
  model = bnn.MLP(4, hidden=(6, 5), options=rules.RuleOptions(rules=SPACE.rule_names))
  variables = model.init(jax.random.key(0), np.zeros((1, 3, 3, 1), np.float32))
  genomes = np.asarray([[2, 0, 1], [1, 1, 0]], np.int32)
  assignment = SPACE.assignment_fn(variables, model.options)(genomes)
  # Layers in the order of application; gene i -> layer i; "usf+eg" is usf with geometry 1.
  assert assignment.layers == ("dense_0", "dense_1", "classifier")
  usf, bp, fa = rules.rule_id("usf"), rules.rule_id("bp"), rules.rule_id("fa")
  np.testing.assert_array_equal(assignment.rule["dense_0"], [usf, fa])
  np.testing.assert_array_equal(assignment.rule["dense_1"], [bp, fa])
  np.testing.assert_array_equal(assignment.rule["classifier"], [fa, bp])
  np.testing.assert_array_equal(assignment.geometry["dense_0"], [1, 0])
  np.testing.assert_array_equal(assignment.geometry["classifier"], [0, 0])
  with pytest.raises(ValueError, match="3 weight layers .* the space 2"):
    nas.LayerRuleSpace(("bp",), 2).assignment_fn(variables)
  with pytest.raises(ValueError, match="leave out usf"):
    SPACE.assignment_fn(variables, rules.RuleOptions(rules=("bp", "fa")))


def test_the_benchmark_uses_this_space():
  from biojax import bench

  assert bench.LayerRuleSpace is nas.LayerRuleSpace


def test_a_search_over_the_space(tmp_path):
  spec = importlib.util.spec_from_file_location(
      "experiments_quickstart", os.path.join(REPO, "experiments", "quickstart.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.dataset = "synthetic"
  config.image_crop, config.image_pool = None, 1
  config.validation_size = 200
  config.space = {"name": "layer_rules", "rules": ("bp", "fa"), "hidden": (16,)}
  config.search.update({"population_size": 4, "num_children": 4, "tournament_size": 2,
                        "generations": 2})
  config.proxy.update({"steps": 3, "batch_size": 16, "validation_examples": 100,
                       "eval_batch_size": 50, "learning_rate": 0.05})
  config.baselines.random_rules = 2
  config.retrain.update({"steps": 2, "batch_size": 16, "eval_batch_size": 500})
  report = search_lib.search(config, str(tmp_path))

  with open(os.path.join(str(tmp_path), search_lib.CANDIDATES_FILE)) as f:
    candidates = [json.loads(line) for line in f]
  assert report["space"] == "layer_rules" and report["candidates_evaluated"] == 8
  space = nas.LayerRuleSpace(("bp", "fa"), 2)
  np.testing.assert_array_equal(space.from_string(report["best_genome"]),
                                report["best_genome_genes"])
  assert report["best_cell"] == "" and report["architectures_evaluated"] == 1
  assert set(report["single_rule_validation_accuracy"]) == {"bp", "fa"}
  assert len(report["random_rules_genomes"]) == 2
  # An MLP 64-16-10, counted by hand: weights and biases.
  assert report["best_num_params"] == 64 * 16 + 16 + 16 * 10 + 10
  assert {c["num_params"] for c in candidates} == {64 * 16 + 16 + 16 * 10 + 10}
  assert 0.0 <= report["test_accuracy"] <= 1.0
