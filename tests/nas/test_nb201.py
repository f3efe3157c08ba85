"""The NAS-Bench-201 space with rule genes: genome format, network, assignment, compilation."""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import nas, rules
from biojax import nn as bnn
from biojax.nas import nb201

# NAS-Bench-201's edge order, written out independently of nb201.EDGES: (to node, from node).
EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
SPACE = nas.NB201Space()
NUM_CLASSES = 10


def genome(ops, edge_rule="bp", macro_rule="bp", space=SPACE):
  return space.encode([OPS[o] if isinstance(o, int) else o for o in ops], edge_rule, macro_rule)


# ----------------------------------------------------------------------------- genome format


def test_counts():
  assert nb201.OPERATIONS == tuple(OPS)
  assert nb201.NUM_EDGES == 6 and list(nb201.EDGES) == EDGES
  assert nb201.NUM_ARCHITECTURES == 5**6 == 15_625
  # Every operation assignment is a distinct architecture string.
  strings = {SPACE.cell_string(genome(ops)) for ops in itertools.product(range(5), repeat=6)}
  assert len(strings) == 15_625
  # 6 operation genes, 6 edge rule genes, 8 genes for stem, 2 x 3 reduction convs, classifier.
  assert SPACE.num_genes == 20
  assert SPACE.gene_sizes == (5,) * 6 + (8,) * 14
  fixed = nas.NB201Space(rules=("fa", "usf"), macro_rules=("bp",))
  assert fixed.gene_sizes == (5,) * 6 + (2,) * 6 + (1,) * 8


@pytest.mark.parametrize("space", [
    SPACE,
    nas.NB201Space(rules=("fa", "usf+eg", "eg"), macro_rules=("bp", "frsf")),
    nas.NB201Space(rules=("usf", "brsf"), macro_rules=("bp",)),
], ids=["default", "geometry", "fixed-macro"])
def test_encode_decode_string_round_trip(space):
  genomes = np.asarray(space.random_genomes(jax.random.key(0), 300))
  for g in genomes:
    genotype = space.decode(g)
    np.testing.assert_array_equal(space.encode(*genotype), g)
    text = space.to_string(g)
    np.testing.assert_array_equal(space.from_string(text), g)
    assert space.cell_string(g) == re.sub(r":[^~|]*~", "~", text.split("@")[0])
  # The '+' of a geometry ('usf+eg') does not confuse the node separator.
  if "usf+eg" in space.rules:
    g = space.encode(["nor_conv_3x3"] * 6, "usf+eg", "frsf")
    assert "nor_conv_3x3:usf+eg~0|+|" in space.to_string(g)
    np.testing.assert_array_equal(space.from_string(space.to_string(g)), g)


def test_string_format():
  g = genome([3, 1, 2, 0, 4, 3], ["usf", "fa", "fa", "bp", "kp", "dfa"],
             {**dict.fromkeys(nb201.MACRO_LAYERS, "bp"), "reduction1/conv_a": "fa"})
  assert SPACE.to_string(g) == (
      "|nor_conv_3x3:usf~0|+|skip_connect:fa~0|nor_conv_1x1:fa~1|"
      "+|none:bp~0|avg_pool_3x3:kp~1|nor_conv_3x3:dfa~2|"
      "@stem:bp,reduction1/conv_a:fa,reduction1/conv_b:bp,reduction1/shortcut:bp,"
      "reduction2/conv_a:bp,reduction2/conv_b:bp,reduction2/shortcut:bp,classifier:bp")
  assert SPACE.cell_string(g) == (
      "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|")
  # One rule for all macro layers prints as '@rule'; rules left out take `rule=`.
  assert SPACE.to_string(genome([1] * 6, "fa", "usf")).endswith("|@usf")
  text = "|nor_conv_3x3:usf~0|+|skip_connect~0|nor_conv_1x1:fa~1|+|none~0|none~1|none~2|"
  parsed = SPACE.decode(SPACE.from_string(text, rule="bp"))
  assert parsed.operations == ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "none",
                               "none")
  assert parsed.edge_rules == ("usf", "bp", "fa", "bp", "bp", "bp")
  assert set(parsed.macro_rules.values()) == {"bp"}
  partial = SPACE.from_string(text + "@stem:fa,classifier:usf", rule="bp")
  assert SPACE.decode(partial).macro_rules["stem"] == "fa"
  assert SPACE.decode(partial).macro_rules["classifier"] == "usf"
  assert SPACE.decode(partial).macro_rules["reduction2/conv_b"] == "bp"


