"""BioNAS-EG: CMA-ES (evosax) over the supernet's architecture weights.

References: the population's fitness written out per sample in NumPy (EG-NAS's mixing
weights, similarity term and sign, the cross-entropy from the logits), alpha's update by
hand, evosax's CMA-ES fed an infinite fitness, and the uninterrupted search for a resumed
one (its checkpointed CMA-ES state compared bitwise).
"""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from biojax import rules as rules_lib
from biojax.checkpoint import load_checkpoint
from biojax.nas import bionas, bionas_eg
from biojax.nas.darts import supernet as sn
from experiments import bionas_eg as eg_config
from experiments import bionas_eg_cifar10

OPS = ("none", "skip_connect", "sep_conv_3x3")
RULES = ("fa", "usf")


@pytest.fixture(scope="module")
def supernet():
  """A one-cell supernet (C=2, 3 classes, 8x8 images), its state and a batch."""
  alphabet = sn.make_alphabet(OPS, RULES)
  macro = dict.fromkeys(sn.MACRO_ROLES, "fa")
  model = sn.DartsSupernet(alphabet.operations, len(RULES), C=2, layers=1, num_classes=3,
                           options=rules_lib.RuleOptions(rules=sn.compiled_rules(alphabet,
                                                                                 macro)))
  variables = flax.core.unfreeze(model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
  alpha = bionas.init_alpha(jax.random.key(1), alphabet.size, scale=0.5)
  es, es_params = bionas_eg.make_es(4, alphabet.size, 0.1)
  state = bionas.initial_state(variables, alpha, optax.sgd(0.1), alpha_opt_state=(
      bionas_eg.init_es_state(es, es_params, alpha, jax.random.key(2))))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(6, 8, 8, 1)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 3, 6), jnp.int32)}
  return model, alphabet, state, batch


def population(rng, size, k, scale=0.2):
  return {cell: jnp.asarray(1 / k + scale * rng.normal(size=(size, sn.NUM_EDGES, k)),
                            jnp.float32) for cell in bionas.CELLS}


