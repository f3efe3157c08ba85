"""Issue 5's experiment: the sparse rule against bp, fa, softhebb and eg on Fashion-MNIST.

    python launch/sparse_rule.py --workdir=runs/sparse_rule             # see docs/sparse_rule.md
    python launch/sparse_rule.py --workdir=/tmp/sparse_quick --config.quick=True   # ~1 min

Every rule trains the same 784-4000-10 MLP for the same number of steps (``train.num_steps``)
with its own preset (``rule_overrides``): the new rule from the E/I initialisation
(``sparse``) and from the mixed-sign one (``sparse_mixed``), hidden layer ``sparse+eg``,
classifier ``bp+eg`` (the delta rule with multiplicative steps); SoftHebb with the settings of
experiments/baselines.py; ``bp``, ``fa`` and ``eg`` with experiments/train.py's. Then, for each
trained network (biojax.eval, docs/eval.md): test accuracy, Dale adherence, lognormal fit,
synapse and activity sparsity, robustness (FGSM, PGD, Square and a transfer attack from a
``bp`` network trained from another seed; all white-box attacks with the true gradient of the
forward pass) and few-shot accuracy. ``report.json``, ``results.md`` and the plots land in the
workdir; each run is resumable (finished trainings and evaluations are not repeated).

The defaults are a budget for two CPU cores, smaller than a paper's: 8,000 training steps,
attacks on the first 500 test images (PGD 20 steps, Square 500 queries), few-shot with 2 seeds
and few steps per ``k`` (``few_shot.num_steps``). ``quick=True`` shrinks everything further
(a smoke test; its numbers mean nothing).

``SPARSE_OVERRIDES`` and ``ABLATIONS`` are the rule's preset and its one-ingredient-off
variants; ``train_config(variant)`` gives a config for ``biojax.experiment.train_and_evaluate``
(or ``python -m biojax.main``), measured by ``python -m experiments.sparse_rule_ablation``.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import train

# The sparse rule's settings, applied on top of experiments/train.py.
SPARSE_OVERRIDES = {
    "rule": ("sparse+eg", "bp+eg"),
    "learning_rate": 2e-2,
    "num_steps": 8000,
    "mlp": {"hidden": (4000,), "center_hidden": True, "weight_init": "dale",
            "inhibitory_fraction": 0.2},
    "rule_options": {"rules": ("bp", "sparse"), "sparse_competition": True,
                     "sparse_temperature": 0.1, "sparse_homeostasis": True,
                     "sparse_target_rate": 0.18, "sparse_homeostasis_rate": 0.05,
                     "sparse_elimination": True, "sparse_elimination_threshold": 0.05},
}

# One ingredient off at a time (applied on top of SPARSE_OVERRIDES).
ABLATIONS = {
    "full": {},
    "no_competition": {"rule_options": {"sparse_competition": False}},
    "no_homeostasis": {"rule_options": {"sparse_homeostasis": False}},
    "no_elimination": {"rule_options": {"sparse_elimination": False}},
    "additive": {"rule": ("sparse", "bp+eg")},
    "mixed_init": {"mlp": {"weight_init": "mixed"}},
}


# The preset before the tuning sweep of docs/sparse_rule.md section 4 (changes to
# SPARSE_OVERRIDES); experiments/sparse_rule_sweep.py starts most variants from it.
EARLIER = {"mlp": {"hidden": (1000,)}, "num_steps": 3000, "learning_rate": 1e-2,
           "rule_options": {"sparse_target_rate": 0.1}}


def merge_settings(base: dict, *changes: dict) -> dict:
  """``base`` with each of ``changes`` applied in turn; dict values (``mlp``,
  ``rule_options``) are merged key by key, others replaced."""
  out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
  for change in changes:
    for key, value in change.items():
      if isinstance(value, dict) and key in out:
        out[key] = {**out[key], **value}
      else:
        out[key] = dict(value) if isinstance(value, dict) else value
  return out


def _merged(variant: str, extra: dict | None = None) -> dict:
  return merge_settings(SPARSE_OVERRIDES, ABLATIONS[variant], extra or {})


def train_config(variant: str = "full", extra: dict | None = None) -> ml_collections.ConfigDict:
  """An experiments/train.py config for one variant of the sparse rule (``extra``: further
  overrides in the same form, applied last)."""
  settings = _merged(variant, extra)
  values = train.get_config().to_dict()
  values.update(model="mlp", rule=settings["rule"], learning_rate=settings["learning_rate"],
                num_steps=settings["num_steps"])
  values["model_kwargs"]["mlp"] = settings["mlp"]
  values["rule_options"].update(settings["rule_options"])
  for key, value in settings.items():  # any other field of experiments/train.py's config
    if key not in ("rule", "learning_rate", "num_steps", "mlp", "rule_options"):
      if key not in values:
        raise KeyError(f"Unknown config field {key!r}. Valid fields: {', '.join(values)}.")
      values[key] = value
  return ml_collections.ConfigDict(values)




def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.train = train.get_config()
  config.train.model = "mlp"
  config.train.num_steps = SPARSE_OVERRIDES["num_steps"]  # every rule, same budget
  config.train.eval_every = config.train.num_steps
  config.hidden = SPARSE_OVERRIDES["mlp"]["hidden"]  # the shared architecture: 784-hidden-10
  config.rules = ("sparse", "sparse_mixed", "bp", "fa", "softhebb", "eg")
  # Per-rule settings on top of `train` (as experiments/baselines.py): `spec` is the rule spec
  # of the hidden layers, `classifier` that of the last layer (default: single_rule_specs),
  # `mlp` model arguments, other keys config fields (`rule_options` is merged).
  sparse = {key: value for key, value in SPARSE_OVERRIDES.items()
            if key not in ("rule", "num_steps")}
  sparse["mlp"] = {k: v for k, v in sparse["mlp"].items() if k != "hidden"}
  sparse.update(spec="sparse+eg", classifier="bp+eg")
  config.rule_overrides = ml_collections.ConfigDict({
      "sparse": sparse,
      "sparse_mixed": {**sparse, "mlp": {**sparse["mlp"], "weight_init": "mixed"}},
      # SoftHebb as in experiments/baselines.py (Journe et al. 2023).
      "softhebb": {"optimizer": "sgd", "learning_rate": 0.05,
                   "mlp": {"center_hidden": True, "hidden_init_scale": 25.0}},
  })
  config.surrogate_seed = 1  # the transfer attack's bp surrogate: same MLP, another seed
  config.activity_images = 2000  # test images for activity sparsity
  config.robustness = ml_collections.ConfigDict({
      "num_images": 500, "epsilons": (0.0, 0.01, 0.02, 0.05, 0.1), "main_epsilon": 0.05,
      "pgd_steps": 20, "square_queries": 500, "batch_size": 500})
  config.few_shot = ml_collections.ConfigDict({
      "shots": (1, 5, 10, 50, 100, "all"), "seeds": 2,
      "num_steps": (50, 100, 150, 300, 400, 600)})  # per shot, the same for every rule
  config.quick = False
  config.ablations = tuple(ABLATIONS)
  return config


# A smoke test's settings (``quick=True``): tiny network, budgets and attacks.
QUICK = {
    "hidden": (32,), "num_steps": 30, "batch_size": 10, "activity_images": 200,
    "robustness": {"num_images": 100, "epsilons": (0.0, 0.05, 0.1), "main_epsilon": 0.05,
                   "pgd_steps": 3, "square_queries": 20, "batch_size": 100},
    "few_shot": {"shots": (1, 5, 10, 50, 100, "all"), "seeds": 1,
                 "num_steps": (5, 5, 5, 5, 5, 5)},
}


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with the quick settings applied when ``config.quick``."""
  config = config.copy_and_resolve_references()
  if config.quick:
    config.hidden = QUICK["hidden"]
    config.train.num_steps = QUICK["num_steps"]
    # One batch shape for training and every k of the few-shot protocol: one compilation.
    config.train.batch_size = QUICK["batch_size"]
    config.train.eval_every = QUICK["num_steps"]
    config.activity_images = QUICK["activity_images"]
    config.robustness = ml_collections.ConfigDict(QUICK["robustness"])
    config.few_shot = ml_collections.ConfigDict(QUICK["few_shot"])
  return config


