"""The BioNAS-DARTS supernet: every edge of the DARTS cell mixes (operation, rule) candidates.

Source paper A (Hamzaoui & Baghdadi 2025) searches the DARTS cell space (Liu, Simonyan & Yang
2019, ICLR, arXiv:1806.09055) with a supernet whose candidates are (operation, learning rule)
pairs, each with its own weights; an edge computes ``sum_k w_k * candidate_k(x)`` with mixing
weights ``w = softmax(alpha)`` per edge (DARTS's MixedOp). docs/bionas.md describes it.

- :class:`Alphabet`: the candidates of every edge, operations x rules. An operation with
  weights (``sep_conv_*``, ``dil_conv_*``) appears once per rule; a parameter-free one
  (``none``, the pools, ``skip_connect``) once. The default (:data:`PAPER_OPERATIONS` x
  :data:`PAPER_RULES`) has 20 candidates: the paper's 22 less its two extra copies of the
  parameter-free ``skip_connect``.
- :class:`DartsSupernet`: DARTS's search network (``Network`` in the authors' ``model_search.py``):
  stem, ``layers`` cells of 14 mixed edges, reductions at ``layers // 3`` and
  ``2 * layers // 3``, global pooling, classifier. The mixing weights are the variable
  collection ``mixing`` (``normal`` and ``reduce``, each ``(14, K)``): data, so one compiled
  program serves any alpha, and a population of mixing weights can be vmapped.
- Rule copies (docs/design.md, section 11): with ``layout="vmap"`` (default) the ``R`` rule
  copies of one operation on one edge are one module whose variables carry a leading rule axis,
  applied with ``flax.linen.vmap``; each copy reads its rule id from that axis of the
  ``assignment`` collection, so the rules are data and the program depends only on ``R``.
  ``layout="separate"`` builds ``R`` separate modules instead (``<op>_r<r>``).
- Every weight layer has a rule (unlike the paper's code, where the stem, the cells'
  preprocessing, the FactorizedReduce convolutions and the classifier stay on bp):
  :func:`supernet_assignment` takes them from :data:`MACRO_ROLES`.
- :func:`derive_genotype`: DARTS's derivation (per node the two strongest incoming edges, each
  with its best candidate other than ``none``), as a genome of
  :class:`~biojax.nas.darts.DartsSpace`, whose evaluation network retrains it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nas._layers import batch_norm
from biojax.nas.darts.genotypes import CONCAT, CONV_OPERATIONS, OPERATIONS, Genotype
from biojax.nas.darts.network import DartsOperation, FactorizedReduce, ReLUConvBN
from biojax.nn.assignment import Assignment, weight_layers
from biojax.nn.layers import ACTIVITY, Conv, Dense

Array = jax.Array

# DARTS's PRIMITIVES (quark0/darts, cnn/genotypes.py), 'none' first as there.
PRIMITIVES: tuple[str, ...] = ("none",) + OPERATIONS
PAPER_OPERATIONS = PRIMITIVES
PAPER_RULES: tuple[str, ...] = ("fa", "usf", "brsf", "frsf")
LAYOUTS: tuple[str, ...] = ("vmap", "separate")
NUM_NODES = 4
# The 14 edges of a search cell: node 2 + i receives edges from nodes 0 .. i + 1.
EDGES: tuple[tuple[int, int], ...] = tuple(
    (2 + i, j) for i in range(NUM_NODES) for j in range(2 + i))
NUM_EDGES = len(EDGES)  # 14
# The weight layers outside the mixed candidates, one rule each: the stem; the cells'
# preprocessing (1x1 ReLU-Conv-BN and FactorizedReduce); the FactorizedReduce of skip_connect
# on a stride-2 edge (parameter-free elsewhere, so it is one candidate, not one per rule);
# the classifier.
MACRO_ROLES: tuple[str, ...] = ("stem", "preprocess", "skip_reduce", "classifier")
_COPY = re.compile(r"^(sep_conv_\dx\d|dil_conv_\dx\d)(?:_r(\d+))?$")


@dataclasses.dataclass(frozen=True)
class Alphabet:
  """The candidates of every mixed edge: ``operations`` x ``rules``.

  ``candidates`` lists ``(operation, rule)`` pairs in alpha's order (operation-major); a
  parameter-free operation has rule ``None``. :func:`make_alphabet` builds and checks one.
  """

  operations: tuple[str, ...]
  rules: tuple[str, ...]

  @property
  def candidates(self) -> tuple[tuple[str, str | None], ...]:
    out = []
    for op in self.operations:
      if op in CONV_OPERATIONS:
        out.extend((op, r) for r in self.rules)
      else:
        out.append((op, None))
    return tuple(out)

  @property
  def size(self) -> int:
    """K, the number of candidates (alpha has shape ``(14, K)`` per cell type)."""
    return len(self.candidates)

  def names(self) -> tuple[str, ...]:
    """``"sep_conv_3x3:fa"``, ``"none"``, ... in alpha's order."""
    return tuple(op if r is None else f"{op}:{r}" for op, r in self.candidates)


