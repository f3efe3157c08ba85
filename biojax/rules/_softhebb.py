"""SoftHebb: soft winner-take-all Hebbian plasticity without feedback.

Journe, Rodriguez, Guo & Moraitis (2023), "Hebbian deep learning without feedback", ICLR,
arXiv:2209.11883. For a layer with weight vectors ``w_k`` (one per output neuron ``k``) and
input ``x``, with pre-activation ``u_k = w_k . x``:

    y_k   = softmax(u / tau)_k                      (soft winner-take-all)
    y_k  <- -y_k  for every k except argmax_k u_k    (anti-Hebbian term for the losers)
    dw_ik = eta_k * y_k * (x_i - u_k w_ik)            (the SoftHebb plasticity rule)
    eta_k = eta * (| ||w_k||_2 - 1 | + 1e-10)^0.5     (weight-norm-adaptive learning rate)

so that each ``w_k`` converges to the unit sphere while the winner moves towards the input.
In a convolution every output position is one competition among channels, and the update is
summed over positions (a patch plays the role of ``x``). As in the authors' code, the update
can be divided by its largest magnitude (``normalize=True``) before the adaptive rate is
applied. The batch update is the mean over the batch of the per-example updates.

The rule needs no error: a layer that uses it sends no error to the layer below (``B = 0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from biojax.rules._registry import Rule

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SoftHebbOptions:
  """Hyper-parameters of SoftHebb (config: ``rule_options.softhebb.<field>``).

  Attributes:
    temperature: ``tau`` of the soft winner-take-all (Journe et al. 2023 use 1).
    anti_hebbian: negate the plasticity signal of the losing neurons.
    normalize: divide each update by its largest magnitude, as the authors' code does.
  """

  temperature: float = 1.0
  anti_hebbian: bool = True
  normalize: bool = True


def softhebb_postsynaptic(u: Array, temperature: float = 1.0,
                          anti_hebbian: bool = True) -> Array:
  """The plasticity signal ``y`` of each output neuron from pre-activations ``u`` (..., out)."""
  y = jax.nn.softmax(u / temperature, axis=-1)
  if not anti_hebbian:
    return y
  winner = jax.nn.one_hot(jnp.argmax(u, axis=-1), u.shape[-1], dtype=bool)
  return jnp.where(winner, y, -y)


def softhebb_delta(forward: Callable[[Array, Array], Array], x: Array, w: Array,
                   temperature: float = 1.0, anti_hebbian: bool = True) -> Array:
  """``mean_batch sum_positions y (x - u w)`` for a layer ``u = forward(x, w)``.

  ``forward`` is linear in ``w`` with output neurons on its last axis (a dense product or a
  convolution); the Hebbian term ``sum y x`` is its transpose applied to ``y``.
  """
  u, transpose = jax.vjp(lambda w_: forward(x, w_), w)
  y = softhebb_postsynaptic(u, temperature, anti_hebbian)
  (yx,) = transpose(y)
  return softhebb_delta_from_hebbian(yx, w, u, y)


def softhebb_delta_from_hebbian(yx: Array, w: Array, u: Array, y: Array) -> Array:
  """``(sum y x - (sum y u) w) / batch`` given the pre x post term ``yx = sum y x``."""
  yu = jnp.sum(y * u, axis=tuple(range(u.ndim - 1)))  # (out,)
  return (yx - yu * w) / u.shape[0]


def softhebb_finish(delta: Array, w: Array, normalize: bool = True) -> Array:
  """The pseudo-gradient from ``delta``: optional max-normalisation and the adaptive rate."""
  if normalize:
    delta = delta / (jnp.max(jnp.abs(delta)) + 1e-30)
  return -softhebb_rate(w) * delta


def softhebb_rate(w: Array) -> Array:
  """The weight-norm-adaptive factor ``(| ||w_k||_2 - 1 | + 1e-10)^0.5`` per output neuron."""
  norms = jnp.sqrt(jnp.sum(w * w, axis=tuple(range(w.ndim - 1))))
  return jnp.sqrt(jnp.abs(norms - 1.0) + 1e-10)


def softhebb_update(forward: Callable[[Array, Array], Array], x: Array, w: Array,
                    temperature: float = 1.0, anti_hebbian: bool = True,
                    normalize: bool = True) -> Array:
  """The SoftHebb update of ``w`` as a pseudo-gradient (to be *subtracted* by the optimizer).

  With plain SGD at learning rate ``eta`` the optimizer's step is exactly
  ``eta * eta_k-factor * dw`` of the published rule.
  """
  return softhebb_finish(softhebb_delta(forward, x, w, temperature, anti_hebbian), w, normalize)


def dense_forward(x: Array, w: Array) -> Array:
  """``x @ w``, the forward of a dense layer, for use with the functions above."""
  return x @ w


def _signal(u: Array, state: dict, options: SoftHebbOptions) -> Array:
  del state
  return softhebb_postsynaptic(u, options.temperature, options.anti_hebbian)


def _update(hebbian: Array, w: Array, u: Array, y: Array, options: SoftHebbOptions) -> Array:
  return softhebb_finish(softhebb_delta_from_hebbian(hebbian, w, u, y), w, options.normalize)


SOFTHEBB = Rule("softhebb", "local", "Journe et al. 2023",
                "soft winner-take-all Hebbian plasticity, no feedback",
                local_signal=_signal, local_update=_update, options=SoftHebbOptions)
