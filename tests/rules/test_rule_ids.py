"""A rule id the program was not built with never runs as another rule.

``jax.lax.switch`` and gathers clamp an out-of-range index to a valid one, so an id one past
the registry (a rule registered in another process) or a negative id would silently train by
a neighbouring rule. Here: concrete ids are refused with an error naming the layer, the id
and the registry; inside a compiled step they make the update non-finite (the same compiled
program serves valid ids, so the guard is data, not a recompilation); genomes and operation
genes likewise; and checkpoints record the registry's names, so a restore where the registry
differs either maps names to ids or fails naming the missing rules.
"""

import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import mlp_setup

import biojax
from biojax import nas, rules
from biojax import nn as bnn
from biojax import train as train_lib
from biojax.checkpoint import Checkpointer
from biojax.compilation import CompileCounter
from biojax.nas.nb201.network import _Edge

N = len(rules.rule_names())
BAD_IDS = (N, -1)  # one past the registry, and negative


def _state(assignment="bp"):
  model, variables, batch = mlp_setup()
  tx = biojax.make_optimizer("sgd", 0.1)
  state = train_lib.train_state_from_variables(
      variables, tx, bnn.make_assignment(variables, assignment))
  return model, tx, state, batch


def _with_rule(state, layer, rule=None, geometry=None):
  a = state.assignment
  if rule is not None:
    a = a.replace(rule={**a.rule, layer: jnp.asarray(rule, jnp.int32)})
  if geometry is not None:
    a = a.replace(geometry={**a.geometry, layer: jnp.asarray(geometry, jnp.int32)})
  return state.replace(assignment=a)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_concrete_unknown_id_is_refused_with_the_layer_and_the_registry(bad):
  model, _, state, _ = _state()
  variables = {"params": state.params, "feedback": state.feedback}
  broken = _with_rule(state, "dense_1", rule=bad).assignment
  with pytest.raises(ValueError, match=rf"Rule id {bad} \(layer dense_1\).*0 bp, 1 fa"):
    bnn.validate_assignment(broken, variables)
  with pytest.raises(ValueError, match="layer dense_1"):
    broken.describe()
  with pytest.raises(ValueError, match="layer dense_1"):
    biojax.create_train_state(model, biojax.make_optimizer("sgd", 0.1), jax.random.key(0),
                              np.zeros((1, 12), np.float32), broken)
  with pytest.raises(ValueError, match=r"Step-geometry id 2 \(layer classifier\)"):
    bnn.validate_assignment(_with_rule(state, "classifier", geometry=2).assignment, variables)
  with pytest.raises(ValueError, match="Rule id"):
    rules.get_rule(bad)


def test_inside_the_compiled_step_an_unknown_id_gives_non_finite_updates():
  model, tx, state, batch = _state()
  step = jax.jit(biojax.make_train_step(model, tx))
  good, _ = step(state, batch, jax.random.key(1))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(good.params))
  with CompileCounter() as counter:  # the same compiled program: the ids are data
    for bad in BAD_IDS:
      new, metrics = step(_with_rule(state, "dense_1", rule=bad), batch, jax.random.key(1))
      # Every parameter of the network is NaN (learning_signal guards the whole update),
      # the layers with valid rules included: no layer keeps a step taken beside a bad one.
      for path, leaf in flax.traverse_util.flatten_dict(new.params).items():
        assert np.isnan(np.asarray(leaf)).all(), path
    for bad in (2, -1):  # geometry ids: 0 additive, 1 eg
      new, _ = step(_with_rule(state, "classifier", geometry=bad), batch, jax.random.key(1))
      assert not np.isfinite(np.asarray(new.params["classifier"]["kernel"])).any()
  assert counter.count == 0


def test_a_registered_rule_left_out_of_the_compiled_rules_gives_non_finite_updates():
  """RuleOptions(rules=...) compiles a subset; an id outside it inside jit is no valid rule
  of that program either (outside jit, validate_assignment refuses it)."""
  _, variables, batch = mlp_setup()
  options = rules.RuleOptions(rules=("bp", "fa"))
  model = bnn.MLP(num_classes=5, hidden=(9, 7), options=options)
  assignment = bnn.make_assignment(variables, "bp")
  assignment = assignment.replace(rule={**assignment.rule, "dense_1": jnp.int32(
      rules.rule_id("usf"))})
  with pytest.raises(ValueError, match="usf"):
    bnn.validate_assignment(assignment, variables, options)
  updates, _, _ = jax.jit(biojax.learning_signal, static_argnums=0)(
      model, variables, batch, assignment, jax.random.key(0))
  assert all(np.isnan(np.asarray(u)).all() for u in jax.tree.leaves(updates))
  # The same program with usf out of dense_1's place: finite (the guard is the id alone).
  valid = assignment.replace(rule={**assignment.rule, "dense_1": jnp.int32(rules.rule_id("fa"))})
  updates, _, _ = jax.jit(biojax.learning_signal, static_argnums=0)(
      model, variables, batch, valid, jax.random.key(0))
  assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))