def np_mixing(v):
  """EG-NAS's mixing weights of a sample row: unit L2 norm, then softmax."""
  u = v / np.linalg.norm(v, axis=-1, keepdims=True)
  e = np.exp(u - u.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_similarity(sample, alpha):
  per_cell = []
  for cell in bionas.CELLS:
    a = np.exp(alpha[cell]) / np.exp(alpha[cell]).sum(-1, keepdims=True)
    v = np.asarray(sample[cell], np.float64)
    cos = (a * v).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(v, axis=-1)
    per_cell.append(((cos + 1) / 2).mean())
  return np.mean(per_cell)


def np_fitness(model, state, sample, batch, weight):
  """One sample's fitness by hand: the supernet's logits with the sample's mixing weights,
  their cross-entropy and accuracy, EG-NAS's signed similarity term."""
  def forward(mixing):
    logits = model.apply({**state.variables(), "mixing": mixing}, batch["image"], train=False)
    return np.asarray(logits, np.float64)

  labels = np.asarray(batch["label"])
  reference = (forward(bionas.mixing_weights(state.alpha)).argmax(-1) == labels).mean()
  logits = forward({c: jnp.asarray(np_mixing(np.asarray(sample[c], np.float64)), jnp.float32)
                    for c in bionas.CELLS})
  shifted = logits - logits.max(-1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  loss = -log_p[np.arange(len(labels)), labels].mean()
  accuracy = (logits.argmax(-1) == labels).mean()
  sim = np_similarity(sample, {c: np.asarray(state.alpha[c], np.float64) for c in bionas.CELLS})
  sign = 1.0 if accuracy >= reference else -1.0
  return loss + weight * sign * sim, loss, accuracy, sim


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_vmapped_population_fitness_equals_a_loop_over_samples(supernet, chunk_size):
  model, alphabet, state, batch = supernet
  pop = population(np.random.default_rng(3), 5, alphabet.size)
  out = jax.jit(bionas_eg.make_population_fitness(model, 0.4, chunk_size))(state, pop, batch)
  samples = [{c: pop[c][i] for c in bionas.CELLS} for i in range(5)]
  expected = np.array([np_fitness(model, state, sample, batch, 0.4) for sample in samples])
  for j, name in enumerate(("fitness", "loss", "accuracy", "similarity")):
    np.testing.assert_allclose(out[name], expected[:, j], rtol=2e-5, atol=2e-6, err_msg=name)
  # Samples that differ give different losses: the mixing weights reach the forward pass.
  assert len(set(np.round(np.asarray(out["loss"]), 6))) == 5


class FixedPopulation:
  """An ``es`` that always asks for the same population and learns nothing."""

  def __init__(self, samples):
    self.samples = samples

  def ask(self, key, state, params):
    return self.samples, state

  def tell(self, key, pop, fitness, state, params):
    return state, {}


def eg_step(model, es, **kwargs):
  settings = {"similarity_weight": 0.0, "step_size": 0.1, "generations": 1} | kwargs
  return jax.jit(bionas_eg.make_eg_step(model, es, None, **settings))


def test_one_fixed_sample_without_similarity_moves_alpha_by_the_step(supernet):
  model, alphabet, state, batch = supernet
  sample = population(np.random.default_rng(4), 1, alphabet.size)
  new, metrics = eg_step(model, FixedPopulation(sample))(state, batch, jax.random.key(0), 0)
  for cell in bionas.CELLS:
    expected = np.asarray(state.alpha[cell]) + 0.1 * np_mixing(np.asarray(sample[cell][0]))
    np.testing.assert_allclose(new.alpha[cell], expected, rtol=1e-6, atol=1e-7)
  _, loss, accuracy, _ = np_fitness(model, state, jax.tree.map(lambda p: p[0], sample), batch,
                                    0.0)
  np.testing.assert_allclose(metrics["best_fitness"], loss, rtol=2e-5)
  assert metrics["best_accuracy"] == pytest.approx(accuracy)
  # The CMA-ES mean was set to softmax(alpha) before sampling.
  mean = np.concatenate([np.asarray(jax.nn.softmax(state.alpha[c])).ravel()
                         for c in bionas.CELLS])
  np.testing.assert_allclose(new.alpha_opt_state.mean, mean, rtol=1e-6)


def test_the_best_sample_of_every_generation_moves_alpha(supernet):
  model, alphabet, state, batch = supernet
  pop = population(np.random.default_rng(5), 3, alphabet.size)
  out = bionas_eg.make_population_fitness(model, 0.0)(state, pop, batch)
  best = int(np.argmin(out["fitness"]))
  new, metrics = eg_step(model, FixedPopulation(pop), generations=2)(
      state, batch, jax.random.key(0), 0)
  for cell in bionas.CELLS:
    expected = np.asarray(state.alpha[cell]) + 0.1 * np_mixing(np.asarray(pop[cell][best]))
    np.testing.assert_allclose(new.alpha[cell], expected, rtol=1e-6, atol=1e-7)
  assert metrics["failed_samples"] == 0 and bool(metrics["found"])


def test_a_diverging_sample_gets_the_worst_fitness_and_is_recorded(supernet):
  model, alphabet, state, batch = supernet
  pop = population(np.random.default_rng(6), 3, alphabet.size)
  pop = {c: v.at[1].set(jnp.nan) if c == "normal" else v for c, v in pop.items()}
  out = bionas_eg.make_population_fitness(model, 0.4)(state, pop, batch)
  fitness = np.asarray(out["fitness"])
  assert np.isinf(fitness[1]) and np.isfinite(fitness[[0, 2]]).all()
  new, metrics = eg_step(model, FixedPopulation(pop))(state, batch, jax.random.key(0), 0)
  assert int(metrics["failed_samples"]) == 1 and bool(metrics["found"])
  assert all(np.isfinite(new.alpha[c]).all() for c in bionas.CELLS)
  # evosax's CMA-ES takes an infinite fitness (a finite sample whose loss diverged) as the
  # worst and stays finite; a population holding NaN would not, so its update is skipped.
  assert int(metrics["cma_updates_skipped"]) == 0  # FixedPopulation's tell learns nothing
  es, es_params = bionas_eg.make_es(3, alphabet.size, 0.1)
  finite = population(np.random.default_rng(7), 3, alphabet.size)
  es_state, _ = es.tell(jax.random.key(0), finite, jnp.asarray([1.0, jnp.inf, 2.0]),
                        state.alpha_opt_state, es_params)
  assert not any(np.isnan(x).any() for x in jax.tree.leaves(es_state))
  assert np.isfinite(es_state.mean).all() and np.isfinite(es_state.C).all()
  real = jax.jit(bionas_eg.make_eg_step(model, es, es_params, similarity_weight=0.4,
                                        step_size=0.1))
  moved, metrics = real(state, batch, jax.random.key(0), 0)
  assert np.isfinite(moved.alpha_opt_state.C).all()
  assert np.isfinite(moved.alpha_opt_state.mean).all()
  assert int(metrics["cma_updates_skipped"]) == 0 and int(metrics["failed_samples"]) == 0
  nan_state = state.replace(alpha_opt_state=state.alpha_opt_state.replace(
      C=state.alpha_opt_state.C.at[0, 0].set(jnp.nan)))  # every sample NaN, so is the update
  kept, metrics = real(nan_state, batch, jax.random.key(0), 0)
  assert int(metrics["cma_updates_skipped"]) == 1 and int(metrics["failed_samples"]) == 3
  np.testing.assert_array_equal(kept.alpha_opt_state.C, nan_state.alpha_opt_state.C)
  # A population that diverges entirely leaves alpha where it was.
  nan = jax.tree.map(lambda v: jnp.full_like(v, jnp.nan), pop)
  kept, metrics = eg_step(model, FixedPopulation(nan))(state, batch, jax.random.key(0), 0)
  assert int(metrics["failed_samples"]) == 3 and not bool(metrics["found"])
  for cell in bionas.CELLS:
    np.testing.assert_array_equal(kept.alpha[cell], state.alpha[cell])


@pytest.mark.parametrize("field, value, message", [
    ("population_size", 1, "population_size=1 must be >= 2"),
    ("warmup_epochs", 6, r"warmup_epochs=6 must be in \[0, config.search.epochs=6\)"),
    ("chunk_size", 0, "chunk_size=0 must be >= 1 or None"),
    ("generations", 0, "generations=0 must be >= 1"),
    ("std_init", 0.0, "std_init=0.0 must be > 0"),
])
def test_bad_eg_settings_fail_before_the_workdir_is_touched(tmp_path, field, value, message):
  config = eg_config.get_config()
  config.search.eg[field] = value
  with pytest.raises(ValueError, match=message):
    bionas_eg.search(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_configs_hold_eg_nas_settings():
  paper = bionas_eg_cifar10.get_config().search
  assert (paper.eg.population_size, paper.eg.step_size, paper.eg.similarity_weight,
          paper.eg.warmup_epochs, paper.epochs) == (50, 0.1, 0.4, 15, 50)
  assert "order" not in paper and "alpha_gradient" not in paper
  cpu = eg_config.get_config()
  assert cpu.task == "bionas_eg" and cpu.search.epochs * cpu.search.steps_per_epoch == 120


# ---------------------------------------------------------------------------- the search


def small_config():
  config = eg_config.get_config()
  config.supernet.operations = OPS
  config.supernet.rules = RULES
  config.supernet.C = 2
  config.validation_size = 64
  config.limit_train = 256
  config.image_crop = 16
  config.image_pool = 2
  config.search.update(epochs=3, steps_per_epoch=2, batch_size=8, validation_examples=32,
                       eval_batch_size=32)
  config.search.eg.update(population_size=4, generations=2, warmup_epochs=1, batch_size=16)
  config.retrain.steps = 0
  return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("bionas_eg") / "full")
  return workdir, bionas_eg.search(small_config(), workdir)


def history(workdir):
  with open(os.path.join(workdir, "history.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow  # one small search compiled, then run twice: about 5 min on 2 loaded cores
class TestSearch:

  def test_search_writes_its_outputs_and_compiles_each_program_once(self, uninterrupted):
    workdir, report = uninterrupted
    for name in ("report.json", "history.jsonl", "config.json", "alpha.png", "rule_share.png",
                 "losses.png"):
      assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    records = history(workdir)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert report["method"] == "eg" and report["epochs"] == 3 and report["steps"] == 6
    assert (report["population_size"], report["warmup_epochs"]) == (4, 1)
    assert report["bp_weight_share"] == {"supernet": 0.0, "derived": 0.0}
    # Warm-up: alpha stays at its initial value.
    assert records[0]["eg"] is None
    alpha = bionas.init_alpha(jax.random.fold_in(jax.random.key(0), bionas.ALPHA_STREAM), 4,
                              1e-3)
    assert records[0]["alpha_softmax"] == {c: np.asarray(jax.nn.softmax(alpha[c])).round(
        5).tolist() for c in bionas.CELLS}
    for r in records[1:]:
      assert r["eg"]["found"] and r["eg"]["failed_samples"] == 0
      assert r["eg"]["cma_std"] > 0
    assert records[1]["alpha_softmax"] != records[2]["alpha_softmax"]  # CMA-ES moved alpha
    # The weight step, the validation pass and the EG step compile once each (the
    # validation pass is shared with BioNAS-DARTS, so it may be compiled already).
    assert records[2]["compiles"] == 0 and records[1]["compiles"] <= 1
    assert 2 <= report["compiles"] <= 3

  def test_killed_search_resumes_to_the_same_cma_state_alphas_and_genotype(
      self, uninterrupted, tmp_path):
    workdir, report = uninterrupted
    killed = str(tmp_path / "killed")

    def kill(record):
      if record["epoch"] == 1:  # after the first EG epoch's history line, before its save
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
      bionas_eg.search(small_config(), killed, on_epoch=kill)
    resumed = bionas_eg.search(small_config(), killed)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["genotype"] == report["genotype"]
    assert [r["epoch"] for r in history(killed)] == [0, 1, 2]
    timing = ("seconds", "samples_per_second")
    assert ({k: v for k, v in history(killed)[-1]["eg"].items() if k not in timing}
            == {k: v for k, v in history(workdir)[-1]["eg"].items() if k not in timing})
    full, again = load_checkpoint(workdir), load_checkpoint(killed)
    for name in ("alpha", "alpha_opt_state", "params"):
      jax.tree.map(np.testing.assert_array_equal, again[name], full[name])
