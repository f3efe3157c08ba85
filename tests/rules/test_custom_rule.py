"""A rule written outside biojax (here, in this file) registers and trains with no biojax edit.

The example of docs/rules.md, "Adding a rule": *trailing feedback*, a feedback-path rule whose
matrix ``B`` is a moving average of the layer's past weights,

    B_0 ~ N(0, 2 / (fan_in + fan_out)),      B_t = (1 - r) B_{t-1} + r W_t,

so it has hyper-parameters (``r``), state (``trail``, drawn at initialisation) and an
after-step hook (the average). The test trains an MLP whose layers mix it with bp and usf,
and checks the state against the recurrence computed in NumPy from the recorded weights.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import blobs

import biojax
from biojax import nn as bnn
from biojax import rules


@dataclasses.dataclass(frozen=True)
class TrailingOptions:
  rate: float = 0.1  # r


def _init_trail(key, shapes):
  return rules.random_feedback(key, shapes.kernel, shapes.dtype)


def _feedback(w, state, key):
  del w, key
  return state["trail"]


def _after_step(state, w_old, w_new, activity, options):
  del w_old, activity
  return {"trail": (1 - options.rate) * state["trail"] + options.rate * w_new}


TRAILING = rules.Rule(
    "trailing", "feedback", "example", "B trails W as its moving average",
    feedback=_feedback, options=TrailingOptions,
    state=(rules.StateVariable("trail", _init_trail),), after_step=_after_step)


@pytest.fixture
def trailing_rule():
  """Registers the rule for one test; compiled programs of other tests do not know it."""
  jax.clear_caches()
  rules.register(TRAILING)
  yield TRAILING
  rules.unregister("trailing")
  jax.clear_caches()


def test_a_rule_defined_outside_biojax_trains_with_its_state(trailing_rule):
  assert rules.rule_names()[-1] == "trailing"
  assert rules.rule_id("trailing") == len(rules.rule_names()) - 1  # appended: ids unchanged
  x, y = blobs(n=256, dim=10, classes=3, seed=3)
  options = rules.RuleOptions(trailing={"rate": 0.25})
  model = bnn.MLP(num_classes=3, hidden=(24, 16), options=options)
  tx = biojax.make_optimizer("sgd", 0.1)
  state = biojax.create_train_state(model, tx, jax.random.key(0), jnp.asarray(x[:2]),
                                    assignment=["trailing", "usf", "trailing"])
  assert set(state.feedback["dense_0"]) >= {"trail", "fixed", "learned", "threshold"}
  step = jax.jit(biojax.make_train_step(model, tx))

  trail = {n: np.asarray(state.feedback[n]["trail"], np.float64) for n in state.feedback}
  initial = dict(trail)
  losses = []
  for i in range(60):
    idx = np.random.default_rng(i).choice(len(x), 32, replace=False)
    state, metrics = step(state, {"image": x[idx], "label": y[idx]}, jax.random.key(i))
    losses.append(float(metrics["loss"]))
    for n in ("dense_0", "classifier"):  # the recurrence, in NumPy, on the new weights
      w = np.asarray(state.params[n]["kernel"], np.float64)
      trail[n] = 0.75 * trail[n] + 0.25 * w
  for n in ("dense_0", "classifier"):
    np.testing.assert_allclose(state.feedback[n]["trail"], trail[n], rtol=1e-4, atol=1e-5)
  # dense_1 learns by usf: the hook never runs there.
  np.testing.assert_array_equal(state.feedback["dense_1"]["trail"], initial["dense_1"])
  assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_registering_a_clashing_rule_is_refused(trailing_rule):
  with pytest.raises(ValueError, match="already registered"):
    rules.register(trailing_rule)
  clash = dataclasses.replace(
      trailing_rule, name="clash",
      state=(rules.StateVariable("fixed", lambda key, shapes: jnp.zeros(shapes.kernel)),))
  with pytest.raises(ValueError, match="'fixed' is already declared"):
    rules.register(clash)
  with pytest.raises(ValueError, match="credit must be one of"):
    rules.Rule("bad", "gradient", "", "")
