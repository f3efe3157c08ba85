"""The NAS-Bench-201 cell space with a learning-rule gene on every weight layer.

NAS-Bench-201 (Dong & Yang 2020, ICLR, arXiv:2001.00326): a cell is a DAG of 4 nodes whose 6
edges ``i <- j`` (``0 <= j < i <= 3``) each carry one of 5 operations, so the space holds
``5**6 = 15,625`` cells; node ``i`` is the sum of its incoming edges and node 3 is the cell's
output. The macro skeleton: stem (3x3 conv + BN), three stages of ``N`` cells at ``C``,
``2C``, ``4C`` channels with a residual reduction block between stages, BN-ReLU, global
average pooling, linear classifier. All cells share one cell genotype.

biojax adds rules (source paper A, Hamzaoui & Baghdadi 2025): every edge is an
(operation, rule) pair, and every other weight layer of the skeleton has a rule gene too.

Genome (int32, :data:`NUM_GENES` = 20 genes)
--------------------------------------------
====== ================================ ==========================================
genes  meaning                          values
====== ================================ ==========================================
0-5    operation of edge ``EDGES[e]``   index into :data:`OPERATIONS`
6-11   rule of edge ``EDGES[e]``        index into ``space.rules``
12-19  rule of ``MACRO_LAYERS[m]``      index into ``space.macro_alphabet``
====== ================================ ==========================================

An edge's rule gene is the rule of the convolution on that edge, in every cell; it is
*expressed* only while the edge's operation is a convolution, and is otherwise carried along
dormant (a mutation that turns the edge into a convolution wakes it).

String form
-----------
NAS-Bench-201's notation with the rule after the operation, then ``@`` and the rules of the
other layers::

  |nor_conv_3x3:usf~0|+|skip_connect:fa~0|nor_conv_1x1:fa~1|+|...|@stem:bp,...,classifier:bp

``op:rule~j`` is the edge into the current node from node ``j``; nodes are separated by
``+``. Every edge shows its rule, dormant ones included, so the string is the whole genome.
After ``@``: ``layer:rule`` for each of :data:`MACRO_LAYERS`, or a single rule when they are
all equal (``@bp``). :meth:`NB201Space.from_string` also reads plain NAS-Bench-201 strings
(no rules, no ``@``) given ``rule=``, which fills every missing rule.

The network
-----------
:class:`NB201Network` computes every candidate operation on every edge and selects the
edge's result with its operation gene (``jax.lax.select_n``), so one compiled program serves
every architecture; the gene is read from the ``architecture`` variable collection (see
:class:`biojax.nas.CandidateState`). All weight layers are rule-aware
(:class:`biojax.nn.Conv`, :class:`biojax.nn.Dense`), so the rule of each is data too.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nas import _rule_genes
from biojax.nas import genome as genome_lib
from biojax.nas.candidate import ARCHITECTURE
from biojax.nn.assignment import Assignment
from biojax.nn.layers import Conv, Dense

Array = jax.Array

OPERATIONS: tuple[str, ...] = (
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Operations with a weight layer: name -> (operation id, kernel size).
CONV_OPERATIONS: dict[str, tuple[int, int]] = {"nor_conv_1x1": (2, 1), "nor_conv_3x3": (3, 3)}
# Edge e goes into node EDGES[e][0] from node EDGES[e][1], in NAS-Bench-201's string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)
NUM_ARCHITECTURES = len(OPERATIONS) ** NUM_EDGES  # 15,625
# The weight layers outside the cells, in the order the network applies them.
MACRO_LAYERS: tuple[str, ...] = (
    "stem",
    "reduction1/conv_a", "reduction1/conv_b", "reduction1/shortcut",
    "reduction2/conv_a", "reduction2/conv_b", "reduction2/shortcut",
    "classifier",
)
OPERATION_GENES = slice(0, NUM_EDGES)
EDGE_RULE_GENES = slice(NUM_EDGES, 2 * NUM_EDGES)
MACRO_RULE_GENES = slice(2 * NUM_EDGES, 2 * NUM_EDGES + len(MACRO_LAYERS))
NUM_GENES = 2 * NUM_EDGES + len(MACRO_LAYERS)  # 20

# The built-in rules, in registry order (so that by default a rule gene equals the rule id).
DEFAULT_RULES: tuple[str, ...] = ("bp", "fa", "usf", "brsf", "frsf", "kp", "dfa", "softhebb")

# Cells by name, in NAS-Bench-201's notation (Dong & Yang 2020; strings as in the authors'
# code, D-X-Y/AutoDL-Projects).
NAMED_CELLS: dict[str, str] = {
    # The best CIFAR-10 cell of the benchmark (about 94.37% test accuracy with BP).
    "best_cifar10": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    # The cell equal to a ResNet basic block: node 3 = x + conv(conv(x)).
    "resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    # Every edge a 3x3 convolution: the largest network of the space (1,531,546 parameters
    # on CIFAR-10 in the benchmark's records).
    "largest": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
               "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
}

_EDGE_NAME = re.compile(r"^edge_(\d)_(\d)$")


def edge_name(e: int) -> str:
  """The module name of edge ``e`` in every cell: ``edge_<to>_<from>``."""
  i, j = EDGES[e]
  return f"edge_{i}_{j}"


class Genotype(NamedTuple):
  """A genome in words (:meth:`NB201Space.decode`)."""

  operations: tuple[str, ...]  # one per edge, in EDGES order
  edge_rules: tuple[str, ...]  # one rule spec per edge, in EDGES order
  macro_rules: dict[str, str]  # {layer: rule spec} for MACRO_LAYERS



@dataclasses.dataclass(frozen=True)
class NB201Space:
  """The static description of the genome: which rules the rule genes choose among.

  Attributes:
    rules: the rule alphabet of the edge rule genes: rule specs (``"fa"``, ``"usf+eg"``);
      gene value ``k`` means ``rules[k]``.
    macro_rules: the alphabet of the stem, reduction-block and classifier genes; ``None``
      means the same as ``rules``. A single entry (``("bp",)``) fixes those layers' rule: the
      genes then have one value and never mutate.
  """

  rules: tuple[str, ...] = DEFAULT_RULES
  macro_rules: tuple[str, ...] | None = None

  def __post_init__(self):
    for field in ("rules", "macro_rules"):
      object.__setattr__(self, field,
                         _rule_genes.canonical_alphabet("NB201Space", field, getattr(self, field)))

  # ---------------------------------------------------------------- gene layout
  @property
  def macro_alphabet(self) -> tuple[str, ...]:
    return self.rules if self.macro_rules is None else self.macro_rules

  @property
  def gene_sizes(self) -> tuple[int, ...]:
    """The number of values of each of the :data:`NUM_GENES` genes."""
    return ((len(OPERATIONS),) * NUM_EDGES + (len(self.rules),) * NUM_EDGES
            + (len(self.macro_alphabet),) * len(MACRO_LAYERS))

  @property
  def num_genes(self) -> int:
    return NUM_GENES

  def describe_gene(self, g: int) -> str:
    """What gene ``g`` means, in words."""
    if g < NUM_EDGES:
      return f"operation of edge {EDGES[g][0]}<-{EDGES[g][1]}"
    if g < 2 * NUM_EDGES:
      i, j = EDGES[g - NUM_EDGES]
      return f"rule of edge {i}<-{j}"
    return f"rule of layer {MACRO_LAYERS[g - 2 * NUM_EDGES]}"

  def validate(self, genome) -> np.ndarray:
    """Checks concrete genome(s) ``(..., 20)``; returns them as int32 NumPy.

    Raises:
      ValueError: naming the first gene out of range, its meaning and its valid values.
    """
    return genome_lib.check_genomes(genome, self.gene_sizes, self._describe_values)

  def _describe_values(self, g: int) -> str:
    if g < NUM_EDGES:
      values = OPERATIONS
    elif g < 2 * NUM_EDGES:
      values = self.rules
    else:
      values = self.macro_alphabet
    return f"{self.describe_gene(g)}: {', '.join(f'{k}={v}' for k, v in enumerate(values))}"

  # ---------------------------------------------------------------- words <-> genome
  def decode(self, genome) -> Genotype:
    """The genome in words."""
    g = self.validate(genome)
    if g.ndim != 1:
      raise ValueError(f"decode() takes one genome of shape ({NUM_GENES},), got {g.shape}.")
    return Genotype(
        operations=tuple(OPERATIONS[v] for v in g[OPERATION_GENES]),
        edge_rules=tuple(self.rules[v] for v in g[EDGE_RULE_GENES]),
        macro_rules={name: self.macro_alphabet[v]
                     for name, v in zip(MACRO_LAYERS, g[MACRO_RULE_GENES], strict=True)})

  def encode(self, operations: Sequence[str], edge_rules: str | Sequence[str],
             macro_rules: str | Mapping[str, str]) -> np.ndarray:
    """The genome of a genotype in words; inverse of :meth:`decode`
    (``space.encode(*space.decode(g))`` equals ``g``).

    Args:
      operations: 6 operation names, in :data:`EDGES` order.
      edge_rules: one rule spec for every edge, or 6 of them.
      macro_rules: one rule spec for every layer of :data:`MACRO_LAYERS`, or a dict naming
        each of them.

    Raises:
      ValueError: for an unknown operation (listing the valid ones), a rule outside the
        space's alphabet (listing it), or missing/extra layers.
    """
    operations = list(operations)
    if len(operations) != NUM_EDGES:
      raise ValueError(f"A cell has {NUM_EDGES} edges; got {len(operations)} operations.")
    ops = [self._operation_id(op, e) for e, op in enumerate(operations)]
    if isinstance(edge_rules, str):
      edge_rules = [edge_rules] * NUM_EDGES
    edge_rules = list(edge_rules)
    if len(edge_rules) != NUM_EDGES:
      raise ValueError(f"A cell has {NUM_EDGES} edges; got {len(edge_rules)} edge rules.")
    edge_genes = [_rule_genes.rule_index(r, self.rules, f"edge {EDGES[e][0]}<-{EDGES[e][1]}")
                  for e, r in enumerate(edge_rules)]
    if isinstance(macro_rules, str):
      macro_rules = dict.fromkeys(MACRO_LAYERS, macro_rules)
    missing = [n for n in MACRO_LAYERS if n not in macro_rules]
    extra = [n for n in macro_rules if n not in MACRO_LAYERS]
    if missing or extra:
      raise ValueError(
          f"macro_rules must name exactly the layers {', '.join(MACRO_LAYERS)}"
          + (f"; missing: {', '.join(missing)}" if missing else "")
          + (f"; unknown: {', '.join(extra)}" if extra else "") + ".")
    macro_genes = [_rule_genes.rule_index(macro_rules[n], self.macro_alphabet, f"layer {n}")
                   for n in MACRO_LAYERS]
    return np.asarray(ops + edge_genes + macro_genes, np.int32)

  @staticmethod
  def _operation_id(op: str, e: int) -> int:
    if op not in OPERATIONS:
      i, j = EDGES[e]
      raise ValueError(f"Unknown operation {op!r} on edge {i}<-{j}. Valid operations: "
                       f"{', '.join(OPERATIONS)}.")
    return OPERATIONS.index(op)


  def to_string(self, genome) -> str:
    """The string form (module docstring); :meth:`from_string` is its inverse."""
    genotype = self.decode(genome)
    nodes = []
    for node in range(1, 4):
      tokens = [f"{genotype.operations[e]}:{genotype.edge_rules[e]}~{j}"
                for e, (i, j) in enumerate(EDGES) if i == node]
      nodes.append("|" + "|".join(tokens) + "|")
    macro = list(genotype.macro_rules.values())
    if len(set(macro)) == 1:
      tail = macro[0]
    else:
      tail = ",".join(f"{n}:{r}" for n, r in genotype.macro_rules.items())
    return "+".join(nodes) + "@" + tail

  @property
  def architecture_genes(self) -> slice:
    """The architecture genes (the operations): equal ones mean the same network shape."""
    return OPERATION_GENES

  def rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, layer name, alphabet)`` of every rule gene, in gene order: the edges
    (``edge_<to>_<from>``, alphabet ``rules``), then :data:`MACRO_LAYERS` (alphabet
    ``macro_alphabet``)."""
    edges = tuple((NUM_EDGES + e, edge_name(e), self.rules) for e in range(NUM_EDGES))
    return edges + tuple((MACRO_RULE_GENES.start + m, name, self.macro_alphabet)
                         for m, name in enumerate(MACRO_LAYERS))

  def cell_string(self, genome) -> str:
    """The cell in plain NAS-Bench-201 notation (no rules), e.g. to look it up there."""
    ops = self.decode(genome).operations
    return "+".join(
        "|" + "|".join(f"{ops[e]}~{j}" for e, (i, j) in enumerate(EDGES) if i == node) + "|"
        for node in range(1, 4))

  def from_string(self, text: str, rule: str | None = None) -> np.ndarray:
    """Parses the string form; ``rule`` fills every rule the string leaves out.

    Accepts plain NAS-Bench-201 strings (``|nor_conv_3x3~0|+|...|``) when ``rule`` is given.

    Raises:
      ValueError: for malformed strings, unknown operations or rules (listing the valid
        ones), or a missing rule when ``rule`` is None.
    """
    cell, _, macro = text.strip().partition("@")
    cell = cell.strip()
    if not (cell.startswith("|") and cell.endswith("|")) or len(cell) < 2:
      raise ValueError(f"Cannot parse cell {cell!r}: expected NAS-Bench-201 notation "
                       "'|op:rule~0|+|op:rule~0|op:rule~1|+|op:rule~0|op:rule~1|op:rule~2|'.")
    nodes = cell[1:-1].split("|+|")
    if len(nodes) != 3:
      raise ValueError(f"Cannot parse cell {cell!r}: expected 3 nodes separated by '+', "
                       f"found {len(nodes)}.")
    operations: list[str | None] = [None] * NUM_EDGES
    edge_rules: list[str | None] = [None] * NUM_EDGES
    for node, body in enumerate(nodes, start=1):
      tokens = body.split("|")
      seen = set()
      for token in tokens:
        left, tilde, source = token.strip().rpartition("~")
        if not tilde or not source.isdigit():
          raise ValueError(f"Cannot parse edge {token!r} of node {node}: expected "
                           "'operation:rule~input' or 'operation~input'.")
        j = int(source)
        if not 0 <= j < node or j in seen:
          raise ValueError(f"Node {node} of {cell!r} must have exactly one edge from each of "
                           f"the nodes 0..{node - 1}; got an edge from {j} in {body!r}.")
        seen.add(j)
        e = EDGES.index((node, j))
        op, colon, spec = left.partition(":")
        operations[e] = op.strip()
        edge_rules[e] = spec.strip() if colon else rule
        if edge_rules[e] is None:
          raise ValueError(f"No rule for edge {node}<-{j} ({token!r}): write "
                           f"'{op}:RULE~{j}' or pass rule=.")
      if len(seen) != node:
        raise ValueError(f"Node {node} of {cell!r} has {len(seen)} edges; expected {node} "
                         f"(one from each of the nodes 0..{node - 1}).")
    macro = macro.strip()
    if not macro:
      if rule is None:
        raise ValueError(f"No rules for the layers outside the cell ({', '.join(MACRO_LAYERS)})"
                         ": append '@RULE' or '@layer:RULE,...', or pass rule=.")
      macro_rules: str | dict[str, str] = rule
    elif ":" not in macro:
      macro_rules = macro
    else:
      macro_rules = {}
      for item in macro.split(","):
        name, colon, spec = item.strip().partition(":")
        if not colon:
          raise ValueError(f"Cannot parse {item!r} after '@': expected 'layer:rule'.")
        macro_rules[name.strip()] = spec.strip()
      if rule is not None:
        for name in MACRO_LAYERS:
          macro_rules.setdefault(name, rule)
    return self.encode(operations, edge_rules, macro_rules)

  def named(self, name: str, rule: str = "bp") -> np.ndarray:
    """The genome of a named cell (:data:`NAMED_CELLS`) with ``rule`` on every layer."""
    if name not in NAMED_CELLS:
      raise ValueError(f"Unknown cell {name!r}. Named cells: {', '.join(NAMED_CELLS)}.")
    return self.from_string(NAMED_CELLS[name], rule=rule)

  # ---------------------------------------------------------------- jittable helpers
  def random_genomes(self, key: Array, num: int) -> Array:
    """``num`` genomes drawn uniformly from the space: ``(num, 20)`` int32."""
    return genome_lib.random_genomes(key, self.gene_sizes, num)

  def expressed_genes(self, genome: Array) -> Array:
    """Bool ``(..., 20)``: the genes that affect the network. An edge's rule gene is
    expressed only when the edge's operation is a convolution."""
    ops = jnp.asarray(genome)[..., OPERATION_GENES]
    conv = functools.reduce(jnp.logical_or, [ops == i for i, _ in CONV_OPERATIONS.values()])
    ones = jnp.ones(conv.shape[:-1] + (len(MACRO_LAYERS),), bool)
    return jnp.concatenate([jnp.ones_like(conv), conv, ones], axis=-1)

  def architecture(self, genome: Array) -> dict:
    """The ``architecture`` collection :class:`NB201Network` reads: ``{"ops": (..., 6)}``."""
    return {"ops": jnp.asarray(genome, jnp.int32)[..., OPERATION_GENES]}

  @property
  def rule_names(self) -> tuple[str, ...]:
    """The registered rules the genes can choose (both alphabets), in registry order: the
    rules a model's compiled programs must contain (``RuleOptions(rules=...)``)."""
    return _rule_genes.rule_names(self.rules, self.macro_alphabet)

  def assignment_fn(self, variables: Mapping, options: rules_lib.RuleOptions | None = None
                    ) -> Callable[[Array], Assignment]:
    """A pure function ``genome (..., 20) -> Assignment`` for a model with ``variables``.

    Each edge's rule gene goes to the convolutions on that edge in every cell (those of
    operations the genome does not choose get it too: their output is never selected, so
    their rule does not matter); each of :data:`MACRO_LAYERS` gets its own gene. With a
    leading population axis on the genomes the result is a stacked assignment, ready for
    ``jax.vmap``. Works under ``jit`` (the layer list is taken from ``variables`` here, once).

    Args:
      variables: the model's variables (``model.init`` output, or ``state.variables()``).
      options: the model's rule options (``model.options``); if given, checked to compile
        every rule of the space: a rule left out of a model's programs would not run as
        assigned, and assignments made here are not checked again.

    Raises:
      ValueError: if a weight layer is not one of the space's; if the alphabet holds a
        direct-feedback rule (DFA) but a hidden layer has no DFA matrix (a network built
        with ``dfa=False``); or if ``options`` leaves out a rule of the space.
    """
    return _rule_genes.assignment_fn(variables, options, (self.rules, self.macro_alphabet),
                                     _gene_of_layer)

  def parameter_count(self, params: Mapping, genome) -> int:
    """Parameters of the architecture ``genome`` chooses (those of unchosen convolutions
    on the edges, which :class:`NB201Network` also holds, are not counted); as
    NAS-Bench-201 counts them: weights, biases and BN scales/offsets."""
    ops = self.validate(genome)[OPERATION_GENES]
    total = 0
    for path, leaf in traverse_util.flatten_dict(flax.core.unfreeze(params)).items():
      edge = next((p for p in path if _EDGE_NAME.match(p)), None)
      if edge is not None:
        e = EDGES.index(tuple(int(c) for c in _EDGE_NAME.match(edge).groups()))
        op = next(v[0] for k, v in CONV_OPERATIONS.items()
                  if any(p.startswith(k) for p in path))
        if ops[e] != op:
          continue
      total += int(np.prod(np.shape(leaf)))
    return total


