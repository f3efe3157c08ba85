"""BioNAS-DARTS: the (operation, rule) supernet, its search and the genotype derivation.

References: the DARTS operations run alone, separate modules for the rule copies, central
finite differences and the second-order formula written out with exact Hessian-vector
products, hand-derived genotypes, and the uninterrupted search for a resumed one.
"""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from biojax import learning
from biojax import rules as rules_lib
from biojax.nas import bionas
from biojax.nas.darts import DartsOperation, DartsSpace
from biojax.nas.darts import supernet as sn
from experiments import bionas_darts

OPS = ("none", "skip_connect", "sep_conv_3x3")
RULES = ("fa", "usf", "frsf")  # deterministic feedback (brSF redraws from the key)


def tiny(layout="vmap", rules=RULES, macro="fa", layers=1):
  """A one-cell supernet (a reduction cell), C=2, and its variables on 8x8 images."""
  alphabet = sn.make_alphabet(OPS, rules)
  macro = dict.fromkeys(sn.MACRO_ROLES, macro)
  options = rules_lib.RuleOptions(rules=sn.compiled_rules(alphabet, macro))
  model = sn.DartsSupernet(alphabet.operations, len(rules), C=2, layers=layers,
                           num_classes=3, layout=layout, options=options)
  variables = flax.core.unfreeze(model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
  return model, variables, sn.supernet_assignment(variables, alphabet, macro), alphabet


def batch(seed=0, n=4):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.normal(size=(n, 8, 8, 1)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32)}


# ---------------------------------------------------------------------------- alphabet


def test_default_alphabet_is_the_papers_without_the_skip_copies():
  alphabet = sn.make_alphabet()
  # 4 parameter-free operations + 4 convolutions x 4 rules (the paper's 22 holds 3 copies of
  # the parameter-free skip_connect).
  assert alphabet.size == 4 + 4 * 4 == 22 - 2
  assert alphabet.candidates[:4] == (("none", None), ("max_pool_3x3", None),
                                     ("avg_pool_3x3", None), ("skip_connect", None))
  assert alphabet.names()[4:8] == ("sep_conv_3x3:fa", "sep_conv_3x3:usf", "sep_conv_3x3:brsf",
                                   "sep_conv_3x3:frsf")


