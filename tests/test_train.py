"""Training with per-layer rules: compilation, vmap, rule state, and every registered rule."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import blobs

import biojax
from biojax import nn as bnn
from biojax import rules
from biojax.compilation import CompileCounter

X, Y = blobs()
MODEL = bnn.MLP(num_classes=4, hidden=(32, 32))


def batch(step: int, size: int = 64):
  idx = np.random.default_rng(step).choice(len(X), size, replace=False)
  return {"image": jnp.asarray(X[idx]), "label": jnp.asarray(Y[idx])}


@functools.lru_cache
def setup(optimizer="adam", lr=1e-2, weight_decay=0.0, kp_decay=1e-3):
  options = rules.RuleOptions(kp=rules.KPOptions(decay=kp_decay))
  model = bnn.MLP(num_classes=4, hidden=(32, 32), options=options)
  tx = biojax.make_optimizer(optimizer, lr, weight_decay=weight_decay)
  step = jax.jit(biojax.make_train_step(model, tx, options))
  return model, tx, step


def init_state(spec="bp", seed=0, **kw):
  model, tx, _ = setup(**kw)
  return biojax.create_train_state(model, tx, jax.random.key(seed), jnp.asarray(X[:2]), spec)


def run(state, steps, **kw):
  _, _, step = setup(**kw)
  history = []
  for i in range(steps):
    state, metrics = step(state, batch(i), jax.random.key(i))
    history.append(float(metrics["loss"]))
  return state, history


def accuracy(state):
  logits = MODEL.apply({"params": state.params, "feedback": state.feedback}, jnp.asarray(X))
  return float(np.mean(np.argmax(logits, -1) == Y))


def test_changing_the_assignment_never_recompiles():
  model, tx, _ = setup()
  step = jax.jit(biojax.make_train_step(model, tx))  # a fresh program for this count
  state = init_state()
  variables = state.variables()
  specs = ["bp", "fa", "usf+eg", ["dfa", "softhebb", "bp"], ["kp", "brsf", "frsf"]]
  assignments = [bnn.make_assignment(variables, s) for s in specs]
  b, key = batch(0), jax.random.key(0)
  with CompileCounter() as counter:
    for a in assignments:
      state, _ = step(state.replace(assignment=a), b, key)
      jax.block_until_ready(state)
  assert counter.count == 1
  assert step._cache_size() == 1


def test_vmap_over_candidates_equals_each_alone():
  # SGD: Adam's first step, g / (|g| + eps), would amplify float rounding of tiny gradients.
  kw = {"optimizer": "sgd", "lr": 0.1}
  _, _, step = setup(**kw)
  specs = [["fa", "bp", "bp"], ["dfa", "dfa", "bp"], ["softhebb", "kp+eg", "usf"],
           ["brsf", "frsf", "fa"]]
  states = [init_state(s, seed=i, **kw) for i, s in enumerate(specs)]
  population = bnn.stack(states)
  vstep = jax.jit(jax.vmap(step, in_axes=(0, None, None)))
  for i in range(3):
    population, pop_metrics = vstep(population, batch(i), jax.random.key(i))
    results = [step(s, batch(i), jax.random.key(i)) for s in states]
    states = [r[0] for r in results]
  for k, s in enumerate(states):
    chex.assert_trees_all_close(jax.tree.map(lambda x, k=k: x[k], population.params), s.params,
                                atol=1e-6, rtol=1e-5)
    chex.assert_trees_all_close(jax.tree.map(lambda x, k=k: x[k], population.feedback), s.feedback,
                                atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(pop_metrics["loss"][k], results[k][1]["loss"], rtol=1e-5)


def test_kolen_pollack_alignment_falls_to_zero():
  kw = {"optimizer": "sgd", "lr": 0.1, "kp_decay": 0.05}
  state = init_state("kp", **kw)
  key = jax.random.key(0)
  angles0 = biojax.diagnostics.alignment(state.variables(), state.assignment, key)
  diff0 = {n: np.linalg.norm(state.feedback[n]["learned"] - state.params[n]["kernel"])
           for n in state.params}
  steps = 100
  state, history = run(state, steps, **kw)
  angles = biojax.diagnostics.alignment(state.variables(), state.assignment, key)
  for layer in angles:
    assert angles0[layer]["angle"] > 60  # random start: nearly orthogonal
    assert angles[layer]["angle"] < 5
    # Exact contraction: B - W shrinks by (1 - lambda) each step, whatever W does.
    diff = np.linalg.norm(state.feedback[layer]["learned"] - state.params[layer]["kernel"])
    np.testing.assert_allclose(diff, (1 - 0.05) ** steps * diff0[layer], rtol=1e-3)
  assert history[-1] < history[0]


def test_eg_step_matches_formula_and_keeps_signs():
  kw = {"optimizer": "sgd", "lr": 0.5}
  model, tx, step = setup(**kw)
  state = init_state(["usf+eg", "eg", "bp"], **kw)
  b, key = batch(0), jax.random.key(0)
  updates, _, _ = biojax.learning_signal(model, state.variables(), b, state.assignment, key)
  new, _ = step(state, b, key)
  for layer in ("dense_0", "dense_1"):
    w, g = np.asarray(state.params[layer]["kernel"]), np.asarray(updates[layer]["kernel"])
    np.testing.assert_allclose(new.params[layer]["kernel"],
                               w * np.exp(-0.5 * np.sign(w) * g), rtol=1e-5, atol=1e-7)
  # The classifier is additive: plain SGD.
  np.testing.assert_allclose(new.params["classifier"]["kernel"],
                             state.params["classifier"]["kernel"]
                             - 0.5 * updates["classifier"]["kernel"], rtol=1e-5, atol=1e-7)
  signs = {n: np.sign(state.params[n]["kernel"]) for n in ("dense_0", "dense_1")}
  state, history = run(state, 80, **kw)
  for n, s in signs.items():
    np.testing.assert_array_equal(np.sign(state.params[n]["kernel"]), s)
  assert history[-1] < history[0]


def test_assignment_errors_name_the_layers():
  state = init_state()
  variables = state.variables()
  assert bnn.weight_layers(variables) == ("dense_0", "dense_1", "classifier")
  with pytest.raises(ValueError) as info:
    bnn.make_assignment(variables, {"dense_0": "fa", "dense_2": "bp", "classifier": "bp"})
  message = str(info.value)
  assert "missing layers: dense_1" in message and "extra layers: dense_2" in message
  with pytest.raises(ValueError, match="3 weight layers"):
    bnn.make_assignment(variables, ["fa", "bp"])
  with pytest.raises(ValueError, match="Valid rules: bp, fa"):
    bnn.make_assignment(variables, ["fa", "hebb", "bp"])
  other = bnn.make_assignment(bnn.MLP(4, hidden=(8,)).init(jax.random.key(0), X[:1]), "bp")
  with pytest.raises(ValueError, match="missing layers: dense_1"):
    bnn.validate_assignment(other, variables)
  assert bnn.make_assignment(variables, ["fa", "usf+eg", "bp"]).describe() == {
      "dense_0": "fa", "dense_1": "usf+eg", "classifier": "bp"}


def test_single_rule_specs_leave_the_classifier_to_the_delta_rule_for_local_rules():
  assert bnn.single_rule_specs("fa", 3) == ["fa", "fa", "fa"]
  assert bnn.single_rule_specs("usf+eg", 2) == ["usf+eg", "usf+eg"]
  assert bnn.single_rule_specs("softhebb", 3) == ["softhebb", "softhebb", "bp"]
  with pytest.raises(ValueError, match="Valid rules"):
    bnn.single_rule_specs("hebb", 3)


def test_random_assignment_draws_from_given_rules():
  variables = init_state().variables()
  seen = set()
  for i in range(20):
    a = bnn.random_assignment(jax.random.key(i), variables, rules=["fa", "kp"])
    seen |= set(a.describe().values())
  assert seen == {"fa", "kp"}


@pytest.mark.parametrize("model, published", [(bnn.resnet20(), 0.27e6), (bnn.resnet56(), 0.85e6)])
def test_resnet_parameter_counts_match_he_et_al(model, published):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  count = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))
  assert abs(count - published) < 0.01e6  # Table 6 of He et al. (2016) rounds to 0.01M
  # Depth counts every weight layer: all convolutions (stem included) and the classifier.
  depth = 20 if published < 0.5e6 else 56
  assert len(bnn.weight_layers(shapes)) == depth


def test_weight_layers_in_order_of_application():
  model = bnn.ResNet(10, blocks_per_stage=1, widths=(4, 4, 4))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
  layers = bnn.weight_layers(variables)
  assert layers == ("stem", "stage1_block0/conv1", "stage1_block0/conv2", "stage2_block0/conv1",
                    "stage2_block0/conv2", "stage3_block0/conv1", "stage3_block0/conv2",
                    "classifier")
  # JAX transformations sort dict keys; the order is recorded in the variables and survives.
  assert bnn.weight_layers(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))) \
      == layers
  assignment = bnn.make_assignment(variables, "fa")
  jitted = jax.jit(lambda a: a)(assignment)
  assert jitted.layers == layers and tuple(jitted.describe()) == layers


def test_alignment_diagnostic():
  state = init_state(["bp", "usf", "dfa"])
  out = biojax.diagnostics.alignment(state.variables(), state.assignment, jax.random.key(0))
  np.testing.assert_allclose(out["dense_0"]["angle"], 0.0, atol=0.05)
  np.testing.assert_allclose(out["dense_0"]["norm_ratio"], 1.0, rtol=1e-6)
  w = np.asarray(state.params["dense_1"]["kernel"], np.float64)
  expected = np.degrees(np.arccos(np.abs(w).sum() / (np.sqrt(w.size) * np.linalg.norm(w))))
  np.testing.assert_allclose(out["dense_1"]["angle"], expected, rtol=1e-4)
  assert np.isnan(out["classifier"]["angle"])


def test_rule_universe_restricts_branches_and_is_checked():
  options = rules.RuleOptions(rules=("bp", "fa", "usf"))
  model = bnn.MLP(num_classes=4, hidden=(32, 32), options=options)
  tx = biojax.make_optimizer("sgd", 0.1)
  state = biojax.create_train_state(model, tx, jax.random.key(0), jnp.asarray(X[:2]),
                                    ["fa", "usf", "bp"])
  # Same updates as the model compiled with every rule.
  full_state = init_state(["fa", "usf", "bp"], optimizer="sgd", lr=0.1)
  u_small, _, _ = jax.jit(biojax.learning_signal, static_argnums=0)(
      model, state.variables(), batch(0), state.assignment, jax.random.key(0))
  u_full, _, _ = jax.jit(biojax.learning_signal, static_argnums=0)(
      MODEL, full_state.variables(), batch(0), full_state.assignment, jax.random.key(0))
  chex.assert_trees_all_close(u_small, u_full, atol=1e-7)
  with pytest.raises(ValueError, match="'kp'.*RuleOptions"):
    biojax.create_train_state(model, tx, jax.random.key(0), jnp.asarray(X[:2]), "kp")
  with pytest.raises(ValueError, match="Unknown learning rule 'hebb'"):
    rules.RuleOptions(rules=("bp", "hebb"))


def test_mlp_softhebb_options():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(256, 64)), jnp.float32)
  model = bnn.MLP(num_classes=4, hidden=(512, 512), center_hidden=True, hidden_init_scale=25.0)
  variables = model.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["dense_0"]["kernel"])
  np.testing.assert_allclose(kernel.std(), 25 / np.sqrt(64), rtol=0.05)
  # Centred inputs: in training, the batch norm without scale/shift standardises features.
  _, inter = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                         capture_intermediates=lambda mdl, _: mdl.name == "center_1")
  centred = np.asarray(inter["intermediates"]["center_1"]["__call__"][0])
  np.testing.assert_allclose(centred.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(centred.std(0)[centred.std(0) > 1e-3], 1.0, rtol=1e-2)
