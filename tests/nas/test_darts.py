"""The DARTS space with rule genes: genome format, parameter counts, operations against NumPy,
genome -> assignment, and evaluation compiled once per architecture.

The two evaluator programs (a tiny network, two architectures) take about 15 s each to
compile on a 2-core CPU without XLA's backend optimisations; everything else compiles
nothing or small operation programs."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import nas, rules
from biojax import nn as bnn
from biojax.compilation import CompileCounter
from biojax.nas import darts

# DARTS's PRIMITIVES (quark0/darts, cnn/genotypes.py), written out independently.
PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
# The authors' genotypes, as printed in their genotypes.py.
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
            "reduce_concat=[2, 3, 4, 5])")
DARTS_V1 = ("Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], "
            "reduce_concat=range(2, 6))")
SPACE = darts.DartsSpace()
VARIANTS = darts.VARIANTS
# XLA's backend optimisations off: the evaluator programs compile faster (as in the other
# NAS tests).
FAST_COMPILE = (("xla_backend_optimization_level", 0),)


# ----------------------------------------------------------------------------- genome format


def test_layout():
  assert darts.OPERATIONS == tuple(PRIMITIVES[1:])  # 'none' is never kept
  assert darts.NUM_GENES == SPACE.num_genes == 51
  cell = (2, 2, 3, 3, 4, 4, 5, 5) + (7,) * 8  # inputs of nodes 2,2,3,3,4,4,5,5; operations
  assert SPACE.gene_sizes == cell + cell + (8,) * 16 + (8,) * 3
  fixed = darts.DartsSpace(rules=("fa", "usf"), macro_rules=("bp",))
  assert fixed.gene_sizes == cell + cell + (2,) * 16 + (1,) * 3
  assert [darts.input_gene(1, 3), darts.operation_gene(1, 3), darts.rule_gene(1, 3)] == [
      19, 27, 43]
  # Every gene's description names its cell, edge and node.
  assert SPACE.describe_gene(19) == "input of reduce edge 3 (into node 3)"
  assert SPACE.describe_gene(27) == "operation of reduce edge 3 (into node 3)"
  assert SPACE.describe_gene(43) == "rule of reduce edge 3 (into node 3)"
  assert SPACE.describe_gene(49) == "rule of preprocess"


def test_named_genotypes_are_the_authors():
  for name, text in (("darts_v2", DARTS_V2), ("darts_v1", DARTS_V1)):
    g = SPACE.named(name, rule="usf")
    np.testing.assert_array_equal(SPACE.from_string(text, rule="usf"), g)
    words = SPACE.decode(g)
    assert words.genotype == darts.NAMED_GENOTYPES[name]
    assert words.normal_rules == words.reduce_rules == ("usf",) * 8
    assert set(words.macro_rules.values()) == {"usf"}
  v2 = SPACE.genotype(SPACE.named("darts_v2"))
  assert v2.normal[7] == ("dil_conv_3x3", 2) and v2.reduce[2] == ("skip_connect", 2)
  assert v2.normal_concat == v2.reduce_concat == (2, 3, 4, 5)
  with pytest.raises(ValueError, match="Named genotypes: darts_v2, darts_v1"):
    SPACE.named("best_cifar10")


def test_string_format():
  g = SPACE.named("darts_v2", rule="usf")
  assert SPACE.to_string(g) == (
      "normal=[(sep_conv_3x3:usf,0),(sep_conv_3x3:usf,1),(sep_conv_3x3:usf,0),"
      "(sep_conv_3x3:usf,1),(sep_conv_3x3:usf,1),(skip_connect:usf,0),(skip_connect:usf,0),"
      "(dil_conv_3x3:usf,2)],reduce=[(max_pool_3x3:usf,0),(max_pool_3x3:usf,1),"
      "(skip_connect:usf,2),(max_pool_3x3:usf,1),(max_pool_3x3:usf,0),(skip_connect:usf,2),"
      "(skip_connect:usf,2),(max_pool_3x3:usf,1)]@usf")
  mixed = SPACE.encode(darts.NAMED_GENOTYPES["darts_v2"], ["fa"] * 7 + ["kp"], "bp",
                       {"stem": "bp", "preprocess": "frsf", "classifier": "usf"})
  text = SPACE.to_string(mixed)
  assert "(dil_conv_3x3:kp,2)]" in text and "(max_pool_3x3:bp,1)]" in text
  assert text.endswith("]@stem:bp,preprocess:frsf,classifier:usf")
  # Rules left out of a string take `rule=`, edge by edge and layer by layer.
  partial = text.replace(":kp", "").replace(",classifier:usf", "")
  words = SPACE.decode(SPACE.from_string(partial, rule="dfa"))
  assert words.normal_rules == ("fa",) * 7 + ("dfa",)
  assert words.macro_rules == {"stem": "bp", "preprocess": "frsf", "classifier": "dfa"}


@pytest.mark.parametrize("space", [
    SPACE,
    darts.DartsSpace(rules=("fa", "usf+eg", "eg"), macro_rules=("bp", "frsf")),
    darts.DartsSpace(rules=("usf", "brsf"), macro_rules=("bp",)),
], ids=["default", "geometry", "fixed-macro"])
def test_encode_decode_string_round_trip(space):
  genomes = np.asarray(space.random_genomes(jax.random.key(0), 300))
  space.validate(genomes)
  for g in genomes:
    words = space.decode(g)
    np.testing.assert_array_equal(space.encode(*words), g)
    np.testing.assert_array_equal(space.from_string(space.to_string(g)), g)
    assert darts.as_genotype(words.genotype) == words.genotype == space.genotype(g)
  # Inputs are uniform over each node's own range: node n draws 0..n-1.
  inputs = genomes[:, [darts.input_gene(0, e) for e in range(8)]]
  assert [int(inputs[:, e].max()) for e in range(8)] == [1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize("call, message", [
    (lambda: SPACE.from_string(DARTS_V2.replace("'dil_conv_3x3'", "'none'"), rule="bp"),
     "Unknown operation 'none' on edge 7 of the normal cell .*never kept.* Valid operations: "
     "max_pool_3x3, avg_pool_3x3"),
    (lambda: SPACE.from_string(DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
                               rule="bp"),
     "Edge 7 of the normal cell goes into node 5, whose inputs are 0..4; got input 5"),
    (lambda: SPACE.from_string(DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]",
                                                "reduce_concat=[4, 5]"), rule="bp"),
     r"reduce_concat is \[4, 5\]"),
    (lambda: SPACE.from_string(DARTS_V2.replace("('sep_conv_3x3', 0), ", "", 1), rule="bp"),
     "Cannot parse the normal cell .* expected 8 edges"),
    (lambda: SPACE.from_string("normal=[(max_pool_3x3,0)]", rule="bp"), "Cannot parse"),
    (lambda: SPACE.from_string(DARTS_V2), "No rule for edge 0 of the normal cell"),
    (lambda: SPACE.from_string(DARTS_V2.replace("', 0)", ":bp', 0)")
                               .replace("', 1)", ":bp', 1)").replace("', 2)", ":bp', 2)")),
     "No rules for the layers outside the cells"),
    (lambda: SPACE.encode(darts.NAMED_GENOTYPES["darts_v2"], "feedback_alignment", "bp", "bp"),
     "Unknown learning rule 'feedback_alignment'. Valid rules: bp, fa"),
    (lambda: darts.DartsSpace(rules=("usf",)).named("darts_v2", rule="fa"),
     "Rule 'fa' .*normal edge 0.* not in this space's rule alphabet. Valid rules: usf"),
    (lambda: SPACE.encode(darts.NAMED_GENOTYPES["darts_v2"], ["fa"] * 7, "bp", "bp"),
     "8 edges; got 7 edge rules"),
    (lambda: SPACE.encode(darts.NAMED_GENOTYPES["darts_v2"], "fa", "bp",
                          {"stem": "bp", "head": "bp"}),
     "missing: preprocess, classifier; unknown: head"),
    (lambda: SPACE.validate(np.r_[[2], np.zeros(50)].astype(int)),
     r"Gene 0 \(input of normal edge 0 \(into node 2\): 0=node 0, 1=node 1\) is 2; "
     r"valid values are 0..1"),
    (lambda: SPACE.validate(np.r_[np.zeros(24), [7], np.zeros(26)].astype(int)),
     r"Gene 24 \(operation of reduce edge 0 .*6=dil_conv_5x5\) is 7"),
    (lambda: SPACE.validate(np.r_[np.zeros(50), [8]].astype(int)),
     r"Gene 50 \(rule of classifier: 0=bp, .*7=softhebb\) is 8"),
    (lambda: SPACE.validate(np.zeros(50, int)), r"51 genes .* got shape \(50,\)"),
    (lambda: SPACE.decode(np.zeros((2, 51), int)), r"one genome of shape \(51,\)"),
    (lambda: darts.DartsSpace(rules=("fa", "fa")), "lists a rule twice"),
    (lambda: darts.DartsEvaluator(SPACE, darts.DartsNetwork(), 1, 1, group_size=0),
     "group_size=0"),
])
def test_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_expressed_genes():
  g = SPACE.named("darts_v2")
  expressed = np.asarray(SPACE.expressed_genes(g))
  assert expressed[:32].all() and expressed[48:].all()
  # Normal cell: sep_conv x5, skip, skip, dil_conv.
  np.testing.assert_array_equal(expressed[32:40], [1, 1, 1, 1, 1, 0, 0, 1])
  # Reduction cell: pools never; skip_connect from node 2 is the identity: no weights.
  np.testing.assert_array_equal(expressed[40:48], 0)
  # A stride-2 skip_connect (from input 0 or 1 of the reduction cell) is a FactorizedReduce.
  other = SPACE.from_string(DARTS_V2.replace("('skip_connect', 2), ('max_pool_3x3', 1), "
                                             "('max_pool_3x3', 0)",
                                             "('skip_connect', 1), ('max_pool_3x3', 1), "
                                             "('max_pool_3x3', 0)"), rule="bp")
  assert np.asarray(SPACE.expressed_genes(other))[darts.rule_gene(1, 2)]
  batch = np.asarray(SPACE.expressed_genes(np.stack([g, other])))
  assert batch.shape == (2, 51)


def test_regularized_evolution_over_the_space():
  # Per-gene sizes and expressed_genes work inside the jitted evolution: every child is a
  # valid genome that differs from its parent in one expressed gene.
  strategy = nas.RegularizedEvolution(SPACE.gene_sizes, population_size=6, tournament_size=3,
                                      num_children=4, mutable_genes=SPACE.expressed_genes)
  ask = jax.jit(strategy.ask_with_parents)
  state = strategy.init()
  key = jax.random.key(7)
  for generation in range(3):
    key, ask_key, fitness_key = jax.random.split(key, 3)
    children, parents, _ = ask(ask_key, state)
    children = SPACE.validate(children)
    if generation == 2:  # the population is full: children are mutants
      population = np.asarray(state.genomes)[np.asarray(parents)]
      changed = children != population
      assert (changed.sum(axis=1) == 1).all()
      assert np.asarray(SPACE.expressed_genes(population))[changed].all()
    state = strategy.tell(state, children, jax.random.uniform(fitness_key, (4,)))


# ----------------------------------------------------------------------------- parameters


def darts_parameters(genotype, C, layers, classes, variant="cifar"):
  """DARTS's parameter count from the layer shapes, by hand (the authors' model.py and
  operations.py, as utils.count_parameters_in_MB counts it: convolutions without bias, BN
  scale and offset, classifier weights and bias; no auxiliary head)."""

  def relu_conv_bn(c_in, c_out):  # 1x1
    return c_in * c_out + 2 * c_out

  def factorized_reduce(c_in, c_out):
    return 2 * c_in * (c_out // 2) + 2 * c_out

  def operation(op, c, stride):
    if op in ("max_pool_3x3", "avg_pool_3x3"):
      return 0
    if op == "skip_connect":
      return 0 if stride == 1 else factorized_reduce(c, c)
    k = int(op[-1])
    half = c * k * k + c * c + 2 * c  # depthwise kxk, pointwise 1x1, BN
    return 2 * half if op.startswith("sep") else half

  if variant == "cifar":
    total = 9 * 3 * 3 * C + 2 * 3 * C
    c_pp = c_p = 3 * C
    reduction_prev = False
  else:
    total = (9 * 3 * (C // 2) + 2 * (C // 2)) + (9 * (C // 2) * C + 2 * C) + (9 * C * C + 2 * C)
    c_pp = c_p = C
    reduction_prev = True
  c = C
  for i in range(layers):
    reduction = i in (layers // 3, 2 * layers // 3)
    c *= 2 if reduction else 1
    total += factorized_reduce(c_pp, c) if reduction_prev else relu_conv_bn(c_pp, c)
    total += relu_conv_bn(c_p, c)
    for op, j in (genotype.reduce if reduction else genotype.normal):
      total += operation(op, c, 2 if reduction and j < 2 else 1)
    c_pp, c_p, reduction_prev = c_p, 4 * c, reduction
  return total + c_p * classes + classes


def network_parameters(genotype, C, layers, classes, variant="cifar", size=32):
  model = darts.DartsNetwork(genotype, C=C, layers=layers, num_classes=classes,
                             variant=variant, dfa=False)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  return darts.parameter_count(shapes["params"])


def test_parameter_count_of_darts_v2_on_cifar10():
  # The authors' train.py logs "param size = 3.349342MB" for DARTS-V2 at C=36, 20 cells,
  # 10 classes (utils.count_parameters_in_MB, which leaves the auxiliary head out); the
  # paper rounds it to 3.3M (Table 1).
  v2 = darts.NAMED_GENOTYPES["darts_v2"]
  assert network_parameters(v2, 36, 20, 10) == 3_349_342 == darts_parameters(v2, 36, 20, 10)
  # DARTS-V1 (first order): by hand only (no published exact count checked here).
  assert darts_parameters(darts.NAMED_GENOTYPES["darts_v1"], 36, 20, 10) == 3_169_414


def test_parameter_count_of_darts_v2_on_imagenet():
  # DARTS paper, Table 3: 4.7M parameters on ImageNet (C=48, 14 cells, mobile setting);
  # osmr/imgclsmob's DARTS model (converted from quark0/darts, no auxiliary head) lists
  # 4,718,752.
  v2 = darts.NAMED_GENOTYPES["darts_v2"]
  count = network_parameters(v2, 48, 14, 1000, "imagenet", size=224)
  assert count == 4_718_752 == darts_parameters(v2, 48, 14, 1000, "imagenet")


def test_parameter_count_by_hand_for_tiny_networks():
  genomes = np.asarray(SPACE.random_genomes(jax.random.key(4), 4))
  for g, (layers, variant) in zip(genomes, itertools.product((3, 5), VARIANTS), strict=True):
    genotype = SPACE.genotype(g)
    size = 8 if variant == "cifar" else 32
    assert network_parameters(genotype, 4, layers, 5, variant, size) == darts_parameters(
        genotype, 4, layers, 5, variant), (layers, variant, SPACE.to_string(g))



# ----------------------------------------------------------------------------- operations


def np_conv(x, w, stride, pad, dilation=1, depthwise=False):
  """NHWC x HWIO convolution with explicit loops over the kernel window; ``depthwise``:
  one filter per channel (kernel (k, k, 1, C))."""
  k = w.shape[0]
  span = dilation * (k - 1) + 1
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h = (x.shape[1] + 2 * pad - span) // stride + 1
  w_out = (x.shape[2] + 2 * pad - span) // stride + 1
  out = np.zeros((x.shape[0], h, w_out, w.shape[-1]))
  for a in range(k):
    for b in range(k):
      window = xp[:, a * dilation:a * dilation + stride * h:stride,
                  b * dilation:b * dilation + stride * w_out:stride, :]
      out += window * w[a, b, 0] if depthwise else window @ w[a, b]
  return out


def np_bn(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def relu(x):
  return np.maximum(x, 0.0)


def np_pool(x, stride, kind):
  """3x3 pooling with padding 1: max, or the average over the window inside the image."""
  fill = -np.inf if kind == "max" else 0.0
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=fill)
  ones = np.pad(np.ones_like(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
  h = (x.shape[1] - 1) // stride + 1
  w = (x.shape[2] - 1) // stride + 1
  windows = [xp[:, a:a + stride * h:stride, b:b + stride * w:stride]
             for a in range(3) for b in range(3)]
  if kind == "max":
    return np.max(windows, axis=0)
  counts = sum(ones[:, a:a + stride * h:stride, b:b + stride * w:stride]
               for a in range(3) for b in range(3))
  return sum(windows) / counts


def np_operation(op, x, p, s, stride):
  """DARTS's OPS (operations.py) in NumPy, evaluation mode."""
  if op == "max_pool_3x3":
    return np_pool(x, stride, "max")
  if op == "avg_pool_3x3":
    return np_pool(x, stride, "avg")
  if op == "skip_connect":
    if stride == 1:
      return x
    p, s = p["factorized_reduce"], s["factorized_reduce"]
    r = relu(x)
    return np_bn(np.concatenate([np_conv(r, p["conv_1"]["kernel"], 2, 0),
                                 np_conv(r[:, 1:, 1:], p["conv_2"]["kernel"], 2, 0)], -1),
                 p["bn"], s["bn"])
  k = int(op[-1])
  if op.startswith("dil"):
    h = np_conv(relu(x), p["dw"]["kernel"], stride, k - 1, dilation=2, depthwise=True)
    return np_bn(np_conv(h, p["pw"]["kernel"], 1, 0), p["bn"], s["bn"])
  h = np_conv(relu(x), p["dw1"]["kernel"], stride, k // 2, depthwise=True)
  h = np_bn(np_conv(h, p["pw1"]["kernel"], 1, 0), p["bn1"], s["bn1"])
  h = np_conv(relu(h), p["dw2"]["kernel"], 1, k // 2, depthwise=True)
  return np_bn(np_conv(h, p["pw2"]["kernel"], 1, 0), p["bn2"], s["bn2"])


@pytest.mark.parametrize("op, stride", [
    ("sep_conv_3x3", 1), ("sep_conv_5x5", 2), ("dil_conv_3x3", 1), ("dil_conv_5x5", 2),
    ("skip_connect", 2), ("max_pool_3x3", 2), ("avg_pool_3x3", 2), ("avg_pool_3x3", 1)])
def test_operation_equals_a_numpy_reference(op, stride):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  module = darts.DartsOperation(op, stride)
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.asarray(x))
  normal = lambda s: rng.normal(size=s.shape).astype(s.dtype)
  # Random weights, BN parameters and statistics; rule state as initialised (zeros suffice:
  # the forward pass reads only the firing thresholds, 0 at initialisation).
  variables = {k: jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), v)
               for k, v in shapes.items()}
  variables["params"] = jax.tree.map(normal, shapes.get("params", {}))
  if "batch_stats" in shapes:
    variables["batch_stats"] = jax.tree.map(
        lambda s: rng.uniform(0.5, 2.0, s.shape).astype(s.dtype), shapes["batch_stats"])
  got = np.asarray(module.apply(variables, jnp.asarray(x)))
  as_np = lambda tree: jax.tree.map(np.float64, tree)
  expected = np_operation(op, x.astype(np.float64), as_np(variables.get("params", {})),
                          as_np(variables.get("batch_stats", {})), stride)
  assert got.shape == expected.shape == (2, 8 // stride, 8 // stride, 4)
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_factorized_reduce_takes_odd_sizes():
  module = darts.FactorizedReduce(4)
  y = jax.eval_shape(module.init_with_output, jax.random.key(0), jnp.zeros((1, 7, 7, 3)))[0]
  assert y.shape == (1, 4, 4, 4)


# ----------------------------------------------------------------------------- assignment
TINY = darts.DartsNetwork(C=4, layers=3, num_classes=4)


@functools.cache
def tiny_variables(model=TINY):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 8, 8, 3)))