@pytest.mark.parametrize("operations, rules, message", [
    (("none", "conv_7x7"), ("fa",), "Unknown supernet operation 'conv_7x7'. Valid operations: "
     "none, max_pool_3x3"),
    (("none", "sep_conv_3x3"), ("fa", "fb"), "Unknown learning rule 'fb'. Valid rules: bp, fa"),
    (("none",), ("fa",), "needs an operation other than 'none'"),
    (("none", "sep_conv_3x3"), (), "no rules"),
    (("sep_conv_3x3",), ("fa", "fa"), "repeats the rule(s) fa"),
    (("sep_conv_3x3",), ("dfa",), "Rule 'dfa' in the supernet alphabet cannot train a supernet"),
])
def test_bad_alphabets_are_refused_with_the_valid_values(operations, rules, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    sn.make_alphabet(operations, rules)


def test_a_bad_config_fails_before_the_workdir_is_touched(tmp_path):
  config = bionas_darts.get_config()
  config.supernet.operations = ("none", "sep_conv_9x9")
  with pytest.raises(ValueError, match="Valid operations"):
    bionas.search(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------- mixed edge


def test_a_one_hot_edge_is_its_candidate_alone_forward_and_backward():
  """Mixing weights one-hot on (sep_conv_3x3, usf): the edge's output and its rule-specific
  backward pass (usf's sign feedback to the input, the local weight update) equal the
  operation run alone with that copy's weights under usf; the other copies get no update."""
  options = rules_lib.RuleOptions(rules=RULES)
  edge = sn.MixedEdge(("none", "sep_conv_3x3"), len(RULES), options=options, train=True)
  single = DartsOperation("sep_conv_3x3", 1, None, options)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 4)), jnp.float32)
  slot = RULES.index("usf")
  weights = jnp.zeros(1 + len(RULES)).at[1 + slot].set(1.0)
  v = flax.core.unfreeze(edge.init(jax.random.key(0), x, weights))
  ids = jnp.asarray([rules_lib.rule_id(r) for r in RULES], jnp.int32)
  copy = jax.tree.map(lambda a: a[slot], {k: v[k]["sep_conv_3x3"]["op"]
                                          for k in ("params", "feedback", "batch_stats")})

  def assignment(tree, rule):
    flat = traverse_util.flatten_dict(tree["feedback"])
    return traverse_util.unflatten_dict({(*p[:-1], "rule"): rule for p in flat
                                         if p[-1] == "order"})

  cotangent = None

  def run(module, variables, rule, args, rules=True):
    nonlocal cotangent
    def f(params, x_):
      given = {**variables, "params": params}
      if rules:
        given["assignment"] = assignment(variables, rule)
      out, _ = module.apply(given, x_, *args, rngs={"feedback": jax.random.key(2)},
                            mutable=["batch_stats"])
      return out
    y, back = jax.vjp(f, variables["params"], x)
    if cotangent is None:
      cotangent = jnp.asarray(np.random.default_rng(3).normal(size=y.shape), jnp.float32)
    return (y, *back(cotangent))

  y_edge, dp_edge, dx_edge = run(edge, v, ids, (weights,))
  y_one, dp_one, dx_one = run(single, copy, ids[slot], (True,))
  np.testing.assert_allclose(y_edge, y_one, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dx_edge, dx_one, rtol=1e-5, atol=1e-6)
  chosen = jax.tree.map(lambda a: a[slot], dp_edge["sep_conv_3x3"]["op"])
  for a, b in zip(jax.tree.leaves(chosen), jax.tree.leaves(dp_one), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for r in range(len(RULES)):
    if r != slot:
      for leaf in jax.tree.leaves(jax.tree.map(lambda a, r=r: a[r], dp_edge["sep_conv_3x3"])):
        np.testing.assert_array_equal(leaf, 0.0)
  # usf sends the error below through sign(W), not W: the true gradient differs.
  _, _, dx_true = run(single, copy, ids[slot], (True,), rules=False)
  assert not np.allclose(dx_true, dx_one, atol=1e-4)


def _as_separate(tree, num_rules):
  """The vmap layout's variables as the separate layout's: ``<op>/op/...`` with a rule
  axis after the edge axis becomes ``<op>_r<r>/...``."""
  out = {}
  for path, value in traverse_util.flatten_dict(tree).items():
    if "sep_conv_3x3" in path:
      i = path.index("sep_conv_3x3")
      for r in range(num_rules):
        out[(*path[:i], f"sep_conv_3x3_r{r}", *path[i + 2:])] = value[:, r]
    else:
      out[path] = value
  return traverse_util.unflatten_dict(out)


def test_vmapped_rule_copies_equal_separate_modules():
  model_v, var_v, assign_v, _ = tiny("vmap")
  model_s, var_s, assign_s, _ = tiny("separate")
  mapped = {k: _as_separate(var_v[k], len(RULES)) for k in ("params", "feedback",
                                                            "batch_stats")}
  assert jax.tree.map(jnp.shape, mapped) == jax.tree.map(jnp.shape, {k: var_s[k]
                                                                    for k in mapped})
  variables_s = {**var_s, **mapped}
  b, key = batch(), jax.random.key(5)
  up_v, _, m_v = learning.learning_signal(model_v, var_v, b, assign_v, key)
  up_s, _, m_s = learning.learning_signal(model_s, variables_s, b, assign_s, key)
  np.testing.assert_allclose(m_v["loss"], m_s["loss"], rtol=1e-6)
  flat_v = traverse_util.flatten_dict(_as_separate(up_v, len(RULES)))
  flat_s = traverse_util.flatten_dict(up_s)
  assert flat_v.keys() == flat_s.keys()
  for path in flat_s:
    np.testing.assert_allclose(flat_v[path], flat_s[path], rtol=2e-4, atol=1e-6,
                               err_msg="/".join(path))


# ------------------------------------------------------------------- alpha gradients


def _state(model, variables, key=1):
  alpha = bionas.init_alpha(jax.random.key(key), model.num_candidates, scale=0.5)
  return bionas.SupernetState(
      step=jnp.zeros((), jnp.int32), params=variables["params"], opt_state=(),
      feedback=variables["feedback"], batch_stats=variables["batch_stats"], alpha=alpha,
      alpha_opt_state=())


@pytest.mark.parametrize("alpha_gradient", bionas.ALPHA_GRADIENTS)
def test_alpha_gradient_equals_finite_differences(alpha_gradient):
  """With bp on every layer both modes give the true gradient: the directional derivative
  along a random direction equals a central finite difference (float64)."""
  with jax.enable_x64(True):
    model, variables, assignment, _ = tiny(rules=("bp",), macro="bp")
    variables = jax.tree.map(lambda a: a.astype(jnp.float64)
                             if jnp.issubdtype(a.dtype, jnp.floating) else a, variables)
    state = _state(model, variables)
    b = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, batch())
    loss = bionas.make_loss(model, alpha_gradient)
    f = jax.jit(lambda a: loss(a, state.params, state, b, assignment, jax.random.key(0))[0])
    g = jax.grad(f)(state.alpha)
    rng = np.random.default_rng(0)
    d = {c: jnp.asarray(rng.normal(size=a.shape)) for c, a in state.alpha.items()}
    h = 1e-6  # small: the ReLUs make the loss piecewise smooth in alpha
    shift = lambda t: {c: state.alpha[c] + t * d[c] for c in d}  # noqa: E731
    numeric = (f(shift(h)) - f(shift(-h))) / (2 * h)
    analytic = sum(jnp.vdot(g[c], d[c]) for c in d)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)
    assert abs(float(analytic)) > 1e-4  # the check is not vacuous


