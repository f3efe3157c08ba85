"""The paper-scale search configs (experiments/nas_*.py): their budgets; each config's data
set and networks; a dry run of one config per space on mock data with tiny sizes; and the
full-size networks counted, one per space and DARTS variant traced and lowered.

Data: TFDS's ``tfds.testing.mock_data`` stands in for CIFAR-10, CIFAR-100, ImageNet16-120
and ImageNet (random images of the real shapes and label ranges; nothing is downloaded).
Dry runs: the networks shrink to C=4 (N=1 / 3 cells), and the search to one generation of
one candidate, 2 proxy steps, the baselines and a 1-step retrain, so each run compiles
only tiny programs (XLA backend optimisations off).

Full size: ``jax.eval_shape`` of each config's retrain network (its parameter count against
the published one) and ``jax.jit(train_step).lower(...)`` on abstract inputs of the full
batch: lowering to StableHLO traces every layer, rule and shape of the full network without
compiling it (a full XLA compilation takes minutes on a CPU; docs/darts.md)."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import builders
from biojax import train as train_lib
from biojax.nas import darts
from biojax.nas import search as search_lib
from biojax.nas.candidate import as_candidate

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# name -> (mock examples per split, carved validation examples, classes, image side).
CONFIGS = {
    "nas_nb201_cifar10": (48, 8, 10, 32),
    "nas_nb201_cifar100": (48, 8, 100, 32),
    # The mock draws labels from all 1000 classes; about 12% are kept (< 120).
    "nas_nb201_imagenet16_120": (400, 8, 120, 16),
    "nas_darts_cifar10": (48, 8, 10, 32),
    "nas_darts_imagenet": (24, 4, 1000, 224),
}


def load_config(name: str):
  spec = importlib.util.spec_from_file_location(
      f"experiments_{name}", os.path.join(REPO, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_budgets_of_the_papers():
  c10, c100, in16 = (load_config(f"nas_nb201_{d}")
                     for d in ("cifar10", "cifar100", "imagenet16_120"))
  for config in (c10, c100, in16):
    assert config.space.name == "nb201" and (config.space.C, config.space.N) == (16, 5)
    assert (config.search.population_size, config.search.tournament_size) == (10, 3)
    assert config.search.num_children * config.search.generations == 200
    for budget in (config.proxy, config.retrain):
      assert (budget.optimizer, budget.learning_rate, budget.momentum, budget.weight_decay,
              budget.batch_size, budget.schedule) == ("sgd", 0.1, 0.9, 5e-4, 256, "cosine")
  # 12 (proxy) and 200 (retrain) epochs of 256.
  assert (c10.proxy.steps, c10.retrain.steps) == (12 * 98, 200 * 196)
  assert (c100.proxy.steps, c100.retrain.steps) == (12 * 176, 200 * 196)
  assert (in16.proxy.steps, in16.retrain.steps) == (12 * 581, 200 * 593)
  assert (c10.validation_size, c100.validation_size, in16.validation_size) == (
      25_000, 5_000, 3_000)
  c10d, imd = load_config("nas_darts_cifar10"), load_config("nas_darts_imagenet")
  assert (c10d.space.name, c10d.space.C, c10d.space.layers, c10d.space.variant) == (
      "darts", 16, 8, "cifar")
  r = c10d.retrain
  assert (r.C, r.layers, r.steps, r.batch_size, r.learning_rate, r.momentum,
          r.weight_decay, r.clip_norm, r.schedule) == (36, 20, 600 * 521, 96, 0.025, 0.9,
                                                       3e-4, 5.0, "cosine")
  assert (imd.dataset, imd.image_size, imd.space.variant) == ("imagenet2012", 224, "imagenet")
  r = imd.retrain
  assert (r.C, r.layers, r.steps, r.batch_size, r.learning_rate, r.weight_decay) == (
      48, 14, 250 * 10_010, 128, 0.1, 3e-5)
  assert "dfa" not in imd.space.rules


def tiny(name: str, data_dir: str):
  config = load_config(name)
  _, validation, _, _ = CONFIGS[name]
  darts_space = config.space.name == "darts"
  config.data_dir = data_dir
  config.validation_size = validation
  config.space.rules = ("bp", "fa")
  config.space.C = 4
  if darts_space:
    config.space.layers = 3
  else:
    config.space.N = 1
  if config.get("image_size"):
    config.image_size = 32  # the ImageNet stems take it to 4x4
  config.search.update({"population_size": 1, "tournament_size": 1, "num_children": 1,
                        "generations": 1})
  config.proxy.update({"steps": 2, "batch_size": 8, "validation_examples": None,
                       "eval_batch_size": 8, "learning_rate": 0.01,
                       "compiler_options": FAST_COMPILE})
  config.baselines.random_rules = 1
  # The retrain keeps the config's validation_size (0: the whole training split); its
  # initialisation is the search's program (biojax.train.init_program).
  config.retrain.update({"steps": 1, "batch_size": 8, "eval_batch_size": 16,
                         "C": 4, "learning_rate": 0.01})
  if darts_space:
    config.retrain.layers = 3
  else:
    config.retrain.N = 1
  config.retrain.compiler_options = FAST_COMPILE
  config.log_every = 1
  return config


def dry_run(name: str, tmp_path) -> None:
  examples = CONFIGS[name][0]
  config = tiny(name, str(tmp_path / "tfds"))
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=examples):
    report = search_lib.search(config, workdir)
  with open(os.path.join(workdir, search_lib.REPORT_FILE)) as f:
    assert json.load(f)["best_genome"] == report["best_genome"]
  assert report["space"] == config.space.name
  assert report["config"]["dataset"] == config.dataset
  assert report["candidates_evaluated"] == 1 and report["failed_candidates"] == 0
  assert set(report["single_rule_validation_accuracy"]) == {"bp", "fa"}
  assert len(report["random_rules_validation_accuracy"]) == 1
  assert 0.0 <= report["test_accuracy"] <= 1.0 and report["retrain_steps"] == 1


def data_and_network(name: str, tmp_path) -> None:
  """What differs between the configs of one space, without running a program: the config's
  checks, its data set (TFDS mock) carved and transformed as the search and the retrain read
  it, and its search and retrain networks for the data set's classes (shapes only)."""
  examples, validation_size, classes, _ = CONFIGS[name]
  config = tiny(name, str(tmp_path / "tfds"))
  search_lib.check_search_config(config)
  with tfds.testing.mock_data(num_examples=examples):
    dataset = search_lib.dataset_of(config, config.validation_size)
    train, validation = search_lib.proxy_batches(config, dataset)
    test = next(iter(dataset.eval_batches("test", config.retrain.eval_batch_size)))
  assert dataset.num_classes == classes and dataset.num_validation == validation_size
  side = 16 if "imagenet16" in name else 32
  assert train["image"].shape == (2, 8, side, side, 3)
  assert train["image"].dtype == np.float32 and np.isfinite(train["image"]).all()
  assert validation["mask"].sum() == validation_size
  for labels in (train["label"], validation["label"], test["label"]):
    assert labels.min() >= 0 and labels.max() < classes
  space = search_lib.build_space(config)
  genome = np.asarray(space.random_genomes(jax.random.key(0), 1))[0]
  for model in (search_lib.build_network(config, space, classes),
                search_lib.build_network(config, space, classes, config.retrain.C,
                                         config.retrain.get("N"),
                                         layers=config.retrain.get("layers"), genome=genome)):
    network = space.network_for(model, genome)
    logits = jax.eval_shape(
        lambda k, n=network: n.init_with_output(k, train["image"][0, :1], train=False)[0],
        jax.random.key(0))
    assert logits.shape == (1, classes)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_data_and_network_of_each_config(name, tmp_path):
  data_and_network(name, tmp_path)


