"""The sparse rule against bp, fa, softhebb and eg on Fashion-MNIST (docs/sparse_rule.md).

    python -m biojax.main --config=experiments/sparse_rule.py --workdir=runs/sparse_rule
    python -m biojax.main --config=experiments/sparse_rule.py --workdir=/tmp/sparse_quick \
        --config.quick=True   # a smoke test, about a minute; its numbers mean nothing

Every rule of ``config.rules`` trains the same MLP (hidden layers ``config.hidden``) for the
same budget (``config.train``, a config of experiments/train.py) with its own preset
(``config.rule_overrides[rule]``: ``spec`` the rule spec of the hidden layers, ``classifier``
that of the last layer, ``mlp`` model arguments, any other key a config field;
``rule_options`` merged), through :func:`biojax.pipeline.train_and_evaluate`. Then, for each
trained network (:mod:`biojax.eval`, docs/eval.md): test accuracy, Dale adherence, lognormal
fit, synapse and activity sparsity, robustness (FGSM, PGD, Square and a transfer attack from
a ``bp`` network trained from ``config.surrogate_seed``; the white-box attacks with the true
gradient of the forward pass) and few-shot accuracy. ``report.json``, ``results.md`` and the
plots land in the workdir; the run is resumable (finished trainings and evaluations are not
repeated). ``config.quick`` applies ``config.quick_settings`` first.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from biojax import builders, pipeline
from biojax import data as data_lib
from biojax import eval as bev
from biojax.checkpoint import load_checkpoint
from biojax.metrics import machine, to_json
from biojax.nn import single_rule_specs

REPORT_FILE = "report.json"
RESULTS_MD = "results.md"
EVALUATION_FILE = "evaluation.json"


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with ``config.quick_settings`` applied when ``config.quick``."""
  config = config.copy_and_resolve_references()
  if config.quick:
    quick = config.quick_settings
    config.hidden = tuple(quick.hidden)
    config.train.num_steps = quick.num_steps
    # One batch shape for training and every k of the few-shot protocol: one compilation.
    config.train.batch_size = quick.batch_size
    config.train.eval_every = quick.num_steps
    config.activity_images = quick.activity_images
    with config.unlocked():
      config.robustness = ml_collections.ConfigDict(quick.robustness.to_dict())
      config.few_shot = ml_collections.ConfigDict(quick.few_shot.to_dict())
  return config


def rule_config(config: ml_collections.ConfigDict, rule: str,
                seed: int | None = None) -> ml_collections.ConfigDict:
  """The training config of one rule (experiments/train.py's fields): the shared settings
  ``config.train``, then the rule's preset ``config.rule_overrides[rule]``."""
  cfg = config.train.copy_and_resolve_references()
  cfg.model = "mlp"
  cfg.model_kwargs.mlp.hidden = tuple(config.hidden)
  cfg.checkpoint_every = cfg.num_steps
  if seed is not None:
    cfg.seed = seed
  overrides = dict(config.rule_overrides.get(rule, ml_collections.ConfigDict()).to_dict())
  spec = overrides.pop("spec", rule)
  classifier = overrides.pop("classifier", None)
  with cfg.unlocked():
    for key, value in overrides.items():
      if key == "mlp":
        cfg.model_kwargs.mlp.update(dict(value))
      elif key == "rule_options":
        cfg.rule_options.update(dict(value))  # merged key by key, per rule
      else:
        setattr(cfg, key, value)
  layers = len(config.hidden) + 1
  specs = single_rule_specs(spec, layers)
  if classifier is not None:
    specs = [spec] * (layers - 1) + [classifier]
  cfg.rule = ",".join(specs)
  return cfg


def load_variables(workdir: str) -> dict:
  """The final ``params``, ``feedback`` (rule state) and ``batch_stats`` of a training run."""
  state = load_checkpoint(workdir)
  out = {"params": state["params"], "feedback": state["feedback"]}
  if state.get("batch_stats"):
    out["batch_stats"] = state["batch_stats"]
  return jax.tree.map(jnp.asarray, out)


def load_dataset(config: ml_collections.ConfigDict) -> data_lib.Dataset:
  """The study's data set (``config.train``'s data fields)."""
  t = config.train
  return data_lib.get_dataset(
      t.dataset, data_dir=t.data_dir, validation_size=t.validation_size, seed=t.seed,
      augment=t.augment, fashion_mnist_dir=t.fashion_mnist_dir, limit_train=t.limit_train,
      image_size=t.image_size)


