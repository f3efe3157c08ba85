"""The search-space protocol and registry: the registry lists the built-in spaces and names
the valid ones for an unknown name, and every registered space keeps the protocol's
contract (genomes validate; words and strings round-trip; every gene is an architecture gene
or a rule gene, exactly once; the assignment names exactly the network's weight layers; the
parameter count equals one computed independently from the parameter tree's shapes).

Networks are only traced (``jax.eval_shape``): nothing here compiles a program."""

import re

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from biojax import nas, rules
from biojax.nas import search as search_lib
from biojax.nas import space as space_lib

BUILT_IN = ("darts", "layer_rules", "nb201")
NUM_CLASSES = 5
# A small network of each registered space (a new space adds its own line).
SMALL = {
    "nb201": {"rules": ("bp", "fa", "dfa", "usf+eg"), "macro_rules": ("bp", "kp"), "C": 4,
              "N": 1},
    "darts": {"rules": ("bp", "fa", "dfa"), "macro_rules": ("bp",), "C": 4, "layers": 3,
              "variant": "cifar"},
    "layer_rules": {"rules": ("bp", "fa", "usf+eg", "dfa"), "hidden": (8, 6)},
}
SAMPLE = np.zeros((1, 8, 8, 1), np.float32)
# NAS-Bench-201's operations and edges, written out (not read from biojax.nas.nb201).
NB201_OPERATIONS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
NB201_EDGES = ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]


def config_of(name: str) -> ml_collections.ConfigDict:
  assert name in SMALL, f"Add a small network of space {name!r} to SMALL."
  return ml_collections.ConfigDict({"space": {"name": name, **SMALL[name]},
                                    "rule_options": {}})


