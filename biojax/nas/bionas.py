"""BioNAS-DARTS: DARTS's differentiable search over (operation, learning rule) candidates.

``python -m biojax.main --config=experiments/bionas_darts.py --workdir=DIR`` (task
``"bionas_darts"``). Source paper A's search method (Hamzaoui & Baghdadi 2025), on DARTS
(Liu, Simonyan & Yang 2019, ICLR, arXiv:1806.09055); docs/bionas.md.

Each step, on the supernet (:class:`~biojax.nas.darts.supernet.DartsSupernet`):

1. an **alpha step** on a batch of the alpha half (the data set's validation split, carved
   out of the training split): the gradient of the cross-entropy w.r.t. alpha, first order
   (at the current weights) or second order (at the weights after one virtual weight step,
   minus the finite-difference Hessian-vector product of DARTS's eq. 8), then Adam;
2. a **weight step** on a batch of the weight half (the rest of the training split): every
   weight layer's update by its rule (:func:`biojax.learning_signal`), then SGD.

The alpha gradient is taken through the rules' backward pass (``alpha_gradient="rules"``, as
the paper's code, whose biotorch layers replace the backward pass) or through the true
gradient (``"true"``). The whole step is one compiled program (``compiles`` in the report).
After the last epoch the genotype is derived (DARTS's rule, with the candidates' rules), and
its network (:class:`~biojax.nas.darts.DartsNetwork`) is retrained from scratch and tested
once on the test split.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from biojax import data as data_lib
from biojax import learning
from biojax import rules as rules_lib
from biojax import train as train_lib
from biojax.checkpoint import Checkpointer
from biojax.compilation import CompileCounter
from biojax.metrics import append_jsonl, read_jsonl, rewrite_jsonl, to_json
from biojax.nas import search as search_lib
from biojax.nas.darts import supernet as supernet_lib
from biojax.nas.darts.space import DartsSpace
from biojax.nn.assignment import Assignment, geometry_tree, validate_assignment
from biojax.pipeline import bp_weight_share as network_bp_share
from biojax.preemption import Preemption
from biojax.workdir import workdir_lock

Array = jax.Array
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.jsonl"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
ALPHA_PLOT = "alpha.png"
RULE_SHARE_PLOT = "rule_share.png"
LOSS_PLOT = "losses.png"
ORDERS = (1, 2)
ALPHA_GRADIENTS = ("rules", "true")
CELLS = ("normal", "reduce")
# Independent PRNG streams of the search (fold_in of the seed's key; the last: a NumPy stream).
INIT_STREAM, ALPHA_STREAM, STEP_STREAM, RETRAIN_STREAM, ALPHA_BATCH_STREAM = 0, 1, 2, 3, 4


@flax.struct.dataclass
class SupernetState:
  """Everything that changes during the search (a pytree; checkpointed each epoch)."""

  step: Array
  params: Any
  opt_state: Any
  feedback: Any
  batch_stats: Any
  alpha: dict  # {"normal": (14, K), "reduce": (14, K)}: the architecture weights
  alpha_opt_state: Any

  def variables(self, params: Any = None, alpha: Any = None) -> dict:
    """The supernet's variables with mixing weights ``softmax(alpha)``."""
    return {"params": self.params if params is None else params, "feedback": self.feedback,
            "batch_stats": self.batch_stats,
            "mixing": mixing_weights(self.alpha if alpha is None else alpha)}


def initial_state(variables: Mapping, alpha: Mapping, weight_tx: optax.GradientTransformation,
                  alpha_tx: optax.GradientTransformation | None = None,
                  alpha_opt_state: Any = None) -> SupernetState:
  """The step-0 :class:`SupernetState` of a supernet's initialised ``variables`` and
  ``alpha`` (:func:`init_alpha`), with the weight optimizer's state and the architecture
  search's: ``alpha_tx.init(alpha)`` (DARTS's Adam), or ``alpha_opt_state`` as given
  (BioNAS-EG's CMA-ES state)."""
  if (alpha_tx is None) == (alpha_opt_state is None):
    raise ValueError("initial_state needs exactly one of alpha_tx and alpha_opt_state.")
  return SupernetState(
      step=jnp.zeros((), jnp.int32), params=variables["params"],
      opt_state=weight_tx.init(variables["params"]), feedback=variables["feedback"],
      batch_stats=variables["batch_stats"], alpha=alpha,
      alpha_opt_state=alpha_tx.init(alpha) if alpha_tx is not None else alpha_opt_state)


def mixing_weights(alpha: Mapping[str, Array]) -> dict:
  """``softmax(alpha)`` over each edge's candidates, per cell type."""
  return {cell: jax.nn.softmax(a, axis=-1) for cell, a in alpha.items()}