def trained_report(workdir: str) -> dict | None:
  """The ``report.json`` of a finished training run in ``workdir``, or None."""
  path = os.path.join(workdir, pipeline.REPORT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  report = trained_report(workdir)
  return report if report is not None else pipeline.train_and_evaluate(cfg, workdir)


def _test_arrays(dataset, limit: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``limit`` test images (normalised as in training) and labels."""
  images, labels = [], []
  for batch in dataset.eval_batches("test", 1000):
    real = batch["mask"] > 0
    images.append(np.asarray(batch["image"])[real])
    labels.append(np.asarray(batch["label"])[real])
    if sum(len(x) for x in labels) >= limit:
      break
  return np.concatenate(images)[:limit], np.concatenate(labels)[:limit]


def evaluate_rule(config: ml_collections.ConfigDict, rule: str, cfg: ml_collections.ConfigDict,
                  run_dir: str, training: dict, dataset, surrogate: tuple) -> dict:
  """Every measurement of the study on one trained network; per-rule plots in ``run_dir``."""
  timings = {}
  start = time.time()
  model = builders.build_model(cfg, dataset.num_classes)
  variables = load_variables(os.path.join(run_dir, "train"))
  params = variables["params"]
  hidden_layers = [name for name in bev.kernels(params) if name != "classifier"]
  init_key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
  init_params = model.init(init_key, jnp.zeros((1, *dataset.image_shape)), train=False)["params"]

  images, labels = _test_arrays(dataset, max(config.activity_images,
                                             config.robustness.num_images))
  activations = bev.hidden_activations(model, variables, images[:config.activity_images])
  result = {
      "test_accuracy": training["test_accuracy"],
      "rule_specs": list(cfg.rule),
      "dale_adherence": bev.dale_adherence(params),
      "lognormal_ks": {**bev.lognormal_fit(params),
                       "init": bev.lognormal_fit(init_params, hidden_layers)},
      "synapse_sparsity": bev.synapse_sparsity(params),
      "activity_sparsity": {layer: bev.activity_sparsity(a) for layer, a in activations.items()},
  }
  height, width, channels = dataset.image_shape
  bev.plot_weight_histograms(params, os.path.join(run_dir, "weights.png"),
                             title=f"{rule}: log10|w| and the fitted lognormal")
  bev.plot_receptive_fields(bev.first_layer_kernel(variables),
                            os.path.join(run_dir, "receptive_fields.png"),
                            (height, width) if channels == 1 else (height, width, channels),
                            order="norm", title=f"{rule}: first-layer receptive fields")
  timings["biometrics"] = time.time() - start

  start = time.time()
  robust = config.robustness
  surrogate_apply, surrogate_variables = surrogate
  attacks = bev.default_attacks(surrogate_apply, surrogate_variables,
                                pgd_steps=robust.pgd_steps, square_queries=robust.square_queries)
  n = robust.num_images
  result["robustness"] = bev.robustness_curves(
      bev.TrueForward(model), variables, images[:n], labels[:n], list(robust.epsilons),
      jax.random.key(0), bev.InputRange.from_dataset(dataset), attacks,
      batch_size=robust.batch_size)
  timings["robustness"] = time.time() - start

  start = time.time()
  shots = list(config.few_shot.shots)
  steps = dict(zip(shots, config.few_shot.num_steps, strict=True))
  few = bev.few_shot(cfg, dataset, shots=shots, seeds=config.few_shot.seeds, num_steps=steps)
  result["few_shot"] = {str(k): v["mean"] for k, v in few.items()}
  result["few_shot_detail"] = {str(k): v for k, v in few.items()}
  timings["few_shot"] = time.time() - start
  result["seconds"] = {"train": training.get("wall_seconds"), **timings}
  return result


def summary(result: dict, main_epsilon: float) -> dict:
  """The numbers of the docs table for one rule."""
  eps = min(result["robustness"]["pgd"], key=lambda e: abs(float(e) - main_epsilon))
  hidden = [k for k in result["dale_adherence"] if k not in ("overall", "classifier")]
  activity = result["activity_sparsity"]
  return {
      "test_accuracy": result["test_accuracy"],
      "dale_hidden": float(np.mean([result["dale_adherence"][k]["adherence"] for k in hidden])),
      "dale_overall": result["dale_adherence"]["overall"]["adherence"],
      "ks_hidden": float(np.mean([result["lognormal_ks"][k]["ks_lognormal"] for k in hidden])),
      "ks_hidden_init": result["lognormal_ks"]["init"]["overall"]["ks_lognormal"],
      "zeros": result["synapse_sparsity"]["overall"]["zero_fraction"],
      "active_fraction": float(np.mean([a["active_fraction"] for a in activity.values()])),
      "epsilon": float(eps),
      "pgd": result["robustness"]["pgd"][eps],
      "square": result["robustness"]["square"][eps],
      "transfer": result["robustness"].get("transfer", {}).get(eps),
      "few_shot": dict(result["few_shot"]),
  }


def table(rules: dict, main_epsilon: float) -> str:
  """The markdown table of docs/sparse_rule.md, section 5."""
  lines = [f"| rule | test acc. | Dale hidden / all | KS log\\|w\\| hidden (init) | zeros | "
           f"active | PGD / Square / transfer at eps {main_epsilon} | few-shot k=1 / 10 / 100 |",
           "|---|---|---|---|---|---|---|---|"]
  for rule, result in rules.items():
    s = summary(result, main_epsilon)
    few = s["few_shot"]
    shots = " / ".join(f"{few[k]:.3f}" if k in few else "-" for k in ("1", "10", "100"))
    transfer = "-" if s["transfer"] is None else f"{s['transfer']:.3f}"
    lines.append(
        f"| {rule} | {s['test_accuracy']:.3f} | {s['dale_hidden']:.2f} / "
        f"{s['dale_overall']:.2f} | {s['ks_hidden']:.3f} ({s['ks_hidden_init']:.3f}) | "
        f"{s['zeros']:.2f} | {s['active_fraction']:.3f} | {s['pgd']:.3f} / "
        f"{s['square']:.3f} / {transfer} | {shots} |")
  return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every rule of ``config.rules``, evaluates each, writes the report and plots.

  Returns the report (also ``workdir/report.json``): ``{"rules": {rule: {test_accuracy,
  dale_adherence, lognormal_ks, synapse_sparsity, activity_sparsity, robustness (attack ->
  epsilon -> accuracy), few_shot (k -> mean accuracy), ...}}, "summary", "config",
  "wall_seconds", ...}``; ``{"interrupted": True, "run": DIR, "step": N}`` when SIGTERM
  stopped a training.
  """
  start = time.time()
  config = resolve(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  dataset = load_dataset(config)
  config_json = to_json(config)

  surrogate_cfg = rule_config(config, "bp", seed=config.surrogate_seed)
  surrogate_dir = os.path.join(workdir, "bp_surrogate", "train")
  training = _train(surrogate_cfg, surrogate_dir)
  if training.get("interrupted"):
    return {"interrupted": True, "run": surrogate_dir, "step": training["step"]}
  surrogate = (bev.TrueForward(builders.build_model(surrogate_cfg, dataset.num_classes)),
               load_variables(surrogate_dir))

  results = {}
  for rule in config.rules:
    run_dir = os.path.join(workdir, rule)
    cached = os.path.join(run_dir, EVALUATION_FILE)
    if os.path.exists(cached):
      with open(cached) as f:
        stored = json.load(f)
      if stored.get("config") == config_json:
        results[rule] = stored["result"]
        continue
    cfg = rule_config(config, rule)
    training = _train(cfg, os.path.join(run_dir, "train"))
    if training.get("interrupted"):
      return {"interrupted": True, "run": os.path.join(run_dir, "train"),
              "step": training["step"]}
    result = to_json(evaluate_rule(config, rule, cfg, run_dir, training, dataset, surrogate))
    with open(cached, "w") as f:
      json.dump({"config": config_json, "result": result}, f, indent=2)
    results[rule] = result

  bev.plot_robustness({r: v["robustness"] for r, v in results.items()},
                      os.path.join(workdir, "robustness.png"),
                      title="accuracy under attack (true gradients; transfer from bp)")
  bev.plot_few_shot({r: v["few_shot_detail"] for r, v in results.items()},
                    os.path.join(workdir, "few_shot.png"), title="few-shot test accuracy")
  main_epsilon = config.robustness.main_epsilon
  markdown = table(results, main_epsilon)
  report = to_json({
      "rules": results,
      "summary": {r: summary(v, main_epsilon) for r, v in results.items()},
      "config": config_json,
      "machine": machine(),
      "platform": jax.devices()[0].platform,
      "wall_seconds": time.time() - start,
  })
  with open(os.path.join(workdir, REPORT_FILE), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(workdir, RESULTS_MD), "w") as f:
    f.write(markdown)
  print(markdown)
  print(f"{report['wall_seconds']:.0f} s; report: {os.path.join(workdir, REPORT_FILE)}")
  return report
