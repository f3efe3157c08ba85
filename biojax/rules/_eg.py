"""Exponentiated-gradient (multiplicative, sign-preserving) step geometry.

Cornford et al. (2024), "Brain-like learning with exponentiated gradients", bioRxiv
10.1101/2024.10.25.620272: ``w <- w * exp(-lr * sign(w) * g)``. The weight is multiplied by a
positive factor, so no weight ever changes sign (and a zero weight stays zero); updates are
proportional to ``|w|``, which drives weight distributions towards lognormal.

Here the geometry is a transformation of any additive step ``u`` (what an optax optimizer
would add to ``w``) into the multiplicative step

    Delta w = w * (exp(sign(w) * u) - 1),

which for plain SGD (``u = -lr * g``) is exactly Cornford's rule. It composes with any rule,
schedule, clipping or momentum placed before it in an ``optax.chain``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def exponentiated_update(w: Array, g: Array, learning_rate: float) -> Array:
  """``w * (exp(-lr * sign(w) * g) - 1)``: the update to *add* to ``w``."""
  return w * jnp.expm1(-learning_rate * jnp.sign(w) * g)


def multiplicative_step(w: Array, u: Array) -> Array:
  """Turns an additive step ``u`` into the sign-preserving step ``w (exp(sign(w) u) - 1)``."""
  return w * jnp.expm1(jnp.sign(w) * u)


class MultiplicativeState(NamedTuple):
  """multiplicative() keeps no state."""


def multiplicative(geometry=None) -> optax.GradientTransformationExtraArgs:
  """An optax transformation that applies the exponentiated-gradient geometry.

  Place it last in a chain, after the transformations that produce the additive step
  (``optax.chain(optax.sgd(lr), multiplicative())``).

  Args:
    geometry: which leaves use the multiplicative step. ``None``: every leaf. Otherwise a
      pytree of the structure of the updates with 0 (additive) or 1 (multiplicative) per
      leaf; it may also be passed at update time as the keyword ``geometry=``, so that it
      is data (one compiled program serves every per-layer choice).
  """

  def init_fn(params):
    del params
    return MultiplicativeState()

  def update_fn(updates, state, params=None, *, geometry=geometry, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("multiplicative() needs params: call tx.update(updates, state, params).")
    if geometry is None:
      updates = jax.tree.map(multiplicative_step, params, updates)
    else:
      # An id that is no geometry (a stale or corrupt assignment) gives NaN, never a step.
      updates = jax.tree.map(
          lambda w, u, m: jnp.where(m == 1, multiplicative_step(w, u),
                                    jnp.where(m == 0, u, jnp.nan)),
          params, updates, geometry)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def exponentiated_gradient(learning_rate: optax.ScalarOrSchedule
                           ) -> optax.GradientTransformationExtraArgs:
  """Cornford et al.'s optimizer: ``w <- w * exp(-lr * sign(w) * g)`` on every leaf."""
  return optax.chain(optax.sgd(learning_rate), multiplicative())
