"""The population evaluator: equal fitness under vmap / map / chunked, no recompilation for a
new population, NaN/Inf handling, and a population equal to its candidates alone.

Each evaluator program (init + training scan + validation for a tiny NB201 network) takes
about 17 s to compile on a 2-core CPU without XLA's backend optimisations, so the file
compiles four and shares them."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from biojax import nas, rules
from biojax.compilation import CompileCounter
from biojax.nas import evaluator as ev

RULES = ("bp", "fa")
SPACE = nas.NB201Space(rules=RULES)
MODEL = nas.NB201Network(C=4, N=1, num_classes=4, dfa=False,
                         options=rules.RuleOptions(rules=RULES))
STEPS, BATCH = 3, 8
_rng = np.random.default_rng(0)
TRAIN = {"image": _rng.normal(size=(STEPS, BATCH, 8, 8, 3)).astype(np.float32),
         "label": _rng.integers(0, 4, (STEPS, BATCH)).astype(np.int32)}
VALIDATION = {"image": _rng.normal(size=(2, 8, 8, 8, 3)).astype(np.float32),
              "label": _rng.integers(0, 4, (2, 8)).astype(np.int32),
              "mask": np.ones((2, 8), np.float32)}
VALIDATION["mask"][1, 5:] = 0  # 13 real examples, 3 padding rows
# 'unsafe_rbg': XLA on CPU compiles the initialisation's random draws fastest with it.
KEY = jax.random.key(0, impl="unsafe_rbg")
# XLA's backend optimisations off: these programs compile in about 17 s instead of 24 s.
FAST_COMPILE = (("xla_backend_optimization_level", 0),)
# Five different candidates (operations and rules), so that chunks of 2 need padding.
GENOMES = np.stack([
    SPACE.named("best_cifar10", rule="fa"), SPACE.named("resnet", rule="bp"),
    *np.asarray(SPACE.random_genomes(jax.random.key(3), 3))]).astype(np.int32)


@functools.cache
def evaluator(strategy):
  return ev.PopulationEvaluator(SPACE, MODEL, steps=STEPS, batch_size=BATCH,
                                strategy=strategy, chunk_size=2,
                                compiler_options=FAST_COMPILE)


@functools.cache
def evaluated(strategy):
  fitness, info = evaluator(strategy).evaluate(GENOMES, TRAIN, VALIDATION, KEY)
  return np.asarray(fitness), jax.tree.map(np.asarray, info)


@pytest.mark.slow  # compiles the four strategies' programs: 1-3 min on 2 loaded cores
def test_strategies_give_equal_fitness():
  fitness, info = evaluated("vmap")
  assert fitness.shape == (5,) and np.all(np.isfinite(fitness))
  assert not info["failed"].any() and (info["reason"] == ev.OK).all()
  assert (info["failed_step"] == -1).all()
  assert len(set(info["validation_loss"].tolist())) == 5  # five different networks
  # Mask-weighted: accuracies are multiples of 1/13 (13 real validation examples).
  np.testing.assert_allclose(fitness * 13, np.round(fitness * 13), atol=1e-4)
  for strategy in ("map", "chunked", "sequential"):
    other, other_info = evaluated(strategy)
    np.testing.assert_allclose(other, fitness, atol=1e-6, err_msg=strategy)
    for name in ("validation_loss", "train_loss"):
      np.testing.assert_allclose(other_info[name], info[name], rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("strategy", ["vmap", "sequential"])
def test_new_population_does_not_recompile(strategy):
  evaluated(strategy)
  genomes = np.asarray(SPACE.random_genomes(jax.random.key(11), 5))
  assert not any((genomes == g).all() for g in GENOMES)
  with CompileCounter() as counter:
    fitness, info = evaluator(strategy).evaluate(genomes, TRAIN, VALIDATION, KEY)
    jax.block_until_ready(fitness)
    if strategy == "sequential":  # its programs do not depend on the population size
      evaluator(strategy).evaluate(genomes[:2], TRAIN, VALIDATION, KEY)
  assert counter.count == 0
  if strategy == "vmap":
    assert evaluator("vmap")._compile_count() == 1
  assert np.all(np.isfinite(np.asarray(fitness)))


def test_padding_rows_do_not_count():
  fitness, info = evaluated("vmap")
  other = jax.tree.map(np.copy, VALIDATION)
  other["image"][1, 5:] = 100.0  # padding rows: any content, any label
  other["label"][1, 5:] = (other["label"][1, 5:] + 1) % 4
  with CompileCounter() as counter:
    fitness2, info2 = evaluator("vmap").evaluate(GENOMES, TRAIN, other, KEY)
  assert counter.count == 0
  np.testing.assert_array_equal(np.asarray(fitness2), fitness)
  np.testing.assert_array_equal(np.asarray(info2["validation_loss"]), info["validation_loss"])


@pytest.mark.parametrize("strategy", ["vmap", "chunked", "sequential"])
def test_diverging_candidate_fails_alone(strategy):
  fitness, info = evaluated(strategy)
  scale = np.ones(5, np.float32)
  scale[2] = np.inf  # candidate 2's first parameter step is inf (or NaN where it is 0)
  with CompileCounter() as counter:
    bad, bad_info = evaluator(strategy).evaluate(GENOMES, TRAIN, VALIDATION, KEY, scale)
  assert counter.count == 0
  bad, bad_info = np.asarray(bad), jax.tree.map(np.asarray, bad_info)
  assert bad[2] == -np.inf
  np.testing.assert_array_equal(bad_info["failed"], [False, False, True, False, False])
  assert bad_info["reason"][2] == ev.NONFINITE_STATE and bad_info["failed_step"][2] == 0
  assert ev.REASONS[int(bad_info["reason"][2])] == "non-finite parameters or state"
  others = [0, 1, 3, 4]
  np.testing.assert_array_equal(bad[others], fitness[others])
  np.testing.assert_array_equal(bad_info["validation_loss"][others],
                                info["validation_loss"][others])


def test_population_equals_each_candidate_alone():
  """The vmapped population against each candidate trained on its own: the sequential
  strategy's programs hold one candidate (no population axis), called once per genome."""
  fitness, info = evaluated("vmap")
  sequential = evaluator("sequential")
  alone = [sequential.evaluate(g[None], TRAIN, VALIDATION, KEY) for g in GENOMES]
  np.testing.assert_allclose([float(f[0]) for f, _ in alone], fitness, atol=1e-6)
  np.testing.assert_allclose([float(i["validation_loss"][0]) for _, i in alone],
                             info["validation_loss"], rtol=1e-4)