# One dry run per space: the configs of a space differ only in what
# test_data_and_network_of_each_config checks (their data sets and classes), and a dry run
# compiles its own tiny programs (1-2 minutes on 2 loaded cores). The two classes are units
# that pytest-xdist (--dist loadscope) may give to different workers.
@pytest.mark.slow
class TestDryRunNB201:
  def test_dry_run_on_mock_data(self, tmp_path):
    dry_run("nas_nb201_cifar10", tmp_path)


@pytest.mark.slow
class TestDryRunDarts:
  def test_dry_run_on_mock_data(self, tmp_path):
    dry_run("nas_darts_cifar10", tmp_path)


def full_size_network(config, num_classes):
  """The config's retrain network, for DARTS-V2 or NAS-Bench-201's largest cell (BP)."""
  space = search_lib.build_space(config)
  if isinstance(space, darts.DartsSpace):
    genome = space.encode(darts.NAMED_GENOTYPES["darts_v2"], "bp", "bp", "bp")
  else:
    genome = space.named("largest", "bp")
  model = search_lib.build_network(config, space, num_classes, config.retrain.C,
                                   config.retrain.get("N"),
                                   layers=config.retrain.get("layers"), genome=genome)
  return space, model, genome


# Parameters of the full-size networks: NAS-Bench-201's largest cell (every edge a 3x3
# convolution), C=16, N=5: 1,531,546 on CIFAR-10 (tests/nas/test_nb201.py, the benchmark's
# records); with 100 and 120 classes the classifier (64 inputs) adds 90 x 65 and 110 x 65.
# DARTS-V2: 3,349,342 (C=36, 20 cells, CIFAR-10) and 4,718,752 (C=48, 14 cells, ImageNet),
# as the authors' code counts them (tests/nas/test_darts.py).
PARAMETERS = {
    "nas_nb201_cifar10": 1_531_546,
    "nas_nb201_cifar100": 1_531_546 + 90 * 65,
    "nas_nb201_imagenet16_120": 1_531_546 + 110 * 65,
    "nas_darts_cifar10": 3_349_342,
    "nas_darts_imagenet": 4_718_752,
}