def test_named_genotypes():
  g = SPACE.named("best_cifar10", rule="usf")
  genotype = SPACE.decode(g)
  assert genotype.operations == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect",
                                 "nor_conv_3x3", "nor_conv_3x3")
  assert genotype.edge_rules == ("usf",) * 6
  assert set(genotype.macro_rules.values()) == {"usf"}
  assert SPACE.cell_string(g) == BEST
  np.testing.assert_array_equal(SPACE.from_string(BEST, rule="usf"), g)
  resnet = SPACE.decode(SPACE.named("resnet"))
  assert resnet.operations == ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none",
                               "skip_connect")
  with pytest.raises(ValueError, match="Named cells: best_cifar10"):
    SPACE.named("darts_v2")


@pytest.mark.parametrize("call, message", [
    (lambda: genome(["conv_3x3"] + ["none"] * 5),
     "Unknown operation 'conv_3x3' on edge 1<-0. Valid operations: none, skip_connect, "
     "nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"),
    (lambda: genome(["none"] * 6, "feedback_alignment"),
     "Unknown learning rule 'feedback_alignment'. Valid rules: bp, fa"),
    (lambda: genome(["none"] * 6, "fa", space=nas.NB201Space(rules=("usf", "brsf"))),
     "Rule 'fa' .*edge 1<-0.* not in this space's rule alphabet. Valid rules: usf, brsf"),
    (lambda: genome(["none"] * 5, "fa"), "6 edges; got 5 operations"),
    (lambda: SPACE.encode(["none"] * 6, "fa", {"stem": "bp", "head": "bp"}),
     "missing: reduction1/conv_a.*unknown: head"),
    (lambda: SPACE.validate(np.r_[np.zeros(6), [8], np.zeros(13)].astype(int)),
     r"Gene 6 \(rule of edge 1<-0: 0=bp, 1=fa, .*7=softhebb\) is 8; valid values are 0..7"),
    (lambda: SPACE.validate(np.r_[[5], np.zeros(19)].astype(int)),
     r"operation of edge 1<-0: 0=none.*4=avg_pool_3x3\) is 5"),
    (lambda: SPACE.validate(np.zeros(19, int)), r"20 genes .* got shape \(19,\)"),
    (lambda: SPACE.validate(np.full(20, 0.5)), "must hold integers"),
    (lambda: SPACE.from_string("|none~0|+|none~0|+|none~0|none~1|none~2|", rule="bp"),
     "Node 2 .* has 1 edges; expected 2"),
    (lambda: SPACE.from_string("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", rule="bp"),
     "exactly one edge from each of the nodes 0..1"),
    (lambda: SPACE.from_string("|none~0|+|none~0|none~1|"), "expected 3 nodes"),
    (lambda: SPACE.from_string(BEST), "No rule for edge 1<-0"),
    (lambda: SPACE.from_string(BEST.replace("~0", ":bp~0").replace("~1", ":bp~1")
                               .replace("~2", ":bp~2")), "No rules for the layers outside"),
    (lambda: nas.NB201Space(rules=("fa", "fa")), "lists a rule twice"),
])
def test_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_expressed_genes():
  g = genome([3, 1, 2, 0, 4, 3])
  expressed = np.asarray(SPACE.expressed_genes(g))
  np.testing.assert_array_equal(expressed[:6], True)
  np.testing.assert_array_equal(expressed[6:12], [True, False, True, False, False, True])
  np.testing.assert_array_equal(expressed[12:], True)
  batch = SPACE.expressed_genes(np.stack([g, genome([0] * 6)]))
  assert batch.shape == (2, 20) and not np.any(np.asarray(batch)[1, 6:12])