def init_alpha(key: Array, num_candidates: int, scale: float = 1e-3) -> dict:
  """DARTS's initial architecture weights: ``scale * N(0, 1)``, one (14, K) array per cell
  type."""
  keys = jax.random.split(key, len(CELLS))
  return {cell: scale * jax.random.normal(k, (supernet_lib.NUM_EDGES, num_candidates))
          for cell, k in zip(CELLS, keys, strict=True)}


def weight_optimizer(section: Any, total_steps: int
                     ) -> tuple[optax.GradientTransformationExtraArgs, optax.Schedule]:
  """DARTS's weight optimizer: clip, weight decay, SGD with momentum, cosine from
  ``learning_rate`` to ``min_learning_rate`` over the search (then each layer's geometry)."""
  schedule = optax.cosine_decay_schedule(
      section.learning_rate, max(total_steps, 1),
      alpha=section.min_learning_rate / section.learning_rate)
  tx = train_lib.make_optimizer(section.optimizer, schedule, momentum=section.momentum,
                                weight_decay=section.weight_decay, clip_norm=section.clip_norm)
  return tx, schedule


def alpha_optimizer(section: Any) -> optax.GradientTransformation:
  """DARTS's alpha optimizer: PyTorch's Adam with L2 weight decay (added to the gradient)."""
  return optax.chain(optax.add_decayed_weights(section.weight_decay),
                     optax.adam(section.learning_rate, b1=section.b1, b2=section.b2))


def _check_settings(order: int, alpha_gradient: str) -> None:
  if order not in ORDERS:
    raise ValueError(f"Unknown DARTS order {order!r}. Valid orders: {ORDERS}.")
  if alpha_gradient not in ALPHA_GRADIENTS:
    raise ValueError(f"Unknown alpha_gradient {alpha_gradient!r}. Valid values: "
                     f"{', '.join(ALPHA_GRADIENTS)}.")


def make_loss(model: supernet_lib.DartsSupernet, alpha_gradient: str = "rules") -> Callable:
  """``loss(alpha, params, state, batch, assignment, key) -> (cross-entropy, accuracy)`` of
  the supernet with mixing weights ``softmax(alpha)`` in train mode. Its derivatives in
  ``alpha`` and ``params`` follow the rules' backward pass (``"rules"``: the assignment is
  given to the layers) or are the true gradient (``"true"``)."""
  _check_settings(1, alpha_gradient)

  def loss(alpha, params, state, batch, assignment, key):
    variables = state.variables(params, alpha)
    kwargs = {}
    if alpha_gradient == "rules":
      variables["assignment"] = assignment.as_collection()
      kwargs["rngs"] = {"feedback": key}
    logits, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"],
                            **kwargs)
    value = learning.cross_entropy(logits, batch["label"])
    return value, jnp.mean(jnp.argmax(logits, -1) == batch["label"])

  return loss


def make_alpha_gradient(model: supernet_lib.DartsSupernet, schedule: optax.Schedule,
                        order: int = 1, alpha_gradient: str = "rules",
                        weight_decay: float = 0.0) -> Callable:
  """``alpha_grad(state, assignment, train_batch, alpha_batch, key) -> (g, accuracy)``: the
  gradient of the alpha half's loss w.r.t. alpha, first or second order (DARTS eq. 7-8), and
  the supernet's accuracy on the alpha batch."""
  _check_settings(order, alpha_gradient)
  grads = jax.grad(make_loss(model, alpha_gradient), argnums=(0, 1), has_aux=True)

  def alpha_grad(state, assignment, train_batch, alpha_batch, key):
    k_virtual, k_val, k_hessian = jax.random.split(key, 3)
    if order == 1:
      (g_alpha, _), accuracy = grads(state.alpha, state.params, state, alpha_batch,
                                     assignment, k_val)
      return g_alpha, accuracy
    # Second order: w' = w - xi * (update_train(w) + wd * w), xi the weights' current
    # learning rate; then grad_alpha L_val(w', alpha) - xi * H v with v = grad_w' L_val(w',
    # alpha) and H v ~ (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / (2 eps),
    # w+- = w +- eps v, eps = 0.01 / ||v|| (DARTS's finite-difference approximation).
    # Without momentum in the virtual step (DARTS adds the optimizer's momentum buffer).
    xi = schedule(state.step)
    updates, _, _ = learning.learning_signal(
        model, state.variables(), train_batch, assignment, k_virtual)
    virtual = jax.tree.map(lambda w, u: w - xi * (u + weight_decay * w), state.params, updates)
    (g_alpha, v), accuracy = grads(state.alpha, virtual, state, alpha_batch, assignment, k_val)
    eps = 0.01 / (optax.tree.norm(v) + 1e-12)
    plus = jax.tree.map(lambda w, d: w + eps * d, state.params, v)
    minus = jax.tree.map(lambda w, d: w - eps * d, state.params, v)
    (g_plus, _), _ = grads(state.alpha, plus, state, train_batch, assignment, k_hessian)
    (g_minus, _), _ = grads(state.alpha, minus, state, train_batch, assignment, k_hessian)
    hessian = jax.tree.map(lambda p, m: (p - m) / (2 * eps), g_plus, g_minus)
    return jax.tree.map(lambda g, h: g - xi * h, g_alpha, hessian), accuracy

  return alpha_grad


