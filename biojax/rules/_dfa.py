"""Direct feedback alignment (Nokland 2016, NeurIPS, arXiv:1609.01596).

The error at the output, ``e = dL/dlogits`` (batch, classes), is sent straight to every hidden
layer ``l`` through a fixed random matrix ``B_l`` of shape ``(classes, *hidden_shape)``:

    delta_l = (e B_l) * f'(a_l),        dW_l = x_l^T delta_l,

where ``a_l`` is the layer's pre-activation and ``x_l`` its input. In biojax the projection
``e B_l`` is injected at the layer's *post-activation* output ("the feedback tap"), so the
layer's own activation (and batch norm, where present) supplies ``f'(a_l)`` by autodiff, and
the error that arrives from the layer above is discarded.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from biojax.rules._registry import LayerShapes, Rule, StateVariable

Array = jax.Array


def init_direct_feedback(key: Array, num_classes: int, hidden_shape: tuple[int, ...],
                         dtype=jnp.float32) -> Array:
  """``B_l ~ N(0, 1 / classes)``, shape ``(classes, *hidden_shape)``.

  With this scale ``e B_l`` has, per hidden unit, about the norm of ``e`` itself.
  """
  return jax.random.normal(key, (num_classes, *hidden_shape), dtype) / math.sqrt(num_classes)


def direct_feedback(output_error: Array, b: Array) -> Array:
  """``e B_l``: the output error (batch, classes) projected to the hidden shape."""
  return jnp.tensordot(output_error, b, axes=[[1], [0]])


def _init_direct(key: Array, shapes: LayerShapes) -> Array:
  return init_direct_feedback(key, shapes.num_classes, shapes.output, shapes.dtype)


def _direct(output_error: Array, state: dict) -> Array:
  return direct_feedback(output_error, state["direct"])


DFA = Rule("dfa", "direct", "Nokland 2016",
           "direct feedback alignment: output error through fixed random B_l",
           direct=_direct,
           state=(StateVariable("direct", _init_direct, needs_classes=True),))
