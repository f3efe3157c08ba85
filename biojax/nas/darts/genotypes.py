"""DARTS's architectures: its operations, the cell layout and genotypes, as in the authors'
``genotypes.py`` (quark0/darts, cnn/genotypes.py).

DARTS (Liu, Simonyan & Yang 2019, ICLR, arXiv:1806.09055): a cell is a DAG with 2 input nodes
(node 0 and node 1: the outputs of the two previous cells) and 4 intermediate nodes
(2, 3, 4, 5). Each intermediate node keeps 2 incoming edges, each from an earlier node and
carrying one operation; the node is the sum of its two edges, and the cell's output is the
concatenation of nodes 2..5 along channels. A network stacks a *normal* cell genotype and a
*reduction* cell genotype (the reduction cell applies stride 2 to the edges that leave its
input nodes and doubles the channels).

Operations: DARTS's ``PRIMITIVES`` without ``none`` (:data:`OPERATIONS`). DARTS searches with
``none`` but never keeps it (its genotypes take the strongest operation other than ``none`` on
each kept edge), so no DARTS genotype holds it.
"""

from __future__ import annotations

from typing import NamedTuple

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
VARIANTS = ("cifar", "imagenet")  # the networks' stems (NetworkCIFAR, NetworkImageNet)


class Genotype(NamedTuple):
  """A DARTS architecture, as in the authors' ``genotypes.py``: ``normal`` and ``reduce``
  list 8 ``(operation, input)`` pairs, two per intermediate node; ``*_concat`` are the nodes
  concatenated into the cell's output (always 2..5 in this space)."""

  normal: tuple[tuple[str, int], ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[tuple[str, int], ...]
  reduce_concat: tuple[int, ...]


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
      operation_id(op, cell, e)
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


def operation_id(op: str, cell: str, e: int) -> int:
  """The gene value of operation ``op`` on edge ``e`` of ``cell`` (errors name the edge)."""
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