def make_weight_step(model: supernet_lib.DartsSupernet, weight_tx) -> Callable:
  """``weight_step(state, assignment, batch, key) -> (state, metrics)``: one weight step
  of the supernet with mixing weights ``softmax(state.alpha)``: every weight layer's update by
  its rule (:func:`biojax.learning_signal`), then ``weight_tx``, then the rules' own state
  (structural plasticity, feedback updates). Alpha and its optimizer state are unchanged."""
  options = model.options

  def weight_step(state: SupernetState, assignment: Assignment, batch: Mapping, key: Array):
    updates, new_vars, metrics = learning.learning_signal(
        model, state.variables(), batch, assignment, key)
    steps, opt_state = weight_tx.update(updates, state.opt_state, state.params,
                                        geometry=geometry_tree(assignment, state.params))
    params = optax.apply_updates(state.params, steps)
    params = learning.structural_plasticity(params, assignment, options)
    feedback = learning.update_rule_state(state.feedback, state.params, params, assignment,
                                          options, new_vars.get(learning.ACTIVITY))
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                        feedback=feedback, batch_stats=new_vars["batch_stats"])
    finite = train_lib.all_finite((new.params, new.alpha))
    return new, {"train_loss": metrics["loss"], "train_accuracy": metrics["accuracy"],
                 "finite": finite}

  return weight_step


def make_search_step(model: supernet_lib.DartsSupernet, weight_tx, schedule, alpha_tx,
                     order: int = 1, alpha_gradient: str = "rules", weight_decay: float = 0.0
                     ) -> Callable:
  """``step(state, assignment, train_batch, alpha_batch, key) -> (state, metrics)``
  (``key``: the search's; each step folds in its step number): one alpha step
  (:func:`make_alpha_gradient`, then ``alpha_tx``), then one weight step with the new alpha
  (:func:`make_weight_step`). Pure; wrap in ``jax.jit``."""
  alpha_grad = make_alpha_gradient(model, schedule, order, alpha_gradient, weight_decay)
  weight_step = make_weight_step(model, weight_tx)

  def step(state: SupernetState, assignment: Assignment, train_batch: Mapping,
           alpha_batch: Mapping, key: Array):
    k_alpha, k_weights = jax.random.split(jax.random.fold_in(key, state.step))
    g_alpha, alpha_accuracy = alpha_grad(state, assignment, train_batch, alpha_batch, k_alpha)
    alpha_steps, alpha_opt_state = alpha_tx.update(g_alpha, state.alpha_opt_state, state.alpha)
    alpha = optax.apply_updates(state.alpha, alpha_steps)
    moved = state.replace(alpha=alpha, alpha_opt_state=alpha_opt_state)
    new, metrics = weight_step(moved, assignment, train_batch, k_weights)
    return new, {**metrics, "alpha_batch_accuracy": alpha_accuracy,
                 "alpha_grad_norm": optax.tree.norm(g_alpha)}

  return step


def make_eval_step(model: supernet_lib.DartsSupernet) -> Callable:
  """``eval_step(state, batch) -> sums`` of the supernet with ``softmax(state.alpha)``
  (running batch statistics, plain forward pass)."""
  def eval_step(state: SupernetState, batch: Mapping):
    logits = model.apply(state.variables(), batch["image"], train=False)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    mask = batch["mask"].astype(losses.dtype)
    hits = (jnp.argmax(logits, -1) == batch["label"]).astype(losses.dtype)
    return {"loss_sum": jnp.sum(losses * mask), "correct": jnp.sum(hits * mask),
            "count": jnp.sum(mask)}
  return eval_step


# ------------------------------------------------------------------------------ config


def macro_rules(config: ml_collections.ConfigDict) -> dict[str, str]:
  """``config.supernet.macro_rules`` (one rule spec, or a dict over
  :data:`~biojax.nas.darts.supernet.MACRO_ROLES`) as a checked dict."""
  value = config.supernet.macro_rules
  if isinstance(value, str):
    value = dict.fromkeys(supernet_lib.MACRO_ROLES, value)
  value = dict(value)
  unknown = sorted(set(value) - set(supernet_lib.MACRO_ROLES))
  missing = [r for r in supernet_lib.MACRO_ROLES if r not in value]
  if unknown or missing:
    raise ValueError(f"config.supernet.macro_rules needs exactly the layer kinds "
                     f"{', '.join(supernet_lib.MACRO_ROLES)}; unknown: {unknown}, missing: "
                     f"{missing}.")
  out = {}
  for role, spec in value.items():
    out[role] = rules_lib.format_rule_spec(*rules_lib.parse_rule_spec(spec))
    supernet_lib.check_supernet_rule(spec, f"config.supernet.macro_rules[{role!r}]")
  return out


