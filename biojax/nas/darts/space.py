"""The DARTS genome: the two cells' kept edges and a learning-rule gene on every kept operation
(registered as ``"darts"``).

biojax adds rules to the DARTS cell space (Hamzaoui & Baghdadi, ECAI 2025): every
kept edge is an (input, operation, rule) triple, and the weight layers outside the edges have
rule genes too.

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

Programs
--------
The architecture is compiled into :class:`~biojax.nas.darts.DartsNetwork` (its ``genotype``):
:meth:`DartsSpace.program_key` is the 32 architecture genes, :meth:`DartsSpace.network_for`
the network of one architecture, and :meth:`DartsSpace.evaluator` a
:class:`~biojax.nas.darts.DartsEvaluator`, one program set per distinct architecture.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from biojax import rules as rules_lib
from biojax.nas import _rule_genes
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import space as space_lib
from biojax.nas.darts.evaluator import DartsEvaluator
from biojax.nas.darts.genotypes import (
    CELL_TYPES,
    CONCAT,
    CONV_OPERATIONS,
    EDGE_NODES,
    EDGES_PER_CELL,
    NAMED_GENOTYPES,
    OPERATIONS,
    Genotype,
    as_genotype,
    operation_id,
)
from biojax.nas.darts.network import DartsNetwork

Array = jax.Array

# The weight layers outside the cell edges, one rule gene per kind.
MACRO_LAYERS: tuple[str, ...] = ("stem", "preprocess", "classifier")

ARCHITECTURE_GENES = slice(0, 2 * 2 * EDGES_PER_CELL)  # 0-31
RULE_GENES = slice(32, 32 + 2 * EDGES_PER_CELL)  # 32-47
MACRO_RULE_GENES = slice(48, 48 + len(MACRO_LAYERS))  # 48-50
NUM_GENES = 48 + len(MACRO_LAYERS)  # 51


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


class RuleGenotype(NamedTuple):
  """A genome in words (:meth:`DartsSpace.decode`): the architecture and every rule."""

  genotype: Genotype
  normal_rules: tuple[str, ...]  # one rule spec per normal-cell edge
  reduce_rules: tuple[str, ...]  # one rule spec per reduction-cell edge
  macro_rules: dict[str, str]  # {layer kind: rule spec} for MACRO_LAYERS


_CELL_NAME = re.compile(r"^(normal|reduce)(\d+)$")
_EDGE_NAME = re.compile(r"^edge(\d)$")
_CELL_FIELD = re.compile(r"(\w+)\s*=\s*(\[[^\]]*\]|range\s*\([^)]*\))")
_EDGE_TOKEN = re.compile(
    r"\(\s*['\"]?\s*([A-Za-z0-9_]+)\s*(?::\s*([^,'\"()]+?))?\s*['\"]?\s*,\s*(-?\d+)\s*\)")


@dataclasses.dataclass(frozen=True)
class DartsSpace(_rule_genes.CellRuleSpace):
  """The static description of the genome: which rules the rule genes choose among.

  Attributes:
    rules: the rule alphabet of the edge rule genes: rule specs (``"fa"``, ``"usf+eg"``);
      gene value ``k`` means ``rules[k]``.
    macro_rules: the alphabet of the stem, preprocessing and classifier genes; ``None``
      means the same as ``rules``. A single entry (``("bp",)``) fixes those layers' rule.
  """

  macro_layers: ClassVar[tuple[str, ...]] = MACRO_LAYERS
  macro_rule_genes: ClassVar[slice] = MACRO_RULE_GENES
  _macro_noun: ClassVar[str] = "layer kinds"

  # ---------------------------------------------------------------- gene layout
  @property
  def gene_sizes(self) -> tuple[int, ...]:
    """The number of values of each of the :data:`NUM_GENES` genes (input genes differ by
    node: 2, 2, 3, 3, 4, 4, 5, 5)."""
    cell = EDGE_NODES + (len(OPERATIONS),) * EDGES_PER_CELL
    return (cell * 2 + (len(self.rules),) * (2 * EDGES_PER_CELL)
            + (len(self.macro_alphabet),) * len(MACRO_LAYERS))

  @property
  def architecture_genes(self) -> slice:
    """The architecture genes (inputs and operations, 0-31): equal ones mean one program."""
    return ARCHITECTURE_GENES

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

  def _gene_values(self, g: int) -> Sequence[str]:
    if g < ARCHITECTURE_GENES.stop:
      kind, e = divmod(g % (2 * EDGES_PER_CELL), EDGES_PER_CELL)
      return (tuple(f"node {j}" for j in range(EDGE_NODES[e])), OPERATIONS)[kind]
    return self.rules if g < RULE_GENES.stop else self.macro_alphabet

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
    :class:`~biojax.nas.darts.DartsNetwork`)."""
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
      edge_rules = _rule_genes.per_edge(normal_rules if c == 0 else reduce_rules,
                                        EDGES_PER_CELL, f"A {cell} cell")
      for e, (op, j) in enumerate(getattr(genotype, cell)):
        genes[input_gene(c, e)] = j
        genes[operation_gene(c, e)] = operation_id(op, cell, e)
        genes[rule_gene(c, e)] = _rule_genes.rule_index(edge_rules[e], self.rules,
                                                        f"{cell} edge {e}")
    genes[MACRO_RULE_GENES] = self._encode_macro(macro_rules)
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
    return ",".join(cells) + "@" + self._macro_string(words.macro_rules)

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
      rules[cell] = [
          _rule_genes.token_rule(spec, rule, f"No rule for edge {e} of the {cell} cell "
                                             f"({op},{j}): write '({op}:RULE,{j})' or pass "
                                             "rule=.")
          for e, (op, spec, j) in enumerate(tokens)]
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
    return self.encode(genotype, rules["normal"], rules["reduce"],
                       self._parse_macro(macro, rule))

  def named(self, name: str, rule: str = "bp") -> np.ndarray:
    """The genome of a named genotype (:data:`NAMED_GENOTYPES`) with ``rule`` everywhere."""
    if name not in NAMED_GENOTYPES:
      raise ValueError(f"Unknown genotype {name!r}. Named genotypes: "
                       f"{', '.join(NAMED_GENOTYPES)}.")
    return self.encode(NAMED_GENOTYPES[name], rule, rule, rule)

  # ---------------------------------------------------------------- jittable helpers
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

  def architecture(self, genome: Array) -> dict:
    """The ``architecture`` collection (:class:`biojax.nas.CandidateState`): empty, because
    a DARTS architecture is compiled into :class:`~biojax.nas.darts.DartsNetwork` (its
    ``genotype``). This lets :class:`biojax.nas.PopulationEvaluator` evaluate a population
    that shares one architecture (:class:`~biojax.nas.darts.DartsEvaluator` groups a
    population so)."""
    del genome
    return {}

  # ---------------------------------------------------------------- rules
  def rule_genes(self) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """``(gene, layer name, alphabet)`` of every rule gene, in gene order: the edges
    (``normal/edge<e>``, ``reduce/edge<e>``, alphabet ``rules``), then :data:`MACRO_LAYERS`
    (alphabet ``macro_alphabet``)."""
    edges = tuple((rule_gene(c, e), f"{cell}/edge{e}", self.rules)
                  for c, cell in enumerate(CELL_TYPES) for e in range(EDGES_PER_CELL))
    return edges + self._macro_rule_genes()

  @staticmethod
  def gene_of_layer(name: str) -> tuple[int, int]:
    """(gene, alphabet group: 0 edge rules, 1 macro rules) of weight layer ``name`` of a
    :class:`~biojax.nas.darts.DartsNetwork` of any architecture: each edge's rule gene goes
    to every convolution of that edge's operation, in every cell of that type
    (``normal<i>/edge<e>/...`` or ``reduce<i>/edge<e>/...``); ``stem*`` layers get the
    ``stem`` gene, ``.../preprocess0|1/...`` the ``preprocess`` gene, and ``classifier`` its
    own. The architecture genes are not read: the network's genotype is compiled in."""
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

  # ---------------------------------------------------------------- networks and programs
  def build_network(self, settings: Mapping[str, Any], num_classes: int,
                    options: rules_lib.RuleOptions, dfa: bool, genome=None) -> DartsNetwork:
    """``DartsNetwork(genotype, settings["C"], settings["layers"], settings["variant"])``
    with ``genome``'s architecture (``None``: DARTS-V2; :meth:`network_for` swaps in each
    architecture's)."""
    genotype = NAMED_GENOTYPES["darts_v2"] if genome is None else self.genotype(genome)
    return DartsNetwork(genotype=genotype, C=settings["C"], layers=settings["layers"],
                        num_classes=num_classes, variant=settings["variant"], dfa=dfa,
                        options=options)

  def program_key(self, genome) -> tuple[int, ...]:
    """The architecture genes (0-31) of one concrete genome as a hashable tuple: genomes
    with equal keys share one compiled program."""
    return tuple(int(v) for v in self._one(genome, "program_key")[ARCHITECTURE_GENES])

  def network_for(self, model: nn.Module, genome) -> nn.Module:
    """``model`` (a :class:`~biojax.nas.darts.DartsNetwork`) with ``genome``'s genotype."""
    return model.clone(genotype=self.genotype(genome))

  def parameter_count(self, params: Mapping, genome=None) -> int:
    """Parameters of a :class:`~biojax.nas.darts.DartsNetwork` as DARTS counts them
    (weights, biases, BN scales and offsets; the network holds only its own architecture,
    so ``genome`` is not needed and, if given, only validated)."""
    if genome is not None:
      self.validate(genome)
    return parameter_count(params)

  def evaluator(self, model: nn.Module, proxy: Mapping[str, Any], mesh: Mesh | None = None
                ) -> DartsEvaluator:
    """A :class:`~biojax.nas.darts.DartsEvaluator` (one program set per distinct
    architecture) with the settings of ``proxy``, ``proxy.group_size`` (None: 1 under the
    ``"sequential"`` strategy, whose programs do not depend on the number of candidates, so
    no padded copies are trained; else padding to powers of two) and ``proxy.cache_size``
    (architectures kept compiled; default 128)."""
    settings = evaluator_lib.proxy_settings(proxy)
    group_size = proxy.get("group_size")
    if group_size is None and settings["strategy"] == "sequential":
      group_size = 1
    if mesh is not None:
      settings["mesh"] = mesh
    steps, batch_size = settings.pop("steps"), settings.pop("batch_size")
    return DartsEvaluator(self, model, steps=steps, batch_size=batch_size,
                          group_size=group_size, cache_size=proxy.get("cache_size", 128),
                          settings=settings)


def parameter_count(params: Mapping) -> int:
  """The number of parameters in a ``params`` pytree (shapes or arrays)."""
  return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params)))


space_lib.register_space("darts", DartsSpace.from_config)