def test_alpha_gradient_through_the_rules_differs_from_the_true_one():
  model, variables, assignment, _ = tiny()  # fa stem and classifier, fa/usf/frsf copies
  state = _state(model, variables)
  b = batch()
  g = {mode: jax.grad(lambda a, mode=mode: bionas.make_loss(model, mode)(
      a, state.params, state, b, assignment, jax.random.key(0))[0])(state.alpha)
       for mode in bionas.ALPHA_GRADIENTS}
  assert not np.allclose(g["rules"]["reduce"], g["true"]["reduce"], rtol=1e-2)


def test_second_order_step_is_darts_formula():
  """The second-order alpha gradient is DARTS's eq. 7-8 written out here with jax.grad of
  the plain loss: grad_a L_val(w', a) - xi (grad_a L_train(w+) - grad_a L_train(w-)) /
  (2 eps), w' = w - xi (grad_w L_train + wd w), v = grad_w' L_val(w', a), w+- = w +- eps v,
  eps = 0.01 / ||v|| (DARTS's finite-difference Hessian-vector product)."""
  with jax.enable_x64(True):
    model, variables, assignment, _ = tiny(rules=("bp",), macro="bp")
    variables = jax.tree.map(lambda a: a.astype(jnp.float64)
                             if jnp.issubdtype(a.dtype, jnp.floating) else a, variables)
    state = _state(model, variables)
    f64 = lambda b: jax.tree.map(  # noqa: E731
        lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, b)
    train_b, val_b = f64(batch(0)), f64(batch(1))
    xi, wd = 0.05, 3e-4
    got, _ = bionas.make_alpha_gradient(model, lambda step: xi, 2, "true", wd)(
        state, assignment, train_b, val_b, jax.random.key(0))

    def plain(alpha, params, b):
      return bionas.make_loss(model, "true")(alpha, params, state, b, assignment,
                                             jax.random.key(0))[0]

    w = state.params
    g_train = jax.grad(plain, argnums=1)(state.alpha, w, train_b)
    w_virtual = jax.tree.map(lambda p, g: p - xi * (g + wd * p), w, g_train)
    g_alpha, v = jax.grad(plain, argnums=(0, 1))(state.alpha, w_virtual, val_b)
    norm = np.sqrt(sum(float(jnp.sum(x * x)) for x in jax.tree.leaves(v)))
    eps = 0.01 / norm
    grad_a = jax.grad(plain, argnums=0)
    g_plus = grad_a(state.alpha, jax.tree.map(lambda p, d: p + eps * d, w, v), train_b)
    g_minus = grad_a(state.alpha, jax.tree.map(lambda p, d: p - eps * d, w, v), train_b)
    expected = {c: g_alpha[c] - xi * (g_plus[c] - g_minus[c]) / (2 * eps) for c in g_alpha}
    for cell in bionas.CELLS:
      np.testing.assert_allclose(got[cell], expected[cell], rtol=1e-6, atol=1e-12)
    # The second-order term is not negligible here, so the check tests it.
    assert not np.allclose(g_alpha["reduce"], expected["reduce"], rtol=1e-3, atol=0)