def check_supernet_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for the values every supernet search (DARTS or EG) reads: the supernet,
  the weight optimizer, the budget and the retrain."""
  s = config.search
  for name in ("epochs", "steps_per_epoch", "batch_size", "eval_batch_size"):
    if s[name] < 1:
      raise ValueError(f"config.search.{name}={s[name]} must be >= 1.")
  if config.supernet.layout not in supernet_lib.LAYOUTS:
    raise ValueError(f"config.supernet.layout={config.supernet.layout!r}; valid layouts: "
                     f"{', '.join(supernet_lib.LAYOUTS)}.")
  if config.supernet.layers < 3:
    raise ValueError(f"config.supernet.layers={config.supernet.layers}: the supernet needs "
                     "at least 3 cells to have a normal cell (reductions at layers // 3 and "
                     "2 * layers // 3).")
  if not 0 < s.weights.min_learning_rate <= s.weights.learning_rate:
    raise ValueError("config.search.weights.min_learning_rate must be in (0, learning_rate].")
  supernet_lib.make_alphabet(config.supernet.operations, config.supernet.rules)
  macro_rules(config)
  search_lib.check_search_config_retrain(config)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Clear errors for every value the BioNAS-DARTS search reads, before anything is
  touched."""
  s = config.search
  if s.order not in ORDERS:
    raise ValueError(f"config.search.order={s.order!r}; valid orders: {ORDERS} (first or "
                     "second order DARTS).")
  if s.alpha_gradient not in ALPHA_GRADIENTS:
    raise ValueError(f"config.search.alpha_gradient={s.alpha_gradient!r}; valid values: "
                     f"{', '.join(ALPHA_GRADIENTS)}.")
  check_supernet_config(config)


def build(config: ml_collections.ConfigDict, num_classes: int
          ) -> tuple[supernet_lib.DartsSupernet, supernet_lib.Alphabet, dict[str, str]]:
  """The supernet of ``config.supernet``, its alphabet and its macro rules."""
  alphabet = supernet_lib.make_alphabet(config.supernet.operations, config.supernet.rules)
  macro = macro_rules(config)
  options = {**config.rule_options.to_dict(),
             "rules": supernet_lib.compiled_rules(alphabet, macro)}
  model = supernet_lib.DartsSupernet(
      operations=alphabet.operations, num_rules=len(alphabet.rules), C=config.supernet.C,
      layers=config.supernet.layers, num_classes=num_classes, layout=config.supernet.layout,
      options=rules_lib.RuleOptions.from_dict(options))
  return model, alphabet, macro


def derived_space(alphabet: supernet_lib.Alphabet, macro: Mapping[str, str]) -> DartsSpace:
  """The DARTS genome space that holds every derivable genotype with its rules."""
  edge_rules = tuple(dict.fromkeys((*alphabet.rules, macro["skip_reduce"])))
  macro_alphabet = tuple(dict.fromkeys(macro[r] for r in ("stem", "preprocess", "classifier")))
  return DartsSpace(rules=edge_rules, macro_rules=macro_alphabet)


def derived_genome(derived: supernet_lib.Derived, weights: Mapping, space: DartsSpace,
                   alphabet: supernet_lib.Alphabet, macro: Mapping[str, str]) -> np.ndarray:
  """The :class:`DartsSpace` genome of ``derived``. A ``skip_connect`` edge takes the
  FactorizedReduce rule (expressed on the reduction cell's stride-2 edges); a pooling edge,
  whose rule gene is dormant, the rule with the most weight on that edge."""
  shares = supernet_lib.rule_weight(weights, alphabet)
  edge_rules = {}
  for cell in CELLS:
    rules = []
    for op, j, rule in derived.edges[cell]:
      if rule is None and op == "skip_connect":
        rule = macro["skip_reduce"]
      elif rule is None:
        node = len(rules) // 2 + 2
        k = supernet_lib.EDGES.index((node, j))
        rule = alphabet.rules[int(np.argmax(shares[cell][k]))] if alphabet.rules else (
            macro["skip_reduce"])
      rules.append(rule)
    edge_rules[cell] = rules
  return space.encode(derived.genotype, edge_rules["normal"], edge_rules["reduce"],
                      {r: macro[r] for r in ("stem", "preprocess", "classifier")})


# ---------------------------------------------------------------------------- the loop