def rule_config(config: ml_collections.ConfigDict, rule: str,
                seed: int | None = None) -> ml_collections.ConfigDict:
  """The experiments/train.py config of one rule: shared settings, then the rule's preset."""
  from biojax.nn import single_rule_specs

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
        cfg.rule_options.update(dict(value))
      else:
        setattr(cfg, key, value)
  layers = len(config.hidden) + 1
  specs = single_rule_specs(spec, layers)
  if classifier is not None:
    specs = [spec] * (layers - 1) + [classifier]
  cfg.rule = ",".join(specs)
  return cfg


def load_variables(workdir: str) -> dict:
  """The final ``params``, ``feedback`` (rule state) and ``batch_stats`` of a run."""
  from biojax import experiment

  state = experiment.load_checkpoint(workdir)
  out = {"params": state["params"], "feedback": state["feedback"]}
  if state.get("batch_stats"):
    out["batch_stats"] = state["batch_stats"]
  return jax.tree.map(jnp.asarray, out)


def _train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  from biojax import experiment

  path = os.path.join(workdir, experiment.REPORT_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  return experiment.train_and_evaluate(cfg, workdir)


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
  """Every measurement of issue 5 on one trained network; per-rule plots in ``run_dir``."""
  from biojax import eval as bev
  from biojax import experiment

  timings = {}
  start = time.time()
  model = experiment.build_model(cfg, dataset.num_classes)
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
  """The markdown table of docs/sparse_rule.md."""
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


def load_dataset(config: ml_collections.ConfigDict):
  """The experiment's data set (``config.train``'s data fields)."""
  from biojax import data as data_lib

  t = config.train
  return data_lib.get_dataset(
      t.dataset, data_dir=t.data_dir, validation_size=t.validation_size, seed=t.seed,
      augment=t.augment, fashion_mnist_dir=t.fashion_mnist_dir, limit_train=t.limit_train,
      image_size=t.image_size)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every rule of ``config.rules``, evaluates each, writes the report and plots.

  Returns the report (also ``workdir/report.json``): ``{"rules": {rule: {test_accuracy,
  dale_adherence, lognormal_ks, synapse_sparsity, activity_sparsity, robustness (attack ->
  epsilon -> accuracy), few_shot (k -> mean accuracy), ...}}, "summary", "config",
  "wall_seconds", ...}``.
  """
  from biojax import eval as bev
  from biojax import experiment
  from biojax.bench import machine

  start = time.time()
  config = resolve(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  dataset = load_dataset(config)
  config_json = experiment.to_json(config)

  surrogate_cfg = rule_config(config, "bp", seed=config.surrogate_seed)
  surrogate_dir = os.path.join(workdir, "bp_surrogate")
  _train(surrogate_cfg, os.path.join(surrogate_dir, "train"))
  surrogate = (bev.TrueForward(experiment.build_model(surrogate_cfg, dataset.num_classes)),
               load_variables(os.path.join(surrogate_dir, "train")))

  results = {}
  for rule in config.rules:
    run_dir = os.path.join(workdir, rule)
    cached = os.path.join(run_dir, "evaluation.json")
    if os.path.exists(cached):
      with open(cached) as f:
        stored = json.load(f)
      if stored.get("config") == config_json:
        results[rule] = stored["result"]
        continue
    cfg = rule_config(config, rule)
    training = _train(cfg, os.path.join(run_dir, "train"))
    result = experiment.to_json(evaluate_rule(config, rule, cfg, run_dir, training, dataset,
                                              surrogate))
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
  report = experiment.to_json({
      "rules": results,
      "summary": {r: summary(v, main_epsilon) for r, v in results.items()},
      "config": config_json,
      "machine": machine(),
      "platform": jax.devices()[0].platform,
      "wall_seconds": time.time() - start,
  })
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown)
  return report