def make_alphabet(operations: Sequence[str] = PAPER_OPERATIONS,
                  rules: Sequence[str] = PAPER_RULES) -> Alphabet:
  """The checked :class:`Alphabet` of ``operations`` x ``rules``.

  Raises:
    ValueError: an unknown operation or rule (listing the valid ones), a duplicate, an
      alphabet whose only operation is ``none``, operations with weights but no rule, or a
      rule that cannot train a supernet candidate (DFA: its output error is injected at one
      layer's output, and a mixed edge sums many).
  """
  operations, rules = tuple(operations), tuple(rules_lib.format_rule_spec(
      *rules_lib.parse_rule_spec(r)) for r in rules)
  for op in operations:
    if op not in PRIMITIVES:
      raise ValueError(f"Unknown supernet operation {op!r}. Valid operations: "
                       f"{', '.join(PRIMITIVES)}.")
  for what, values in (("operation", operations), ("rule", rules)):
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
      raise ValueError(f"The supernet alphabet repeats the {what}(s) {', '.join(repeated)}.")
  if not operations or set(operations) == {"none"}:
    raise ValueError("The supernet alphabet needs an operation other than 'none' (DARTS never "
                     f"keeps 'none'); got {list(operations)}. Valid operations: "
                     f"{', '.join(PRIMITIVES)}.")
  if any(op in CONV_OPERATIONS for op in operations) and not rules:
    raise ValueError("The supernet alphabet has operations with weights "
                     f"({', '.join(op for op in operations if op in CONV_OPERATIONS)}) but no "
                     "rules: name at least one rule (e.g. 'fa').")
  for spec in rules:
    check_supernet_rule(spec, "the supernet alphabet")
  return Alphabet(operations, rules)


def check_supernet_rule(spec: str, where: str) -> None:
  """Raises ValueError if rule ``spec`` cannot train a layer of the supernet."""
  rule = rules_lib.get_rule(rules_lib.parse_rule_spec(spec)[0])
  if rule.credit == "direct":
    raise ValueError(
        f"Rule {spec!r} in {where} cannot train a supernet layer: a direct-feedback rule "
        "injects the output error at one layer's output, and a mixed edge sums many "
        "candidates' outputs. Use it in the evaluation network (biojax.nas.darts.DartsSpace) "
        "instead, or choose among: "
        + ", ".join(n for n in rules_lib.rule_names()
                    if rules_lib.get_rule(n).credit != "direct") + ".")


def compiled_rules(alphabet: Alphabet, macro_rules: Mapping[str, str]) -> tuple[str, ...]:
  """The rules the supernet's programs contain, in registry order: any order of the same
  alphabet gives the same programs (the order is data: the assignment's rule ids)."""
  used = {rules_lib.get_rule(rules_lib.parse_rule_spec(s)[0]).name
          for s in (*alphabet.rules, *macro_rules.values())}
  return tuple(n for n in rules_lib.rule_names() if n in used)