def test_settings_are_checked():
  with pytest.raises(ValueError, match="strategy"):
    ev.PopulationEvaluator(SPACE, MODEL, steps=STEPS, batch_size=BATCH, strategy="pmap")
  with pytest.raises(ValueError, match="steps"):
    evaluator("map").evaluate(GENOMES, jax.tree.map(lambda x: x[:2], TRAIN), VALIDATION, KEY)
  # XLA:CPU runs convolutions inside loops (scan, lax.map) slowly: sequential on CPU.
  assert ev.default_strategy("cpu") == "sequential" and ev.default_strategy("gpu") == "vmap"


def test_stacking_batches():
  batches = ({"image": np.full((4, 2), i, np.float32), "label": np.arange(4)} for i in range(9))
  train = ev.stack_train_batches(batches, 3)
  assert train["image"].shape == (3, 4, 2) and train["label"].shape == (3, 4)
  np.testing.assert_array_equal(train["image"][:, 0, 0], [0, 1, 2])
  with pytest.raises(ValueError, match="Needed 5"):
    ev.stack_train_batches(iter([{"image": np.zeros(2)}]), 5)
  val = ev.stack_eval_batches([{"image": np.zeros((4, 2)), "mask": np.ones(4)}] * 2)
  assert val["mask"].shape == (2, 4)


