"""Benchmarks: every figure is a ratio of two measurements taken in the same run.

    python -m biojax.bench --out=DIR [--full] [--tiny]

Writes ``bench.json`` and ``bench.md`` in DIR. Each timing is the median of several repeats,
after a warm-up call that compiles; the rules being compared are measured interleaved
(round-robin), so slow drift of the machine affects them alike.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import biojax
from biojax import nn as bnn
from biojax import rules

FLAGS = flags.DEFINE_string("out", "bench_out", "Output directory.")
FULL = flags.DEFINE_bool("full", False, "Larger workloads and more repeats.")
TINY = flags.DEFINE_bool("tiny", False, "Tiny workloads (for tests: checks it runs, not speed).")


def machine() -> dict:
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
          "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, inner: int
                     ) -> dict[str, float]:
  """Median seconds per call of each function, measured round-robin after one warm-up."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  samples = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(inner):
        out = fn()
      jax.block_until_ready(out)
      samples[name].append((time.perf_counter() - start) / inner)
  return {name: statistics.median(s) for name, s in samples.items()}


def _workloads(tiny: bool, full: bool):
  if tiny:
    return {"mlp": (bnn.MLP(10, hidden=(32, 32)), (16, 28, 28, 1))}
  out = {"mlp 784-1024-1024-10": (bnn.MLP(10, hidden=(1024, 1024)), (256, 28, 28, 1)),
         "convnet": (bnn.ConvNet(10), (128, 28, 28, 1))}
  if full:
    out["resnet20"] = (bnn.resnet20(10), (128, 32, 32, 3))
  return out


def _rule_overhead_one(model, shape, repeats: int, inner: int) -> dict:
  r = np.random.default_rng(0)
  batch = {"image": jnp.asarray(r.normal(size=shape), jnp.float32),
           "label": jnp.asarray(r.integers(0, 10, shape[0]), jnp.int32)}
  tx = biojax.make_optimizer("sgd", 0.01)
  state = biojax.create_train_state(model, tx, jax.random.key(0), batch["image"][:1])
  step = jax.jit(biojax.make_train_step(model, tx))
  key = jax.random.key(1)
  fns = {}
  for spec in list(rules.rule_names()) + ["eg"]:
    layer_specs = bnn.single_rule_specs(spec, len(state.assignment.layers))
    s = state.replace(assignment=bnn.make_assignment(state.variables(), layer_specs))
    fns[spec] = functools.partial(lambda s: step(s, batch, key)[1]["loss"], s)

  # The same model compiled for the error-driven rules only (no local-rule branch).
  error_driven = tuple(r.name for r in rules.rules() if r.credit != "local")
  lean = model.clone(options=dataclasses.replace(model.options, rules=error_driven))
  lean_step = jax.jit(biojax.make_train_step(lean, tx))
  fns["bp (error-driven build)"] = lambda: lean_step(state, batch, key)[1]["loss"]

  plain_tx = optax.sgd(0.01)
  plain_opt = plain_tx.init(state.params)

  @jax.jit
  def plain_step(params, opt_state):
    def loss(p):
      logits = model.apply({"params": p, "feedback": state.feedback}, batch["image"])
      return biojax.cross_entropy(logits, batch["label"])
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = plain_tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  fns["plain jax.grad"] = lambda: plain_step(state.params, plain_opt)[2]
  seconds = time_interleaved(fns, repeats, inner)
  base = seconds["bp"]
  return {
      "batch_shape": list(shape),
      "seconds_per_step": seconds,
      "ratio_to_bp": {k: v / base for k, v in seconds.items()},
      "bp_over_plain_jax_grad": base / seconds["plain jax.grad"],
      "error_driven_build_bp_over_plain_jax_grad":
          seconds["bp (error-driven build)"] / seconds["plain jax.grad"],
  }


def rule_overhead(tiny: bool, full: bool) -> dict:
  """Train-step time of each rule (same rule on every layer; for local rules every layer
  but the classifier) divided by ``bp``'s; and ``bp`` through biojax divided by a plain
  ``jax.grad`` SGD step on the same model (the cost of the rule machinery)."""
  repeats, inner = (2, 1) if tiny else ((9, 5) if full else (5, 3))
  return {name: _rule_overhead_one(model, shape, repeats, inner)
          for name, (model, shape) in _workloads(tiny, full).items()}


TARGETS = {"fa": 1.10, "usf": 1.10, "brsf": 1.10, "frsf": 1.10, "dfa": 1.15, "kp": 1.20,
           "eg": 1.10, "softhebb": 1.5}


def to_markdown(report: dict) -> str:
  m = report["machine"]
  lines = [
      "# biojax benchmarks", "",
      f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}, jax {m['jax']}.",
      f"Command: `{report['command']}`", "",
      "## Rule overhead: train-step time relative to bp (same run, medians, interleaved)", "",
  ]
  for name, r in report["rule_overhead"].items():
    lines += [f"### {name}, batch {r['batch_shape']}", "",
              "| rule | ms/step | ratio to bp | target |", "|---|---|---|---|"]
    for rule, ratio in r["ratio_to_bp"].items():
      target = TARGETS.get(rule)
      lines.append(f"| {rule} | {1e3 * r['seconds_per_step'][rule]:.2f} | {ratio:.3f} | "
                   f"{f'<= {target:.2f}' if target else ''} |")
    lines += ["", f"bp through biojax / plain jax.grad step: "
              f"{r['bp_over_plain_jax_grad']:.3f} (all rules compiled in); "
              f"{r['error_driven_build_bp_over_plain_jax_grad']:.3f} (built for the "
              "error-driven rules only, `RuleOptions(rules=...)`)", ""]
  return "\n".join(lines)


def main(argv):
  del argv
  os.makedirs(FLAGS.value, exist_ok=True)
  report = {"machine": machine(),
            "command": "python -m biojax.bench --out=" + FLAGS.value
            + (" --full" if FULL.value else "") + (" --tiny" if TINY.value else ""),
            "rule_overhead": rule_overhead(TINY.value, FULL.value)}
  with open(os.path.join(FLAGS.value, "bench.json"), "w") as f:
    json.dump(report, f, indent=2)
  markdown = to_markdown(report)
  with open(os.path.join(FLAGS.value, "bench.md"), "w") as f:
    f.write(markdown)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
