"""The rule machinery of whole models against hand-written NumPy backward passes."""


import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import MLP_DIMS, mlp_setup

import biojax
from biojax import nn as bnn
from biojax import rules

DIMS = MLP_DIMS


def numpy_mlp_updates(variables, batch, feedback, direct=None):
  """Backward pass of a 2-hidden-layer ReLU MLP: the error reaches hidden layer ``l`` through
  the feedback matrix ``feedback[l + 1]`` of the layer above or, when ``direct`` is given, as
  DFA's ``(e D_l) * relu'(a_l)``."""
  p = variables["params"]
  ws = [np.asarray(p[n]["kernel"], np.float64) for n in ("dense_0", "dense_1", "classifier")]
  bs = [np.asarray(p[n]["bias"], np.float64) for n in ("dense_0", "dense_1", "classifier")]
  x = np.asarray(batch["image"], np.float64)
  a1 = x @ ws[0] + bs[0]
  h1 = np.maximum(a1, 0)
  a2 = h1 @ ws[1] + bs[1]
  h2 = np.maximum(a2, 0)
  logits = h2 @ ws[2] + bs[2]
  prob = np.exp(logits - logits.max(1, keepdims=True))
  prob /= prob.sum(1, keepdims=True)
  e = (prob - np.eye(DIMS[-1])[batch["label"]]) / x.shape[0]
  d3 = e
  d2 = (d3 @ feedback[2].T if direct is None else e @ direct[1]) * (a2 > 0)
  d1 = (d2 @ feedback[1].T if direct is None else e @ direct[0]) * (a1 > 0)
  grads = {}
  for name, inp, d in (("dense_0", x, d1), ("dense_1", h1, d2), ("classifier", h2, d3)):
    grads[name] = {"kernel": inp.T @ d, "bias": d.sum(0)}
  return grads


def kernels(variables):
  return [np.asarray(variables["params"][n]["kernel"], np.float64)
          for n in ("dense_0", "dense_1", "classifier")]


def fixed(variables, name):
  return np.asarray(variables["feedback"][name]["fixed"], np.float64)


# XLA's backend optimisations off: these tiny programs compile several times faster.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
# One compiled program serves every assignment: jit once, share across tests.
_learning_signal = jax.jit(biojax.learning_signal, static_argnums=0,
                           compiler_options=FAST_COMPILE)


def signal(model, variables, batch, spec, key=None, fn=_learning_signal):
  assignment = bnn.make_assignment(variables, spec)
  key = jax.random.key(7) if key is None else key
  updates, _, _ = fn(model, variables, batch, assignment, key)
  return updates


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet"])
def test_bp_equals_jax_grad(name):
  # A one-block-per-stage, narrow ResNet keeps batch norm, strides and (projection)
  # shortcuts, and compiles fast.
  model = (bnn.ResNet(10, blocks_per_stage=1, widths=(4, 8, 16)) if name == "resnet"
           else bnn.get_model(name, 10))
  r = np.random.default_rng(0)
  shape = (4, 12, 12, 1) if name != "resnet" else (4, 8, 8, 3)
  x = jnp.asarray(r.normal(size=shape), jnp.float32)
  y = jnp.asarray(r.integers(0, 10, 4), jnp.int32)
  # Jitted (one program rather than hundreds of eager ops); an 'rbg' key compiles fastest.
  variables = jax.jit(model.init, compiler_options=FAST_COMPILE)(
      jax.random.key(0, impl="rbg"), x)
  updates = signal(model, variables, {"image": x, "label": y}, "bp")

  def loss(params):
    others = {k: v for k, v in variables.items() if k != "params"}
    logits, _ = model.apply({**others, "params": params}, x, train=True, mutable=["batch_stats"])
    return biojax.cross_entropy(logits, y)

  grads = jax.jit(jax.grad(loss), compiler_options=FAST_COMPILE)(variables["params"])
  chex.assert_trees_all_close(updates, grads, atol=2e-6, rtol=1e-5)


def test_fa_with_b_equal_w_is_bp():
  model, variables, batch = mlp_setup()
  v = flax.core.unfreeze(jax.tree.map(lambda a: a, variables))
  for name in ("dense_0", "dense_1", "classifier"):
    v["feedback"][name]["fixed"] = v["params"][name]["kernel"]
  chex.assert_trees_all_close(signal(model, v, batch, "fa"), signal(model, v, batch, "bp"),
                              atol=1e-7)