# ------------------------------------------------------------------------ derivation


def test_derivation_of_a_hand_made_alpha():
  alphabet = sn.make_alphabet(("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"),
                              ("fa", "usf"))
  names = alphabet.names()  # none, max_pool_3x3, skip_connect, sep_conv_3x3:fa, :usf
  assert names == ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3:fa",
                   "sep_conv_3x3:usf")
  w = np.full((14, 5), 0.1)
  w[:, 0] = 0.9  # 'none' is the strongest everywhere and never chosen
  picks = {  # edge index -> (candidate, weight): the hand-derived winners
      0: (3, 0.5), 1: (2, 0.4),  # node 2: from 0 and 1
      2: (1, 0.3), 3: (4, 0.2), 4: (4, 0.6),  # node 3: from 2 (0.6) and 0 (0.3)
      5: (2, 0.7), 6: (3, 0.3), 7: (4, 0.35), 8: (1, 0.2),  # node 4: from 0, 2
      9: (3, 0.25), 10: (3, 0.3), 11: (2, 0.2), 12: (4, 0.45), 13: (1, 0.5)}  # node 5: 4, 3
  for k, (c, value) in picks.items():
    w[k, c] = value
  weights = {"normal": w, "reduce": w[:, [0, 2, 1, 4, 3]]}  # reduce: candidates permuted
  derived = sn.derive(weights, alphabet)
  assert derived.edges["normal"] == (
      ("sep_conv_3x3", 0, "fa"), ("skip_connect", 1, None),
      ("sep_conv_3x3", 2, "usf"), ("max_pool_3x3", 0, None),
      ("skip_connect", 0, None), ("sep_conv_3x3", 2, "usf"),
      ("max_pool_3x3", 4, None), ("sep_conv_3x3", 3, "usf"))
  # Permuting the columns swaps max_pool <-> skip_connect and fa <-> usf.
  swap = {"max_pool_3x3": "skip_connect", "skip_connect": "max_pool_3x3"}
  assert derived.edges["reduce"] == tuple(
      (swap.get(op, op), j, {"fa": "usf", "usf": "fa"}.get(r)) for op, j, r in
      derived.edges["normal"])
  # As a genome of the DARTS space, with the skip_connect rule and the macro rules.
  macro = dict.fromkeys(sn.MACRO_ROLES, "bp")
  space = bionas.derived_space(alphabet, macro)
  genome = bionas.derived_genome(derived, weights, space, alphabet, macro)
  words = space.decode(genome)
  assert words.genotype == derived.genotype
  for e, (_, _, rule) in enumerate(derived.edges["normal"]):
    if rule is not None:
      assert words.normal_rules[e] == rule
  assert words.normal_rules[3] == "fa"  # max_pool: the edge's heavier rule (a tie: the first)
  assert words.normal_rules[1] == "bp"  # skip_connect: the FactorizedReduce rule
  assert words.macro_rules == {"stem": "bp", "preprocess": "bp", "classifier": "bp"}