def _alpha_half(config: ml_collections.ConfigDict, dataset: data_lib.Dataset,
                transform: Callable) -> dict:
  """The alpha half (the validation split) in memory: ``{"image", "label"}`` arrays."""
  images, labels = [], []
  for batch in dataset.eval_batches("validation", config.search.eval_batch_size):
    keep = np.asarray(batch["mask"]) > 0
    batch = transform(batch)
    images.append(np.asarray(batch["image"])[keep])
    labels.append(np.asarray(batch["label"])[keep])
  if not images or not sum(len(x) for x in labels):
    raise ValueError("The alpha half is empty: set config.validation_size > 0 (DARTS: half "
                     "of the training split).")
  return {"image": np.concatenate(images), "label": np.concatenate(labels)}


def half_batch(half: Mapping, batch_size: int, seed: int, step: int,
               stream: int = ALPHA_BATCH_STREAM) -> dict:
  """A batch of the alpha half (the alpha batch of ``step``; BioNAS-EG: the fitness batch of
  an epoch): drawn from ``(seed, stream, step)``, so a resumed search draws the batches the
  uninterrupted one draws."""
  rng = np.random.default_rng([seed, stream, step])
  index = rng.choice(len(half["label"]), size=batch_size, replace=batch_size > len(
      half["label"]))
  return {"image": half["image"][index], "label": half["label"][index]}


def _eval_batches(config, half: Mapping) -> list[dict]:
  """The supernet's validation batches: the first ``config.search.validation_examples``
  (None: all) of the alpha half, padded and masked."""
  n = config.search.validation_examples or len(half["label"])
  n = min(n, len(half["label"]))
  size = config.search.eval_batch_size
  out = []
  for start in range(0, n, size):
    stop = min(start + size, n)
    image = np.zeros((size, *half["image"].shape[1:]), np.float32)
    label = np.zeros((size,), np.int32)
    image[:stop - start], label[:stop - start] = half["image"][start:stop], half["label"][
        start:stop]
    mask = (np.arange(size) < stop - start).astype(np.float32)
    out.append({"image": image, "label": label, "mask": mask})
  return out


@dataclasses.dataclass(frozen=True)
class Method:
  """How a supernet search moves alpha: what :func:`run` needs from BioNAS-DARTS
  (:func:`darts_method`) or BioNAS-EG (:func:`biojax.nas.bionas_eg.eg_method`).

  Attributes:
    name: ``report["method"]`` ("darts", "eg").
    title: the method's name in the logs.
    weight_tx: the weights' optimizer (its state is ``SupernetState.opt_state``).
    alpha_opt_state: ``alpha -> state`` of the architecture search at step 0
      (``SupernetState.alpha_opt_state``: DARTS's Adam state, EG's CMA-ES state).
    train_step: ``(state, assignment, train_batch, step) -> (state, metrics)``, one
      training step (``step``: its global index); ``metrics`` has ``train_loss`` and
      ``finite``; the other numbers are averaged over the epoch into the history record.
    eval_step: the supernet's validation pass (:func:`make_eval_step`).
    before_epoch: ``(state, assignment, epoch) -> (state, record)`` run before each epoch's
      training steps, or None; ``record`` joins the epoch's history record.
    diverged: what to lower when the supernet diverges (the error message).
    report: the method's own fields of report.json.
  """

  name: str
  title: str
  weight_tx: optax.GradientTransformation
  alpha_opt_state: Callable[[Mapping], Any]
  train_step: Callable
  eval_step: Callable
  before_epoch: Callable | None
  diverged: str
  report: Mapping[str, Any]


def darts_method(config: ml_collections.ConfigDict, model: supernet_lib.DartsSupernet,
                 alphabet: supernet_lib.Alphabet, half: Mapping, root: Array) -> Method:
  """BioNAS-DARTS: each step an alpha step on an alpha batch, then a weight step."""
  s = config.search
  step_fn, eval_fn, weight_tx, alpha_tx = programs(model, program_settings(config))
  step_key = jax.random.fold_in(root, STEP_STREAM)

  def train_step(state, assignment, batch, g):
    return step_fn(state, assignment, batch, half_batch(half, s.batch_size, config.seed, g),
                   step_key)

  return Method(
      name="darts", title="BioNAS-DARTS", weight_tx=weight_tx, alpha_opt_state=alpha_tx.init,
      train_step=train_step, eval_step=eval_fn, before_epoch=None,
      diverged=(f"config.search.weights.learning_rate (now {s.weights.learning_rate}) or "
                f"config.search.alpha.learning_rate (now {s.alpha.learning_rate})"),
      report={"order": s.order, "alpha_gradient": s.alpha_gradient})