# ----------------------------------------------------------------------------- parameters


def nb201_parameters(C, N, classes, conv3_edges, conv1_edges):
  """NAS-Bench-201's parameter count from the layer shapes, by hand (Dong & Yang 2020's
  TinyNetwork): BN has a scale and an offset per channel; convolutions have no bias."""
  total = 3 * 3 * 3 * C + 2 * C  # stem conv 3x3 (RGB -> C) + BN
  for c in (C, 2 * C, 4 * C):  # N cells per stage; ReLU-Conv-BN edges
    total += N * (conv3_edges * (9 * c * c + 2 * c) + conv1_edges * (c * c + 2 * c))
  for c_in, c_out in ((C, 2 * C), (2 * C, 4 * C)):  # residual reduction blocks
    total += 9 * c_in * c_out + 2 * c_out  # conv_a + BN
    total += 9 * c_out * c_out + 2 * c_out  # conv_b + BN
    total += c_in * c_out  # shortcut 1x1 conv (after 2x2 average pooling)
  total += 2 * 4 * C  # last BN
  total += 4 * C * classes + classes  # classifier
  return total


@functools.lru_cache
def full_size_params(num_classes):
  model = nas.NB201Network(C=16, N=5, num_classes=num_classes)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  return shapes["params"]


def test_parameter_count_of_the_full_size_network():
  params = full_size_params(10)
  count = lambda name: SPACE.parameter_count(params, SPACE.named(name))
  # Published in NAS-Bench-201's records (benchmark file v1_1-096897, field 'params', in
  # millions): 1.531546 for the largest CIFAR-10 network, 0.073306 for the smallest (no
  # convolution in the cell), 1.537396 (CIFAR-100) and 1.538696 (ImageNet16-120) largest.
  assert count("largest") == 1_531_546 == nb201_parameters(16, 5, 10, 6, 0)
  no_conv = SPACE.from_string("|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|none~2|",
                              rule="bp")
  assert SPACE.parameter_count(params, no_conv) == 73_306 == nb201_parameters(16, 5, 10, 0, 0)
  largest = SPACE.named("largest")
  assert SPACE.parameter_count(full_size_params(100), largest) == 1_537_396
  assert SPACE.parameter_count(full_size_params(120), largest) == 1_538_696
  assert count("best_cifar10") == nb201_parameters(16, 5, 10, 5, 0) == 1_288_506
  assert count("resnet") == nb201_parameters(16, 5, 10, 2, 0)
  for g in np.asarray(SPACE.random_genomes(jax.random.key(3), 5)):
    ops = list(g[:6])
    assert SPACE.parameter_count(params, g) == nb201_parameters(16, 5, 10, ops.count(3),
                                                                ops.count(2))
  # Every weight layer of the network has an assignment entry: 2 convolutions on each of the
  # 6 edges of 15 cells, plus stem, 2 x 3 reduction convolutions and the classifier.
  assert len(bnn.weight_layers(jax.eval_shape(
      nas.NB201Network(C=16, N=5).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))))) == 188


# ----------------------------------------------------------------------------- the network
# One tiny network (C=4, N=1, 8x8 inputs) shared by every test below, as is its jitted apply.
# Its variables are random values of the shapes model.init would give (no init compiled: the
# tests below set every value themselves). Training is tested in test_nb201_training.py.
MODEL = nas.NB201Network(C=4, N=1, num_classes=NUM_CLASSES)
X = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)


@functools.lru_cache
def random_variables(seed=1):
  """Random parameters and BN statistics (so that every BN and bias matters)."""
  shapes = jax.eval_shape(MODEL.init, jax.random.key(0), jnp.asarray(X[:2]))
  rng = np.random.default_rng(seed)
  normal = lambda s: rng.normal(size=s.shape).astype(s.dtype)
  return {"params": jax.tree.map(normal, shapes["params"]),
          "batch_stats": jax.tree.map(lambda s: rng.uniform(0.5, 2.0, s.shape).astype(s.dtype),
                                      shapes["batch_stats"]),
          # Random rule state, except the sparse rule's homeostatic thresholds, which every
          # layer subtracts from its output (zero unless that rule adapts them): the
          # reference network has none.
          "feedback": jax.tree_util.tree_map_with_path(
              lambda path, s: (np.zeros(s.shape, s.dtype)
                               if getattr(path[-1], "key", None) == "threshold"
                               else normal(s)), shapes["feedback"])}