def test_rule_weight_and_entropy_by_hand():
  alphabet = sn.make_alphabet(("none", "sep_conv_3x3", "dil_conv_3x3"), ("fa", "usf"))
  w = np.zeros((14, 5))
  w[:, 0], w[:, 1], w[:, 2], w[:, 3], w[:, 4] = 0.2, 0.1, 0.3, 0.3, 0.1
  shares = sn.rule_weight({"normal": w, "reduce": w}, alphabet)
  # fa: 0.1 + 0.3, usf: 0.3 + 0.1, normalised over the rules.
  np.testing.assert_allclose(shares["normal"], np.tile([0.5, 0.5], (14, 1)))
  uniform = np.full((14, 5), 0.2)
  np.testing.assert_allclose(sn.entropy({"normal": uniform, "reduce": uniform}), np.log(5))


def test_bp_weight_share_counts_each_copy_by_its_rule():
  _, variables, assignment, _ = tiny(rules=("bp", "fa", "usf"), macro="fa")
  share = sn.bp_weight_share(variables["params"], assignment)
  copies = sum(np.size(v) for p, v in traverse_util.flatten_dict(variables["params"]).items()
               if "sep_conv_3x3" in p and p[-1] == "kernel")
  kernels = sum(np.size(v) for p, v in traverse_util.flatten_dict(variables["params"]).items()
                if p[-1] == "kernel")
  np.testing.assert_allclose(share, copies / 3 / kernels)


# --------------------------------------------------------------------------- search


def small_config(rules=("fa", "usf")):
  config = bionas_darts.get_config()
  config.supernet.operations = OPS
  config.supernet.rules = rules
  config.supernet.C = 2
  config.validation_size = 64
  config.limit_train = 256
  config.image_crop = 16
  config.image_pool = 2
  config.search.update(epochs=2, steps_per_epoch=2, batch_size=8, validation_examples=32,
                       eval_batch_size=32)
  config.retrain.steps = 0
  return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("bionas") / "full")
  return workdir, bionas.search(small_config(), workdir)


@pytest.mark.slow  # one small search compiled, then run four times: 2-3 min on 2 loaded cores
class TestSearch:
  """A whole search (its own xdist unit, so the unit tests above run on the other worker)."""

  def test_search_writes_its_outputs(self, uninterrupted):
    workdir, report = uninterrupted
    for name in ("report.json", "history.jsonl", "config.json", "alpha.png", "rule_share.png",
                 "losses.png"):
      assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    with open(os.path.join(workdir, "history.jsonl")) as f:
      history = [json.loads(line) for line in f]
    assert [r["epoch"] for r in history] == [0, 1]
    assert report["method"] == "darts" and report["epochs"] == 2 and report["steps"] == 4
    assert report["candidates"] == ["none", "skip_connect", "sep_conv_3x3:fa",
                                    "sep_conv_3x3:usf"]
    assert report["bp_weight_share"] == {"supernet": 0.0, "derived": 0.0}
    assert 0 <= report["validation_accuracy"] <= 1
    # The genotype is a valid genome of the DARTS space, decoded to the reported string.
    space = DartsSpace(rules=("fa", "usf"), macro_rules=("fa",))
    assert space.to_string(space.validate(np.asarray(report["genome_genes"]))) == report["genome"]
    # Alpha moved between the epochs.
    assert history[0]["alpha_softmax"] != history[1]["alpha_softmax"]
    assert report["compiles"] == 2  # the step and the validation pass, each once


  def test_killed_search_resumes_to_the_same_alphas(self, uninterrupted, tmp_path):
    workdir, report = uninterrupted
    killed = str(tmp_path / "killed")

    def kill(record):
      if record["epoch"] == 1:  # after epoch 2's history line, before its checkpoint
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
      bionas.search(small_config(), killed, on_epoch=kill)
    resumed = bionas.search(small_config(), killed)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["genotype"] == report["genotype"]
    with open(os.path.join(workdir, "history.jsonl")) as f:
      full = [json.loads(line) for line in f]
    with open(os.path.join(killed, "history.jsonl")) as f:
      again = [json.loads(line) for line in f]
    assert [r["epoch"] for r in again] == [0, 1]
    assert again[-1]["alpha_softmax"] == full[-1]["alpha_softmax"]
    assert again[-1]["train_loss"] == full[-1]["train_loss"]


  def test_another_rule_order_compiles_nothing(self, uninterrupted, tmp_path):
    _, report = uninterrupted
    permuted = bionas.search(small_config(rules=("usf", "fa")), str(tmp_path / "p"))
    # Neither the search step and validation pass nor the set-up compile again (the derived
    # network's rule genes follow the new alphabet, so its assignment is built anew).
    assert (permuted["compiles"], permuted["setup_compiles"]) == (0, 0)
    assert permuted["candidates"] == ["none", "skip_connect", "sep_conv_3x3:usf",
                                      "sep_conv_3x3:fa"]
    assert permuted["validation_accuracy"] is not None
    assert report["compiles"] > 0


