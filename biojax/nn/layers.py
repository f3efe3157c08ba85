"""Rule-aware Flax (Linen) layers.

``Dense`` and ``Conv`` compute the usual forward pass. When the variables passed to
``apply`` hold an ``assignment`` collection, their backward pass follows the rule of the layer
(an integer read from that collection; docs/design.md) through
:func:`biojax.nn._credit.credit`. Without it (evaluation, adversarial attacks) the layer is a
plain differentiable function, and ``jax.grad`` gives the true gradient.

Variable collections of a layer (docs/design.md):

* ``params``: ``kernel`` (and ``bias``);
* ``feedback``: rule state, never touched by an optimizer: the state variables that the
  registered rules declare (:func:`biojax.rules.state_variables`; built in: ``fixed``, the FA
  matrix and frSF magnitudes; ``learned``, the Kolen-Pollack matrix; ``threshold``, the sparse
  rule's firing thresholds; and, for layers created with ``dfa_classes``, ``direct``, the DFA
  matrix ``(classes, *output_shape)``). Every layer holds every rule's state, so any
  assignment runs without re-initialising. Plus ``order``, the layer's position in the order
  of application (an int32 that never changes);
* ``assignment``: ``rule``, an int32 scalar, supplied by :class:`biojax.nn.Assignment`.

A hidden layer marks where its post-activation output is with :meth:`tap`; DFA injects the
output error there (so the activation supplies ``f'(a)``).
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from biojax import rules as rules_lib
from biojax.nn import _credit

Array = jax.Array
DFA_TAPS = "dfa_taps"
# Collection where, in training, each layer sows the per-unit statistics that rules with an
# `activity` hook record (under the rule's name), read by their after-step hooks.
ACTIVITY = "rule_activity"


def dense_forward(x: Array, w: Array) -> Array:
  return jnp.dot(x, w)


@dataclasses.dataclass(frozen=True)
class ConvForward:
  """``forward(x, w)`` of a convolution (NHWC inputs, HWIO kernels); hashable, so static."""

  strides: tuple[int, ...]
  padding: str | tuple[tuple[int, int], ...]
  kernel_dilation: tuple[int, ...]
  feature_group_count: int
  unrolled: bool = False

  def __call__(self, x: Array, w: Array) -> Array:
    spatial = "HW" if x.ndim == 4 else "H" if x.ndim == 3 else None
    if spatial is None:
      raise ValueError(f"Conv expects (batch, H, W, C) or (batch, L, C) inputs, got {x.shape}.")
    if self.unrolled and x.ndim == 4 and not isinstance(self.padding, str):
      if w.shape[:2] == (1, 1) and self.feature_group_count == 1:
        return self._pointwise(x, w)
      if w.shape[2] == 1 and self.feature_group_count == x.shape[-1] == w.shape[3]:
        return self._depthwise(x, w)
    layout = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    return jax.lax.conv_general_dilated(
        x, w, window_strides=self.strides, padding=self.padding,
        rhs_dilation=self.kernel_dilation, dimension_numbers=layout,
        feature_group_count=self.feature_group_count)

  # The unrolled forms (``unrolled=True``): a 1x1 convolution as a contraction over channels
  # and a depthwise one as a sum of shifted, scaled copies of the input. Both are linear in x
  # and in w, as the credit assignment needs, and under jax.vmap with batched kernels they
  # stay contractions and elementwise products, where XLA on CPU runs the batched (grouped)
  # convolutions of lax.conv tens of times slower (the supernet's rule copies:
  # docs/bionas.md).
  def _pad(self, x: Array) -> Array:
    return jnp.pad(x, ((0, 0), *self.padding, (0, 0)))

  def _pointwise(self, x: Array, w: Array) -> Array:
    x = self._pad(x)[:, ::self.strides[0], ::self.strides[1], :]
    return jnp.einsum("bhwc,co->bhwo", x, w[0, 0])

  def _depthwise(self, x: Array, w: Array) -> Array:
    xp = self._pad(x)
    (kh, kw), (dh, dw), (sh, sw) = w.shape[:2], self.kernel_dilation, self.strides
    out_h = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    total = 0.0
    for i in range(kh):
      for j in range(kw):
        window = xp[:, i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                    j * dw:j * dw + sw * (out_w - 1) + 1:sw, :]
        total = total + window * w[i, j, 0]
    return total


# Position of each rule-aware layer in the order of application, counted per model.init
# (keyed by the root scope). Stored as feedback/<layer>/order so that it survives JAX
# transformations, which sort dict keys.
_LAYER_COUNT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _next_layer_index(scope) -> int:
  root = scope.root
  index = _LAYER_COUNT.get(root, 0)
  _LAYER_COUNT[root] = index + 1
  return index


class _RuleAware(nn.Module):
  """Shared machinery of the rule-aware layers."""

  def _rule_forward(self, forward, x: Array, kernel: Array, bias: Array | None,
                    options: rules_lib.RuleOptions, dfa_classes: int | None) -> Array:
    self.variable("feedback", "order", lambda: jnp.int32(_next_layer_index(self.scope)))
    state = self._rule_state(forward, x, kernel, dfa_classes)
    if not self.has_variable("assignment", "rule"):
      y = forward(x, kernel)  # plain forward: true gradients
      rule = None
    else:
      rule = self.get_variable("assignment", "rule")
      if not self.has_rng("feedback"):
        raise ValueError(
            f"Layer {'/'.join(self.scope.path)} has a rule assignment but no 'feedback' PRNG "
            "stream: call apply(..., rngs={'feedback': key}) (biojax.learning_signal does).")
      b = _credit.feedback_matrix(rule, kernel, state, self.make_rng("feedback"), options)
      local_state = {v.name: state[v.name] for r in options.compiled_rules()
                     if r.credit == "local" for v in r.state}
      y = _credit.credit(forward, options, x, kernel, b, rule, local_state)
    if bias is not None:
      if rule is not None:
        # A local rule's update comes from the layer alone: no error reaches the bias.
        bias = jnp.where(_credit.is_local(rule), jax.lax.stop_gradient(bias), bias)
      y = y + bias
    for r in rules_lib.rules():
      if r.adjust_output is not None:  # identity unless the rule's own state moved
        y = r.adjust_output(y, state, options.of(r))
    if rule is not None:
      for r in options.compiled_rules():
        if r.activity is not None:
          self.sow(ACTIVITY, r.name, r.activity(jax.lax.stop_gradient(y)))
    return y

  def _rule_state(self, forward, x: Array, kernel: Array, dfa_classes: int | None) -> dict:
    """The layer's rule-state variables (collection ``feedback``), created at init in
    registry order; random ones draw from the ``params`` stream."""
    output = jax.eval_shape(forward, jax.ShapeDtypeStruct(x.shape, x.dtype),
                            jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)).shape[1:]
    shapes = rules_lib.LayerShapes(tuple(kernel.shape), tuple(output), kernel.dtype,
                                   dfa_classes)
    state = {}
    for variable in rules_lib.state_variables():
      if variable.needs_classes and dfa_classes is None:
        continue
      init = (lambda v=variable: v.init(self.make_rng("params"), shapes)) if variable.random \
          else (lambda v=variable: v.init(None, shapes))
      state[variable.name] = self.variable("feedback", variable.name, init).value
    return state

  def tap(self, h: Array) -> Array:
    """Marks ``h``, this layer's post-activation output, as the DFA injection point.

    The value is returned unchanged. In training, if the layer's rule is DFA the error that
    arrives from above is discarded here and ``e B_l`` is injected instead (by
    :func:`biojax.learning_signal`); for every other rule the tap does nothing.
    """
    if not self.has_variable("assignment", "rule"):
      return h
    if self.dfa_classes is None:
      raise ValueError(
          f"Layer {'/'.join(self.scope.path)}: tap() needs the layer to be created with "
          "dfa_classes=<number of classes>.")
    rule = self.get_variable("assignment", "rule")
    self.sow(DFA_TAPS, "h", h)
    return jnp.where(_credit.is_direct(rule), jax.lax.stop_gradient(h), h)


class Dense(_RuleAware):
  """A dense layer ``y = x W + b`` whose learning follows its assigned rule.

  Attributes:
    features: output size.
    use_bias: add a bias.
    dfa_classes: number of classes of the network's output; set it on hidden layers so that
      the layer can learn by DFA (it creates the ``direct`` feedback matrix).
    options: static rule hyper-parameters.
  """

  features: int
  use_bias: bool = True
  dfa_classes: int | None = None
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    return self._rule_forward(dense_forward, x, kernel, bias, self.options, self.dfa_classes)


class Conv(_RuleAware):
  """A convolution (NHWC) whose learning follows its assigned rule.

  Supports stride, padding (``"SAME"``, ``"VALID"`` or explicit pairs), kernel dilation and
  feature groups (``feature_group_count = in_channels`` gives a depthwise convolution; with a
  following 1x1 ``Conv`` a separable one). Attributes as :class:`Dense`, and ``unrolled``:
  compute a 1x1 or a depthwise convolution (explicit padding) as a channel contraction or a
  sum of shifted copies, the fast form on CPU under ``jax.vmap`` with batched kernels
  (the same function; other convolutions are unaffected).
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int | Sequence[int] = 1
  padding: str | int | Sequence[tuple[int, int]] = "SAME"
  kernel_dilation: int | Sequence[int] = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dfa_classes: int | None = None
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()
  unrolled: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    window = tuple(self.kernel_size)
    n = len(window)

    def as_tuple(v):
      return (v,) * n if isinstance(v, int) else tuple(v)

    padding = self.padding
    if isinstance(padding, int):
      padding = ((padding, padding),) * n
    elif not isinstance(padding, str):
      padding = tuple(tuple(p) for p in padding)
    in_features = x.shape[-1]
    if in_features % self.feature_group_count or self.features % self.feature_group_count:
      raise ValueError(
          f"feature_group_count={self.feature_group_count} must divide both the input "
          f"channels ({in_features}) and the output channels ({self.features}).")
    kernel = self.param("kernel", self.kernel_init,
                        (*window, in_features // self.feature_group_count, self.features))
    bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
    forward = ConvForward(as_tuple(self.strides), padding, as_tuple(self.kernel_dilation),
                          self.feature_group_count, self.unrolled)
    return self._rule_forward(forward, x, kernel, bias, self.options, self.dfa_classes)