def test_non_finite_data_gives_reasons():
  evaluated("vmap")
  train = jax.tree.map(np.copy, TRAIN)
  train["image"][2, 0, 0, 0, 0] = np.inf  # the last training step
  validation = jax.tree.map(np.copy, VALIDATION)
  validation["image"][0, 0, 0, 0, 0] = np.nan
  with CompileCounter() as counter:
    fitness, info = evaluator("vmap").evaluate(GENOMES, train, VALIDATION, KEY)
    fitness_v, info_v = evaluator("vmap").evaluate(GENOMES, TRAIN, validation, KEY)
  assert counter.count == 0
  assert (np.asarray(fitness) == -np.inf).all() and np.asarray(info["failed"]).all()
  assert (np.asarray(info["reason"]) == ev.NONFINITE_LOSS).all()
  assert (np.asarray(info["failed_step"]) == STEPS - 1).all()
  assert (np.asarray(fitness_v) == -np.inf).all()
  assert (np.asarray(info_v["reason"]) == ev.NONFINITE_VALIDATION).all()
  assert (np.asarray(info_v["failed_step"]) == STEPS).all()


def test_population_sharded_over_8_devices_equals_one_device(tmp_path):
  """The population axis split over 8 forced CPU devices (a subprocess: the device count is
  fixed at start-up) gives the fitness of one device, for 5 candidates (padded to 8)."""
  fitness, info = evaluated("vmap")
  script = tmp_path / "sharded.py"
  script.write_text(
      "import json, sys\n"
      f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
      "import jax, numpy as np\n"
      "import test_evaluator as t\n"
      "from biojax.nas import evaluator as ev\n"
      "assert jax.device_count() == 8\n"
      "e = ev.PopulationEvaluator(t.SPACE, t.MODEL, steps=t.STEPS, batch_size=t.BATCH,\n"
      "    strategy='vmap',\n"
      "    compiler_options=t.FAST_COMPILE, mesh=ev.population_mesh())\n"
      "f, i = e.evaluate(t.GENOMES, t.TRAIN, t.VALIDATION, t.KEY)\n"
      "print(json.dumps({'fitness': np.asarray(f).tolist(),\n"
      "                  'loss': np.asarray(i['validation_loss']).tolist()}))\n")
  env = {**os.environ, "XLA_FLAGS": " ".join(filter(None, [
             os.environ.get("XLA_FLAGS"), "--xla_force_host_platform_device_count=8"])),
         "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=600, check=True)
  sharded = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(sharded["fitness"], fitness, atol=1e-6)
  np.testing.assert_allclose(sharded["loss"], info["validation_loss"], rtol=1e-4)


def test_step_scale_is_set_apart_from_adams_moments():
  """Adam's moments hold an entry per parameter, BatchNorm's "scale" included: setting the
  per-candidate step scale must change only the evaluator's own scale state."""
  adam = ev.PopulationEvaluator(SPACE, MODEL, steps=STEPS, batch_size=BATCH, optimizer="adam",
                                learning_rate=0.01, compiler_options=FAST_COMPILE)
  # Jitted pieces (eager, the initialisation alone dispatches hundreds of ops); the initial
  # variables do not depend on the optimizer: the sequential evaluator's compiled setup.
  variables, _ = evaluator("sequential")._setup(KEY, TRAIN["image"][0, :1])
  state, failed_step, reason = adam._sequential_programs.start(variables, GENOMES[0],
                                                               np.float32(0.5))
  base, scale_state = state.opt_state
  assert float(scale_state.scale) == 0.5 and int(failed_step) == -1 and int(reason) == ev.OK
  moments = optax.tree_utils.tree_get(base, "mu")
  assert jax.tree.map(np.shape, moments) == jax.tree.map(np.shape, state.params)
  assert all(not np.any(np.asarray(m)) for m in jax.tree.leaves(moments))