def _gene_of_layer(name: str) -> tuple[int, int]:
  """(gene index, alphabet group: 0 edge rules, 1 macro rules) of weight layer ``name``."""
  if name in MACRO_LAYERS:
    return 2 * NUM_EDGES + MACRO_LAYERS.index(name), 1
  for part in name.split("/"):
    match = _EDGE_NAME.match(part)
    if match and tuple(int(c) for c in match.groups()) in EDGES:
      return NUM_EDGES + EDGES.index(tuple(int(c) for c in match.groups())), 0
  raise ValueError(
      f"Layer {name!r} is not a weight layer of the NAS-Bench-201 network: expected an edge "
      f"convolution (.../edge_<i>_<j>/...) or one of {', '.join(MACRO_LAYERS)}.")


# ---------------------------------------------------------------------------- network
def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  # PyTorch's BatchNorm2d defaults, as NAS-Bench-201 trains with: momentum 0.1, eps 1e-5.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _tap(layer: Conv, h: Array, dfa: bool) -> Array:
  return layer.tap(h) if dfa else h


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
      h = _batch_norm(train, f"{name}_bn")(conv(nn.relu(x_in)))  # ReLU-Conv-BN
      # DFA tap at the operation's output (its BN): NAS-Bench-201's operations are
      # pre-activation, so the nonlinearity belongs to the consumer.
      candidates.append(_tap(conv, h, self.dfa_classes is not None))
    # avg_pool_3x3: stride 1, padding 1, count_include_pad=False (as NAS-Bench-201).
    candidates.append(nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                                  count_include_pad=False))
    return jax.lax.select_n(op, *candidates)


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
    h = _tap(conv_a, nn.relu(_batch_norm(train, "conv_a_bn")(conv_a(nn.relu(x)))), dfa)
    conv_b = conv((3, 3), padding=1, name="conv_b")
    b = _tap(conv_b, _batch_norm(train, "conv_b_bn")(conv_b(h)), dfa)
    shortcut = conv((1, 1), padding=0, name="shortcut")
    s = _tap(shortcut, shortcut(nn.avg_pool(x, (2, 2), strides=(2, 2))), dfa)
    return b + s


class NB201Network(nn.Module):
  """The NAS-Bench-201 network (TinyNetwork) with operations and rules as data.

  ``stem (3x3 conv, BN) -> N cells (C) -> reduction -> N cells (2C) -> reduction -> N cells
  (4C) -> BN, ReLU -> global average pool -> classifier``. Every cell has the same genotype,
  read from the ``architecture`` collection: ``apply({..., "architecture": {"ops": ops}},
  x)`` with ``ops`` int32 (6,) (:meth:`NB201Space.architecture`); ``model.init`` needs none.
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
    x = _tap(stem, _batch_norm(train, "stem_bn")(stem(x)), self.dfa)
    for stage in range(3):
      if stage:
        x = _ReductionBlock(self.C * 2**stage, dfa_classes, self.options,
                            name=f"reduction{stage}")(x, train)
      for n in range(self.N):
        x = NB201Cell(dfa_classes, self.options, name=f"stage{stage + 1}_cell{n}")(
            x, ops, train)
    x = nn.relu(_batch_norm(train, "lastact_bn")(x))
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
