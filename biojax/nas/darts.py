"""The DARTS cell space with a learning-rule gene on every kept operation.

DARTS (Liu, Simonyan & Yang 2019, ICLR, arXiv:1806.09055): a cell is a DAG with 2 input nodes
(node 0 and node 1: the outputs of the two previous cells) and 4 intermediate nodes
(2, 3, 4, 5). Each intermediate node keeps 2 incoming edges, each from an earlier node and
carrying one operation; the node is the sum of its two edges, and the cell's output is the
concatenation of nodes 2..5 along channels. A network stacks a *normal* cell genotype and a
*reduction* cell genotype (the reduction cell applies stride 2 to the edges that leave its
input nodes and doubles the channels). The evaluation networks of the paper: C=36 with 20
cells on CIFAR-10 (DARTS-V2: 3.3M parameters), C=48 with 14 cells on ImageNet.

biojax adds rules (source paper A, Hamzaoui & Baghdadi 2025): every kept edge is an
(input, operation, rule) triple, and the weight layers outside the edges have rule genes too.

Operations (gene values)
------------------------
DARTS's ``PRIMITIVES`` without ``none``: ``max_pool_3x3, avg_pool_3x3, skip_connect,
sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5`` (:data:`OPERATIONS`, value 0..6).
DARTS searches with ``none`` but never keeps it (its genotypes take the strongest operation
other than ``none`` on each kept edge), so no DARTS genotype holds it.

Genome (int32, :data:`NUM_GENES` = 51 genes)
--------------------------------------------
Edge ``e`` (0..7) of a cell goes into node ``2 + e // 2``, in the order of DARTS's genotype
lists (``normal=[(op, input), ...]``).

====== ===================================== ==============================================
genes  meaning                               values
====== ===================================== ==============================================
0-7    input of normal-cell edge ``e``       0..n-1 for node n = 2 + e // 2 (2,2,3,3,4,4,5,5)
8-15   operation of normal-cell edge ``e``   index into :data:`OPERATIONS`
16-23  input of reduction-cell edge ``e``    as genes 0-7
24-31  operation of reduction-cell edge e    index into :data:`OPERATIONS`
32-39  rule of normal-cell edge ``e``        index into ``space.rules``
40-47  rule of reduction-cell edge ``e``     index into ``space.rules``
48-50  rule of ``stem``, ``preprocess``,     index into ``space.macro_alphabet``
       ``classifier`` (:data:`MACRO_LAYERS`)
====== ===================================== ==============================================

Genes 0-31 are the architecture (:data:`ARCHITECTURE_GENES`); genes 32-50 are rules. Input
genes have per-gene sizes (node ``n`` chooses among ``0..n-1``), so every genome in range is
a valid cell. The two edges of a node may come from the same input (as in the NASNet and
AmoebaNet genotypes; DARTS's own derivation always keeps two different inputs).

An edge's rule gene is the rule of every convolution of that edge's operation, in every cell
of that type. It is *expressed* only when the operation has weights: the separable and
dilated convolutions, and ``skip_connect`` on a stride-2 edge of the reduction cell (a
FactorizedReduce). The macro genes: ``stem`` (the CIFAR stem convolution, or the three of the
ImageNet stems), ``preprocess`` (the 1x1 ReLU-Conv-BN and FactorizedReduce convolutions that
open every cell) and ``classifier``.

String form
-----------
DARTS's genotype notation with the rule after the operation, then ``@`` and the macro rules::

  normal=[(sep_conv_3x3:usf,0),(sep_conv_3x3:usf,1),...],reduce=[(max_pool_3x3:fa,0),...]@bp

After ``@``: ``stem:RULE,preprocess:RULE,classifier:RULE``, or one rule when they are all
equal. Every edge shows its rule, dormant ones included, so the string is the whole genome.
:meth:`DartsSpace.from_string` also reads the authors' own ``Genotype(normal=[('sep_conv_3x3',
0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=range(2, 6))`` given
``rule=``.

Networks and evaluation
-----------------------
:class:`DartsNetwork` is DARTS's evaluation network (``NetworkCIFAR``, or ``NetworkImageNet``
with ``variant="imagenet"``) with the genotype compiled in (a static attribute) and every
weight layer rule-aware, so rules stay data: one compiled program per architecture serves
every rule assignment. :class:`DartsEvaluator` groups a population by architecture and
evaluates each group with one cached :class:`biojax.nas.PopulationEvaluator` per
architecture. Left out: the auxiliary head and drop-path of DARTS's training recipe.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from biojax import rules as rules_lib
from biojax.nas import _rule_genes
from biojax.nas import genome as genome_lib
from biojax.nas.nb201 import DEFAULT_RULES
from biojax.nn.assignment import Assignment
from biojax.nn.layers import Conv, Dense

Array = jax.Array

# DARTS's PRIMITIVES (quark0/darts, cnn/genotypes.py) without 'none', in the same order.
OPERATIONS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# Operations built from convolutions: name -> (kind, kernel size).
CONV_OPERATIONS: dict[str, tuple[str, int]] = {
    "sep_conv_3x3": ("sep", 3), "sep_conv_5x5": ("sep", 5),
    "dil_conv_3x3": ("dil", 3), "dil_conv_5x5": ("dil", 5)}
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
NUM_INTERMEDIATE_NODES = 4
EDGES_PER_CELL = 2 * NUM_INTERMEDIATE_NODES  # 8 kept edges
# Edge e goes into node EDGE_NODES[e] and chooses its input among 0..EDGE_NODES[e] - 1.
EDGE_NODES: tuple[int, ...] = tuple(2 + e // 2 for e in range(EDGES_PER_CELL))
CONCAT: tuple[int, ...] = (2, 3, 4, 5)  # the cell's output: every intermediate node
# The weight layers outside the cell edges, one rule gene per kind.
MACRO_LAYERS: tuple[str, ...] = ("stem", "preprocess", "classifier")

ARCHITECTURE_GENES = slice(0, 2 * 2 * EDGES_PER_CELL)  # 0-31
RULE_GENES = slice(32, 32 + 2 * EDGES_PER_CELL)  # 32-47
MACRO_RULE_GENES = slice(48, 48 + len(MACRO_LAYERS))  # 48-50
NUM_GENES = 48 + len(MACRO_LAYERS)  # 51
VARIANTS = ("cifar", "imagenet")


def input_gene(cell: int, e: int) -> int:
  """Index of the input gene of edge ``e`` of cell type ``cell`` (0 normal, 1 reduce)."""
  return 2 * EDGES_PER_CELL * cell + e


def operation_gene(cell: int, e: int) -> int:
  """Index of the operation gene of edge ``e`` of cell type ``cell``."""
  return 2 * EDGES_PER_CELL * cell + EDGES_PER_CELL + e


def rule_gene(cell: int, e: int) -> int:
  """Index of the rule gene of edge ``e`` of cell type ``cell``."""
  return RULE_GENES.start + EDGES_PER_CELL * cell + e


_INPUT_GENES = np.asarray([input_gene(c, e) for c in range(2) for e in range(EDGES_PER_CELL)])
_OPERATION_GENES = np.asarray([operation_gene(c, e) for c in range(2)
                               for e in range(EDGES_PER_CELL)])


class Genotype(NamedTuple):
  """A DARTS architecture, as in the authors' ``genotypes.py``: ``normal`` and ``reduce``
  list 8 ``(operation, input)`` pairs, two per intermediate node; ``*_concat`` are the nodes
  concatenated into the cell's output (always 2..5 in this space)."""

  normal: tuple[tuple[str, int], ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[tuple[str, int], ...]
  reduce_concat: tuple[int, ...]


class RuleGenotype(NamedTuple):
  """A genome in words (:meth:`DartsSpace.decode`): the architecture and every rule."""

  genotype: Genotype
  normal_rules: tuple[str, ...]  # one rule spec per normal-cell edge
  reduce_rules: tuple[str, ...]  # one rule spec per reduction-cell edge
  macro_rules: dict[str, str]  # {layer kind: rule spec} for MACRO_LAYERS


def as_genotype(genotype) -> Genotype:
  """``genotype`` (a :class:`Genotype`, or the authors' namedtuple with lists) as a
  hashable :class:`Genotype` of tuples, checked.

  Raises:
    ValueError: naming the cell and edge of an unknown operation or an input out of range,
      or a concat other than 2..5.
  """
  cells = {}
  for cell in CELL_TYPES:
    edges = tuple((str(op), int(j)) for op, j in getattr(genotype, cell))
    if len(edges) != EDGES_PER_CELL:
      raise ValueError(f"A DARTS {cell} cell keeps {EDGES_PER_CELL} edges (2 for each of the "
                       f"nodes 2..5); got {len(edges)}.")
    for e, (op, j) in enumerate(edges):
      _operation_id(op, cell, e)
      if not 0 <= j < EDGE_NODES[e]:
        raise ValueError(f"Edge {e} of the {cell} cell goes into node {EDGE_NODES[e]}, whose "
                         f"inputs are 0..{EDGE_NODES[e] - 1}; got input {j}.")
    concat = tuple(int(i) for i in getattr(genotype, f"{cell}_concat"))
    if concat != CONCAT:
      raise ValueError(f"{cell}_concat is {list(concat)}: this space concatenates every "
                       f"intermediate node, {list(CONCAT)}.")
    cells[cell] = edges
  return Genotype(normal=cells["normal"], normal_concat=CONCAT, reduce=cells["reduce"],
                  reduce_concat=CONCAT)


def _operation_id(op: str, cell: str, e: int) -> int:
  if op not in OPERATIONS:
    extra = " ('none' is searched but never kept by DARTS)" if op == "none" else ""
    raise ValueError(f"Unknown operation {op!r} on edge {e} of the {cell} cell{extra}. Valid "
                     f"operations: {', '.join(OPERATIONS)}.")
  return OPERATIONS.index(op)


# Genotypes by name, from the authors' code (quark0/darts, cnn/genotypes.py).
NAMED_GENOTYPES: dict[str, Genotype] = {
    # DARTS (second order): 2.76% CIFAR-10 test error with 3.3M parameters (paper, Table 1).
    "darts_v2": as_genotype(Genotype(
        normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
                ("skip_connect", 0), ("dil_conv_3x3", 2)),
        normal_concat=CONCAT,
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("max_pool_3x3", 1)),
        reduce_concat=CONCAT)),
    # DARTS (first order).
    "darts_v1": as_genotype(Genotype(
        normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("skip_connect", 2)),
        normal_concat=CONCAT,
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                ("max_pool_3x3", 0), ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("avg_pool_3x3", 0)),
        reduce_concat=CONCAT)),
}