def test_genome_to_assignment():
  variables = tiny_variables()
  layers = bnn.weight_layers(variables)
  normal_rules = ["fa", "usf", "brsf", "frsf", "kp", "dfa", "bp", "fa"]
  reduce_rules = ["usf", "usf", "kp", "kp", "frsf", "frsf", "brsf", "dfa"]
  macro = {"stem": "kp", "preprocess": "frsf", "classifier": "usf"}
  g = SPACE.encode(darts.NAMED_GENOTYPES["darts_v2"], normal_rules, reduce_rules, macro)
  described = SPACE.assignment_fn(variables)(g).describe()
  assert set(described) == set(layers)
  # 3 cells (normal0, reduce1, reduce2): stem; 2 + 5 x 4 + 2 in normal0; 2 in reduce1;
  # 3 in reduce2 (its preprocess0 is a FactorizedReduce); classifier.
  assert len(layers) == 1 + 24 + 2 + 3 + 1
  for layer in layers:
    parts = layer.split("/")
    if parts[0] in ("stem", "classifier"):
      expected = macro[parts[0]]
    elif parts[1].startswith("preprocess"):
      expected = macro["preprocess"]
    else:
      cell_rules = normal_rules if parts[0].startswith("normal") else reduce_rules
      expected = cell_rules[int(parts[1][len("edge"):])]
    assert described[layer] == expected, layer
  assert "normal0/edge7/dw" in layers and "normal0/edge0/pw2" in layers
  # A population of genomes gives a stacked assignment.
  genomes = SPACE.random_genomes(jax.random.key(2), 3)
  stacked = SPACE.assignment_fn(variables)(genomes)
  assert stacked.rule["classifier"].shape == (3,)
  assert SPACE.architecture(genomes) == {}