def test_genes_out_of_range_fail_before_and_inside_a_trace():
  space = nas.LayerRuleSpace(rules=("bp", "fa"), num_layers=3)
  _, variables, _ = mlp_setup()
  assign = space.assignment_fn(variables)
  with pytest.raises(ValueError, match="Gene 1 .*is 2; valid values are 0..1"):
    space.validate(np.array([0, 2, 1]))
  # Inside a trace the value cannot be read: the layer gets rule -1 (non-finite updates).
  for bad in (2, -1):
    a = jax.jit(assign)(jnp.array([0, bad, 1]))
    assert int(a.rule["dense_1"]) == -1 and int(a.geometry["dense_1"]) == -1
    assert int(a.rule["classifier"]) == rules.rule_id("fa")
    assert not bool(bnn.known_rule(a.rule["dense_1"]))


def test_the_evaluator_refuses_a_genome_out_of_range_before_compiling():
  space = nas.NB201Space(rules=("bp", "fa"))
  model = nas.NB201Network(C=2, N=1, num_classes=2, dfa=False,
                           options=rules.RuleOptions(rules=("bp", "fa")))
  evaluator = nas.PopulationEvaluator(space, model, steps=1, batch_size=2)
  genome = np.asarray(space.named("resnet", rule="bp"))
  genome[-1] = 2  # a rule gene of a two-rule alphabet
  with CompileCounter() as counter, pytest.raises(ValueError, match="valid values are 0..1"):
    evaluator.evaluate(genome[None], {}, {}, jax.random.key(0))
  assert counter.count == 0


@pytest.mark.parametrize("op", [5, -1])
def test_an_operation_gene_out_of_range_gives_nan(op):
  edge = _Edge(dfa_classes=None, options=rules.RuleOptions(rules=("bp",)))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 2)), jnp.float32)
  variables = edge.init(jax.random.key(0), x, jnp.int32(1), False)
  apply = jax.jit(lambda v, o: edge.apply(v, x, o, False))
  np.testing.assert_array_equal(np.asarray(apply(variables, jnp.int32(1))), np.asarray(x))
  assert np.isnan(np.asarray(apply(variables, jnp.int32(op)))).all()


def _plain_rule(name, state=()):
  return rules.Rule(name, "feedback", "test", "B = W", feedback=rules.exact_feedback,
                    state=state)


def _zeros(key, shapes):
  del key
  return jnp.zeros(shapes.kernel, shapes.dtype)


@pytest.fixture
def registry():
  """Registers rules for one test and removes them afterwards (last first)."""
  added = []

  def add(rule):
    jax.clear_caches()
    rules.register(rule)
    added.append(rule.name)

  def remove(name):
    added.remove(name)
    rules.unregister(name)
    jax.clear_caches()

  yield add, remove
  for name in reversed(added):
    rules.unregister(name)
  jax.clear_caches()


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def _fresh_state(assignment="bp"):
  model, variables, _ = mlp_setup()
  x = np.zeros((1, 12), np.float32)
  return biojax.create_train_state(model, biojax.make_optimizer("sgd", 0.1),
                                   jax.random.key(0), x, assignment)


def test_a_checkpoint_written_with_an_extra_rule_fails_with_its_name(tmp_path, registry):
  add, remove = registry
  add(_plain_rule("extra", state=(rules.StateVariable("extra_b", _zeros),)))
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  checkpointer.save(0, _fresh_state(["extra", "bp", "fa"]), {})
  remove("extra")
  with pytest.raises(ValueError, match="not registered: extra"):
    checkpointer.restore_latest(_abstract(_fresh_state()))
  assert not os.path.exists(tmp_path / "checkpoints_corrupt")  # not taken for corruption
  checkpointer.close()


def test_a_checkpoint_written_without_a_rule_registered_here_fails_with_its_name(
    tmp_path, registry):
  add, _ = registry
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  checkpointer.save(0, _fresh_state(), {})
  add(_plain_rule("extra", state=(rules.StateVariable("extra_b", _zeros),)))
  with pytest.raises(ValueError, match="written without the rules extra"):
    checkpointer.restore_latest(_abstract(_fresh_state()))
  checkpointer.close()


def test_the_same_rules_registered_in_another_order_restore_by_name(tmp_path, registry):
  add, remove = registry
  add(_plain_rule("first"))
  add(_plain_rule("second"))
  written = _fresh_state(["first", "second", "bp"])
  assert int(written.assignment.rule["dense_0"]) == N  # "first" has id N there
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  checkpointer.save(0, written, {})
  remove("second")
  remove("first")
  add(_plain_rule("second"))
  add(_plain_rule("first"))  # ids swapped
  state, meta = checkpointer.restore_latest(_abstract(_fresh_state()))
  assert meta["rule_names"][N:] == ["first", "second"]
  assert int(state.assignment.rule["dense_0"]) == N  # the raw id now means "second"
  remapped = state.assignment.with_ids_from(meta["rule_names"])
  assert remapped.describe() == {"dense_0": "first", "dense_1": "second", "classifier": "bp"}
  checkpointer.close()