def _zero(x: Array, stride: int) -> Array:
  """DARTS's Zero operation: zeros of the (strided) input's shape."""
  return jnp.zeros_like(x[:, ::stride, ::stride, :])


class _Copy(nn.Module):
  """One rule copy of a parametric operation (the body that :class:`MixedEdge` vmaps)."""

  operation: str
  stride: int
  train: bool
  options: rules_lib.RuleOptions

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return DartsOperation(self.operation, self.stride, None, self.options, unrolled=True,
                          name="op")(x, self.train)


# Every variable collection of a candidate carries the lifted axis (edges, rule copies).
_LIFTED = {"params": 0, "feedback": 0, "batch_stats": 0, "assignment": 0, ACTIVITY: 0}
_SPLIT = {"params": True, "feedback": True}


class MixedEdge(nn.Module):
  """``sum_k w_k * candidate_k(x)`` over the candidates of ``operations`` x ``num_rules``
  rules (alpha's order, :attr:`Alphabet.candidates`); ``weights``: ``(K,)``.

  A parametric operation's ``num_rules`` copies are the submodule ``<op>`` with a leading
  rule axis (``layout="vmap"``) or the submodules ``<op>_r<r>`` (``"separate"``); the
  parameter-free ones are ``<op>`` (``skip_connect`` at stride 2 is a FactorizedReduce).
  """

  operations: tuple[str, ...]
  num_rules: int
  stride: int = 1
  layout: str = "vmap"
  train: bool = False
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, x: Array, weights: Array) -> Array:
    total, k = 0.0, 0
    for op in self.operations:
      if op in CONV_OPERATIONS:
        w = weights[k:k + self.num_rules]
        if self.layout == "vmap":
          copies = nn.vmap(_Copy, variable_axes=_LIFTED, split_rngs=_SPLIT, in_axes=None,
                           out_axes=0, axis_size=self.num_rules)
          y = copies(op, self.stride, self.train, self.options, name=op)(x)
          total = total + jnp.tensordot(w.astype(y.dtype), y, axes=(0, 0))
        elif self.layout == "separate":
          for r in range(self.num_rules):
            y = DartsOperation(op, self.stride, None, self.options, unrolled=True,
                               name=f"{op}_r{r}")(x, self.train)
            total = total + w[r] * y
        else:
          raise ValueError(f"Unknown supernet layout {self.layout!r}. Valid layouts: "
                           f"{', '.join(LAYOUTS)}.")
        k += self.num_rules
      else:
        y = _zero(x, self.stride) if op == "none" else DartsOperation(
            op, self.stride, None, self.options, unrolled=True, name=op)(x, self.train)
        total = total + weights[k] * y
        k += 1
    return total


# The edges of a search cell in groups by source node: edges leaving nodes 0 and 1 (8,
# stride 2 in a reduction cell), then those leaving node 2 (3), node 3 (2) and node 4 (1).
# The edges of a group have equal input shapes and strides, so each group is one MixedEdge
# vmapped over its edges: the compiled program holds 4 edge bodies per cell, not 14
# (XLA's compile time on CPU grows with the program's size).
GROUPS: tuple[tuple[int, ...], ...] = (
    tuple(k for k, (_, j) in enumerate(EDGES) if j < 2),
    *(tuple(k for k, (_, j) in enumerate(EDGES) if j == s) for s in (2, 3, 4)))
GROUP_NAMES: tuple[str, ...] = ("from01", "from2", "from3", "from4")


