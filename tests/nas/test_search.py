"""The search loop: report and outputs, no recompilation after the first generation,
baselines equal to direct evaluations, resume after a kill equals an uninterrupted search,
and a search whose every candidate fails ends with a clear error.

All searches here share one compiled evaluator (``build_evaluator`` caches it on the
settings): a tiny NB201 network (C=4, N=1) on the 8x8 synthetic data set."""

import functools
import importlib.util
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from biojax.nas import search as search_lib

FAST_COMPILE = {"xla_backend_optimization_level": 0}


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config(name: str) -> ml_collections.ConfigDict:
  """experiments/<name>.py's config (loaded by path: the repository need not be on
  sys.path)."""
  spec = importlib.util.spec_from_file_location(
      f"experiments_{name}", os.path.join(REPO, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  config = load_config("quickstart")
  config.dataset = "synthetic"
  config.image_crop = None
  config.image_pool = 1
  config.validation_size = 200
  config.space.rules = ("bp", "fa")
  config.space.C, config.space.N = 4, 1
  config.search.population_size = 4
  config.search.num_children = 4
  config.search.tournament_size = 2
  config.search.generations = 3
  config.proxy.steps = 3
  config.proxy.batch_size = 16
  config.proxy.validation_examples = 100
  config.proxy.eval_batch_size = 64
  config.proxy.learning_rate = 0.01
  config.proxy.compiler_options = FAST_COMPILE
  config.baselines.random_rules = 3
  config.retrain.steps = 0
  config.retrain.compiler_options = FAST_COMPILE  # the retrain's programs: seconds, not minutes
  config.log_every = 5
  for key, value in overrides.items():
    section, _, name = key.partition(".")
    if name:
      config[section][name] = value
    else:
      config[key] = value
  return config


def jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


TIMING = ("candidates_per_second", "evaluation_seconds", "eta_seconds", "wall_seconds",
          "compiles")


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@functools.cache
def reference_run(tmp_root: str) -> tuple[dict, list, list]:
  workdir = os.path.join(tmp_root, "reference")
  report = search_lib.search(tiny_config(**{"retrain.steps": 5}), workdir)
  return (report, jsonl(os.path.join(workdir, search_lib.HISTORY_FILE)),
          jsonl(os.path.join(workdir, search_lib.CANDIDATES_FILE)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  root = tmp_path_factory.mktemp("search")
  return (*reference_run(str(root)), os.path.join(str(root), "reference"))


@pytest.mark.slow  # the shared reference search: 1-2 min on 2 loaded cores
def test_report_and_outputs(reference):
  report, history, candidates, workdir = reference
  for name in (search_lib.REPORT_FILE, search_lib.FITNESS_PLOT, search_lib.RULE_FREQUENCY_PLOT,
               search_lib.ACCURACY_PARAMS_PLOT, search_lib.CONFIG_FILE):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert report["candidates_evaluated"] == 12 == len(candidates)
  assert [r["generation"] for r in history] == [0, 1, 2]
  assert [r["num_evaluated"] for r in history] == [4, 8, 12]
  # The best genome is the fittest candidate ever evaluated (first on a tie).
  fitness = [c["fitness"] for c in candidates]
  best = candidates[int(np.argmax(fitness))]
  assert report["best_validation_accuracy"] == pytest.approx(max(fitness))
  assert report["best_genome"] == best["string"]
  space = search_lib.build_space(tiny_config())
  np.testing.assert_array_equal(space.from_string(report["best_genome"]),
                                report["best_genome_genes"])
  # Fitness is a mask-weighted accuracy over exactly 100 validation examples.
  np.testing.assert_allclose(np.asarray(fitness) * 100, np.round(np.asarray(fitness) * 100),
                             atol=1e-3)
  # Running best and population statistics, recomputed from the candidates.
  for record in history:
    upto = [c["fitness"] for c in candidates if c["generation"] <= record["generation"]]
    assert record["best_fitness"] == pytest.approx(max(upto))
    last = [c["fitness"] for c in candidates if c["generation"] == record["generation"]]
    assert record["generation_median"] == pytest.approx(float(np.median(last)))
  assert 0.0 <= report["test_accuracy"] <= 1.0 and report["retrain_steps"] == 5
  assert set(report["single_rule_validation_accuracy"]) == {"bp", "fa"}
  assert report["best_single_rule_validation_accuracy"] == pytest.approx(
      max(report["single_rule_validation_accuracy"].values()))
  assert len(report["random_rules_validation_accuracy"]) == 3
  assert report["failed_candidates"] == 0 and report["strategy"] == "sequential"


def test_no_recompilation_after_the_first_generation(reference):
  report, history, _, _ = reference
  assert history[0]["compiles"] >= 1
  assert [r["compiles"] for r in history[1:]] == [0, 0]
  assert report["compiles"] == history[0]["compiles"]
  assert report["baseline_compiles"] == 0  # the baselines reuse the search's programs


def test_baselines_equal_direct_evaluations(reference):
  report, _, _, _ = reference
  config = tiny_config()
  space = search_lib.build_space(config)
  dataset = __import__("biojax").data.get_dataset("synthetic", validation_size=200, seed=0)
  model = search_lib.build_network(config, space, dataset.num_classes)
  evaluator = search_lib.build_evaluator(config, space, model)
  train, validation = search_lib.proxy_batches(config, dataset)
  best = np.asarray(report["best_genome_genes"], np.int32)
  single, random = search_lib.baseline_genomes(space, best, 3, jax.random.key(5))
  # The single-rule genomes: best's operations, one rule on every layer.
  for k, (rule, genome) in enumerate(single.items()):
    assert rule == space.rules[k]
    np.testing.assert_array_equal(genome[:6], best[:6])
    assert set(genome[6:].tolist()) == {k}
    assert random.shape == (3, 20) and (random[:, :6] == best[:6]).all()
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  fitness, _ = evaluator.evaluate(np.stack(list(single.values())), train, validation, key)
  np.testing.assert_allclose(np.asarray(fitness),
                             list(report["single_rule_validation_accuracy"].values()),
                             atol=1e-6)


def test_killed_search_resumes_to_the_same_result(reference, tmp_path):
  report, history, candidates, _ = reference

  def kill_at_generation_1(record):
    if record["generation"] == 1:
      raise KeyboardInterrupt  # after generation 1's lines, before its checkpoint

  workdir = str(tmp_path / "killed")
  config = tiny_config(**{"retrain.steps": 5})
  with pytest.raises(KeyboardInterrupt):
    search_lib.search(config, workdir, on_generation=kill_at_generation_1)
  assert len(jsonl(os.path.join(workdir, search_lib.HISTORY_FILE))) == 2
  resumed = search_lib.search(config, workdir)
  assert resumed["resumed_from_generation"] == 1
  assert without_timing(jsonl(os.path.join(workdir, search_lib.HISTORY_FILE))) == \
      without_timing(history)
  assert without_timing(jsonl(os.path.join(workdir, search_lib.CANDIDATES_FILE))) == \
      without_timing(candidates)
  for key in ("best_genome", "best_validation_accuracy", "candidates_evaluated",
              "single_rule_validation_accuracy", "random_rules_validation_accuracy",
              "test_accuracy"):
    assert resumed[key] == report[key], key
  state = search_lib.load_search_state(workdir, config)
  assert int(state.generation) == 3 and int(state.num_evaluated) == 12


def test_search_where_every_candidate_fails(reference, tmp_path, monkeypatch):
  # The reference search's compiled programs (equal space, network and proxy settings; the
  # sequential programs do not depend on the population size), with NaN training images:
  # every candidate's loss is NaN from its first step.
  proxy_batches = search_lib.proxy_batches

  def nan_images(config, dataset):
    train, validation = proxy_batches(config, dataset)
    return {**train, "image": np.full_like(train["image"], np.nan)}, validation

  monkeypatch.setattr(search_lib, "proxy_batches", nan_images)
  config = tiny_config(**{"search.generations": 1, "search.population_size": 2,
                          "search.num_children": 2})
  with pytest.raises(search_lib.SearchFailedError, match="All 2 candidates failed"):
    search_lib.search(config, str(tmp_path))
  rows = jsonl(os.path.join(str(tmp_path), search_lib.CANDIDATES_FILE))
  assert len(rows) == 2 and all(r["failed"] for r in rows)
  assert all(r["reason"] == "non-finite training loss" and r["fitness"] is None
             and r["failed_step"] == 0 for r in rows)


def test_bad_config_values_are_named():
  with pytest.raises(ValueError, match="Valid algorithms: evolution, random"):
    search_lib.build_strategy(tiny_config(**{"search.algorithm": "cmaes"}),
                              search_lib.build_space(tiny_config()))
  with pytest.raises(ValueError, match="Valid spaces"):
    search_lib.build_space(tiny_config(**{"space.name": "nb301"}))
  with pytest.raises(ValueError, match="Unknown learning rule .fax.. Valid rules: bp"):
    search_lib.build_space(tiny_config(**{"space.rules": ("bp", "fax")}))
  with pytest.raises(ValueError, match="generations"):
    search_lib.check_search_config(tiny_config(**{"search.generations": 0}))
  with pytest.raises(ValueError, match="image_pool=3 does not divide"):
    search_lib.transform_images(np.zeros((2, 8, 8, 1)), None, 3)
  # Centre crop then average pooling, against NumPy by hand.
  images = np.arange(2 * 6 * 6).reshape(2, 6, 6, 1).astype(np.float32)
  out = search_lib.transform_images(images, 4, 2)
  expected = images[:, 1:5, 1:5, 0].reshape(2, 2, 2, 2, 2).mean(axis=(2, 4))
  np.testing.assert_allclose(out[..., 0], expected)