def search(config: ml_collections.ConfigDict, workdir: str,
           on_epoch: Callable[[dict], Any] | None = None) -> dict:
  """Runs (or resumes) the BioNAS-DARTS search of ``config`` in ``workdir``; returns the
  report. ``on_epoch(record)`` is called with each epoch's history record after it is
  written and before the epoch is checkpointed (the tests kill a search there). SIGTERM
  stops it after the current epoch (``{"interrupted": True, "epoch": e}``); the same
  command resumes it.

  Raises:
    ValueError: an invalid config value (unknown operation or rule, listing the valid ones).
    biojax.data.DatasetNotFoundError: the data set is missing (the message says how to
      prepare it).
    SearchFailedError: the supernet's loss or alpha stopped being finite.
  """
  check_config(config)
  return run(config, workdir, darts_method, on_epoch)


def run(config: ml_collections.ConfigDict, workdir: str,
        method_of: Callable[..., Method],
        on_epoch: Callable[[dict], Any] | None = None) -> dict:
  """The supernet search loop that BioNAS-DARTS and BioNAS-EG share, with the
  :class:`Method` that ``method_of(config, model, alphabet, alpha_half, root_key)``
  returns: data,
  supernet, checkpoint per epoch and resume, history.jsonl, the derived genotype's retrain,
  report.json and the plots. ``config`` must be checked already."""
  with workdir_lock(workdir):
    return _search(config, os.path.abspath(workdir), method_of, on_epoch)


