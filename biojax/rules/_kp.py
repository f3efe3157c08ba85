"""Kolen-Pollack (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS, arXiv:1904.05391).

A feedback-path rule with learned feedback: ``B`` starts random and receives the same update
as ``W`` plus the same decay, so ``B - W`` shrinks by ``1 - lambda`` every step and ``B``
converges to ``W`` without ever being copied from it. The whole rule is in this file: its
feedback matrix, its hyper-parameter ``lambda``, its state (``learned``) and the step that
moves ``B`` after every optimizer step.
"""

from __future__ import annotations

import dataclasses

import jax

from biojax.rules._feedback import random_feedback
from biojax.rules._registry import LayerShapes, Rule, StateVariable

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class KPOptions:
  """Hyper-parameters of Kolen-Pollack (config: ``rule_options.kp.<field>``).

  Attributes:
    decay: ``lambda``; ``B - W`` shrinks by ``1 - lambda`` per step.
  """

  decay: float = 1e-3


def kp_feedback(w: Array, state: dict, key: Array) -> Array:
  """Kolen-Pollack (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS, arXiv:1904.05391).

  ``B`` is learned: see :func:`kp_feedback_update`.
  """
  del w, key
  return state["learned"]


def kp_feedback_update(b: Array, w_old: Array, w_new: Array, decay: float) -> Array:
  """One Kolen-Pollack step for the feedback matrix.

  Akrout et al. (2019) give ``W`` and ``B`` the same update plus the same weight decay:
  ``dW = -eta x^T delta - lambda W`` and ``dB = -eta x^T delta - lambda B``, so that
  ``B - W`` shrinks by ``(1 - lambda)`` every step. We write it for any optimizer:

      B_new = B + (W_new - W_old) - lambda * (B - W_old),

  which equals Akrout's rule when the optimizer's step is ``-eta x^T delta - lambda W``, and
  in every case gives ``B_new - W_new = (1 - lambda) (B - W_old)``.
  """
  return b + (w_new - w_old) - decay * (b - w_old)


def _init_learned(key: Array, shapes: LayerShapes) -> Array:
  return random_feedback(key, shapes.kernel, shapes.dtype)


def _after_step(state, w_old, w_new, activity, options: KPOptions) -> dict:
  del activity
  return {"learned": kp_feedback_update(state["learned"], w_old, w_new, options.decay)}


KP = Rule("kp", "feedback", "Akrout et al. 2019",
          "Kolen-Pollack: B learned with W's update plus decay, B -> W",
          feedback=kp_feedback, options=KPOptions,
          state=(StateVariable("learned", _init_learned),), after_step=_after_step)