def test_assignment_errors():
  no_dfa = darts.DartsNetwork(C=4, layers=3, num_classes=4, dfa=False,
                              options=rules.RuleOptions(rules=("bp", "fa")))
  variables = tiny_variables(no_dfa)
  with pytest.raises(ValueError, match="holds dfa, but layer .* has no DFA matrix"):
    SPACE.assignment_fn(variables)
  with pytest.raises(ValueError, match="leave out usf"):
    darts.DartsSpace(rules=("fa", "usf")).assignment_fn(variables, no_dfa.options)
  darts.DartsSpace(rules=("fa",), macro_rules=("bp",)).assignment_fn(variables, no_dfa.options)
  with pytest.raises(ValueError, match="not a weight layer of a DARTS network"):
    SPACE.assignment_fn(jax.eval_shape(bnn.MLP(num_classes=2, hidden=(4,)).init,
                                       jax.random.key(0), jnp.zeros((1, 3))))


# ----------------------------------------------------------------------------- evaluation
RULES = ("bp", "fa")
EVAL_SPACE = darts.DartsSpace(rules=RULES)
EVAL_MODEL = darts.DartsNetwork(C=4, layers=3, num_classes=4, dfa=False,
                                options=rules.RuleOptions(rules=RULES))
STEPS, BATCH = 2, 4
_rng = np.random.default_rng(0)
TRAIN = {"image": _rng.normal(size=(STEPS, BATCH, 8, 8, 3)).astype(np.float32),
         "label": _rng.integers(0, 4, (STEPS, BATCH)).astype(np.int32)}