def full_size_variables(name: str):
  """The config, its full-size retrain network and genome, and the network's variable
  shapes (``jax.eval_shape`` of its initialisation: nothing is computed)."""
  config = load_config(name)
  _, _, classes, side = CONFIGS[name]
  space, model, genome = full_size_network(config, classes)
  image = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0),
                             image)
  return config, space, model, genome, variables


def lower_full_size(name: str) -> None:
  config, space, model, genome, variables = full_size_variables(name)
  side = CONFIGS[name][3]
  r = config.retrain
  tx, _ = builders.build_optimizer(r)
  assign = space.assignment_fn(variables, model.options)
  state = jax.eval_shape(
      lambda v, g: as_candidate(train_lib.train_state_from_variables(v, tx, assign(g)),
                                space.architecture(g)), variables, genome)
  batch = {"image": jax.ShapeDtypeStruct((r.batch_size, side, side, 3), jnp.float32),
           "label": jax.ShapeDtypeStruct((r.batch_size,), jnp.int32)}
  lowered = jax.jit(train_lib.make_train_step(model, tx)).lower(state, batch,
                                                                 jax.random.key(0))
  out_state, metrics = lowered.out_info
  assert metrics["loss"].shape == ()
  assert jax.tree.structure(out_state.params) == jax.tree.structure(state.params)
  np.testing.assert_equal(jax.tree.map(lambda x: x.shape, out_state.params),
                          jax.tree.map(lambda x: x.shape, state.params))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_full_size_parameter_count(name):
  _, space, _, genome, variables = full_size_variables(name)
  assert space.parameter_count(variables["params"], genome) == PARAMETERS[name]


# Lowered: one network per space and DARTS variant (the three NAS-Bench-201 configs differ
# only in the classifier's width and the image side, checked above).
@pytest.mark.slow  # tracing and lowering a full network: 30-50 s on 2 loaded cores
class TestFullSizeNetworks:
  @pytest.mark.parametrize("name", ["nas_nb201_cifar10", "nas_darts_cifar10",
                                    "nas_darts_imagenet"])
  def test_full_size_network_traces_and_lowers(self, name):
    lower_full_size(name)
