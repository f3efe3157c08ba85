"""Neural architecture and learning-rule search: search spaces (one protocol, a registry by
name), genomes, strategies and the population evaluator.

Importing this package registers the built-in spaces: ``nb201``, ``darts`` and
``layer_rules`` (:func:`space_names`, :func:`get_space`).
"""

from biojax.nas import darts, evaluator, evolution, genome, layer_rules, nb201, space
from biojax.nas.candidate import ARCHITECTURE, CandidateState, as_candidate
from biojax.nas.evaluator import PopulationEvaluator
from biojax.nas.evolution import EvolutionState, RandomSearch, RegularizedEvolution
from biojax.nas.genome import check_genomes, mutate, random_genomes
from biojax.nas.layer_rules import LayerRuleSpace
from biojax.nas.nb201 import NB201Cell, NB201Network, NB201Space
from biojax.nas.space import SearchSpace, get_space, register_space, space_names

__all__ = [
    "ARCHITECTURE", "CandidateState", "EvolutionState", "LayerRuleSpace", "NB201Cell",
    "NB201Network", "NB201Space", "PopulationEvaluator", "RandomSearch", "RegularizedEvolution",
    "SearchSpace", "as_candidate", "check_genomes", "darts", "evaluator", "evolution",
    "genome", "get_space", "layer_rules", "mutate", "nb201", "random_genomes",
    "register_space", "space", "space_names",
]