@functools.lru_cache
def jitted_apply():
  return jax.jit(lambda variables, ops, x: MODEL.apply(
      {**variables, "architecture": {"ops": ops}}, x))


def relu(x):
  return np.maximum(x, 0.0)


def np_conv(x, w, stride, pad):
  """NHWC x HWIO convolution written with explicit loops over the kernel window."""
  k = w.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h = (x.shape[1] + 2 * pad - k) // stride + 1
  w_out = (x.shape[2] + 2 * pad - k) // stride + 1
  out = np.zeros((x.shape[0], h, w_out, w.shape[-1]))
  for a in range(k):
    for b in range(k):
      out += xp[:, a:a + stride * h:stride, b:b + stride * w_out:stride, :] @ w[a, b]
  return out


def np_bn(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def np_avg_pool3(x):
  """3x3, stride 1, padding 1, average over the window's positions inside the image."""
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  ones = np.pad(np.ones_like(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  total = sum(xp[:, a:a + h, b:b + w] for a in range(3) for b in range(3))
  count = sum(ones[:, a:a + h, b:b + w] for a in range(3) for b in range(3))
  return total / count


def np_network(x, ops, params, stats, N=1):
  """NAS-Bench-201's TinyNetwork forward (evaluation mode) in NumPy, one edge at a time."""

  def edge(h, op, p, s):
    if op == 0:
      return np.zeros_like(h)
    if op == 1:
      return h
    if op == 4:
      return np_avg_pool3(h)
    name, k = {2: ("nor_conv_1x1", 1), 3: ("nor_conv_3x3", 3)}[op]
    return np_bn(np_conv(relu(h), p[name]["kernel"], 1, k // 2), p[name + "_bn"],
                 s[name + "_bn"])

  def cell(h, p, s):
    nodes = [h]
    for i in (1, 2, 3):
      nodes.append(sum(edge(nodes[j], ops[EDGES.index((i, j))], p[f"edge_{i}_{j}"],
                            s[f"edge_{i}_{j}"]) for j in range(i)))
    return nodes[3]

  h = np_bn(np_conv(x, params["stem"]["kernel"], 1, 1), params["stem_bn"], stats["stem_bn"])
  for stage in (1, 2, 3):
    if stage > 1:
      p, s = params[f"reduction{stage - 1}"], stats[f"reduction{stage - 1}"]
      a = relu(np_bn(np_conv(relu(h), p["conv_a"]["kernel"], 2, 1), p["conv_a_bn"],
                     s["conv_a_bn"]))
      b = np_bn(np_conv(a, p["conv_b"]["kernel"], 1, 1), p["conv_b_bn"], s["conv_b_bn"])
      n, hh, ww, c = h.shape
      pooled = h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
      h = b + np_conv(pooled, p["shortcut"]["kernel"], 1, 0)
    for n in range(N):
      h = cell(h, params[f"stage{stage}_cell{n}"], stats[f"stage{stage}_cell{n}"])
  h = relu(np_bn(h, params["lastact_bn"], stats["lastact_bn"])).mean(axis=(1, 2))
  return h @ params["classifier"]["kernel"] + params["classifier"]["bias"]


def test_network_output_equals_a_numpy_reference_for_every_operation():
  variables = random_variables()
  params, stats = variables["params"], variables["batch_stats"]
  apply = jitted_apply()
  skip_only = [1] * 6
  cases = [skip_only, [0] * 6, [2, 0, 4, 1, 3, 0], [4, 3, 1, 2, 0, 4],
           list(SPACE.named("best_cifar10")[:6])]
  cases += [list(g[:6]) for g in np.asarray(SPACE.random_genomes(jax.random.key(5), 3))]
  as_np = lambda tree: jax.tree.map(np.float64, tree)
  for ops in cases:
    expected = np_network(X.astype(np.float64), ops, as_np(params), as_np(stats))
    got = np.asarray(apply(variables, jnp.asarray(ops, jnp.int32), jnp.asarray(X)))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max(),
                               err_msg=f"ops={ops}")


def test_skip_only_cell_quadruples_its_input():
  # node1 = x, node2 = x + node1, node3 = x + node1 + node2 = 4x: checked on a cell alone.
  cell = nas.NB201Cell()
  x = jnp.asarray(X[:, :, :, :2])
  shapes = jax.eval_shape(cell.init, jax.random.key(0), x, jnp.full((6,), 3, jnp.int32))
  variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
  y = cell.apply(variables, x, jnp.ones((6,), jnp.int32))
  np.testing.assert_allclose(np.asarray(y), 4 * X[:, :, :, :2], rtol=1e-6)


def test_applying_without_operations_is_a_clear_error():
  with pytest.raises(ValueError, match="'architecture' collection"):
    MODEL.apply(random_variables(), jnp.asarray(X))


# ----------------------------------------------------------------------------- assignment


def test_genome_to_assignment():
  variables = random_variables()
  assign = SPACE.assignment_fn(variables)
  edge_rules = ["fa", "usf", "brsf", "frsf", "kp", "dfa"]
  macro = dict(zip(nb201.MACRO_LAYERS, ["bp", "fa", "usf", "brsf", "frsf", "kp", "dfa", "bp"],
                   strict=True))
  g = genome([3, 1, 2, 0, 4, 3], edge_rules, macro)
  described = assign(g).describe()
  layers = bnn.weight_layers(variables)
  assert set(described) == set(layers) and len(layers) == 3 * 6 * 2 + 8
  for layer in layers:
    if layer in macro:
      assert described[layer] == macro[layer], layer
    else:  # stage<s>_cell<n>/edge_<i>_<j>/nor_conv_<k>x<k>: the edge's rule, every op, cell
      _, edge, _ = layer.split("/")
      i, j = int(edge[5]), int(edge[7])
      assert described[layer] == edge_rules[EDGES.index((i, j))], layer
  # Geometry comes from the rule spec.
  eg_space = nas.NB201Space(rules=("bp", "usf+eg"), macro_rules=("bp",))
  eg = eg_space.assignment_fn(variables)(eg_space.encode(["none"] * 6, "usf+eg", "bp"))
  assert eg.describe()["stage2_cell0/edge_3_1/nor_conv_1x1"] == "usf+eg"
  assert eg.describe()["classifier"] == "bp"
  # A population of genomes gives a stacked assignment, equal to the genomes one at a time.
  genomes = SPACE.random_genomes(jax.random.key(2), 4)
  stacked = assign(genomes)
  assert stacked.rule["stem"].shape == (4,)
  for k in range(4):
    one = assign(genomes[k])
    for layer in layers:
      assert int(stacked.rule[layer][k]) == int(one.rule[layer])
  chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), jax.vmap(assign)(genomes),
                            stacked)
  assert all(jax.tree.leaves(chex_equal))
  assert SPACE.architecture(genomes)["ops"].shape == (4, 6)


def test_dfa_needs_dfa_matrices():
  model = nas.NB201Network(C=2, N=1, dfa=False)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match="holds dfa, but layer .* has no DFA matrix"):
    SPACE.assignment_fn(variables)
  nas.NB201Space(rules=("fa", "usf")).assignment_fn(variables)  # no DFA: fine


def test_rule_options_must_compile_every_rule_of_the_space():
  space = nas.NB201Space(rules=("fa", "usf+eg"), macro_rules=("bp",))
  assert space.rule_names == ("bp", "fa", "usf")
  model = nas.NB201Network(C=2, N=1, options=rules.RuleOptions(rules=("bp", "fa")))
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match="leave out usf"):
    space.assignment_fn(variables, model.options)
  nas.NB201Space(rules=("fa",), macro_rules=("bp",)).assignment_fn(variables, model.options)