class SupernetCell(nn.Module):
  """A search cell (``Cell`` in the authors' ``model_search.py``): preprocessing as
  :class:`~biojax.nas.darts.DartsCell`, then 4 nodes, node ``2 + i`` the sum of the mixed
  edges from every earlier node (:data:`EDGES`); output: the concat of nodes 2..5.
  ``weights``: the ``(14, K)`` mixing weights of this cell type.

  The edges are computed in the :data:`GROUPS` (submodules :data:`GROUP_NAMES`), each a
  :class:`MixedEdge` vmapped over its edges (variables with a leading edge axis)."""

  C: int
  operations: tuple[str, ...]
  num_rules: int
  reduction: bool = False
  reduction_prev: bool = False
  layout: str = "vmap"
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @nn.compact
  def __call__(self, s0: Array, s1: Array, weights: Array, train: bool = False) -> Array:
    if self.reduction_prev:
      s0 = FactorizedReduce(self.C, None, self.options, name="preprocess0")(s0, train)
    else:
      s0 = ReLUConvBN(self.C, None, self.options, name="preprocess0")(s0, train)
    s1 = ReLUConvBN(self.C, None, self.options, name="preprocess1")(s1, train)
    states = [s0, s1]
    nodes: dict[int, Array] = {}
    for group, name in zip(GROUPS, GROUP_NAMES, strict=True):
      sources = [EDGES[k][1] for k in group]
      stride = 2 if self.reduction and sources[0] < 2 else 1
      edges = nn.vmap(MixedEdge, variable_axes=_LIFTED, split_rngs=_SPLIT, in_axes=(0, 0),
                      out_axes=0, axis_size=len(group))
      inputs = jnp.stack([states[j] for j in sources])
      out = edges(self.operations, self.num_rules, stride, self.layout, train, self.options,
                  name=name)(inputs, weights[np.asarray(group)])
      for i, k in enumerate(group):
        node = EDGES[k][0]
        nodes[node] = out[i] if node not in nodes else nodes[node] + out[i]
      states.append(nodes[len(states)])  # every edge into the next node is now summed
    return jnp.concatenate([nodes[i] for i in CONCAT], axis=-1)


