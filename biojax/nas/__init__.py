"""Neural architecture and learning-rule search: search spaces, genomes, strategies and the
population evaluator."""

from biojax.nas import evaluator, evolution, genome, nb201
from biojax.nas.candidate import ARCHITECTURE, CandidateState, as_candidate
from biojax.nas.evaluator import PopulationEvaluator
from biojax.nas.evolution import EvolutionState, RandomSearch, RegularizedEvolution
from biojax.nas.genome import check_genomes, mutate, random_genomes
from biojax.nas.nb201 import NB201Cell, NB201Network, NB201Space

__all__ = [
    "ARCHITECTURE", "CandidateState", "EvolutionState", "NB201Cell", "NB201Network",
    "NB201Space", "PopulationEvaluator", "RandomSearch", "RegularizedEvolution", "as_candidate",
    "check_genomes", "evaluator",
    "evolution", "genome", "mutate", "nb201", "random_genomes",
]
