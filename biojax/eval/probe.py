"""Linear probe: how linearly separable a layer's representation is, whatever trained it.

A network's test accuracy mixes two things: how good its hidden features are, and how well its
classifier learned to read them (a local or sign-constrained classifier may read them worse
than an unconstrained one would). The probe separates them: it fits the best multinomial
logistic regression on fixed features (a convex problem, solved to convergence with L-BFGS,
so the answer does not depend on a learning rate or a step budget) and reports its accuracy.
It is the standard measure of Hebbian features (e.g. SoftHebb, Journe et al. 2023).

    feats = biojax.eval.hidden_activations(model, variables, images)["dense_0"]
    result = biojax.eval.linear_probe(train_feats, train_labels, test_feats, test_labels)
    result["test_accuracy"]

The objective, with features standardised by the training set's mean and standard deviation
(constant features become zero), is

    mean_n CE(softmax(z_n W + b), y_n) + (l2 / 2) ||W||^2     (the bias is not penalised)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import ArrayLike


def _check(features: np.ndarray, labels: np.ndarray, name: str) -> None:
  if features.ndim != 2:
    raise ValueError(f"{name} features must be (examples, features); got shape "
                     f"{features.shape}. Flatten conv maps first.")
  if labels.shape != (features.shape[0],):
    raise ValueError(f"{name} labels must be ({features.shape[0]},) integers, one per example; "
                     f"got shape {labels.shape}.")
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{name} features contain NaN or Inf.")


def probe_objective(weights: jax.Array, bias: jax.Array, features: jax.Array,
                    labels: jax.Array, l2: float) -> jax.Array:
  """Mean cross-entropy of ``softmax(features @ weights + bias)`` plus ``l2/2 ||weights||^2``."""
  logits = features @ weights + bias
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss + 0.5 * l2 * jnp.sum(weights ** 2)


def linear_probe(train_features: ArrayLike, train_labels: ArrayLike,
                 test_features: ArrayLike, test_labels: ArrayLike, *,
                 num_classes: int | None = None, l2: float = 1e-4,
                 max_iterations: int = 500, tolerance: float = 1e-6) -> dict:
  """Fits a regularised softmax read-out on fixed features and scores it on test features.

  Args:
    train_features, test_features: ``(n, d)`` features (e.g. a hidden layer's activations).
    train_labels, test_labels: ``(n,)`` integer labels.
    num_classes: number of classes; default ``max(label) + 1`` over both sets.
    l2: the weight penalty ``l2/2 ||W||^2``; > 0 makes the optimum unique.
    max_iterations: L-BFGS iterations at most.
    tolerance: stop when the gradient's L2 norm falls below it.

  Returns:
    ``{"train_accuracy", "test_accuracy", "loss" (the objective at the solution),
    "gradient_norm", "iterations", "weights" (d, classes), "bias" (classes,), "mean", "std"}``;
    the weights apply to standardised features ``(x - mean) / std``.
  """
  x_train = np.asarray(train_features, np.float32)
  x_test = np.asarray(test_features, np.float32)
  y_train = np.asarray(train_labels)
  y_test = np.asarray(test_labels)
  _check(x_train, y_train, "train")
  _check(x_test, y_test, "test")
  if x_train.shape[1] != x_test.shape[1]:
    raise ValueError(f"train and test features differ in width: {x_train.shape[1]} against "
                     f"{x_test.shape[1]}.")
  if l2 <= 0:
    raise ValueError(f"l2 must be > 0 (it makes the optimum unique); got {l2}.")
  classes = num_classes or int(max(y_train.max(), y_test.max())) + 1
  if y_train.min() < 0 or max(y_train.max(), y_test.max()) >= classes:
    raise ValueError(f"labels must lie in [0, {classes}); got {y_train.min()}.."
                     f"{max(y_train.max(), y_test.max())}.")

  mean = x_train.mean(axis=0)
  std = x_train.std(axis=0)
  std = np.where(std > 0, std, 1.0)  # constant features: centred to zero, left unscaled
  z_train = jnp.asarray((x_train - mean) / std)
  z_test = jnp.asarray((x_test - mean) / std)
  labels = jnp.asarray(y_train, jnp.int32)

  def objective(params):
    return probe_objective(params[0], params[1], z_train, labels, l2)

  params, loss, gradient_norm, iterations = _solve(
      objective, (jnp.zeros((z_train.shape[1], classes)), jnp.zeros((classes,))),
      max_iterations, tolerance)

  def accuracy(z, y):
    return float(np.mean(np.argmax(np.asarray(z @ params[0] + params[1]), -1) == y))

  return {"train_accuracy": accuracy(z_train, y_train), "test_accuracy": accuracy(z_test, y_test),
          "loss": float(loss), "gradient_norm": float(gradient_norm),
          "iterations": int(iterations), "weights": np.asarray(params[0]),
          "bias": np.asarray(params[1]), "mean": mean, "std": std}


def _solve(objective, init, max_iterations: int, tolerance: float):
  """Minimises ``objective`` from ``init`` with optax's L-BFGS (zoom line search)."""
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  @jax.jit
  def run(params):
    def step(carry):
      params, state = carry
      value, grad = value_and_grad(params, state=state)
      updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                     value_fn=objective)
      return optax.apply_updates(params, updates), state

    def going(carry):
      _, state = carry
      count = optax.tree_utils.tree_get(state, "count")
      grad = optax.tree_utils.tree_get(state, "grad")
      return (count == 0) | ((count < max_iterations)
                             & (optax.tree_utils.tree_norm(grad) >= tolerance))

    params, state = jax.lax.while_loop(going, step, (params, solver.init(params)))
    value, grad = jax.value_and_grad(objective)(params)
    return params, value, optax.tree_utils.tree_norm(grad), \
        optax.tree_utils.tree_get(state, "count")

  return run(init)
