"""Models whose every weight layer (stem and classifier included) is rule-aware.

All models take NHWC images (or flat vectors for the MLP), return logits, and accept
``train`` (batch statistics in training). Hidden weight layers are created with
``dfa_classes`` and tapped after their activation, so every rule, DFA included, applies to
every hidden layer. The classifier receives the output error directly under every rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from biojax import rules as rules_lib
from biojax.nn.layers import Conv, Dense

Array = jax.Array


def _scaled_lecun(scale: float) -> nn.initializers.Initializer:
  """LeCun normal with its standard deviation multiplied by ``scale``."""
  if scale == 1.0:
    return nn.initializers.lecun_normal()
  return nn.initializers.variance_scaling(scale**2, "fan_in", "truncated_normal")


INITS = ("lecun", "dale", "mixed")


def signed_uniform(inhibitory_fraction: float = 0.2, scale: float = 1.0,
                   per_synapse: bool = False) -> nn.initializers.Initializer:
  """Uniform magnitudes with excitatory and inhibitory signs (not lognormal, by design).

  Magnitudes are ``U(0, a)`` with ``a = scale sqrt(3 / fan_in)`` for excitatory synapses (RMS
  ``scale / sqrt(fan_in)``, as LeCun) and ``(1 - f) / f`` times larger for inhibitory ones,
  so that the expected input of a unit is balanced (``f`` the inhibitory fraction; as in E/I
  networks such as Cornford et al. 2021). Signs:

  * ``per_synapse=False`` (Dale's law at initialisation): a fraction ``f`` of the presynaptic
    units (rows of a dense kernel; every axis but the last) is inhibitory, exactly
    ``round(f n)`` of them, chosen at random, and all outgoing weights of a unit share its sign;
  * ``per_synapse=True`` (mixed signs per unit): each synapse independently is inhibitory with
    probability ``f``, so almost every presynaptic unit has outgoing weights of both signs.
  """
  ratio = (1.0 - inhibitory_fraction) / inhibitory_fraction if inhibitory_fraction else 1.0

  def init(key, shape, dtype=jnp.float32):
    sign_key, magnitude_key = jax.random.split(key)
    fan_in = math.prod(shape[:-1])
    if per_synapse:
      inhibitory = jax.random.bernoulli(sign_key, inhibitory_fraction, shape)
    else:
      units = math.prod(shape[:-1])
      count = round(inhibitory_fraction * units)
      order = jax.random.permutation(sign_key, units)
      inhibitory = (order < count).reshape((*shape[:-1], 1))
    magnitude = jax.random.uniform(magnitude_key, shape, dtype) * scale * math.sqrt(3 / fan_in)
    return jnp.where(inhibitory, -ratio * magnitude, magnitude).astype(dtype)

  return init


def _kernel_init(init: str, scale: float, inhibitory_fraction: float
                 ) -> nn.initializers.Initializer:
  if init == "lecun":
    return _scaled_lecun(scale)
  if init in ("dale", "mixed"):
    return signed_uniform(inhibitory_fraction, scale, per_synapse=init == "mixed")
  raise ValueError(f"Unknown init {init!r}. Valid inits: {', '.join(INITS)}.")


class MLP(nn.Module):
  """Multi-layer perceptron: ``hidden`` ReLU layers and a linear classifier.

  ``center_hidden=True`` standardises the input of every layer after the first with a batch
  norm without learned scale or shift, as SoftHebb networks do (Journe et al. 2023): ReLU
  outputs are non-negative, and competitive Hebbian learning with anti-Hebbian losers on
  non-negative inputs drives most units to silence. ``hidden_init_scale`` multiplies the
  standard deviation of the hidden kernels' initialisation (LeCun normal: ``1/sqrt(fan_in)``);
  SoftHebb starts from ``25/sqrt(fan_in)`` so that its norm-adaptive rate starts high.

  ``weight_init`` chooses every kernel's initialisation (classifier included): ``"lecun"`` (LeCun
  normal), ``"dale"`` (excitatory and inhibitory presynaptic units, a fraction
  ``inhibitory_fraction`` inhibitory, uniform magnitudes) or ``"mixed"`` (the same magnitudes
  and sign statistics, signs drawn per synapse); see :func:`signed_uniform`.
  """

  num_classes: int = 10
  hidden: Sequence[int] = (256, 256)
  center_hidden: bool = False
  hidden_init_scale: float = 1.0
  weight_init: str = "lecun"
  inhibitory_fraction: float = 0.2
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      if self.center_hidden and i > 0:
        x = self._center(x, train, f"center_{i}")
      layer = Dense(width, dfa_classes=self.num_classes, options=self.options,
                    kernel_init=_kernel_init(self.weight_init, self.hidden_init_scale,
                                             self.inhibitory_fraction), name=f"dense_{i}")
      x = layer.tap(nn.relu(layer(x)))
    if self.center_hidden and self.hidden:
      x = self._center(x, train, "center_classifier")
    return Dense(self.num_classes, options=self.options, name="classifier",
                 kernel_init=_kernel_init(self.weight_init, 1.0, self.inhibitory_fraction))(x)

  @staticmethod
  def _center(x: Array, train: bool, name: str) -> Array:
    return nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                        momentum=0.9, name=name)(x)


class ConvNet(nn.Module):
  """A small ConvNet: [conv 3x3, ReLU, 2x2 average pool] per stage, a hidden dense layer and
  a classifier."""

  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  hidden: int = 128
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    del train
    if x.ndim == 3:
      x = x[..., None]
    for i, c in enumerate(self.channels):
      layer = Conv(c, (3, 3), dfa_classes=self.num_classes, options=self.options,
                   name=f"conv_{i}")
      x = layer.tap(nn.relu(layer(x)))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    layer = Dense(self.hidden, dfa_classes=self.num_classes, options=self.options,
                  name="dense")
    x = layer.tap(nn.relu(layer(x)))
    return Dense(self.num_classes, options=self.options, name="classifier")(x)


def _shortcut_a(x: Array, features: int, stride: int) -> Array:
  """He et al. (2016) option A: subsample and zero-pad channels (no weights)."""
  if stride > 1:
    x = x[:, ::stride, ::stride, :]
  pad = features - x.shape[-1]
  if pad:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
  return x


class BasicBlock(nn.Module):
  """conv-BN-ReLU-conv-BN, plus the option-A shortcut, then ReLU."""

  features: int
  stride: int
  num_classes: int
  options: rules_lib.RuleOptions

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)  # noqa: E731
    conv1 = Conv(self.features, (3, 3), strides=self.stride, use_bias=False,
                 dfa_classes=self.num_classes, options=self.options, name="conv1")
    h = conv1.tap(nn.relu(norm("bn1")(conv1(x))))
    conv2 = Conv(self.features, (3, 3), use_bias=False, dfa_classes=self.num_classes,
                 options=self.options, name="conv2")
    y = norm("bn2")(conv2(h)) + _shortcut_a(x, self.features, self.stride)
    return conv2.tap(nn.relu(y))


class ResNet(nn.Module):
  """CIFAR ResNet of He et al. (2016, section 4.2): depth = 6n + 2, stages of 16/32/64.

  ResNet-20 (n=3) has 0.27M parameters and ResNet-56 (n=9) 0.85M, as in their Table 6;
  these are the biotorch benchmark models.
  """

  num_classes: int = 10
  blocks_per_stage: int = 3
  widths: Sequence[int] = (16, 32, 64)
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if x.ndim == 3:
      x = x[..., None]
    stem = Conv(self.widths[0], (3, 3), use_bias=False, dfa_classes=self.num_classes,
                options=self.options, name="stem")
    x = stem.tap(nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                      name="stem_bn")(stem(x))))
    for s, width in enumerate(self.widths):
      for b in range(self.blocks_per_stage):
        stride = 2 if (s > 0 and b == 0) else 1
        x = BasicBlock(width, stride, self.num_classes, self.options,
                       name=f"stage{s + 1}_block{b}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return Dense(self.num_classes, options=self.options, name="classifier")(x)


def resnet20(num_classes: int = 10, **kwargs) -> ResNet:
  return ResNet(num_classes=num_classes, blocks_per_stage=3, **kwargs)


def resnet56(num_classes: int = 10, **kwargs) -> ResNet:
  return ResNet(num_classes=num_classes, blocks_per_stage=9, **kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "convnet": ConvNet,
    "resnet20": resnet20,
    "resnet56": resnet56,
}


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """A model from :data:`MODELS` by name."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}. Valid models: {', '.join(MODELS)}.")
  return MODELS[name](num_classes=num_classes, **kwargs)
