"""biojax.loop: ``fit`` against an explicit loop of train_step calls (bitwise), its hooks,
log summaries, resume and stop; the NaN error; ``evaluate`` against NumPy."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import blobs

import biojax
from biojax import loop
from biojax import nn as bnn

X, Y = blobs(n=256, dim=8, classes=3)
MODEL = bnn.MLP(num_classes=3, hidden=(16,))
TX = biojax.make_optimizer("adam", 1e-2)
# brsf (on the classifier: its B carries the error to dense_0) draws its feedback
# magnitudes from the step's key, so a wrong key changes the result.
SPEC = ["bp", "brsf"]
STEP = jax.jit(biojax.make_train_step(MODEL, TX))
KEY = jax.random.key(3)
NUM_STEPS = 10


def batch(step: int) -> dict:
  idx = np.random.default_rng(step).choice(len(X), 32, replace=False)
  return {"image": X[idx], "label": Y[idx]}


def batches(start: int = 0):
  step = start
  while True:
    yield batch(step)
    step += 1


def initial_state():
  return biojax.create_train_state(MODEL, TX, jax.random.key(0), jnp.asarray(X[:1]), SPEC)


def reference(num_steps: int):
  """What fit promises, written out: train_step(state, batch_k, fold_in(key, k))."""
  state, history = initial_state(), []
  for k in range(num_steps):
    state, metrics = STEP(state, batch(k), jax.random.fold_in(KEY, k))
    history.append({name: float(v) for name, v in metrics.items()})
  return state, history


def assert_trees_equal(actual, expected):
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def state_tree(state):
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "feedback": state.feedback}


def test_fit_equals_an_explicit_loop_bitwise_with_its_logs_and_hooks():
  expected, history = reference(NUM_STEPS)
  logs, periodic, seen = [], [], {}

  def every_step(step, state):
    seen[step] = int(state.step)
    if step == 5:
      seen["params_5"] = jax.device_get(state.params)

  result = loop.fit(STEP, initial_state(), batches(), KEY, NUM_STEPS, log_every=4,
                    on_log=lambda step, summary: logs.append((step, summary)),
                    hooks=(every_step, loop.every(3, lambda s, _: periodic.append(s),
                                                  NUM_STEPS)))
  assert not result.interrupted and result.step == NUM_STEPS
  assert_trees_equal(state_tree(result.state), state_tree(expected))
  # Summaries: the mean of the steps since the last log (4, 4, then the last 2).
  assert [step for step, _ in logs] == [4, 8, 10]
  for (_, summary), (start, stop) in zip(logs, [(0, 4), (4, 8), (8, 10)], strict=True):
    part = history[start:stop]
    assert summary["steps"] == stop - start
    assert summary["loss"] == np.mean([h["loss"] for h in part])
    assert summary["accuracy"] == np.mean([h["accuracy"] for h in part])
  assert periodic == [3, 6, 9, 10]
  assert all(seen[s] == s for s in range(1, NUM_STEPS + 1))
  assert_trees_equal(seen["params_5"], reference(5)[0].params)


def test_fit_resumes_from_the_state_step_and_ends_as_one_run():
  expected, _ = reference(NUM_STEPS)
  first = loop.fit(STEP, initial_state(), batches(), KEY, 4, log_every=100)
  assert int(first.state.step) == 4
  second = loop.fit(STEP, first.state, batches(4), KEY, NUM_STEPS, log_every=100)
  assert_trees_equal(state_tree(second.state), state_tree(expected))


def test_should_stop_ends_between_steps():
  expected, _ = reference(6)
  consumed = []

  def counted():
    for k, b in enumerate(batches()):
      consumed.append(k)
      yield b

  result = loop.fit(STEP, initial_state(), counted(), KEY, NUM_STEPS,
                    should_stop=lambda step: step == 6)
  assert result.interrupted and result.step == 6 and consumed == list(range(6))
  assert_trees_equal(state_tree(result.state), state_tree(expected))


@flax.struct.dataclass
class Counter:
  step: jax.Array


def nan_at(bad: int):
  """A train step whose loss is NaN at (0-based) step ``bad`` and 1.0 elsewhere."""
  def train_step(state, batch, key):
    del batch, key
    loss = jnp.where(state.step == bad, jnp.nan, 1.0)
    return Counter(state.step + 1), {"loss": loss, "accuracy": jnp.float32(0.5)}
  return train_step


def test_a_nan_loss_raises_with_its_step():
  with pytest.raises(loop.NonFiniteLossError, match="The training loss is nan at step 6") as error:
    loop.fit(nan_at(5), Counter(jnp.int32(0)), iter(range(100)), KEY, NUM_STEPS, log_every=4)
  assert error.value.step == 6 and isinstance(error.value, FloatingPointError)


def test_without_the_check_a_nan_loss_is_only_logged():
  logs = []
  result = loop.fit(nan_at(5), Counter(jnp.int32(0)), iter(range(100)), KEY, NUM_STEPS,
                    log_every=4, check_finite=False, on_log=lambda s, m: logs.append(m))
  assert result.step == NUM_STEPS
  assert [m["loss"] for m in logs][0] == 1.0 and np.isnan(logs[1]["loss"])


def test_evaluate_matches_numpy_and_masks_padding():
  state = initial_state()
  eval_step = jax.jit(biojax.make_eval_step(MODEL))
  images, labels = X[:50], Y[:50]
  # Two batches of 32, the second padded with 14 masked rows.
  padded_images = np.concatenate([images, np.zeros((14, X.shape[1]), np.float32)])
  padded_labels = np.concatenate([labels, np.zeros(14, np.int32)])
  mask = np.concatenate([np.ones(50), np.zeros(14)]).astype(np.float32)
  split = [{"image": padded_images[i:i + 32], "label": padded_labels[i:i + 32],
            "mask": mask[i:i + 32]} for i in (0, 32)]
  result = loop.evaluate(eval_step, state, split)

  logits = np.asarray(MODEL.apply(state.variables(), images, train=False), np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  assert result["count"] == 50
  assert result["loss"] == pytest.approx(-log_probs[np.arange(50), labels].mean(), rel=1e-5)
  assert result["accuracy"] == np.mean(np.argmax(logits, -1) == labels)
  assert loop.evaluate(eval_step, state, []) == {"loss": None, "accuracy": None, "count": 0}


def test_prefetch_keeps_order_and_reads_ahead_by_its_size():
  read = []

  def source():
    for i in range(5):
      read.append(i)
      yield i

  items = loop.prefetch(source(), size=2)
  assert next(items) == 0 and read == [0, 1]
  assert list(items) == [1, 2, 3, 4]
