"""The NAS-Bench-201 genome: an operation and a learning-rule gene on every edge, and a rule
gene on every other weight layer (registered as ``"nb201"``).

biojax adds rules to NAS-Bench-201 (Hamzaoui & Baghdadi, ECAI 2025): every edge is an
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
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nas import _rule_genes
from biojax.nas import space as space_lib
from biojax.nas.nb201.genotypes import (
    CONV_OPERATIONS,
    EDGE_NAME,
    EDGES,
    MACRO_LAYERS,
    NAMED_CELLS,
    NUM_EDGES,
    OPERATIONS,
    edge_name,
)
from biojax.nas.nb201.network import NB201Network

Array = jax.Array

DEFAULT_RULES = _rule_genes.DEFAULT_RULES  # the quickstart's alphabet (see its comment)
OPERATION_GENES = slice(0, NUM_EDGES)
EDGE_RULE_GENES = slice(NUM_EDGES, 2 * NUM_EDGES)
MACRO_RULE_GENES = slice(2 * NUM_EDGES, 2 * NUM_EDGES + len(MACRO_LAYERS))
NUM_GENES = 2 * NUM_EDGES + len(MACRO_LAYERS)  # 20


class Genotype(NamedTuple):
  """A genome in words (:meth:`NB201Space.decode`)."""

  operations: tuple[str, ...]  # one per edge, in EDGES order
  edge_rules: tuple[str, ...]  # one rule spec per edge, in EDGES order
  macro_rules: dict[str, str]  # {layer: rule spec} for MACRO_LAYERS


@dataclasses.dataclass(frozen=True)
class NB201Space(_rule_genes.CellRuleSpace):
  """The static description of the genome: which rules the rule genes choose among.

  Attributes:
    rules: the rule alphabet of the edge rule genes: rule specs (``"fa"``, ``"usf+eg"``);
      gene value ``k`` means ``rules[k]``.
    macro_rules: the alphabet of the stem, reduction-block and classifier genes; ``None``
      means the same as ``rules``. A single entry (``("bp",)``) fixes those layers' rule: the
      genes then have one value and never mutate.
  """

  macro_layers: ClassVar[tuple[str, ...]] = MACRO_LAYERS
  macro_rule_genes: ClassVar[slice] = MACRO_RULE_GENES
  _cells: ClassVar[str] = "the cell"

  # ---------------------------------------------------------------- gene layout
  @property
  def gene_sizes(self) -> tuple[int, ...]:
    """The number of values of each of the :data:`NUM_GENES` genes."""
    return ((len(OPERATIONS),) * NUM_EDGES + (len(self.rules),) * NUM_EDGES
            + (len(self.macro_alphabet),) * len(MACRO_LAYERS))

  @property
  def architecture_genes(self) -> slice:
    """The architecture genes (the operations): equal ones mean the same network shape."""
    return OPERATION_GENES

  def describe_gene(self, g: int) -> str:
    """What gene ``g`` means, in words."""
    if g < NUM_EDGES:
      return f"operation of edge {EDGES[g][0]}<-{EDGES[g][1]}"
    if g < 2 * NUM_EDGES:
      i, j = EDGES[g - NUM_EDGES]
      return f"rule of edge {i}<-{j}"
    return f"rule of layer {MACRO_LAYERS[g - 2 * NUM_EDGES]}"

  def _gene_values(self, g: int) -> Sequence[str]:
    if g < NUM_EDGES:
      return OPERATIONS
    return self.rules if g < 2 * NUM_EDGES else self.macro_alphabet

  # ---------------------------------------------------------------- words <-> genome
  def decode(self, genome) -> Genotype:
    """The genome in words."""
    g = self._one(genome, "decode")
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
    ops = [_operation_id(op, e) for e, op in enumerate(operations)]
    edge_rules = _rule_genes.per_edge(edge_rules, NUM_EDGES, "A cell")
    edge_genes = [_rule_genes.rule_index(r, self.rules, f"edge {EDGES[e][0]}<-{EDGES[e][1]}")
                  for e, r in enumerate(edge_rules)]
    return np.asarray(ops + edge_genes + self._encode_macro(macro_rules), np.int32)

  def to_string(self, genome) -> str:
    """The string form (module docstring); :meth:`from_string` is its inverse."""
    genotype = self.decode(genome)
    nodes = []
    for node in range(1, 4):
      tokens = [f"{genotype.operations[e]}:{genotype.edge_rules[e]}~{j}"
                for e, (i, j) in enumerate(EDGES) if i == node]
      nodes.append("|" + "|".join(tokens) + "|")
    return "+".join(nodes) + "@" + self._macro_string(genotype.macro_rules)

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
      seen = set()
      for token in body.split("|"):
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
        op, _, spec = left.partition(":")
        operations[e] = op.strip()
        edge_rules[e] = _rule_genes.token_rule(
            spec, rule, f"No rule for edge {node}<-{j} ({token!r}): write "
                        f"'{op}:RULE~{j}' or pass rule=.")
      if len(seen) != node:
        raise ValueError(f"Node {node} of {cell!r} has {len(seen)} edges; expected {node} "
                         f"(one from each of the nodes 0..{node - 1}).")
    return self.encode(operations, edge_rules, self._parse_macro(macro, rule))

  def named(self, name: str, rule: str = "bp") -> np.ndarray:
    """The genome of a named cell (:data:`NAMED_CELLS`) with ``rule`` on every layer."""
    if name not in NAMED_CELLS:
      raise ValueError(f"Unknown cell {name!r}. Named cells: {', '.join(NAMED_CELLS)}.")
    return self.from_string(NAMED_CELLS[name], rule=rule)

  # ---------------------------------------------------------------- jittable helpers
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

  # ---------------------------------------------------------------- rules
  def rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, layer name, alphabet)`` of every rule gene, in gene order: the edges
    (``edge_<to>_<from>``, alphabet ``rules``), then :data:`MACRO_LAYERS` (alphabet
    ``macro_alphabet``)."""
    edges = tuple((NUM_EDGES + e, edge_name(e), self.rules) for e in range(NUM_EDGES))
    return edges + self._macro_rule_genes()

  @staticmethod
  def gene_of_layer(name: str) -> tuple[int, int]:
    """(gene, alphabet group: 0 edge rules, 1 macro rules) of weight layer ``name``: each
    edge's rule gene goes to the convolutions on that edge in every cell (those of operations
    the genome does not choose get it too: their output is never selected, so their rule does
    not matter); each of :data:`MACRO_LAYERS` has its own gene."""
    if name in MACRO_LAYERS:
      return 2 * NUM_EDGES + MACRO_LAYERS.index(name), 1
    for part in name.split("/"):
      match = EDGE_NAME.match(part)
      if match and tuple(int(c) for c in match.groups()) in EDGES:
        return NUM_EDGES + EDGES.index(tuple(int(c) for c in match.groups())), 0
    raise ValueError(
        f"Layer {name!r} is not a weight layer of the NAS-Bench-201 network: expected an edge "
        f"convolution (.../edge_<i>_<j>/...) or one of {', '.join(MACRO_LAYERS)}.")

  # ---------------------------------------------------------------- networks
  def build_network(self, settings: Mapping[str, Any], num_classes: int,
                    options: rules_lib.RuleOptions, dfa: bool, genome=None) -> NB201Network:
    """``NB201Network(settings["C"], settings["N"])``; every genome shares it (``genome`` is
    not needed: the operations are data)."""
    del genome
    return NB201Network(C=settings["C"], N=settings["N"], num_classes=num_classes, dfa=dfa,
                        options=options)

  def parameter_count(self, params: Mapping, genome) -> int:
    """Parameters of the architecture ``genome`` chooses (those of unchosen convolutions
    on the edges, which :class:`NB201Network` also holds, are not counted); as
    NAS-Bench-201 counts them: weights, biases and BN scales/offsets."""
    ops = self.validate(genome)[OPERATION_GENES]
    total = 0
    for path, leaf in traverse_util.flatten_dict(flax.core.unfreeze(params)).items():
      edge = next((p for p in path if EDGE_NAME.match(p)), None)
      if edge is not None:
        e = EDGES.index(tuple(int(c) for c in EDGE_NAME.match(edge).groups()))
        op = next(v[0] for k, v in CONV_OPERATIONS.items()
                  if any(p.startswith(k) for p in path))
        if ops[e] != op:
          continue
      total += int(np.prod(np.shape(leaf)))
    return total


def _operation_id(op: str, e: int) -> int:
  if op not in OPERATIONS:
    i, j = EDGES[e]
    raise ValueError(f"Unknown operation {op!r} on edge {i}<-{j}. Valid operations: "
                     f"{', '.join(OPERATIONS)}.")
  return OPERATIONS.index(op)


space_lib.register_space("nb201", NB201Space.from_config)