_CELL_NAME = re.compile(r"^(normal|reduce)(\d+)$")
_EDGE_NAME = re.compile(r"^edge(\d)$")
_CELL_FIELD = re.compile(r"(\w+)\s*=\s*(\[[^\]]*\]|range\s*\([^)]*\))")
_EDGE_TOKEN = re.compile(
    r"\(\s*['\"]?\s*([A-Za-z0-9_]+)\s*(?::\s*([^,'\"()]+?))?\s*['\"]?\s*,\s*(-?\d+)\s*\)")


@dataclasses.dataclass(frozen=True)
class DartsSpace:
  """The static description of the genome: which rules the rule genes choose among.

  Attributes:
    rules: the rule alphabet of the edge rule genes: rule specs (``"fa"``, ``"usf+eg"``);
      gene value ``k`` means ``rules[k]``.
    macro_rules: the alphabet of the stem, preprocessing and classifier genes; ``None``
      means the same as ``rules``. A single entry (``("bp",)``) fixes those layers' rule.
  """

  rules: tuple[str, ...] = DEFAULT_RULES
  macro_rules: tuple[str, ...] | None = None

  def __post_init__(self):
    for field in ("rules", "macro_rules"):
      object.__setattr__(self, field,
                         _rule_genes.canonical_alphabet("DartsSpace", field, getattr(self, field)))

  # ---------------------------------------------------------------- gene layout
  @property
  def macro_alphabet(self) -> tuple[str, ...]:
    return self.rules if self.macro_rules is None else self.macro_rules

  @property
  def gene_sizes(self) -> tuple[int, ...]:
    """The number of values of each of the :data:`NUM_GENES` genes (input genes differ by
    node: 2, 2, 3, 3, 4, 4, 5, 5)."""
    cell = EDGE_NODES + (len(OPERATIONS),) * EDGES_PER_CELL
    return (cell * 2 + (len(self.rules),) * (2 * EDGES_PER_CELL)
            + (len(self.macro_alphabet),) * len(MACRO_LAYERS))

  @property
  def num_genes(self) -> int:
    return NUM_GENES

  def describe_gene(self, g: int) -> str:
    """What gene ``g`` means, in words."""
    if g < ARCHITECTURE_GENES.stop:
      cell, rest = divmod(g, 2 * EDGES_PER_CELL)
      kind, e = divmod(rest, EDGES_PER_CELL)
      what = ("input", "operation")[kind]
      return f"{what} of {CELL_TYPES[cell]} edge {e} (into node {EDGE_NODES[e]})"
    if g < RULE_GENES.stop:
      cell, e = divmod(g - RULE_GENES.start, EDGES_PER_CELL)
      return f"rule of {CELL_TYPES[cell]} edge {e} (into node {EDGE_NODES[e]})"
    return f"rule of {MACRO_LAYERS[g - MACRO_RULE_GENES.start]}"

  def _describe_values(self, g: int) -> str:
    if g < ARCHITECTURE_GENES.stop:
      cell, rest = divmod(g, 2 * EDGES_PER_CELL)
      kind, e = divmod(rest, EDGES_PER_CELL)
      values = (tuple(f"node {j}" for j in range(EDGE_NODES[e])), OPERATIONS)[kind]
    elif g < RULE_GENES.stop:
      values = self.rules
    else:
      values = self.macro_alphabet
    return f"{self.describe_gene(g)}: {', '.join(f'{k}={v}' for k, v in enumerate(values))}"

  def validate(self, genome) -> np.ndarray:
    """Checks concrete genome(s) ``(..., 51)``; returns them as int32 NumPy.

    Raises:
      ValueError: naming the first gene out of range, its meaning and its valid values.
    """
    return genome_lib.check_genomes(genome, self.gene_sizes, self._describe_values)

  # ---------------------------------------------------------------- words <-> genome
  def decode(self, genome) -> RuleGenotype:
    """The genome in words."""
    g = self._one(genome, "decode")
    return RuleGenotype(
        genotype=self.genotype(g),
        normal_rules=tuple(self.rules[v] for v in g[RULE_GENES][:EDGES_PER_CELL]),
        reduce_rules=tuple(self.rules[v] for v in g[RULE_GENES][EDGES_PER_CELL:]),
        macro_rules={name: self.macro_alphabet[v]
                     for name, v in zip(MACRO_LAYERS, g[MACRO_RULE_GENES], strict=True)})

  def genotype(self, genome) -> Genotype:
    """The architecture of one genome, as DARTS writes it (the ``genotype`` of
    :class:`DartsNetwork`)."""
    g = self._one(genome, "genotype")
    cells = [tuple((OPERATIONS[g[operation_gene(c, e)]], int(g[input_gene(c, e)]))
                   for e in range(EDGES_PER_CELL)) for c in range(2)]
    return Genotype(normal=cells[0], normal_concat=CONCAT, reduce=cells[1],
                    reduce_concat=CONCAT)

  def cell_string(self, genome) -> str:
    """The architecture in the authors' notation (no rules), as their ``genotypes.py``
    prints it; :meth:`from_string` reads it back given ``rule=``."""
    genotype = self.genotype(genome)
    cells = {cell: "[" + ", ".join(f"('{op}', {j})" for op, j in getattr(genotype, cell)) + "]"
             for cell in CELL_TYPES}
    concat = str(list(CONCAT))
    return (f"Genotype(normal={cells['normal']}, normal_concat={concat}, "
            f"reduce={cells['reduce']}, reduce_concat={concat})")

  def _one(self, genome, what: str) -> np.ndarray:
    g = self.validate(genome)
    if g.ndim != 1:
      raise ValueError(f"{what}() takes one genome of shape ({NUM_GENES},), got {g.shape}.")
    return g

  def encode(self, genotype, normal_rules: str | Sequence[str],
             reduce_rules: str | Sequence[str],
             macro_rules: str | Mapping[str, str]) -> np.ndarray:
    """The genome of a genotype in words; inverse of :meth:`decode`
    (``space.encode(*space.decode(g))`` equals ``g``).

    Args:
      genotype: a :class:`Genotype` (or the authors' namedtuple, lists accepted).
      normal_rules, reduce_rules: one rule spec for every edge of that cell, or 8 of them.
      macro_rules: one rule spec for every layer kind of :data:`MACRO_LAYERS`, or a dict
        naming each of them.

    Raises:
      ValueError: for an unknown operation or an input out of range (naming the edge), a rule
        outside the space's alphabet (listing it), or missing/extra layer kinds.
    """
    genotype = as_genotype(genotype)
    genes = np.zeros(NUM_GENES, np.int32)
    for c, cell in enumerate(CELL_TYPES):
      edge_rules = normal_rules if c == 0 else reduce_rules
      if isinstance(edge_rules, str):
        edge_rules = [edge_rules] * EDGES_PER_CELL
      edge_rules = list(edge_rules)
      if len(edge_rules) != EDGES_PER_CELL:
        raise ValueError(f"A {cell} cell has {EDGES_PER_CELL} edges; got {len(edge_rules)} "
                         "edge rules.")
      for e, (op, j) in enumerate(getattr(genotype, cell)):
        genes[input_gene(c, e)] = j
        genes[operation_gene(c, e)] = _operation_id(op, cell, e)
        genes[rule_gene(c, e)] = _rule_genes.rule_index(edge_rules[e], self.rules,
                                                     f"{cell} edge {e}")
    if isinstance(macro_rules, str):
      macro_rules = dict.fromkeys(MACRO_LAYERS, macro_rules)
    missing = [n for n in MACRO_LAYERS if n not in macro_rules]
    extra = [n for n in macro_rules if n not in MACRO_LAYERS]
    if missing or extra:
      raise ValueError(
          f"macro_rules must name exactly the layer kinds {', '.join(MACRO_LAYERS)}"
          + (f"; missing: {', '.join(missing)}" if missing else "")
          + (f"; unknown: {', '.join(extra)}" if extra else "") + ".")
    for m, name in enumerate(MACRO_LAYERS):
      genes[MACRO_RULE_GENES.start + m] = _rule_genes.rule_index(
          macro_rules[name], self.macro_alphabet, f"layer {name}")
    return genes

  def to_string(self, genome) -> str:
    """The string form (module docstring); :meth:`from_string` is its inverse."""
    words = self.decode(genome)
    cells = []
    for cell, edge_rules in zip(CELL_TYPES, (words.normal_rules, words.reduce_rules),
                                strict=True):
      edges = ",".join(f"({op}:{r},{j})" for (op, j), r in
                       zip(getattr(words.genotype, cell), edge_rules, strict=True))
      cells.append(f"{cell}=[{edges}]")
    macro = list(words.macro_rules.values())
    if len(set(macro)) == 1:
      tail = macro[0]
    else:
      tail = ",".join(f"{n}:{r}" for n, r in words.macro_rules.items())
    return ",".join(cells) + "@" + tail

  def from_string(self, text: str, rule: str | None = None) -> np.ndarray:
    """Parses the string form; ``rule`` fills every rule the string leaves out.

    Also reads the authors' notation, ``Genotype(normal=[('sep_conv_3x3', 0), ...],
    normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=range(2, 6))``, given ``rule``.

    Raises:
      ValueError: for malformed strings, unknown operations or rules (listing the valid
        ones), inputs out of range, or a missing rule when ``rule`` is None.
    """
    cell_text, _, macro = text.strip().partition("@")
    body = cell_text.strip()
    if body.startswith("Genotype(") and body.endswith(")"):
      body = body[len("Genotype("):-1]
    fields = dict(_CELL_FIELD.findall(body))
    leftover = _CELL_FIELD.sub("", body).replace(",", "").strip()
    unknown = [f for f in fields if f not in ("normal", "reduce", "normal_concat",
                                              "reduce_concat")]
    if leftover or unknown or not {"normal", "reduce"} <= set(fields):
      raise ValueError(f"Cannot parse {cell_text!r}: expected 'normal=[(op:rule,input),...],"
                       "reduce=[(op:rule,input),...]' (8 edges each), optionally with "
                       "normal_concat=/reduce_concat=.")
    cells, rules = {}, {}
    for cell in CELL_TYPES:
      items = fields[cell][1:-1]
      tokens = _EDGE_TOKEN.findall(items)
      if _EDGE_TOKEN.sub("", items).replace(",", "").strip() or len(tokens) != EDGES_PER_CELL:
        raise ValueError(f"Cannot parse the {cell} cell {fields[cell]!r}: expected "
                         f"{EDGES_PER_CELL} edges '(operation:rule,input)' or "
                         "'(operation,input)'.")
      cells[cell] = [(op, int(j)) for op, _, j in tokens]
      rules[cell] = []
      for e, (op, spec, j) in enumerate(tokens):
        spec = spec.strip() or rule
        if spec is None:
          raise ValueError(f"No rule for edge {e} of the {cell} cell ({op},{j}): write "
                           f"'({op}:RULE,{j})' or pass rule=.")
        rules[cell].append(spec)
      concat = fields.get(f"{cell}_concat")
      if concat is not None:
        numbers = [int(n) for n in re.findall(r"-?\d+", concat)]
        if concat.startswith("range"):
          numbers = list(range(*numbers))
        cells[f"{cell}_concat"] = numbers
      else:
        cells[f"{cell}_concat"] = CONCAT
    genotype = Genotype(normal=cells["normal"], normal_concat=cells["normal_concat"],
                        reduce=cells["reduce"], reduce_concat=cells["reduce_concat"])
    macro = macro.strip()
    if not macro:
      if rule is None:
        raise ValueError(f"No rules for the layers outside the cells ({', '.join(MACRO_LAYERS)})"
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
    return self.encode(genotype, rules["normal"], rules["reduce"], macro_rules)

  def named(self, name: str, rule: str = "bp") -> np.ndarray:
    """The genome of a named genotype (:data:`NAMED_GENOTYPES`) with ``rule`` everywhere."""
    if name not in NAMED_GENOTYPES:
      raise ValueError(f"Unknown genotype {name!r}. Named genotypes: "
                       f"{', '.join(NAMED_GENOTYPES)}.")
    return self.encode(NAMED_GENOTYPES[name], rule, rule, rule)

  # ---------------------------------------------------------------- jittable helpers
  def random_genomes(self, key: Array, num: int) -> Array:
    """``num`` genomes drawn uniformly from the space: ``(num, 51)`` int32."""
    return genome_lib.random_genomes(key, self.gene_sizes, num)

  def expressed_genes(self, genome: Array) -> Array:
    """Bool ``(..., 51)``: the genes that affect the network. An edge's rule gene is
    expressed only when its operation has weights: a separable or dilated convolution, or
    ``skip_connect`` on a stride-2 edge of the reduction cell (input 0 or 1)."""
    genome = jnp.asarray(genome)
    ops = genome[..., _OPERATION_GENES]
    inputs = genome[..., _INPUT_GENES]
    conv = functools.reduce(jnp.logical_or,
                            [ops == OPERATIONS.index(name) for name in CONV_OPERATIONS])
    reduce_edge = jnp.arange(2 * EDGES_PER_CELL) >= EDGES_PER_CELL
    factorized = (ops == OPERATIONS.index("skip_connect")) & reduce_edge & (inputs < 2)
    ones = jnp.ones(genome.shape[:-1] + (ARCHITECTURE_GENES.stop,), bool)
    macro = jnp.ones(genome.shape[:-1] + (len(MACRO_LAYERS),), bool)
    return jnp.concatenate([ones, conv | factorized, macro], axis=-1)

  @property
  def architecture_genes(self) -> slice:
    """The architecture genes (inputs and operations, 0-31): equal ones mean one program."""
    return ARCHITECTURE_GENES

  def rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, layer name, alphabet)`` of every rule gene, in gene order: the edges
    (``normal/edge<e>``, ``reduce/edge<e>``, alphabet ``rules``), then :data:`MACRO_LAYERS`
    (alphabet ``macro_alphabet``)."""
    edges = tuple((rule_gene(c, e), f"{cell}/edge{e}", self.rules)
                  for c, cell in enumerate(CELL_TYPES) for e in range(EDGES_PER_CELL))
    return edges + tuple((MACRO_RULE_GENES.start + m, name, self.macro_alphabet)
                         for m, name in enumerate(MACRO_LAYERS))

  def architecture_key(self, genome) -> tuple[int, ...]:
    """The architecture genes (0-31) of one concrete genome as a hashable tuple: genomes
    with equal keys share one compiled program."""
    return tuple(int(v) for v in self._one(genome, "architecture_key")[ARCHITECTURE_GENES])

  def architecture(self, genome: Array) -> dict:
    """The ``architecture`` collection (:class:`biojax.nas.CandidateState`): empty, because
    a DARTS architecture is compiled into :class:`DartsNetwork` (its ``genotype``). This
    lets :class:`biojax.nas.PopulationEvaluator` evaluate a population that shares one
    architecture (:class:`DartsEvaluator` groups a population so)."""
    del genome
    return {}

  @property
  def rule_names(self) -> tuple[str, ...]:
    """The registered rules the genes can choose (both alphabets), in registry order: the
    rules a model's compiled programs must contain (``RuleOptions(rules=...)``)."""
    return _rule_genes.rule_names(self.rules, self.macro_alphabet)

  def assignment_fn(self, variables: Mapping, options: rules_lib.RuleOptions | None = None
                    ) -> Callable[[Array], Assignment]:
    """A pure function ``genome (..., 51) -> Assignment`` for a :class:`DartsNetwork` with
    ``variables`` (any architecture: the layer names say which gene rules each layer).

    Each edge's rule gene goes to every convolution of that edge's operation, in every cell
    of that type (``normal<i>/edge<e>/...`` or ``reduce<i>/edge<e>/...``); ``stem*`` layers
    get the ``stem`` gene, ``.../preprocess0|1/...`` the ``preprocess`` gene, and
    ``classifier`` its own. The architecture genes are not read: the network's genotype is
    compiled in. With a leading population axis on the genomes the result is a stacked
    assignment. Works under ``jit``.

    Args:
      variables: the model's variables (``model.init`` output, or ``state.variables()``).
      options: the model's rule options; if given, checked to compile every rule of the
        space.

    Raises:
      ValueError: if a weight layer is not one of a DARTS network's; if the alphabet holds
        DFA but a hidden layer has no DFA matrix (``dfa=False``); or if ``options`` leaves
        out a rule of the space.
    """
    return _rule_genes.assignment_fn(variables, options, (self.rules, self.macro_alphabet),
                                     _gene_of_layer)

  def parameter_count(self, params: Mapping, genome=None) -> int:
    """Parameters of a :class:`DartsNetwork` as DARTS counts them (weights, biases, BN
    scales and offsets; the network holds only its own architecture, so ``genome`` is not
    needed and, if given, only validated)."""
    if genome is not None:
      self.validate(genome)
    return parameter_count(params)


