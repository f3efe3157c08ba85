"""A sparse, neurobiologically guided local rule: competition, homeostasis, elimination.

Built from the mechanisms named by Inoue (Stricker), Rohrbein & Knoblauch (arXiv 2603.03234,
2026, abstract only; companion work arXiv 2603.00588): competitive Hebbian plasticity,
homeostatic firing thresholds, structural plasticity, and (through the ``eg`` step geometry)
multiplicative weight dynamics (Cornford et al. 2024). Nothing here clips a weight, projects
it onto a sign or multiplies it by a mask chosen from outside; see docs/sparse_rule.md for why
sparsity, lognormal weights and Dale's law should follow from the dynamics instead.

For a layer with kernel ``W`` (``w_ik``: presynaptic ``i``, postsynaptic ``k``), input ``x``,
pre-activation ``u_k = sum_i x_i w_ik`` and firing threshold ``theta_k`` (rule state, not a
parameter), the unit fires with ``h_k = relu(u_k + b_k - theta_k)``, and

    y_k = softmax((u - theta) / tau)_k            (competition: soft winner-take-all, i.e.
                                                   divisive lateral inhibition)
    y_k = 1[u_k > theta_k]                        (without competition)
    dW_ik = < y_k (x_i - u_k w_ik) >_batch        (instar / Oja-type Hebbian term)
    theta_k <- theta_k + eta_theta (r_k - rho)    (homeostasis; r_k the unit's firing rate
                                                   in the batch, rho the target rate)
    w_ik <- 0  if |w_ik| < epsilon max_i |w_ik|   (structural elimination)

``-dW`` is handed to the optimizer as a pseudo-gradient. With the ``eg`` geometry the optimizer's
step ``s`` becomes ``w <- w exp(sign(w) s)`` (Cornford et al. 2024), so a weight never changes
sign and a weight at exactly zero stays there: an eliminated synapse is gone for good without
any mask, and each synapse's sign is the one it started with. Under multiplicative dynamics the
fixed point of the Hebbian term is ``|w_ik| = sign(w_ik) <y_k x_i> / <y_k u_k>``: synapses whose
sign agrees with the pre/post correlation settle there, the others decay exponentially towards
zero until elimination removes them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from biojax.rules._registry import LayerShapes, Rule, StateVariable

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SparseOptions:
  """Hyper-parameters of the sparse rule (config: ``rule_options.sparse.<field>``).

  Attributes:
    competition: soft winner-take-all among the units of a layer (off: each unit learns when
      it fires, ``y = 1[u > theta]``).
    temperature: ``tau`` of that soft winner-take-all.
    homeostasis: adapt each unit's firing threshold ``theta`` towards the target rate.
    target_rate: ``rho``, the target fraction of inputs on which a unit fires.
    homeostasis_rate: ``eta_theta``, the threshold's step per unit of rate error.
    elimination: structural plasticity: a synapse weaker than ``elimination_threshold``
      times its unit's strongest synapse becomes exactly 0.
    elimination_threshold: ``epsilon`` of that criterion.
  """

  competition: bool = True
  temperature: float = 0.1
  homeostasis: bool = True
  target_rate: float = 0.1
  homeostasis_rate: float = 0.05
  elimination: bool = True
  elimination_threshold: float = 0.05


def sparse_postsynaptic(u: Array, threshold: Array, temperature: float = 1.0,
                        competition: bool = True) -> Array:
  """The plasticity signal ``y`` of each unit, from pre-activations ``u`` (..., out).

  With competition, ``softmax((u - theta) / tau)`` over the units (soft winner-take-all; the
  thresholds bias the competition towards units that fire too rarely). Without it, each unit
  learns when it fires on its own: ``1[u > theta]``.
  """
  drive = u - threshold
  if competition:
    y = jax.nn.softmax(drive / temperature, axis=-1)
  else:
    y = (drive > 0).astype(u.dtype)
  # Covariance form (Sejnowski 1977): activity relative to its mean over the batch, so that
  # sum_b (y - mean y) x = sum_b (y - mean y)(x - mean x) needs no presynaptic mean.
  return y - jnp.mean(y, axis=tuple(range(y.ndim - 1)), keepdims=True)


def sparse_delta(hebbian: Array, w: Array, u: Array, y: Array) -> Array:
  """``dW = (sum y x - (sum y u) W) / batch`` given the pre x post term ``hebbian = sum y x``.

  ``u`` and ``y`` have shape ``(batch, ..., out)`` (convolutions: every position is an
  example of the same synapses), ``hebbian`` and ``w`` the kernel's shape.
  """
  yu = jnp.sum(y * u, axis=tuple(range(u.ndim - 1)))  # (out,)
  return (hebbian - yu * w) / u.shape[0]


def sparse_update(hebbian: Array, w: Array, u: Array, y: Array) -> Array:
  """The pseudo-gradient (the optimizer subtracts it): ``-dW`` of :func:`sparse_delta`."""
  return -sparse_delta(hebbian, w, u, y)


def firing_rate(activation: Array) -> Array:
  """Fraction of examples (and positions) in which each unit fires: ``mean 1[a > 0]``.

  ``activation`` is ``u + b - theta`` with the unit on the last axis; the layer's output goes
  through a ReLU, so the unit fires exactly when it is positive.
  """
  return jnp.mean((activation > 0).astype(activation.dtype),
                  axis=tuple(range(activation.ndim - 1)))


def homeostatic_threshold(threshold: Array, rate: Array, target: float,
                          learning_rate: float) -> Array:
  """``theta + eta_theta (r - rho)``: a unit that fires too often raises its threshold.

  The fixed point is ``r = rho`` for every unit (Foldiak 1990; Zylberberg et al. 2011,
  SAILnet), so the average fraction of active units per input tends to ``rho``.
  """
  return threshold + learning_rate * (rate - target)


def eliminate_weak_synapses(w: Array, threshold: float) -> Array:
  """Structural elimination: ``w_ik <- 0`` where ``|w_ik| < epsilon max_i |w_ik|``.

  The reference is each postsynaptic unit's strongest synapse (the maximum runs over all axes
  but the last), so the criterion does not depend on the layer's overall scale. It only
  removes synapses that the dynamics have already made weak; it fixes no number or pattern of
  zeros. Under multiplicative steps a removed synapse stays at zero; under additive steps it
  can grow back (the ablation in docs/sparse_rule.md shows the difference).
  """
  strongest = jnp.max(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
  return jnp.where(jnp.abs(w) < threshold * strongest, jnp.zeros_like(w), w)


# ----------------------------------------------------------------- the rule for the registry


def _init_threshold(key: None, shapes: LayerShapes) -> Array:
  del key
  return jnp.zeros((shapes.kernel[-1],), shapes.dtype)


def _signal(u: Array, state: dict | None, options: SparseOptions) -> Array:
  threshold = state["threshold"] if state else 0.0  # no state given: the initial thresholds
  return sparse_postsynaptic(u, threshold, options.temperature, options.competition)


def _update(hebbian: Array, w: Array, u: Array, y: Array, options: SparseOptions) -> Array:
  del options
  return sparse_update(hebbian, w, u, y)


def _subtract_threshold(y: Array, state: dict, options: SparseOptions) -> Array:
  # The firing threshold is 0 (so this is the identity) unless homeostasis moved it.
  del options
  return y - state["threshold"]


def _homeostasis(state: dict, w_old: Array, w_new: Array, rate: Array | None,
                 options: SparseOptions) -> dict:
  del w_old, w_new
  if not options.homeostasis or rate is None:
    return {}
  return {"threshold": homeostatic_threshold(state["threshold"], rate, options.target_rate,
                                             options.homeostasis_rate)}


def _eliminate(w: Array, options: SparseOptions) -> Array:
  if not options.elimination:
    return w
  return eliminate_weak_synapses(w, options.elimination_threshold)


SPARSE = Rule("sparse", "local", "after Inoue, Rohrbein & Knoblauch 2026",
              "competitive Hebbian plasticity with homeostatic thresholds and elimination",
              local_signal=_signal, local_update=_update, options=SparseOptions,
              state=(StateVariable("threshold", _init_threshold, random=False),),
              adjust_output=_subtract_threshold, activity=firing_rate,
              after_step=_homeostasis, structural=_eliminate)