VALIDATION = {"image": _rng.normal(size=(1, 8, 8, 8, 3)).astype(np.float32),
              "label": _rng.integers(0, 4, (1, 8)).astype(np.int32),
              "mask": np.ones((1, 8), np.float32)}
KEY = jax.random.key(0, impl="unsafe_rbg")
# Architecture A: a separable, a dilated and a FactorizedReduce edge (small, to compile
# fast); B: no edge with weights.
ARCH_A = ("normal=[(sep_conv_3x3,0),(skip_connect,1),(dil_conv_3x3,0),(max_pool_3x3,2),"
          "(avg_pool_3x3,3),(skip_connect,1),(max_pool_3x3,4),(skip_connect,0)],"
          "reduce=[(skip_connect,0),(avg_pool_3x3,1),(skip_connect,2),(max_pool_3x3,1),"
          "(max_pool_3x3,0),(avg_pool_3x3,2),(skip_connect,2),(max_pool_3x3,1)]")
ARCH_B = ARCH_A.replace("sep_conv_3x3", "max_pool_3x3").replace("dil_conv_3x3", "avg_pool_3x3")
A_BP = EVAL_SPACE.from_string(ARCH_A, rule="bp")
A_FA = EVAL_SPACE.from_string(ARCH_A, rule="fa")
A_MIXED = EVAL_SPACE.from_string(ARCH_A.replace("sep_conv_3x3", "sep_conv_3x3:fa"), rule="bp")
B_BP = EVAL_SPACE.from_string(ARCH_B, rule="bp")
B_FA = EVAL_SPACE.from_string(ARCH_B + "@stem:fa,preprocess:bp,classifier:bp", rule="bp")