def _search(config: ml_collections.ConfigDict, workdir: str, method_of: Callable[..., Method],
            on_epoch: Callable[[dict], Any] | None) -> dict:
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  config_json = to_json(config)
  s = config.search
  dataset = search_lib.dataset_of(config, config.validation_size)
  transform = search_lib.image_transform(config)
  model, alphabet, macro = build(config, dataset.num_classes)
  half = _alpha_half(config, dataset, transform)
  eval_batches = _eval_batches(config, half)
  root = jax.random.key(config.seed)
  method = method_of(config, model, alphabet, half, root)

  with CompileCounter() as setup_counter:
    first = transform(next(dataset.train_batches(s.batch_size, config.seed)))
    # Eagerly, op by op: XLA on CPU compiles the supernet's whole init as one program
    # several times slower than it runs it op by op (docs/bionas.md).
    variables = flax.core.unfreeze(model.init(jax.random.fold_in(root, INIT_STREAM),
                                              first["image"][:1], train=False))
    assignment = supernet_lib.supernet_assignment(variables, alphabet, macro)
    validate_assignment(assignment, variables, model.options)
    alpha = init_alpha(jax.random.fold_in(root, ALPHA_STREAM), alphabet.size,
                       s.alpha.init_scale)
    state = initial_state(variables, alpha, method.weight_tx,
                          alpha_opt_state=method.alpha_opt_state(alpha))
  num_params = int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
  supernet_bp_share = supernet_lib.bp_weight_share(variables["params"], assignment)

  checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), config.keep_checkpoints)
  meta: dict[str, Any] = {"wall_seconds": 0.0, "search_seconds": 0.0, "compiles": 0,
                          "setup_compiles": setup_counter.count}
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          state)
  restored = checkpointer.restore_latest(abstract, check_rules=False)
  if restored is not None:
    state, saved = restored
    meta.update(saved)
    logging.info("Resuming the %s search after epoch %d from %s.", method.title,
                 int(state.step) // s.steps_per_epoch, checkpointer.directory)
  done = int(state.step) // s.steps_per_epoch
  history_path = os.path.join(workdir, HISTORY_FILE)
  if is_chief:
    rewrite_jsonl(history_path, [r for r in read_jsonl(history_path) if r["epoch"] < done])
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
      json.dump(config_json, f, indent=2)

  def elapsed() -> float:
    return meta["wall_seconds"] + time.time() - start_time

  try:
    with Preemption() as preemption:
      for epoch in range(done, s.epochs):
        if preemption.stop(epoch, 1):
          logging.warning("SIGTERM: the search is checkpointed after epoch %d; run the same "
                          "command again to resume.", epoch)
          return {"interrupted": True, "epoch": epoch}
        t0 = time.time()
        sums: dict[str, float] = {}
        extra: dict[str, Any] = {}
        batches = dataset.train_batches(s.batch_size, config.seed,
                                        start_step=epoch * s.steps_per_epoch)
        with CompileCounter() as counter:
          if method.before_epoch is not None:
            state, extra = method.before_epoch(state, assignment, epoch)
          for i in range(s.steps_per_epoch):
            g = epoch * s.steps_per_epoch + i
            state, metrics = method.train_step(state, assignment, transform(next(batches)), g)
            metrics = jax.device_get(metrics)
            if not metrics["finite"] or not np.isfinite(metrics["train_loss"]):
              raise search_lib.SearchFailedError(
                  f"The supernet diverged at step {g} (epoch {epoch}): train loss "
                  f"{metrics['train_loss']}. Lower {method.diverged}; the last checkpoint "
                  "is kept.")
            for name, value in metrics.items():
              if name != "finite":
                sums[name] = sums.get(name, 0.0) + float(value)
          totals = _evaluate(method.eval_step, state, eval_batches)
        seconds = time.time() - t0
        meta["compiles"] += counter.count
        meta["search_seconds"] += seconds
        weights = jax.device_get(mixing_weights(state.alpha))
        shares = supernet_lib.rule_weight(weights, alphabet)
        derived = supernet_lib.derive(weights, alphabet)
        record = {
            "epoch": epoch, "step": int(state.step),
            **{k: v / s.steps_per_epoch for k, v in sums.items()},
            **extra,
            "validation_loss": totals["loss"], "validation_accuracy": totals["accuracy"],
            "alpha_entropy": supernet_lib.entropy(weights),
            "rule_share": {cell: dict(zip(alphabet.rules, shares[cell].mean(0).tolist(),
                                          strict=True)) for cell in CELLS},
            "genotype": derived.to_string(),
            "alpha_softmax": {cell: np.asarray(weights[cell]).round(5).tolist()
                              for cell in CELLS},
            "epoch_seconds": seconds, "compiles": counter.count, "wall_seconds": elapsed(),
        }
        if is_chief:
          append_jsonl(history_path, [record])
        logging.info("epoch %d/%d: train loss %.4f, validation accuracy %.4f, alpha entropy "
                     "%.3f, %d compiles, %.1f s; genotype %s", epoch + 1, s.epochs,
                     record["train_loss"], record["validation_accuracy"],
                     record["alpha_entropy"], counter.count, seconds, record["genotype"])
        if on_epoch is not None:
          on_epoch(record)
        checkpointer.save(epoch + 1, state, {**meta, "wall_seconds": elapsed()})
  finally:
    checkpointer.close()
  return _finish(config, workdir, state, method, alphabet, macro, dataset, meta, elapsed,
                 done, restored is not None, num_params, supernet_bp_share)


def _finish(config, workdir, state, method, alphabet, macro, dataset, meta, elapsed, done,
            resumed, num_params, supernet_bp_share) -> dict:
  """Derives the genotype, retrains it, writes report.json and the plots."""
  weights = jax.device_get(mixing_weights(state.alpha))
  derived = supernet_lib.derive(weights, alphabet)
  space = derived_space(alphabet, macro)
  genome = derived_genome(derived, weights, space, alphabet, macro)
  root = jax.random.key(config.seed)
  retrain_model = space.build_network(
      {"C": config.retrain.C, "layers": config.retrain.layers, "variant": "cifar"},
      dataset.num_classes, rules_lib.RuleOptions.from_dict(
          {**config.rule_options.to_dict(), "rules": space.rule_names}), False, genome=genome)
  sample = search_lib.image_transform(config)(
      next(dataset.train_batches(config.retrain.batch_size, config.seed + 1)))["image"][:1]
  # Shapes only (nothing compiles): the share of bp weights depends on them alone.
  variables = jax.eval_shape(train_lib.init_program(retrain_model), jax.random.key(0), sample)
  derived_assignment = space.assignment_fn(variables, retrain_model.options)(
      jnp.asarray(genome))
  derived_bp_share = network_bp_share(variables["params"], derived_assignment)
  retrained = None
  if config.retrain.steps:
    retrained = search_lib.retrain(config, space, retrain_model, genome, dataset,
                                   jax.random.fold_in(root, RETRAIN_STREAM))
    logging.info("Retrained the derived genotype for %d steps: test accuracy %s (%.1f s).",
                 config.retrain.steps, retrained["test_accuracy"], retrained["seconds"])
  history = read_jsonl(os.path.join(workdir, HISTORY_FILE))
  shares = supernet_lib.rule_weight(weights, alphabet)
  last = history[-1] if history else {}
  report = to_json({
      "config": to_json(config),
      "method": method.name,
      **method.report,
      "layout": config.supernet.layout,
      "candidates": list(alphabet.names()),
      "macro_rules": dict(macro),
      "genotype": derived.to_string(),
      "genome": space.to_string(genome),
      "genome_genes": np.asarray(genome).tolist(),
      "cell": space.cell_string(genome),
      "most_weighted_rule": {cell: [alphabet.rules[int(i)] for i in shares[cell].argmax(-1)]
                             for cell in CELLS} if alphabet.rules else None,
      "alpha_entropy": supernet_lib.entropy(weights),
      "epochs": int(state.step) // config.search.steps_per_epoch,
      "steps": int(state.step),
      "validation_accuracy": last.get("validation_accuracy"),
      "validation_loss": last.get("validation_loss"),
      "supernet_params": num_params,
      "bp_weight_share": {"supernet": supernet_bp_share, "derived": derived_bp_share},
      "derived_params": int(sum(np.size(x) for x in jax.tree.leaves(variables["params"]))),
      "test_accuracy": retrained["test_accuracy"] if retrained else None,
      "test_loss": retrained["test_loss"] if retrained else None,
      "retrain_failed_step": retrained["failed_step"] if retrained else None,
      "retrain_steps": config.retrain.steps,
      "retrain_seconds": retrained["seconds"] if retrained else None,
      "search_seconds": meta["search_seconds"],
      # XLA compilations of the search's programs (the step and the validation pass: 2 on
      # a fresh process), and of the op-by-op initialisation (many small ones).
      "compiles": int(meta["compiles"]),
      "setup_compiles": int(meta["setup_compiles"]),
      "devices": jax.device_count(),
      "platform": jax.devices()[0].platform,
      "resumed_from_epoch": done if resumed else None,
      "wall_seconds": elapsed(),
  })
  if jax.process_index() == 0:
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
      json.dump(report, f, indent=2)
    plot_search(history, weights, alphabet, workdir)
  logging.info("%s done: genotype %s, supernet validation accuracy %s, test accuracy %s, "
               "%d compiles, %.1f s. Report: %s", method.title, report["genotype"],
               report["validation_accuracy"], report["test_accuracy"], report["compiles"],
               report["wall_seconds"], os.path.join(workdir, REPORT_FILE))
  return report


def _evaluate(eval_fn, state, batches) -> dict:
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  for batch in batches:
    out = jax.device_get(eval_fn(state, batch))
    for k in totals:
      totals[k] += float(out[k])
  count = max(totals["count"], 1.0)
  return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count}


