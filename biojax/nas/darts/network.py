"""DARTS's evaluation network with the architecture compiled in and every weight layer
rule-aware (the authors' ``model.py`` and ``operations.py``, quark0/darts).

:class:`DartsNetwork` is ``NetworkCIFAR``, or ``NetworkImageNet`` with ``variant="imagenet"``;
its ``genotype`` is a static attribute, so one compiled program per architecture serves every
rule assignment (the rules stay data). Evaluation networks of the paper: C=36 with 20 cells
on CIFAR-10 (DARTS-V2: 3.3M parameters), C=48 with 14 cells on ImageNet. Left out: the
auxiliary head and drop-path of DARTS's training recipe.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from biojax import rules as rules_lib
from biojax.nas._layers import batch_norm, tap
from biojax.nas.darts.genotypes import (
    CONV_OPERATIONS,
    NAMED_GENOTYPES,
    NUM_INTERMEDIATE_NODES,
    OPERATIONS,
    VARIANTS,
    Genotype,
    as_genotype,
)
from biojax.nn.layers import Conv, Dense

Array = jax.Array


class FactorizedReduce(nn.Module):
  """DARTS's FactorizedReduce: ReLU, two 1x1 stride-2 convolutions (``conv_1`` on the input,
  ``conv_2`` on the input shifted by one pixel), concatenated, BN. Halves H and W.

  The shifted path pads one zero row and column first (as later versions of DARTS's code
  do), so odd sizes work (``ceil(H/2)``); for even sizes this equals ``x[:, 1:, 1:]``.
  DFA taps: each convolution at its half of the BN output.
  """

  features: int
  dfa_classes: int | None = None
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()
  unrolled: bool = False  # Conv's unrolled 1x1 form (the supernet's vmapped edges)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.features % 2:
      raise ValueError(f"FactorizedReduce needs an even number of channels, got "
                       f"{self.features}.")
    half = self.features // 2
    conv = functools.partial(Conv, half, (1, 1), strides=2, padding=0, use_bias=False,
                             dfa_classes=self.dfa_classes, options=self.options,
                             unrolled=self.unrolled)
    x = nn.relu(x)
    conv_1, conv_2 = conv(name="conv_1"), conv(name="conv_2")
    shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:]
    y = batch_norm(train, "bn")(jnp.concatenate([conv_1(x), conv_2(shifted)], axis=-1))
    if self.dfa_classes is None:
      return y
    return jnp.concatenate([conv_1.tap(y[..., :half]), conv_2.tap(y[..., half:])], axis=-1)


class ReLUConvBN(nn.Module):
  """DARTS's ReLUConvBN (here 1x1, stride 1: the cells' preprocessing); DFA tap after BN."""

  features: int
  dfa_classes: int | None = None
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    conv = Conv(self.features, (1, 1), padding=0, use_bias=False,
                dfa_classes=self.dfa_classes, options=self.options, name="conv")
    return tap(conv, batch_norm(train, "bn")(conv(nn.relu(x))), self.dfa_classes is not None)


class DartsOperation(nn.Module):
  """One kept operation of DARTS's evaluation network (``OPS`` in the authors'
  ``operations.py``), with ``C`` channels in and out:

  - ``max_pool_3x3``, ``avg_pool_3x3``: padding 1 (average without the padding);
  - ``skip_connect``: identity, or :class:`FactorizedReduce` at stride 2;
  - ``sep_conv_kxk``: ``(ReLU, depthwise kxk, 1x1, BN)`` twice, the stride in the first;
  - ``dil_conv_kxk``: ReLU, depthwise kxk dilated by 2 (padding ``k-1``), 1x1, BN.

  Weight layers: ``dw1``, ``pw1``, ``dw2``, ``pw2`` (separable), ``dw``, ``pw`` (dilated),
  ``conv_1``, ``conv_2`` (FactorizedReduce). DFA taps: a depthwise convolution at its own
  output (the 1x1 convolution that follows is linear); a 1x1 convolution after its BN, and
  after the ReLU that follows when there is one (the middle of a separable convolution).
  """

  operation: str
  stride: int = 1
  dfa_classes: int | None = None
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()
  unrolled: bool = False  # Conv's unrolled 1x1 and depthwise forms (the supernet's edges)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    s, op = self.stride, self.operation
    pad = ((1, 1), (1, 1))
    if op == "max_pool_3x3":
      return nn.max_pool(x, (3, 3), strides=(s, s), padding=pad)
    if op == "avg_pool_3x3":
      return nn.avg_pool(x, (3, 3), strides=(s, s), padding=pad, count_include_pad=False)
    if op == "skip_connect":
      if s == 1:
        return x
      return FactorizedReduce(x.shape[-1], self.dfa_classes, self.options, self.unrolled,
                              name="factorized_reduce")(x, train)
    if op not in CONV_OPERATIONS:
      raise ValueError(f"Unknown operation {op!r}. Valid operations: {', '.join(OPERATIONS)}.")
    kind, k = CONV_OPERATIONS[op]
    dfa = self.dfa_classes is not None
    channels = x.shape[-1]
    conv = functools.partial(Conv, channels, use_bias=False, dfa_classes=self.dfa_classes,
                             options=self.options, unrolled=self.unrolled)
    if kind == "dil":
      dw = conv((k, k), strides=s, padding=k - 1, kernel_dilation=2,
                feature_group_count=channels, name="dw")
      h = tap(dw, dw(nn.relu(x)), dfa)
      pw = conv((1, 1), padding=0, name="pw")
      return tap(pw, batch_norm(train, "bn")(pw(h)), dfa)
    dw1 = conv((k, k), strides=s, padding=k // 2, feature_group_count=channels, name="dw1")
    h = tap(dw1, dw1(nn.relu(x)), dfa)
    pw1 = conv((1, 1), padding=0, name="pw1")
    h = tap(pw1, nn.relu(batch_norm(train, "bn1")(pw1(h))), dfa)  # the ReLU of half 2
    dw2 = conv((k, k), padding=k // 2, feature_group_count=channels, name="dw2")
    h = tap(dw2, dw2(h), dfa)
    pw2 = conv((1, 1), padding=0, name="pw2")
    return tap(pw2, batch_norm(train, "bn2")(pw2(h)), dfa)


class DartsCell(nn.Module):
  """A DARTS cell with ``C`` channels per node (``Cell`` in the authors' ``model.py``).

  ``s0 -> preprocess0`` (FactorizedReduce if the previous cell reduced, else 1x1
  ReLU-Conv-BN), ``s1 -> preprocess1`` (1x1 ReLU-Conv-BN); node ``n`` = sum of its two kept
  edges (``edge<e>``, e = 2(n-2), 2(n-2)+1); output = concat of nodes 2..5 (``4C``
  channels). In a reduction cell the edges from nodes 0 and 1 have stride 2.
  """

  genotype: Genotype
  C: int
  reduction: bool = False
  reduction_prev: bool = False
  dfa_classes: int | None = None
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, s0: Array, s1: Array, train: bool = False) -> Array:
    genotype = as_genotype(self.genotype)
    if self.reduction_prev:
      s0 = FactorizedReduce(self.C, self.dfa_classes, self.options, name="preprocess0")(
          s0, train)
    else:
      s0 = ReLUConvBN(self.C, self.dfa_classes, self.options, name="preprocess0")(s0, train)
    s1 = ReLUConvBN(self.C, self.dfa_classes, self.options, name="preprocess1")(s1, train)
    cell = "reduce" if self.reduction else "normal"
    states = [s0, s1]
    edges = getattr(genotype, cell)
    for node in range(NUM_INTERMEDIATE_NODES):
      total = None
      for e in (2 * node, 2 * node + 1):
        op, j = edges[e]
        stride = 2 if self.reduction and j < 2 else 1
        y = DartsOperation(op, stride, self.dfa_classes, self.options, name=f"edge{e}")(
            states[j], train)
        total = y if total is None else total + y
      states.append(total)
    return jnp.concatenate([states[i] for i in getattr(genotype, f"{cell}_concat")], axis=-1)


class DartsNetwork(nn.Module):
  """DARTS's evaluation network with the architecture compiled in and rules as data.

  ``variant="cifar"`` (``NetworkCIFAR``): stem (3x3 conv to ``3C``, BN), ``layers`` cells,
  reduction cells at ``layers // 3`` and ``2 * layers // 3`` (channels doubled at each),
  global average pooling, linear classifier. ``variant="imagenet"`` (``NetworkImageNet``):
  the stems ``stem0a`` (3x3 conv s2 to ``C/2``, BN, ReLU), ``stem0b`` (3x3 conv s2 to
  ``C``, BN) and ``stem1`` (ReLU, 3x3 conv s2, BN) give the first cell's two inputs (so
  its preprocess0 is a FactorizedReduce). Cells are named ``normal<i>`` / ``reduce<i>`` by
  position. Left out (as in the evaluation network without DARTS's training tricks): the
  auxiliary head and drop-path. Inputs: NHWC images (or NHW, given one channel), any size.

  DFA taps (``dfa=True``): stems and preprocessing convolutions after their BN (``stem0a``
  after its ReLU), edge convolutions as :class:`DartsOperation`; the classifier receives the
  output error directly. ``dfa=False`` drops the DFA matrices (``classes x`` every hidden
  activation), far the largest state at full size.

  Attributes:
    genotype: the architecture (:class:`Genotype`, static; e.g.
      ``NAMED_GENOTYPES["darts_v2"]`` or ``DartsSpace.genotype(genome)``).
    C: initial channels (DARTS: 36 on CIFAR, 48 on ImageNet).
    layers: number of cells (DARTS: 20 on CIFAR, 14 on ImageNet).
    num_classes: classifier outputs.
    variant: ``"cifar"`` or ``"imagenet"`` (the stem).
    dfa: create the DFA matrices and taps.
    options: static rule hyper-parameters of every layer.
  """

  genotype: Genotype = NAMED_GENOTYPES["darts_v2"]
  C: int = 36
  layers: int = 20
  num_classes: int = 10
  variant: str = "cifar"
  dfa: bool = True
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.variant not in VARIANTS:
      raise ValueError(f"Unknown variant {self.variant!r}. Valid variants: "
                       f"{', '.join(VARIANTS)}.")
    if x.ndim == 3:
      x = x[..., None]
    genotype = as_genotype(self.genotype)
    dfa_classes = self.num_classes if self.dfa else None
    conv = functools.partial(Conv, kernel_size=(3, 3), padding=1, use_bias=False,
                             dfa_classes=dfa_classes, options=self.options)
    if self.variant == "cifar":
      stem = conv(3 * self.C, name="stem")
      s0 = s1 = tap(stem, batch_norm(train, "stem_bn")(stem(x)), self.dfa)
      reduction_prev = False
    else:
      stem0a = conv(self.C // 2, strides=2, name="stem0a")
      h = tap(stem0a, nn.relu(batch_norm(train, "stem0a_bn")(stem0a(x))), self.dfa)
      stem0b = conv(self.C, strides=2, name="stem0b")
      s0 = tap(stem0b, batch_norm(train, "stem0b_bn")(stem0b(h)), self.dfa)
      stem1 = conv(self.C, strides=2, name="stem1")
      s1 = tap(stem1, batch_norm(train, "stem1_bn")(stem1(nn.relu(s0))), self.dfa)
      reduction_prev = True
    channels = self.C
    for i in range(self.layers):
      reduction = i in (self.layers // 3, 2 * self.layers // 3)
      if reduction:
        channels *= 2
      cell = DartsCell(genotype, channels, reduction, reduction_prev, dfa_classes,
                       self.options, name=f"{'reduce' if reduction else 'normal'}{i}")
      s0, s1 = s1, cell(s0, s1, train)
      reduction_prev = reduction
    features = jnp.mean(s1, axis=(1, 2))  # global average pooling (ImageNet: 7x7 -> 1)
    return Dense(self.num_classes, options=self.options, name="classifier")(features)