def test_fa_and_bp_differ():
  model, variables, batch = mlp_setup()
  fa, bp = signal(model, variables, batch, "fa"), signal(model, variables, batch, "bp")
  assert not np.allclose(fa["dense_0"]["kernel"], bp["dense_0"]["kernel"])
  np.testing.assert_allclose(fa["classifier"]["kernel"], bp["classifier"]["kernel"], rtol=1e-6)


def test_brsf_redraws_every_batch():
  model, variables, batch = mlp_setup()
  u1 = signal(model, variables, batch, "brsf", jax.random.key(1))
  u2 = signal(model, variables, batch, "brsf", jax.random.key(2))
  assert not np.allclose(u1["dense_0"]["kernel"], u2["dense_0"]["kernel"])
  np.testing.assert_allclose(u1["classifier"]["kernel"], u2["classifier"]["kernel"], rtol=1e-6)


def test_mixed_assignment_dfa_over_bp():
  # dense_0 bp, dense_1 dfa, classifier bp: dense_0 receives dense_1's DFA error through W2.
  model, variables, batch = mlp_setup()
  ws = kernels(variables)
  p = variables["params"]
  x = np.asarray(batch["image"], np.float64)
  a1 = x @ ws[0] + np.asarray(p["dense_0"]["bias"])
  h1 = np.maximum(a1, 0)
  a2 = h1 @ ws[1] + np.asarray(p["dense_1"]["bias"])
  logits = np.maximum(a2, 0) @ ws[2] + np.asarray(p["classifier"]["bias"])
  prob = np.exp(logits - logits.max(1, keepdims=True))
  prob /= prob.sum(1, keepdims=True)
  e = (prob - np.eye(DIMS[-1])[batch["label"]]) / x.shape[0]
  d2 = e @ np.asarray(variables["feedback"]["dense_1"]["direct"]) * (a2 > 0)
  d1 = d2 @ ws[1].T * (a1 > 0)
  got = signal(model, variables, batch, ["bp", "dfa", "bp"])
  np.testing.assert_allclose(got["dense_1"]["kernel"], h1.T @ d2, atol=1e-6, rtol=1e-4)
  np.testing.assert_allclose(got["dense_0"]["kernel"], x.T @ d1, atol=1e-6, rtol=1e-4)


def test_softhebb_layer_update_and_no_feedback():
  model, variables, batch = mlp_setup()
  got = signal(model, variables, batch, ["bp", "softhebb", "bp"])
  ws = kernels(variables)
  p = variables["params"]
  x = np.asarray(batch["image"], np.float64)
  a1 = x @ ws[0] + np.asarray(p["dense_0"]["bias"])
  h1 = np.maximum(a1, 0)
  # The Hebbian update of dense_1 from its input h1 alone (Journe et al. 2023), normalised.
  expected = np.asarray(rules.softhebb_update(rules.dense_forward, jnp.asarray(h1, jnp.float32),
                                              jnp.asarray(ws[1], jnp.float32)))
  np.testing.assert_allclose(got["dense_1"]["kernel"], expected, atol=1e-5, rtol=1e-4)
  np.testing.assert_array_equal(got["dense_1"]["bias"], 0.0)
  # No error crosses a SoftHebb layer: the bp layer below it learns nothing.
  np.testing.assert_array_equal(got["dense_0"]["kernel"], 0.0)


