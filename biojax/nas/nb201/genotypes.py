"""NAS-Bench-201's cell: its operations, its edges, the layers outside it, named cells.

NAS-Bench-201 (Dong & Yang 2020, ICLR, arXiv:2001.00326): a cell is a DAG of 4 nodes whose 6
edges ``i <- j`` (``0 <= j < i <= 3``) each carry one of 5 operations, so the space holds
``5**6 = 15,625`` cells; node ``i`` is the sum of its incoming edges and node 3 is the cell's
output.
"""

from __future__ import annotations

import re

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

EDGE_NAME = re.compile(r"^edge_(\d)_(\d)$")


def edge_name(e: int) -> str:
  """The module name of edge ``e`` in every cell: ``edge_<to>_<from>``."""
  i, j = EDGES[e]
  return f"edge_{i}_{j}"