class DartsSupernet(nn.Module):
  """DARTS's search network over (operation, rule) candidates.

  Stem (3x3 conv to ``stem_multiplier * C``, BN), ``layers`` :class:`SupernetCell`\\ s (the
  cells at ``layers // 3`` and ``2 * layers // 3`` reduce and double the channels), global
  average pooling, linear classifier. Inputs: NHWC images (or NHW, given one channel).

  The mixing weights are the ``mixing`` collection, ``{"normal": (14, K), "reduce": (14,
  K)}`` (uniform at init); the search writes ``softmax(alpha)`` there before each pass.

  Attributes:
    operations: the alphabet's operations (:data:`PRIMITIVES`).
    num_rules: R, the number of rules of the alphabet (rule copies per parametric operation);
      which rules they are is data (:func:`supernet_assignment`).
    C, layers: initial channels and cells (DARTS's search: 16 and 8).
    num_classes: classifier outputs.
    layout: ``"vmap"`` or ``"separate"`` rule copies.
    options: static rule hyper-parameters (its ``rules``: :func:`compiled_rules`).
  """

  operations: tuple[str, ...] = PAPER_OPERATIONS
  num_rules: int = len(PAPER_RULES)
  C: int = 16
  layers: int = 8
  num_classes: int = 10
  stem_multiplier: int = 3
  layout: str = "vmap"
  options: rules_lib.RuleOptions = rules_lib.RuleOptions()

  @property
  def num_candidates(self) -> int:
    return sum(self.num_rules if op in CONV_OPERATIONS else 1 for op in self.operations)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.layout not in LAYOUTS:
      raise ValueError(f"Unknown supernet layout {self.layout!r}. Valid layouts: "
                       f"{', '.join(LAYOUTS)}.")
    if x.ndim == 3:
      x = x[..., None]
    shape = (NUM_EDGES, self.num_candidates)
    mixing = {cell: self.variable("mixing", cell, lambda: jnp.full(shape, 1 / shape[1]))
              .value for cell in ("normal", "reduce")}
    for cell, w in mixing.items():
      if w.shape != shape:
        raise ValueError(f"mixing/{cell} has shape {w.shape}; this supernet's is {shape} "
                         "(14 edges x K candidates).")
    stem = Conv(self.stem_multiplier * self.C, (3, 3), padding=1, use_bias=False,
                options=self.options, name="stem")
    s0 = s1 = batch_norm(train, "stem_bn")(stem(x))
    channels, reduction_prev = self.C, False
    for i in range(self.layers):
      reduction = i in (self.layers // 3, 2 * self.layers // 3)
      if reduction:
        channels *= 2
      cell = "reduce" if reduction else "normal"
      out = SupernetCell(channels, self.operations, self.num_rules, reduction, reduction_prev,
                         self.layout, self.options, name=f"{cell}{i}")(
                             s0, s1, mixing[cell], train)
      s0, s1 = s1, out
      reduction_prev = reduction
    features = jnp.mean(s1, axis=(1, 2))
    return Dense(self.num_classes, options=self.options, name="classifier")(features)


# ------------------------------------------------------------------------- assignments


def layer_role(name: str) -> tuple[str, str | None]:
  """``(role, copy)`` of weight layer ``name`` of a supernet: role ``"candidate"`` with the
  copy's rule slot (``None`` for the vmapped copies, which hold every slot; ``"3"`` for
  ``<op>_r3``), or one of :data:`MACRO_ROLES` with ``None``."""
  parts = name.split("/")
  for part in parts:
    match = _COPY.match(part)
    if match:
      return "candidate", match.group(2)
  if parts[0] == "stem":
    return "stem", None
  if parts[0] == "classifier":
    return "classifier", None
  if len(parts) > 1 and parts[1] in ("preprocess0", "preprocess1"):
    return "preprocess", None
  if "skip_connect" in parts:
    return "skip_reduce", None
  raise ValueError(f"Layer {name!r} is not a weight layer of a DARTS supernet.")


def supernet_assignment(variables: Mapping, alphabet: Alphabet,
                        macro_rules: Mapping[str, str]) -> Assignment:
  """The assignment of a supernet's ``variables``: each candidate copy the rule of its slot
  in ``alphabet.rules`` (the vmapped copies hold all of them along their rule axis), every
  other layer its :data:`MACRO_ROLES` rule from ``macro_rules``."""
  missing = [r for r in MACRO_ROLES if r not in macro_rules]
  if missing:
    raise ValueError(f"macro_rules lacks {', '.join(missing)} (it needs a rule for each of "
                     f"{', '.join(MACRO_ROLES)}).")
  parsed = [rules_lib.parse_rule_spec(s) for s in alphabet.rules]
  ids = np.asarray([p[0] for p in parsed], np.int32)
  geometries = np.asarray([p[1] for p in parsed], np.int32)
  layers = weight_layers(variables)
  shapes = {"/".join(path[:-1]): np.shape(v) for path, v in traverse_util.flatten_dict(
      flax.core.unfreeze(variables["feedback"])).items() if path[-1] == "order"}
  rule, geometry = {}, {}
  for name in layers:
    role, slot = layer_role(name)
    shape = shapes[name]  # the lifted axes: (edges,) or (edges, rule copies)
    if role == "candidate":
      r, g = (ids, geometries) if slot is None else (ids[int(slot)], geometries[int(slot)])
    else:
      r, g = rules_lib.parse_rule_spec(macro_rules[role])
    rule[name] = jnp.asarray(np.broadcast_to(r, shape), jnp.int32)
    geometry[name] = jnp.asarray(np.broadcast_to(g, shape), jnp.int32)
  return Assignment(rule=rule, geometry=geometry, layers=layers)


def bp_weight_share(params: Mapping, assignment: Assignment) -> float:
  """The share of the weights (kernel entries) whose layer learns by bp; a vmapped layer
  counts each rule copy with its own rule."""
  bp = rules_lib.rule_id("bp")
  total = by_bp = 0
  for path, leaf in traverse_util.flatten_dict(flax.core.unfreeze(params)).items():
    layer = "/".join(path[:-1])
    if path[-1] != "kernel" or layer not in assignment.rule:
      continue
    rule = np.asarray(assignment.rule[layer])
    per_copy = int(np.prod(np.shape(leaf))) // max(rule.size, 1)
    total += per_copy * max(rule.size, 1)
    by_bp += per_copy * int(np.sum(rule == bp))
  return by_bp / total if total else 0.0


# ------------------------------------------------------------------------- derivation


@dataclasses.dataclass(frozen=True)
class Derived:
  """A derived architecture: the DARTS genotype with the chosen rule on every kept edge.

  ``edges[cell]`` lists 8 ``(operation, input, rule)`` triples (two per node, the stronger
  first); ``rule`` is ``None`` for a parameter-free operation."""

  genotype: Genotype
  edges: dict[str, tuple[tuple[str, int, str | None], ...]]

  def to_string(self) -> str:
    """``normal=[(sep_conv_3x3:fa,0),(max_pool_3x3,1),...],reduce=[...]``."""
    cells = []
    for cell in ("normal", "reduce"):
      items = ",".join(f"({op}{'' if r is None else ':' + r},{j})"
                       for op, j, r in self.edges[cell])
      cells.append(f"{cell}=[{items}]")
    return ",".join(cells)


def derive(weights: Mapping[str, np.ndarray], alphabet: Alphabet) -> Derived:
  """DARTS's genotype derivation (``genotype()`` in the authors' ``model_search.py``) over
  (operation, rule) candidates: for each node, the two incoming edges whose strongest
  candidate other than ``none`` has the largest weight, each with that candidate.

  ``weights``: ``{"normal": (14, K), "reduce": (14, K)}`` mixing weights (softmax(alpha)).
  Ties go to the earlier edge and the earlier candidate.
  """
  names = alphabet.candidates
  usable = np.asarray([op != "none" for op, _ in names])
  edges, genotype = {}, {}
  for cell in ("normal", "reduce"):
    w = np.asarray(weights[cell], np.float64)
    if w.shape != (NUM_EDGES, len(names)):
      raise ValueError(f"weights[{cell!r}] has shape {w.shape}; expected "
                       f"({NUM_EDGES}, {len(names)}).")
    masked = np.where(usable, w, -np.inf)
    kept = []
    for node in range(2, 2 + NUM_NODES):
      incoming = [k for k, (n, _) in enumerate(EDGES) if n == node]
      strength = [masked[k].max() for k in incoming]
      order = sorted(range(len(incoming)), key=lambda i: (-strength[i], i))[:2]
      for i in order:
        k = incoming[i]
        op, rule = names[int(np.argmax(masked[k]))]
        kept.append((op, EDGES[k][1], rule))
    edges[cell] = tuple(kept)
    genotype[cell] = tuple((op, j) for op, j, _ in kept)
  return Derived(Genotype(normal=genotype["normal"], normal_concat=CONCAT,
                          reduce=genotype["reduce"], reduce_concat=CONCAT), edges)


def rule_weight(weights: Mapping[str, np.ndarray], alphabet: Alphabet
                ) -> dict[str, np.ndarray]:
  """Per cell type, the mixing weight of each rule on each edge: ``(14, R)``, the sum over
  the parametric operations of their copies under that rule, normalised over rules."""
  slots = np.asarray([alphabet.rules.index(r) if r is not None else -1
                      for _, r in alphabet.candidates])
  out = {}
  for cell in ("normal", "reduce"):
    w = np.asarray(weights[cell], np.float64)
    per_rule = np.stack([w[:, slots == r].sum(-1) for r in range(len(alphabet.rules))], -1)
    total = per_rule.sum(-1, keepdims=True)
    out[cell] = np.divide(per_rule, total, out=np.zeros_like(per_rule), where=total > 0)
  return out


def entropy(weights: Mapping[str, np.ndarray]) -> float:
  """Mean entropy (nats) of the edges' mixing weights over both cell types (log K for
  uniform weights, 0 for one-hot ones)."""
  values = []
  for cell in ("normal", "reduce"):
    w = np.clip(np.asarray(weights[cell], np.float64), 1e-30, None)
    values.append(-(w * np.log(w)).sum(-1))
  return float(np.mean(np.concatenate(values)))
