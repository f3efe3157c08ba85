"""Feedback-path rules: the matrix ``B`` that carries a layer's error to the layer below.

For a layer ``y = f(x, W)`` (a dense product or a convolution, linear in each argument) every
feedback-path rule keeps the weight update local,

    dL/dW := vjp_W f(x, .)(delta)          (for a dense layer: x^T delta),

and sends the error to the layer below through ``B`` instead of ``W``,

    delta_below := vjp_x f(., B)(delta)    (for a dense layer: delta B^T).

The rules differ only in ``B`` (docs/rules.md, "Feedback-path rules"). Each function below takes
the layer's weight ``w``, its rule state (:func:`init_feedback_state`) and a PRNG key that is
new every batch, and returns ``B`` with the shape of ``w``. All are pure and work on plain
arrays, so they can be called from a notebook.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from biojax.rules._registry import LayerShapes, Rule, StateVariable, exact_feedback

Array = jax.Array


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
  """(fan_in, fan_out) of a kernel in Flax layout.

  Dense kernels are ``(in, out)``; convolution kernels are ``(*window, in/groups, out)``. As in
  Glorot & Bengio (2010) and PyTorch, both fans of a convolution include the window size.
  """
  if len(shape) < 2:
    raise ValueError(f"A weight kernel has at least 2 dimensions, got shape {shape}.")
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


def glorot_std(shape: tuple[int, ...]) -> float:
  """sqrt(2 / (fan_in + fan_out)), the scale of uSF (Xiao et al. 2018) and of random B."""
  fan_in, fan_out = fans(shape)
  return math.sqrt(2.0 / (fan_in + fan_out))


def random_feedback(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
  """A random feedback matrix, N(0, 2 / (fan_in + fan_out)) (Glorot normal)."""
  return glorot_std(shape) * jax.random.normal(key, shape, dtype)


def init_feedback_state(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> dict:
  """Rule state of one weight layer, shared by all feedback-path rules.

  Returns:
    ``{"fixed": R, "learned": B0}``: ``R`` is the fixed random matrix of FA and the fixed
    magnitudes of frSF; ``B0`` is the initial Kolen-Pollack matrix, which learning moves
    towards ``W``. Both have the shape of the kernel. They live in the ``feedback`` variable
    collection, never in ``params`` (docs/design.md).
  """
  fixed_key, learned_key = jax.random.split(key)
  return {
      "fixed": random_feedback(fixed_key, shape, dtype),
      "learned": random_feedback(learned_key, shape, dtype),
  }


def bp_feedback(w: Array, state: dict, key: Array) -> Array:
  """Back-propagation (Rumelhart et al. 1986): ``B = W``."""
  return exact_feedback(w, state, key)


def fa_feedback(w: Array, state: dict, key: Array) -> Array:
  """Feedback alignment (Lillicrap et al. 2016, Nat. Commun. 7:13276).

  ``B = R``, a random matrix drawn once at initialisation and never changed.
  """
  del w, key
  return state["fixed"]


def usf_feedback(w: Array, state: dict, key: Array) -> Array:
  """Uniform sign-concordant feedback, uSF (Xiao et al. 2018, arXiv:1811.03567).

  ``B = sign(W) * sqrt(2 / (fan_in + fan_out))``; it follows the signs of ``W``.
  """
  del state, key
  return jnp.sign(w) * glorot_std(w.shape)


def brsf_feedback(w: Array, state: dict, key: Array) -> Array:
  """Batchwise random-magnitude sign-concordant feedback, brSF (Xiao et al. 2018).

  ``B = |R_t| * sign(W)``, with ``R_t ~ N(0, 2 / (fan_in + fan_out))`` redrawn every batch.
  """
  del state
  return jnp.abs(random_feedback(key, w.shape, w.dtype)) * jnp.sign(w)


def frsf_feedback(w: Array, state: dict, key: Array) -> Array:
  """Fixed random-magnitude sign-concordant feedback, frSF (Xiao et al. 2018).

  ``B = |R| * sign(W)``, with ``R`` drawn once (the FA matrix) and signs following ``W``.
  """
  del key
  return jnp.abs(state["fixed"]) * jnp.sign(w)


def _init_random(key: Array, shapes: LayerShapes) -> Array:
  return random_feedback(key, shapes.kernel, shapes.dtype)


# The fixed random matrix of FA, whose magnitudes frSF uses too (one variable, shared).
FIXED = StateVariable("fixed", _init_random)

BP = Rule("bp", "feedback", "Rumelhart, Hinton & Williams 1986", "back-propagation: B = W",
          feedback=exact_feedback)
FA = Rule("fa", "feedback", "Lillicrap et al. 2016", "feedback alignment: fixed random B",
          feedback=fa_feedback, state=(FIXED,))
USF = Rule("usf", "feedback", "Xiao et al. 2018",
           "uniform sign-concordant: B = sign(W) sqrt(2/(fan_in+fan_out))",
           feedback=usf_feedback)
BRSF = Rule("brsf", "feedback", "Xiao et al. 2018",
            "batchwise random-magnitude sign-concordant: B = |R_t| sign(W)",
            feedback=brsf_feedback)
FRSF = Rule("frsf", "feedback", "Xiao et al. 2018",
            "fixed random-magnitude sign-concordant: B = |R| sign(W)",
            feedback=frsf_feedback, state=(FIXED,))
