"""The NAS-Bench-201 cell space with a learning-rule gene on every weight layer.

NAS-Bench-201 (Dong & Yang 2020, ICLR, arXiv:2001.00326) with rules (Hamzaoui
& Baghdadi 2025): every edge of the cell is an (operation, rule) pair, and every other weight
layer of the skeleton has a rule gene too. The operations are data, so one compiled program
serves every architecture.

- :mod:`~biojax.nas.nb201.genotypes`: the cell's operations, edges, macro layers and named
  cells;
- :mod:`~biojax.nas.nb201.network`: :class:`NB201Network` and :class:`NB201Cell`;
- :mod:`~biojax.nas.nb201.space`: :class:`NB201Space`, the genome (registered as ``"nb201"``).
"""

from biojax.nas.nb201.genotypes import (
    CONV_OPERATIONS,
    EDGES,
    MACRO_LAYERS,
    NAMED_CELLS,
    NUM_ARCHITECTURES,
    NUM_EDGES,
    OPERATIONS,
    edge_name,
)
from biojax.nas.nb201.network import NB201Cell, NB201Network
from biojax.nas.nb201.space import (
    DEFAULT_RULES,
    EDGE_RULE_GENES,
    MACRO_RULE_GENES,
    NUM_GENES,
    OPERATION_GENES,
    Genotype,
    NB201Space,
)

__all__ = [
    "CONV_OPERATIONS", "DEFAULT_RULES", "EDGES", "EDGE_RULE_GENES", "MACRO_LAYERS",
    "MACRO_RULE_GENES", "NAMED_CELLS", "NUM_ARCHITECTURES", "NUM_EDGES", "NUM_GENES",
    "OPERATIONS", "OPERATION_GENES", "Genotype", "NB201Cell", "NB201Network", "NB201Space",
    "edge_name",
]
