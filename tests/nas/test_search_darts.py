"""The search loop over the DARTS space: report and outputs, programs compiled once per
distinct architecture (and never for new rules), baselines on the best architecture, and
the retrain of the best genotype.

One tiny search (DartsNetwork C=4, 3 cells, on the 8x8 synthetic data set, 2 generations of
1 child, 2 proxy steps, XLA backend optimisations off) shared by every test; most of its
time is compiling one program set per distinct architecture."""

import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import data
from biojax.nas import darts
from biojax.nas import search as search_lib

FAST_COMPILE = {"xla_backend_optimization_level": 0}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The "sequential" strategy (the default on CPU) compiles five programs per architecture:
# setup (init), start, train step, validation step and finish.
PROGRAMS_PER_ARCHITECTURE = 5


def load_config(name: str):
  """experiments/<name>.py's config, loaded by path."""
  spec = importlib.util.spec_from_file_location(
      f"experiments_{name}", os.path.join(REPO, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def tiny_darts_config(**overrides):
  config = load_config("quickstart")
  config.dataset = "synthetic"
  config.image_crop = None
  config.image_pool = 1
  config.validation_size = 200
  config.space.name = "darts"
  config.space.rules = ("bp", "fa")
  config.space.macro_rules = ("bp",)  # stem, preprocessing, classifier fixed to BP
  config.space.C = 4
  config.space.layers = 3
  config.space.variant = "cifar"
  config.search.population_size = 2
  config.search.num_children = 1  # 2 candidates: 2 architectures (each compiles 5 programs)
  config.search.tournament_size = 2
  config.search.generations = 2
  config.proxy.steps = 2
  config.proxy.batch_size = 16
  config.proxy.validation_examples = 64
  config.proxy.eval_batch_size = 64
  config.proxy.learning_rate = 0.01
  config.proxy.compiler_options = FAST_COMPILE
  config.proxy.group_size = None  # sequential on CPU: groups of 1
  config.proxy.cache_size = 16
  config.baselines.random_rules = 2
  config.retrain.steps = 2
  config.retrain.batch_size = 16
  config.retrain.eval_batch_size = 500
  config.retrain.layers = None
  config.retrain.compiler_options = FAST_COMPILE
  config.log_every = 1
  for key, value in overrides.items():
    section, _, name = key.partition(".")
    config[section][name] = value
  return config


def jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@functools.cache
def _run(root: str):
  workdir = os.path.join(root, "darts")
  report = search_lib.search(tiny_darts_config(), workdir)
  return (report, jsonl(os.path.join(workdir, search_lib.HISTORY_FILE)),
          jsonl(os.path.join(workdir, search_lib.CANDIDATES_FILE)), workdir)


pytestmark = pytest.mark.slow  # compiling one program set per architecture: minutes on a CPU


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return _run(str(tmp_path_factory.mktemp("search_darts")))


def architecture(genome):
  return tuple(genome[darts.ARCHITECTURE_GENES])


def test_report_and_outputs(run):
  report, history, candidates, workdir = run
  for name in (search_lib.REPORT_FILE, search_lib.FITNESS_PLOT, search_lib.RULE_FREQUENCY_PLOT,
               search_lib.ACCURACY_PARAMS_PLOT, search_lib.CONFIG_FILE):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert report["space"] == "darts" and report["strategy"] == "sequential"
  assert report["candidates_evaluated"] == 2 == len(candidates)
  assert [r["num_evaluated"] for r in history] == [1, 2]
  space = search_lib.build_space(tiny_darts_config())
  assert isinstance(space, darts.DartsSpace)
  best = np.asarray(report["best_genome_genes"], np.int32)
  np.testing.assert_array_equal(space.from_string(report["best_genome"]), best)
  fitness = [c["fitness"] for c in candidates]
  assert report["best_validation_accuracy"] == pytest.approx(max(fitness))
  assert report["best_genome"] == candidates[int(np.argmax(fitness))]["string"]
  # best_cell: the architecture in the authors' notation.
  assert report["best_cell"] == space.cell_string(best)
  np.testing.assert_array_equal(space.from_string(report["best_cell"], rule="bp")[:32],
                                best[:32])
  assert report["architectures_evaluated"] == len({architecture(c["genome"])
                                                   for c in candidates})
  # Rule frequencies name the DARTS layers; macro layers hold only BP here.
  frequency = history[-1]["rule_frequency"]
  assert list(frequency) == [f"{c}/edge{e}" for c in ("normal", "reduce") for e in range(8)] + [
      "stem", "preprocess", "classifier"]
  assert frequency["stem"] == {"bp": 1.0}
  assert 0.0 <= report["test_accuracy"] <= 1.0 and report["retrain_steps"] == 2
  assert report["failed_candidates"] == 0


def test_parameter_counts_are_those_of_each_architecture(run):
  report, _, candidates, _ = run
  space = search_lib.build_space(tiny_darts_config())

  def count(genome):
    model = darts.DartsNetwork(genotype=space.genotype(np.asarray(genome, np.int32)), C=4,
                               layers=3, num_classes=10, dfa=False)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    return darts.parameter_count(shapes["params"])

  for c in candidates:
    assert c["num_params"] == count(c["genome"])
  assert report["best_num_params"] == count(report["best_genome_genes"])


def test_programs_are_compiled_once_per_distinct_architecture(run):
  report, history, candidates, _ = run
  seen, new = set(), []
  for record in history:
    archs = {architecture(c["genome"]) for c in candidates
             if c["generation"] == record["generation"]}
    new.append(len(archs - seen))
    seen |= archs
  assert new[0] >= 1
  # Generation 0 may also compile a few one-off eager operations of the process.
  assert history[0]["compiles"] >= PROGRAMS_PER_ARCHITECTURE * new[0]
  for record, n in zip(history[1:], new[1:], strict=True):
    assert record["compiles"] == PROGRAMS_PER_ARCHITECTURE * n, (record, new)
  assert report["compiles"] == sum(r["compiles"] for r in history)
  # The baselines (new rules on the best architecture) reuse its programs.
  assert report["baseline_compiles"] == 0


def test_baselines_on_the_best_architecture(run):
  report, _, _, _ = run
  config = tiny_darts_config()
  space = search_lib.build_space(config)
  best = np.asarray(report["best_genome_genes"], np.int32)
  single, random = search_lib.baseline_genomes(space, best, 2, jax.random.key(5))
  assert list(single) == ["bp", "fa"]
  for rule, genome in single.items():
    np.testing.assert_array_equal(genome[darts.ARCHITECTURE_GENES],
                                  best[darts.ARCHITECTURE_GENES])
    words = space.decode(genome)
    assert set(words.normal_rules) == set(words.reduce_rules) == {rule}
    assert set(words.macro_rules.values()) == {"bp"}  # the macro alphabet lacks "fa"
  assert random.shape == (2, darts.NUM_GENES)
  assert (random[:, darts.ARCHITECTURE_GENES] == best[darts.ARCHITECTURE_GENES]).all()
  # Equal to direct evaluations with the search's (cached) evaluator: nothing compiles.
  dataset = data.get_dataset("synthetic", validation_size=200, seed=0)
  model = search_lib.build_network(config, space, dataset.num_classes)
  evaluator = search_lib.build_evaluator(config, space, model)
  train, validation = search_lib.proxy_batches(config, dataset)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  fitness, _ = evaluator.evaluate(np.stack(list(single.values())), train, validation, key)
  np.testing.assert_allclose(fitness, list(report["single_rule_validation_accuracy"].values()),
                             atol=1e-6)


def test_build_network_of_a_genome():
  config = tiny_darts_config()
  space = search_lib.build_space(config)
  genome = space.encode(darts.NAMED_GENOTYPES["darts_v1"], "fa", "fa", "bp")
  model = search_lib.build_network(config, space, 10, 8, layers=5, genome=genome)
  assert model.genotype == darts.NAMED_GENOTYPES["darts_v1"]
  assert (model.C, model.layers, model.variant, model.dfa) == (8, 5, "cifar", False)
  assert model.options.rules == ("bp", "fa")
