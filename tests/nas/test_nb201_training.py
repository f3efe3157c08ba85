"""Training NAS-Bench-201 candidates: one compiled train step for every genome, and dormant
rules (of convolutions the genome does not choose) that change nothing."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import biojax
from biojax import nas
from biojax.compilation import CompileCounter

SPACE = nas.NB201Space()
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
MODEL = nas.NB201Network(C=4, N=1, num_classes=10)
X = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
Y = np.arange(8) % 10
BATCH = {"image": jnp.asarray(X), "label": jnp.asarray(Y)}
# XLA's backend optimisations off: these tiny programs compile several times faster.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.lru_cache
def train_setup():
  """One initial state, one jitted train step and the genome -> assignment map, shared."""
  tx = biojax.make_optimizer("sgd", 0.1)
  # An 'rbg' key: XLA on CPU compiles the ~260 random draws of the initialisation about
  # three times faster than with threefry (measured: 9 s against 30 s here).
  key = jax.random.key(0, impl="rbg")
  # The initialisation jitted (one program, not hundreds of eager ops), fast to compile.
  init = jax.jit(functools.partial(MODEL.init, train=False), compiler_options=FAST_COMPILE)
  variables = flax.core.unfreeze(init(key, jnp.asarray(X[:2])))
  state = biojax.train.train_state_from_variables(
      variables, tx, biojax.nn.make_assignment(variables, "bp"))
  step = jax.jit(biojax.make_train_step(MODEL, tx), compiler_options=FAST_COMPILE)
  return state, step, SPACE.assignment_fn(state.variables())


def genome(ops, edge_rule="bp", macro_rule="bp"):
  return SPACE.encode([OPS[o] for o in ops], edge_rule, macro_rule)


def candidates(genomes):
  state, _, assign = train_setup()
  return [nas.as_candidate(state, SPACE.architecture(g)).replace(assignment=assign(g))
          for g in genomes]


@pytest.mark.slow  # about a minute on 2 loaded cores
def test_train_step_compiles_once_for_different_genomes():
  _, step, _ = train_setup()
  genomes = [SPACE.named("best_cifar10", "usf"), SPACE.named("resnet", "dfa"),
             genome([4, 0, 1, 2, 0, 1], ["fa", "kp", "brsf", "frsf", "softhebb", "bp"], "frsf"),
             *np.asarray(SPACE.random_genomes(jax.random.key(7), 2))]
  assert len({SPACE.to_string(g) for g in genomes}) == 5
  states = candidates(genomes)
  losses = []
  with CompileCounter() as counter:
    for state in states:
      new_state, metrics = step(state, BATCH, jax.random.key(0))
      jax.block_until_ready(new_state)
      losses.append(float(metrics["loss"]))
  assert counter.count == 1
  assert step._cache_size() == 1
  assert np.all(np.isfinite(losses)) and len(set(losses)) == 5  # different networks
  np.testing.assert_array_equal(new_state.architecture["ops"], genomes[-1][:6])


def test_unchosen_convolutions_do_not_change_learning():
  # With no convolution chosen on any edge, the edge rules are dormant: DFA on the unchosen
  # convolutions (whose taps receive injected error) must not change any other layer's
  # update, nor the BN statistics; the unchosen convolutions' own weights may change.
  _, step, _ = train_setup()
  ops = [1, 4, 0, 1, 4, 1]
  states = candidates([genome(ops, rule, "usf") for rule in ("dfa", "bp", "softhebb")])
  results = [step(s, BATCH, jax.random.key(1))[0] for s in states]
  flat = [dict(jax.tree_util.tree_flatten_with_path(r.params)[0]) for r in results]
  outside_edges = [p for p in flat[0] if not any("edge_" in str(k) for k in p)]
  assert len(outside_edges) > 10
  for path in outside_edges:
    for other in flat[1:]:
      np.testing.assert_array_equal(flat[0][path], other[path], err_msg=str(path))
  # The DFA injection did reach the unchosen convolutions themselves (BP gives them nothing).
  conv = [p for p in flat[0] if "edge_1_0" in str(p) and "nor_conv_3x3" in str(p)
          and "kernel" in str(p)][0]
  assert not np.array_equal(flat[0][conv], flat[1][conv])
  for other in results[1:]:
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, results[0].batch_stats,
                                            other.batch_stats)))
  # ... while with a convolution chosen, the edge rule does matter.
  chosen = [step(s, BATCH, jax.random.key(1))[0] for s in candidates(
      [genome([3] * 6, rule, "usf") for rule in ("dfa", "bp")])]
  assert not np.array_equal(chosen[0].params["stem"]["kernel"],
                            chosen[1].params["stem"]["kernel"])
