"""The NAS-Bench-201 network with operations and rules as data.

The macro skeleton of NAS-Bench-201 (Dong & Yang 2020): stem (3x3 conv + BN), three stages of
``N`` cells at ``C``, ``2C``, ``4C`` channels with a residual reduction block between stages,
BN-ReLU, global average pooling, linear classifier. All cells share one cell genotype.

:class:`NB201Network` computes every candidate operation on every edge and selects the
edge's result with its operation gene (``jax.lax.select_n``), so one compiled program serves
every architecture; the gene is read from the ``architecture`` variable collection (see
:class:`biojax.nas.CandidateState`). All weight layers are rule-aware
(:class:`biojax.nn.Conv`, :class:`biojax.nn.Dense`), so the rule of each is data too.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from biojax import rules as rules_lib
from biojax.nas._layers import batch_norm, tap
from biojax.nas.candidate import ARCHITECTURE
from biojax.nas.nb201.genotypes import CONV_OPERATIONS, EDGES, NUM_EDGES, OPERATIONS, edge_name
from biojax.nn.layers import Conv, Dense

Array = jax.Array


class _Edge(nn.Module):
  """All candidate operations of one edge; the operation gene ``op`` selects the result."""

  dfa_classes: int | None
  options: rules_lib.RuleOptions

  @nn.compact
  def __call__(self, x: Array, op: Array, train: bool) -> Array:
    candidates = [jnp.zeros_like(x), x]  # none, skip_connect
    for name, (op_id, k) in CONV_OPERATIONS.items():  # nor_conv_1x1, nor_conv_3x3
      # An unchosen convolution's output is never selected, so no error reaches it from
      # above; but DFA injects error at its tap, and that error must not flow on into the
      # cell's input. Cut its input's gradient unless it is chosen (the forward is unchanged).
      chosen = op == op_id
      x_in = jnp.where(chosen, x, jax.lax.stop_gradient(x))
      conv = Conv(x.shape[-1], (k, k), padding=k // 2, use_bias=False,
                  dfa_classes=self.dfa_classes, options=self.options, name=name)
      h = batch_norm(train, f"{name}_bn")(conv(nn.relu(x_in)))  # ReLU-Conv-BN
      # DFA tap at the operation's output (its BN): NAS-Bench-201's operations are
      # pre-activation, so the nonlinearity belongs to the consumer.
      candidates.append(tap(conv, h, self.dfa_classes is not None))
    # avg_pool_3x3: stride 1, padding 1, count_include_pad=False (as NAS-Bench-201).
    candidates.append(nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                                  count_include_pad=False))
    # An operation id outside the candidates gives NaN (select_n would pick a valid one).
    known = (op >= 0) & (op < len(candidates))
    chosen = jax.lax.select_n(jnp.clip(op, 0, len(candidates) - 1), *candidates)
    return jnp.where(known, chosen, jnp.nan)


class NB201Cell(nn.Module):
  """A NAS-Bench-201 cell: node ``i`` = sum over ``j < i`` of edge ``i <- j``; returns node 3.

  ``ops`` (int32 (6,)) holds the operation of each edge in :data:`EDGES` order.
  """

  dfa_classes: int | None = None
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, ops: Array, train: bool = False) -> Array:
    nodes = [x]
    for node in range(1, 4):
      total = None
      for e, (i, j) in enumerate(EDGES):
        if i != node:
          continue
        y = _Edge(self.dfa_classes, self.options, name=edge_name(e))(nodes[j], ops[e], train)
        total = y if total is None else total + y
      nodes.append(total)
    return nodes[-1]


class _ReductionBlock(nn.Module):
  """NAS-Bench-201's residual reduction block (ResNetBasicblock, stride 2):
  ``ReLU-Conv3x3(s2)-BN -> ReLU-Conv3x3-BN`` plus the shortcut ``AvgPool2 -> Conv1x1``."""

  features: int
  dfa_classes: int | None
  options: rules_lib.RuleOptions

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    dfa = self.dfa_classes is not None
    conv = functools.partial(Conv, self.features, use_bias=False,
                             dfa_classes=self.dfa_classes, options=self.options)
    conv_a = conv((3, 3), strides=2, padding=1, name="conv_a")
    # conv_a's output passes through the ReLU that opens conv_b: a true post-activation tap.
    h = tap(conv_a, nn.relu(batch_norm(train, "conv_a_bn")(conv_a(nn.relu(x)))), dfa)
    conv_b = conv((3, 3), padding=1, name="conv_b")
    b = tap(conv_b, batch_norm(train, "conv_b_bn")(conv_b(h)), dfa)
    shortcut = conv((1, 1), padding=0, name="shortcut")
    s = tap(shortcut, shortcut(nn.avg_pool(x, (2, 2), strides=(2, 2))), dfa)
    return b + s


class NB201Network(nn.Module):
  """The NAS-Bench-201 network (TinyNetwork) with operations and rules as data.

  ``stem (3x3 conv, BN) -> N cells (C) -> reduction -> N cells (2C) -> reduction -> N cells
  (4C) -> BN, ReLU -> global average pool -> classifier``. Every cell has the same genotype,
  read from the ``architecture`` collection: ``apply({..., "architecture": {"ops": ops}},
  x)`` with ``ops`` int32 (6,) (:meth:`biojax.nas.nb201.NB201Space.architecture`);
  ``model.init`` needs none.
  Inputs: NHWC images (or NHW, given one channel) with H and W divisible by 4.

  DFA taps (``dfa=True``): every hidden convolution is tapped at its operation's output
  (after its BN: the edge convolutions, the stem, ``conv_b`` and the reduction shortcut),
  except ``conv_a`` of a reduction block, tapped after the ReLU that follows it. The
  classifier receives the output error directly under every rule. ``dfa=False`` drops the
  DFA matrices (``classes x`` every hidden activation, the largest rule state by far) for
  spaces without DFA.

  Attributes:
    C: channels of the first stage (NAS-Bench-201: 16).
    N: cells per stage (NAS-Bench-201: 5).
    num_classes: classifier outputs.
    dfa: create the DFA matrices and taps.
    options: static rule hyper-parameters of every layer.
  """

  C: int = 16
  N: int = 5
  num_classes: int = 10
  dfa: bool = True
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if x.ndim == 3:
      x = x[..., None]
    ops = self._operations()
    dfa_classes = self.num_classes if self.dfa else None
    stem = Conv(self.C, (3, 3), padding=1, use_bias=False, dfa_classes=dfa_classes,
                options=self.options, name="stem")
    x = tap(stem, batch_norm(train, "stem_bn")(stem(x)), self.dfa)
    for stage in range(3):
      if stage:
        x = _ReductionBlock(self.C * 2**stage, dfa_classes, self.options,
                            name=f"reduction{stage}")(x, train)
      for n in range(self.N):
        x = NB201Cell(dfa_classes, self.options, name=f"stage{stage + 1}_cell{n}")(
            x, ops, train)
    x = nn.relu(batch_norm(train, "lastact_bn")(x))
    x = jnp.mean(x, axis=(1, 2))
    return Dense(self.num_classes, options=self.options, name="classifier")(x)

  def _operations(self) -> Array:
    if self.has_variable(ARCHITECTURE, "ops"):
      ops = jnp.asarray(self.get_variable(ARCHITECTURE, "ops"), jnp.int32)
      if ops.shape != (NUM_EDGES,):
        raise ValueError(f"architecture/ops must have shape ({NUM_EDGES},), got {ops.shape} "
                         "(vmap over a population axis).")
      return ops
    if self.is_initializing():
      # init only creates variables; every operation is computed whatever the genes.
      return jnp.full((NUM_EDGES,), OPERATIONS.index("nor_conv_3x3"), jnp.int32)
    raise ValueError(
        "NB201Network reads the cell's operations from the 'architecture' collection: "
        "apply({..., 'architecture': space.architecture(genome)}, x), or train a "
        "biojax.nas.CandidateState.")