@functools.cache
def evaluator():
  return darts.DartsEvaluator(EVAL_SPACE, EVAL_MODEL, STEPS, BATCH, group_size=4,
                              settings={"strategy": "vmap", "compiler_options": FAST_COMPILE})


@functools.cache
def first_population():
  """Three rule assignments of architecture A: one program."""
  fitness, info = evaluator().evaluate(np.stack([A_BP, A_FA, A_MIXED]), TRAIN, VALIDATION, KEY)
  return fitness, info, evaluator().num_programs


def test_group_plan():
  assert darts.group_plan(1, None) == [(0, 1, 1)]
  assert darts.group_plan(3, None) == [(0, 3, 4)]
  assert darts.group_plan(8, None) == [(0, 8, 8)]
  assert darts.group_plan(5, 2) == [(0, 2, 2), (2, 4, 2), (4, 5, 2)]
  assert darts.group_plan(0, 4) == []


def test_rule_genes_share_one_program_per_architecture():
  fitness, info, programs = first_population()
  assert programs == 1
  assert fitness.shape == (3,) and np.all(np.isfinite(fitness)) and not info["failed"].any()
  # The rules are applied: three assignments, three different networks after training.
  assert len(set(info["validation_loss"].tolist())) == 3
  # New rule genes for the same architecture compile nothing.
  with CompileCounter() as counter:
    other, _ = evaluator().evaluate(np.stack([A_FA, A_BP]), TRAIN, VALIDATION, KEY)
  assert counter.count == 0 and evaluator().num_programs == 1
  np.testing.assert_allclose(other, fitness[[1, 0]], atol=1e-5)


