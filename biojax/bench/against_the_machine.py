"""Section 4: achieved FLOP/s of the MLP train step over the FLOP/s of a dense matrix product
on the same machine."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import biojax
from biojax import nn as bnn
from biojax.bench.rule_overhead import initial_state, plain_step, random_batch
from biojax.bench.timing import MNIST_SHAPE, NUM_CLASSES, time_interleaved


def against_the_machine(tiny: bool, full: bool) -> dict:
  """FLOP/s of the MLP train step (FLOPs counted by hand: 2*m*n*k per product; the forward
  products, the weight-gradient products and the input-gradient products of every layer but
  the first) over the FLOP/s of one large square matrix product, measured interleaved."""
  hidden, b, n = ((32, 32), 16, 256) if tiny else ((1024, 1024), 256, 2048)
  repeats, inner = (2, 1) if tiny else ((9, 5) if full else (5, 3))
  dims = (784, *hidden, NUM_CLASSES)
  model = bnn.MLP(NUM_CLASSES, hidden=hidden)
  batch = random_batch((b, *MNIST_SHAPE))
  tx = biojax.make_optimizer("sgd", 0.01)
  state = initial_state(model, tx, batch["image"][:1])
  key = jax.random.key(1)
  step = jax.jit(biojax.make_train_step(model, tx))
  layers = list(zip(dims[:-1], dims[1:], strict=True))
  forward = sum(2 * b * i * o for i, o in layers)
  flops = 2 * forward + sum(2 * b * i * o for i, o in layers[1:])
  cost = step.lower(state, batch, key).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list | tuple) else cost
  xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0

  r = np.random.default_rng(0)
  a = jnp.asarray(r.normal(size=(n, n)), jnp.float32)
  c = jnp.asarray(r.normal(size=(n, n)), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  # The step's own products alone (same shapes, nothing else): what the step could reach.
  xs = [jnp.asarray(r.normal(size=(b, i)), jnp.float32) for i, _ in layers]
  ws = [jnp.asarray(r.normal(size=(i, o)), jnp.float32) for i, o in layers]
  gs = [jnp.asarray(r.normal(size=(b, o)), jnp.float32) for _, o in layers]

  @jax.jit
  def products(xs, ws, gs):
    out = [x @ w for x, w in zip(xs, ws, strict=True)]
    out += [x.T @ g for x, g in zip(xs, gs, strict=True)]
    out += [g @ w.T for g, w in zip(gs[1:], ws[1:], strict=True)]
    return out

  seconds = time_interleaved({
      "bp train step": lambda: step(state, batch, key)[1]["loss"],
      "plain jax.grad step": plain_step(model, state, batch),
      "the step's products alone": lambda: products(xs, ws, gs),
      f"matmul {n}x{n}x{n}": lambda: matmul(a, c),
  }, repeats, inner)
  peak = 2 * n**3 / seconds[f"matmul {n}x{n}x{n}"]
  rates = {"bp train step": flops / seconds["bp train step"],
           "plain jax.grad step": flops / seconds["plain jax.grad step"],
           "the step's products alone": flops / seconds["the step's products alone"],
           f"matmul {n}x{n}x{n}": peak}
  ratio = rates["bp train step"] / peak
  return {
      "workload": {"network": "mlp " + "-".join(map(str, dims)), "batch": b,
                   "optimizer": "sgd", "rule": "bp", "matmul": [n, n, n], "dtype": "float32"},
      "flops_per_step_by_hand": flops, "flops_per_step_xla_cost_analysis": xla_flops,
      "seconds": seconds, "flops_per_second": rates,
      "ratio_to_matmul": {k: v / peak for k, v in rates.items()},
      "ratio": ratio, "target": 0.6, "met": ratio >= 0.6,
  }