def program_settings(config: ml_collections.ConfigDict) -> tuple:
  """The hashable settings the search step is compiled for: searches that differ in
  anything else (the rule alphabet's order, the seed, the data) share one program."""
  s = config.search
  return (s.order, s.alpha_gradient, tuple(sorted(s.weights.to_dict().items())),
          tuple(sorted(s.alpha.to_dict().items())), s.epochs * s.steps_per_epoch)


@functools.lru_cache(maxsize=8)
def programs(model: supernet_lib.DartsSupernet, settings: tuple
             ) -> tuple[Callable, Callable, optax.GradientTransformation,
                        optax.GradientTransformation]:
  """``(step, eval_step, weight_tx, alpha_tx)`` of ``model`` and :func:`program_settings`,
  jitted, one set per process."""
  order, alpha_gradient, weights, alpha, total_steps = settings
  weights = ml_collections.ConfigDict(dict(weights))
  weight_tx, schedule = weight_optimizer(weights, total_steps)
  alpha_tx = alpha_optimizer(ml_collections.ConfigDict(dict(alpha)))
  step = jax.jit(make_search_step(model, weight_tx, schedule, alpha_tx, order, alpha_gradient,
                                  weights.weight_decay))
  return step, eval_program(model), weight_tx, alpha_tx


@functools.lru_cache(maxsize=8)
def eval_program(model: supernet_lib.DartsSupernet) -> Callable:
  """:func:`make_eval_step` of ``model``, jitted once per process (both searches use it)."""
  return jax.jit(make_eval_step(model))


# ------------------------------------------------------------------------------ plots


def plot_search(history: list[dict], weights: Mapping, alphabet: supernet_lib.Alphabet,
                workdir: str) -> None:
  """alpha.png (final mixing weights per edge and candidate), rule_share.png (each rule's
  mean weight over the epochs) and losses.png."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = alphabet.names()
  fig, axes = plt.subplots(1, 2, figsize=(4 + 0.45 * len(names), 5.5))
  for ax, cell in zip(axes, CELLS, strict=True):
    image = ax.imshow(np.asarray(weights[cell]), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(supernet_lib.NUM_EDGES),
                  [f"{j}->{n}" for n, j in supernet_lib.EDGES], fontsize=7)
    ax.set_title(f"{cell} cell: softmax(alpha)")
    fig.colorbar(image, ax=ax, fraction=0.04)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, ALPHA_PLOT), dpi=110)
  plt.close(fig)

  epochs = [r["epoch"] + 1 for r in history]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for ax, cell in zip(axes, CELLS, strict=True):
    for rule in alphabet.rules:
      ax.plot(epochs, [r["rule_share"][cell][rule] for r in history], marker="o", label=rule)
    ax.set(xlabel="epoch", ylabel="mean share of the rule's candidates",
           title=f"{cell} cell: rule share")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, RULE_SHARE_PLOT), dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train (weight half)")
  ax.plot(epochs, [r["validation_loss"] for r in history], marker="o",
          label="validation (alpha half)")
  ax.set(xlabel="epoch", ylabel="cross-entropy", title="Supernet losses")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, LOSS_PLOT), dpi=110)
  plt.close(fig)