def numpy_conv(x, w, stride, pad):
  """Direct loops: y[n, i, j, o] = sum patch * w[..., o]."""
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k = w.shape[0]
  out = (xp.shape[1] - k) // stride + 1
  y = np.zeros((x.shape[0], out, out, w.shape[-1]))
  for i in range(out):
    for j in range(out):
      patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      y[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
  return y


def numpy_conv_backward(x, w, b, g, stride, pad):
  """dx through ``b`` and the local dW, for a cotangent ``g`` at the output."""
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k = w.shape[0]
  dxp = np.zeros_like(xp)
  dw = np.zeros_like(w)
  for i in range(g.shape[1]):
    for j in range(g.shape[2]):
      sl = (slice(None), slice(i * stride, i * stride + k), slice(j * stride, j * stride + k))
      dxp[sl] += np.einsum("no,hwco->nhwc", g[:, i, j, :], b)
      dw += np.einsum("nhwc,no->hwco", xp[sl], g[:, i, j, :])
  return dxp[:, pad:-pad, pad:-pad, :], dw


@pytest.mark.parametrize("rule", ["bp", "fa", "usf", "brsf", "frsf"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_backward_matches_numpy(rule, stride):
  r = np.random.default_rng(stride)
  x = r.normal(size=(2, 6, 6, 3))
  w = r.normal(size=(3, 3, 3, 4))
  g = r.normal(size=(2, 6 // stride, 6 // stride, 4))
  state = rules.init_feedback_state(jax.random.key(2), w.shape)
  key = jax.random.key(9)
  b = rules.get_rule(rule).feedback(jnp.asarray(w, jnp.float32), state, key)
  forward = bnn.ConvForward((stride, stride), ((1, 1), (1, 1)), (1, 1), 1)
  xj, wj = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
  y, vjp = jax.vjp(lambda x_, w_: bnn.credit(forward, rules.RuleOptions(), x_, w_, b,
                                            jnp.int32(rules.rule_id(rule))), xj, wj)
  np.testing.assert_allclose(y, numpy_conv(x, w, stride, 1), atol=1e-4, rtol=1e-4)
  dx, dw = vjp(jnp.asarray(g, jnp.float32))
  # Independent B for the sign-concordant rules: recomputed in NumPy from W.
  std = np.sqrt(2.0 / (9 * 3 + 9 * 4))
  b_np = {"bp": w, "fa": np.asarray(state["fixed"]), "usf": np.sign(w) * std,
          "brsf": np.abs(np.asarray(b)) * np.sign(w),
          "frsf": np.abs(np.asarray(state["fixed"])) * np.sign(w)}[rule]
  if rule == "brsf":
    np.testing.assert_array_equal(np.sign(np.asarray(b)), np.sign(w))
  dx_np, dw_np = numpy_conv_backward(x, w, b_np, g, stride, 1)
  np.testing.assert_allclose(dx, dx_np, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(dw, dw_np, atol=1e-4, rtol=1e-4)


def test_depthwise_conv_forward_and_bp_gradient():
  r = np.random.default_rng(3)
  x = jnp.asarray(r.normal(size=(2, 5, 5, 4)), jnp.float32)
  layer = bnn.Conv(4, (3, 3), feature_group_count=4, padding=1)
  variables = layer.init(jax.random.key(0), x)
  w = np.asarray(variables["params"]["kernel"])
  assert w.shape == (3, 3, 1, 4)
  # Depthwise: channel c of the output sees only channel c of the input.
  expected = np.stack([numpy_conv(np.asarray(x[..., c:c + 1]), w[..., c:c + 1], 1, 1)[..., 0]
                       for c in range(4)], -1)
  np.testing.assert_allclose(layer.apply(variables, x), expected, atol=1e-4)
  with pytest.raises(ValueError, match="feature_group_count"):
    bnn.Conv(6, (3, 3), feature_group_count=4).init(jax.random.key(0), x)


def test_dilated_strided_conv_forward_and_fa_backward():
  """Dilation 2 equals a 5x5 kernel with zeros between the taps; FA sends the error down
  through the fixed matrix, dilated the same way (NumPy loops as the reference)."""
  r = np.random.default_rng(4)
  x = r.normal(size=(2, 7, 7, 2))
  layer = bnn.Conv(3, (3, 3), kernel_dilation=2, padding=2, use_bias=False)
  variables = layer.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  w = np.asarray(variables["params"]["kernel"], np.float64)
  dilated = np.zeros((5, 5, 2, 3))
  dilated[::2, ::2] = w
  np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x, jnp.float32)),
                             numpy_conv(x, dilated, 1, 2), atol=1e-4)
  g = r.normal(size=(2, 7, 7, 3))
  b = np.asarray(variables["feedback"]["fixed"], np.float64)
  b_dilated = np.zeros((5, 5, 2, 3))
  b_dilated[::2, ::2] = b
  assignment = {"rule": jnp.int32(rules.rule_id("fa"))}

  def f(x_, params):
    return layer.apply({**variables, "params": params, "assignment": assignment}, x_,
                       rngs={"feedback": jax.random.key(0)})

  _, vjp = jax.vjp(f, jnp.asarray(x, jnp.float32), variables["params"])
  dx, dparams = vjp(jnp.asarray(g, jnp.float32))
  dx_np, dw_np = numpy_conv_backward(x, dilated, b_dilated, g, 1, 2)
  np.testing.assert_allclose(dx, dx_np, atol=1e-4)
  np.testing.assert_allclose(dparams["kernel"], dw_np[::2, ::2], atol=1e-4)