def parameter_count(params: Mapping) -> int:
  """The number of parameters in a ``params`` pytree (shapes or arrays)."""
  return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params)))



def _gene_of_layer(name: str) -> tuple[int, int]:
  """(gene index, alphabet group: 0 edge rules, 1 macro rules) of weight layer ``name``."""
  parts = name.split("/")
  if parts[0].startswith("stem"):
    return MACRO_RULE_GENES.start + MACRO_LAYERS.index("stem"), 1
  if parts[0] == "classifier":
    return MACRO_RULE_GENES.start + MACRO_LAYERS.index("classifier"), 1
  cell = _CELL_NAME.match(parts[0])
  if cell and len(parts) > 2:
    if parts[1] in ("preprocess0", "preprocess1"):
      return MACRO_RULE_GENES.start + MACRO_LAYERS.index("preprocess"), 1
    edge = _EDGE_NAME.match(parts[1])
    if edge and int(edge.group(1)) < EDGES_PER_CELL:
      return rule_gene(CELL_TYPES.index(cell.group(1)), int(edge.group(1))), 0
  raise ValueError(
      f"Layer {name!r} is not a weight layer of a DARTS network: expected stem*, classifier, "
      "<normal|reduce><i>/preprocess<0|1>/... or <normal|reduce><i>/edge<e>/...")