def sizes(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def nb201_unchosen(params, genome) -> int:
  """Parameters of the edge operations the genome does not choose: in every cell, each
  ``edge_i_j`` holds ``nor_conv_1x1`` and ``nor_conv_3x3`` (and their ``_bn``)."""
  total = 0
  for cell, modules in params.items():
    for edge, operations in modules.items() if cell.startswith("stage") else ():
      chosen = NB201_OPERATIONS[int(genome[NB201_EDGES.index(edge)])]
      total += sum(sizes(tree) for op, tree in operations.items()
                   if op.removesuffix("_bn") != chosen)
  return total


# Parameters a space's network holds beyond the genome's architecture (default: none).
UNCHOSEN = {"nb201": nb201_unchosen}


def test_the_registry_lists_the_built_in_spaces():
  assert set(BUILT_IN) <= set(nas.space_names())
  assert list(nas.space_names()) == sorted(nas.space_names())
  assert type(nas.get_space("nb201")) is nas.NB201Space
  assert type(nas.get_space("darts")) is nas.darts.DartsSpace
  assert type(nas.get_space("layer_rules")) is nas.LayerRuleSpace
  # The factory reads config.space: rules and macro rules, canonicalised.
  space = nas.get_space("nb201", {"rules": ["fa", "bp+eg"], "macro_rules": ["bp"]})
  assert space == nas.NB201Space(rules=("fa", "eg"), macro_rules=("bp",))
  assert nas.get_space("layer_rules", {"rules": ("bp",), "hidden": (4, 4, 4)}).num_layers == 4


def test_an_unknown_space_names_the_valid_ones():
  with pytest.raises(ValueError, match=re.escape("Unknown search space 'nb301'. Valid spaces: "
                                                 "darts, layer_rules, nb201")):
    nas.get_space("nb301")
  config = config_of("nb201")
  config.space.name = "nb301"
  with pytest.raises(ValueError, match="Valid spaces: darts, layer_rules, nb201"):
    search_lib.build_space(config)


def test_a_space_registered_from_outside_is_found_by_name():
  seen = []

  def factory(settings):
    seen.append(dict(settings))
    return nas.LayerRuleSpace(tuple(settings["rules"]), 2)

  nas.register_space("two_layers", factory)
  try:
    with pytest.raises(ValueError, match="already registered"):
      nas.register_space("two_layers", factory)
    assert "two_layers" in nas.space_names()
    config = ml_collections.ConfigDict({"space": {"name": "two_layers", "rules": ("fa",)}})
    assert search_lib.build_space(config) == nas.LayerRuleSpace(("fa",), 2)
    assert seen == [{"name": "two_layers", "rules": ("fa",)}]
  finally:
    space_lib.unregister_space("two_layers")
  assert "two_layers" not in nas.space_names()


@pytest.mark.parametrize("name", nas.space_names())
def test_protocol(name):
  config = config_of(name)
  space = search_lib.build_space(config)
  assert isinstance(space, nas.SearchSpace)
  G = space.num_genes
  assert len(space.gene_sizes) == G and min(space.gene_sizes) >= 1

  # Random genomes: in range, valid, every gene described; out of range is named.
  genomes = np.asarray(space.random_genomes(jax.random.key(0), 64))
  assert genomes.shape == (64, G) and genomes.dtype == np.int32
  assert ((genomes >= 0) & (genomes < np.asarray(space.gene_sizes))).all()
  np.testing.assert_array_equal(space.validate(genomes), genomes)
  for g in range(G):
    bad = genomes[0].copy()
    bad[g] = space.gene_sizes[g]
    with pytest.raises(ValueError, match=rf"Gene {g} \({re.escape(space.describe_gene(g))}"):
      space.validate(bad)

  # Words and strings round-trip.
  for genome in genomes:
    np.testing.assert_array_equal(space.encode(*space.decode(genome)), genome)
    np.testing.assert_array_equal(space.from_string(space.to_string(genome)), genome)
    assert isinstance(space.cell_string(genome), str)

  # Every gene is an architecture gene or a rule gene, exactly once; a rule gene's alphabet
  # has its gene's size.
  architecture = list(range(G))[space.architecture_genes]
  rule_genes = space.rule_genes()
  assert sorted(architecture + [g for g, _, _ in rule_genes]) == list(range(G))
  assert len({layer for _, layer, _ in rule_genes}) == len(rule_genes)
  for g, _, alphabet in rule_genes:
    assert len(alphabet) == space.gene_sizes[g]
  reached = {rules.get_rule(rules.parse_rule_spec(s)[0]).name for _, _, a in rule_genes
             for s in a}
  assert space.rule_names == tuple(r for r in rules.rule_names() if r in reached)
  assert set(space.rules) <= {s for _, _, a in rule_genes for s in a}

  # Jittable helpers agree with their eager results.
  expressed = np.asarray(space.expressed_genes(genomes))
  assert expressed.shape == (64, G) and expressed.dtype == bool
  np.testing.assert_array_equal(np.asarray(jax.jit(space.expressed_genes)(genomes)), expressed)
  jax.tree.map(np.testing.assert_array_equal, jax.jit(space.architecture)(genomes),
               space.architecture(genomes))

  # Networks: the model of a genome, its assignment and its parameter count.
  model = search_lib.build_network(config, space, NUM_CLASSES)
  assert model.options.rules == space.rule_names
  count = search_lib.parameter_counter(space, model, SAMPLE, jax.random.key(0))
  for genome in genomes[:4]:
    network = space.network_for(model, genome)
    assert network == space.network_for(search_lib.build_network(
        config, space, NUM_CLASSES, genome=genome), genome)
    variables = jax.eval_shape(lambda k, n=network: n.init(k, SAMPLE, train=False),
                               jax.random.key(0))
    params = variables["params"]
    kernels = {"/".join(path[:-1]) for path in traverse_util.flatten_dict(params)
               if path[-1] == "kernel"}
    assignment = space.assignment_fn(variables, network.options)(genomes[:3])
    assert set(assignment.layers) == kernels == set(assignment.rule) == set(assignment.geometry)
    ids = {rules.rule_id(r) for r in space.rule_names}
    for layer in kernels:
      assert assignment.rule[layer].shape == (3,) and set(
          np.asarray(assignment.rule[layer]).tolist()) <= ids
    reference = sizes(params) - UNCHOSEN.get(name, lambda p, g: 0)(params, genome)
    assert space.parameter_count(params, genome) == reference == count(genome)

  # Equal program keys share one network; different ones do not.
  keys = [space.program_key(g) for g in genomes[:8]]
  for i in range(8):
    for j in range(8):
      same = space.network_for(model, genomes[i]) == space.network_for(model, genomes[j])
      assert same == (keys[i] == keys[j])

  # The evaluator factory takes config.proxy (building it compiles nothing).
  proxy = {"steps": 2, "batch_size": 4, "optimizer": "sgd", "learning_rate": 0.1,
           "momentum": 0.0, "weight_decay": 0.0, "clip_norm": 0.0, "schedule": "constant",
           "warmup_steps": 0, "strategy": None, "chunk_size": 8, "compiler_options": {}}
  assert callable(space.evaluator(model, proxy).evaluate)