@pytest.mark.parametrize("kernel, strides, padding, dilation, groups", [
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), "depthwise"),
    ((5, 5), (2, 2), ((2, 2), (2, 2)), (1, 1), "depthwise"),
    ((3, 3), (2, 2), ((2, 2), (2, 2)), (2, 2), "depthwise"),
    ((1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
])
def test_unrolled_convolutions_equal_lax_conv(kernel, strides, padding, dilation, groups):
  """The supernet's unrolled 1x1 and depthwise forms equal lax.conv_general_dilated, also
  in both transposes (the credit assignment's vjp_x and vjp_W)."""
  from biojax.nn.layers import ConvForward
  rng = np.random.default_rng(0)
  c = 6
  x = jnp.asarray(rng.normal(size=(2, 9, 9, c)), jnp.float32)
  groups = c if groups == "depthwise" else 1
  w = jnp.asarray(rng.normal(size=(*kernel, c // groups, c)), jnp.float32)
  plain = ConvForward(strides, padding, dilation, groups)
  unrolled = ConvForward(strides, padding, dilation, groups, unrolled=True)
  y = plain(x, w)
  np.testing.assert_allclose(unrolled(x, w), y, rtol=1e-5, atol=1e-5)
  cotangent = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  for f in (plain, unrolled):
    _, back = jax.vjp(f, x, w)
    if f is plain:
      expected = back(cotangent)
    else:
      for a, b in zip(back(cotangent), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_stateful_rules_and_geometries_train_as_rule_copies():
  """Kolen-Pollack and an exponentiated-gradient geometry as rule copies of one operation:
  after a search step the kp copies' learned feedback has moved (B follows W) and the fa+eg
  copies' kernels kept their signs (a multiplicative step) and their KP state is untouched:
  each copy follows its own rule's mechanics along the rule axis."""
  model, variables, assignment, _ = tiny(rules=("kp", "fa+eg"))
  config = small_config()
  config.search.weights.learning_rate = 0.5  # large steps, so that signs would flip if additive
  step, _, weight_tx, alpha_tx = bionas.programs(model, bionas.program_settings(config))
  alpha = bionas.init_alpha(jax.random.key(1), model.num_candidates)
  state = bionas.initial_state(variables, alpha, weight_tx, alpha_tx)
  new, metrics = step(state, assignment, batch(0, 8), batch(1, 8), jax.random.key(0))
  assert metrics["finite"]
  old_p = traverse_util.flatten_dict(state.params)
  new_p = traverse_util.flatten_dict(new.params)
  old_f = traverse_util.flatten_dict(state.feedback)
  new_f = traverse_util.flatten_dict(new.feedback)
  checked = 0
  for path in old_p:
    if "sep_conv_3x3" not in path or path[-1] != "kernel":
      continue
    w0, w1 = np.asarray(old_p[path]), np.asarray(new_p[path])  # (edges, rules, ...)
    b0, b1 = (np.asarray(old_f[(*path[:-1], "learned")]),
              np.asarray(new_f[(*path[:-1], "learned")]))
    assert not np.array_equal(b0[:, 0], b1[:, 0])  # kp: B moved with W
    np.testing.assert_array_equal(b0[:, 1], b1[:, 1])  # fa+eg: no KP update
    assert not np.array_equal(w0[:, 1], w1[:, 1])
    moved = w1[:, 1] != w0[:, 1]
    assert np.all(np.sign(w1[:, 1][moved]) == np.sign(w0[:, 1][moved]))  # EG keeps signs
    checked += 1
  assert checked == 4 * 4  # 4 edge groups x 4 weight layers of a separable convolution
