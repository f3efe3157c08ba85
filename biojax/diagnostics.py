"""Diagnostics of feedback-path rules: the alignment of W and its feedback matrix B."""

from __future__ import annotations

from collections.abc import Mapping

import flax
import jax
import jax.numpy as jnp
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nn import _credit
from biojax.nn.assignment import Assignment

Array = jax.Array


def alignment_angle(w: Array, b: Array) -> Array:
  """Angle in degrees between ``w`` and ``b`` seen as flat vectors (0: parallel)."""
  w, b = w.ravel(), b.ravel()
  cosine = jnp.vdot(w, b) / (jnp.linalg.norm(w) * jnp.linalg.norm(b) + 1e-30)
  return jnp.degrees(jnp.arccos(jnp.clip(cosine, -1.0, 1.0)))


def alignment(variables: Mapping, assignment: Assignment, key: Array) -> dict[str, dict]:
  """Per layer: ``angle`` (degrees) between ``W`` and the ``B`` its rule uses, and
  ``norm_ratio`` ``|B| / |W|``.

  Layers whose rule has no feedback matrix (direct and local rules: ``dfa``, ``softhebb``,
  ``sparse``) get NaN.
  """
  params = traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  feedback = traverse_util.flatten_dict(flax.core.unfreeze(variables["feedback"]))
  has_matrix = jnp.array([r.credit == "feedback" for r in rules_lib.rules()])
  out = {}
  for i, layer in enumerate(assignment.layers or tuple(assignment.rule)):
    path = tuple(layer.split("/"))
    w = params[(*path, "kernel")]
    state = {k[-1]: v for k, v in feedback.items() if k[:-1] == path and k[-1] != "order"}
    rule = assignment.rule[layer]
    b = _credit.feedback_matrix(rule, w, state, jax.random.fold_in(key, i))
    valid = has_matrix[rule]
    ratio = jnp.linalg.norm(b) / (jnp.linalg.norm(w) + 1e-30)
    out[layer] = {"angle": jnp.where(valid, alignment_angle(w, b), jnp.nan),
                  "norm_ratio": jnp.where(valid, ratio, jnp.nan)}
  return out