def test_new_architecture_compiles_once():
  fitness, info, _ = first_population()
  population = np.stack([A_FA, B_BP, A_BP])
  mixed, mixed_info = evaluator().evaluate(population, TRAIN, VALIDATION, KEY)
  assert evaluator().num_programs == 2 and evaluator().num_architectures == 2
  np.testing.assert_array_equal(mixed_info["program"], [0, 1, 0])
  np.testing.assert_allclose(mixed[[0, 2]], fitness[[1, 0]], atol=1e-5)
  np.testing.assert_allclose(mixed_info["validation_loss"][[0, 2]],
                             info["validation_loss"][[1, 0]], rtol=1e-5)
  with CompileCounter() as counter:  # a repeated architecture, new rules
    again, _ = evaluator().evaluate(np.stack([B_FA, B_BP]), TRAIN, VALIDATION, KEY)
  assert counter.count == 0 and evaluator().num_programs == 2
  np.testing.assert_allclose(again[1], mixed[1], atol=1e-5)


def test_group_equals_each_candidate_alone():
  fitness, info, _ = first_population()
  for i, g in enumerate([A_BP, A_FA, A_MIXED]):
    alone, alone_info = evaluator().evaluate(g[None], TRAIN, VALIDATION, KEY)
    np.testing.assert_allclose(alone[0], fitness[i], atol=1e-5)
    np.testing.assert_allclose(alone_info["validation_loss"][0], info["validation_loss"][i],
                               rtol=1e-5)
  assert evaluator().num_programs <= 2  # padded to the same group size: no new program