# ---------------------------------------------------------------------------- network
def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  # PyTorch's BatchNorm2d defaults, as DARTS trains with: momentum 0.1, eps 1e-5, affine.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _tap(layer: Conv, h: Array, dfa: bool) -> Array:
  return layer.tap(h) if dfa else h


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

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.features % 2:
      raise ValueError(f"FactorizedReduce needs an even number of channels, got "
                       f"{self.features}.")
    half = self.features // 2
    conv = functools.partial(Conv, half, (1, 1), strides=2, padding=0, use_bias=False,
                             dfa_classes=self.dfa_classes, options=self.options)
    x = nn.relu(x)
    conv_1, conv_2 = conv(name="conv_1"), conv(name="conv_2")
    shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:]
    y = _batch_norm(train, "bn")(jnp.concatenate([conv_1(x), conv_2(shifted)], axis=-1))
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
    return _tap(conv, _batch_norm(train, "bn")(conv(nn.relu(x))), self.dfa_classes is not None)


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
      return FactorizedReduce(x.shape[-1], self.dfa_classes, self.options,
                              name="factorized_reduce")(x, train)
    if op not in CONV_OPERATIONS:
      raise ValueError(f"Unknown operation {op!r}. Valid operations: {', '.join(OPERATIONS)}.")
    kind, k = CONV_OPERATIONS[op]
    dfa = self.dfa_classes is not None
    channels = x.shape[-1]
    conv = functools.partial(Conv, channels, use_bias=False, dfa_classes=self.dfa_classes,
                             options=self.options)
    if kind == "dil":
      dw = conv((k, k), strides=s, padding=k - 1, kernel_dilation=2,
                feature_group_count=channels, name="dw")
      h = _tap(dw, dw(nn.relu(x)), dfa)
      pw = conv((1, 1), padding=0, name="pw")
      return _tap(pw, _batch_norm(train, "bn")(pw(h)), dfa)
    dw1 = conv((k, k), strides=s, padding=k // 2, feature_group_count=channels, name="dw1")
    h = _tap(dw1, dw1(nn.relu(x)), dfa)
    pw1 = conv((1, 1), padding=0, name="pw1")
    h = _tap(pw1, nn.relu(_batch_norm(train, "bn1")(pw1(h))), dfa)  # the ReLU of half 2
    dw2 = conv((k, k), padding=k // 2, feature_group_count=channels, name="dw2")
    h = _tap(dw2, dw2(h), dfa)
    pw2 = conv((1, 1), padding=0, name="pw2")
    return _tap(pw2, _batch_norm(train, "bn2")(pw2(h)), dfa)


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
      s0 = s1 = _tap(stem, _batch_norm(train, "stem_bn")(stem(x)), self.dfa)
      reduction_prev = False
    else:
      stem0a = conv(self.C // 2, strides=2, name="stem0a")
      h = _tap(stem0a, nn.relu(_batch_norm(train, "stem0a_bn")(stem0a(x))), self.dfa)
      stem0b = conv(self.C, strides=2, name="stem0b")
      s0 = _tap(stem0b, _batch_norm(train, "stem0b_bn")(stem0b(h)), self.dfa)
      stem1 = conv(self.C, strides=2, name="stem1")
      s1 = _tap(stem1, _batch_norm(train, "stem1_bn")(stem1(nn.relu(s0))), self.dfa)
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


# ---------------------------------------------------------------------------- evaluation
def group_plan(size: int, group_size: int | None) -> list[tuple[int, int, int]]:
  """How :class:`DartsEvaluator` splits a group of ``size`` genomes of one architecture into
  calls: ``(start, stop, padded size)`` for each. ``group_size=None``: one call padded to the
  next power of two (at most ``log2`` programs per architecture, less than 2x padding);
  an int: calls of exactly ``group_size`` (one program per architecture)."""
  if size < 1:
    return []
  if group_size is None:
    return [(0, size, 1 << (size - 1).bit_length())]
  return [(start, min(start + group_size, size), group_size)
          for start in range(0, size, group_size)]


@dataclasses.dataclass(frozen=True, eq=False)
class DartsEvaluator:
  """Fitness of a DARTS population: programs compiled once per distinct architecture, the
  rule genes batched inside (DESIGN.md section 2: "for expensive spaces (DARTS)
  architectures may be compiled once per distinct architecture, with rule assignments still
  batched inside").

  :meth:`evaluate` groups the genomes by their architecture genes
  (:meth:`DartsSpace.architecture_key`), takes (or builds and caches) one
  :class:`biojax.nas.PopulationEvaluator` per architecture, whose model is ``model`` with
  that genotype, evaluates each group (padded by :func:`group_plan` with copies of its first
  genome, whose results are dropped) and returns fitness and info in population order. A
  repeated architecture reuses its program; only a new architecture (or a new padded group
  size, batch shape or budget) compiles.

  Attributes:
    space: the :class:`DartsSpace`.
    model: a :class:`DartsNetwork` (its ``genotype`` is replaced per architecture); its
      ``options`` must compile every rule of ``space``.
    steps, batch_size: the proxy budget, as :class:`biojax.nas.PopulationEvaluator`.
    group_size: see :func:`group_plan`. ``None`` (powers of two) wastes least compute when
      most architectures are met once; a fixed size compiles one program per architecture.
    cache_size: architectures whose evaluator (and compiled programs) are kept, least
      recently used dropped first; ``None`` keeps all. A dropped architecture met again
      compiles again.
    settings: further :class:`biojax.nas.PopulationEvaluator` settings (``optimizer``,
      ``learning_rate``, ``strategy``, ``compiler_options``, ...).
  """

  space: DartsSpace
  model: DartsNetwork
  steps: int
  batch_size: int
  group_size: int | None = None
  cache_size: int | None = 128
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.group_size is not None and self.group_size < 1:
      raise ValueError(f"group_size={self.group_size} must be >= 1 (or None).")
    if self.cache_size is not None and self.cache_size < 1:
      raise ValueError(f"cache_size={self.cache_size} must be >= 1 (or None).")
    object.__setattr__(self, "_cache", collections.OrderedDict())
    object.__setattr__(self, "_dropped_programs", 0)

  def evaluator(self, architecture_key: tuple[int, ...]):
    """The (cached) :class:`biojax.nas.PopulationEvaluator` of one architecture."""
    cache = self._cache
    if architecture_key in cache:
      cache.move_to_end(architecture_key)
      return cache[architecture_key]
    # Imported here: the evaluator module may come to import the search spaces.
    from biojax.nas.evaluator import PopulationEvaluator

    genome = np.zeros(NUM_GENES, np.int32)
    genome[ARCHITECTURE_GENES] = architecture_key
    model = self.model.clone(genotype=self.space.genotype(genome))
    evaluator = PopulationEvaluator(self.space, model, steps=self.steps,
                                    batch_size=self.batch_size, **dict(self.settings))
    cache[architecture_key] = evaluator
    if self.cache_size is not None and len(cache) > self.cache_size:
      _, dropped = cache.popitem(last=False)
      object.__setattr__(self, "_dropped_programs",
                         self._dropped_programs + dropped._compile_count())
    return evaluator

  @property
  def num_programs(self) -> int:
    """Programs compiled so far (one per architecture and padded group size), including
    those of architectures dropped from the cache."""
    return self._dropped_programs + sum(e._compile_count() for e in self._cache.values())

  @property
  def num_architectures(self) -> int:
    """Architectures whose evaluator is cached."""
    return len(self._cache)

  def evaluate(self, genomes, train_batches: Mapping, validation_batches: Mapping,
               key: Array, step_scale=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fitness of every genome (larger is better) and per-candidate information, in
    population order; as :meth:`biojax.nas.PopulationEvaluator.evaluate` (the same
    ``train_batches``, ``validation_batches`` and ``key`` for every group, so candidates of
    one architecture share their initial weights).

    Args:
      genomes: concrete int32 ``(P, 51)`` (validated here).
      step_scale: optional ``(P,)`` per-candidate step scale (default 1).

    Returns:
      ``(fitness (P,), info)`` as NumPy arrays; ``info`` as the population evaluator's, plus
      ``program`` (int32: the index, in first-appearance order within this call, of the
      architecture group each candidate was evaluated in).
    """
    genomes = self.space.validate(genomes)
    if genomes.ndim != 2:
      raise ValueError(f"genomes must be (P, {NUM_GENES}), got {genomes.shape}.")
    population = genomes.shape[0]
    scale = (np.ones(population, np.float32) if step_scale is None
             else np.asarray(step_scale, np.float32).reshape(population))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(genomes):
      groups.setdefault(tuple(int(v) for v in g[ARCHITECTURE_GENES]), []).append(i)
    pending = []  # dispatch every call first (JAX runs them asynchronously), then gather
    for program, (arch, members) in enumerate(groups.items()):
      evaluator = self.evaluator(arch)
      members = np.asarray(members)
      for start, stop, size in group_plan(len(members), self.group_size):
        chosen = members[start:stop]
        padded = np.concatenate([chosen, np.repeat(chosen[:1], size - len(chosen))])
        out = evaluator.evaluate(genomes[padded], train_batches, validation_batches, key,
                                 scale[padded])
        pending.append((program, chosen, out))
    fitness = np.full(population, -np.inf, np.float32)
    info: dict[str, np.ndarray] = {}
    for program, chosen, (group_fitness, group_info) in pending:
      n = len(chosen)
      fitness[chosen] = np.asarray(group_fitness)[:n]
      for name, values in group_info.items():
        values = np.asarray(values)
        if name not in info:
          info[name] = np.zeros((population,) + values.shape[1:], values.dtype)
        info[name][chosen] = values[:n]
      info.setdefault("program", np.zeros(population, np.int32))[chosen] = program
    return fitness, info
