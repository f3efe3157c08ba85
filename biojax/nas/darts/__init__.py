"""The DARTS cell space with a learning-rule gene on every kept operation.

DARTS (Liu, Simonyan & Yang 2019, ICLR, arXiv:1806.09055) with rules (Hamzaoui
& Baghdadi 2025): every kept edge is an (input, operation, rule) triple, and the weight layers
outside the edges have rule genes too. The architecture is compiled into the network: one
program set per distinct architecture, the rule genes batched inside.

- :mod:`~biojax.nas.darts.genotypes`: operations, cell layout, :class:`Genotype`, the
  authors' named genotypes;
- :mod:`~biojax.nas.darts.network`: :class:`DartsNetwork` and its parts;
- :mod:`~biojax.nas.darts.space`: :class:`DartsSpace`, the genome (registered as
  ``"darts"``);
- :mod:`~biojax.nas.darts.evaluator`: :class:`DartsEvaluator`, one cached population
  evaluator per architecture.
"""

from biojax.nas.darts.evaluator import DartsEvaluator, group_plan
from biojax.nas.darts.genotypes import (
    CELL_TYPES,
    CONCAT,
    CONV_OPERATIONS,
    EDGE_NODES,
    EDGES_PER_CELL,
    NAMED_GENOTYPES,
    NUM_INTERMEDIATE_NODES,
    OPERATIONS,
    VARIANTS,
    Genotype,
    as_genotype,
)
from biojax.nas.darts.network import (
    DartsCell,
    DartsNetwork,
    DartsOperation,
    FactorizedReduce,
    ReLUConvBN,
)
from biojax.nas.darts.space import (
    ARCHITECTURE_GENES,
    MACRO_LAYERS,
    MACRO_RULE_GENES,
    NUM_GENES,
    RULE_GENES,
    DartsSpace,
    RuleGenotype,
    input_gene,
    operation_gene,
    parameter_count,
    rule_gene,
)

__all__ = [
    "ARCHITECTURE_GENES", "CELL_TYPES", "CONCAT", "CONV_OPERATIONS", "EDGES_PER_CELL",
    "EDGE_NODES", "MACRO_LAYERS", "MACRO_RULE_GENES", "NAMED_GENOTYPES", "NUM_GENES",
    "NUM_INTERMEDIATE_NODES", "OPERATIONS", "RULE_GENES", "VARIANTS", "DartsCell",
    "DartsEvaluator", "DartsNetwork", "DartsOperation", "DartsSpace", "FactorizedReduce",
    "Genotype", "ReLUConvBN", "RuleGenotype", "as_genotype", "group_plan", "input_gene",
    "operation_gene", "parameter_count", "rule_gene",
]
