"""The sparse rule against bp, fa, softhebb and eg on Fashion-MNIST (biojax.studies.sparse_rule).

    python -m biojax.main --config=experiments/sparse_rule.py --workdir=runs/sparse_rule
    python -m biojax.main --config=experiments/sparse_rule.py --workdir=/tmp/sparse_quick \
        --config.quick=True   # ~1 min smoke test

Every rule trains the same 784-4000-10 MLP for the same number of steps (``train.num_steps``)
with its own preset (``rule_overrides``): the new rule from the E/I initialisation
(``sparse``) and from the mixed-sign one (``sparse_mixed``), hidden layer ``sparse+eg``,
classifier ``bp+eg`` (the delta rule with multiplicative steps); SoftHebb with the settings of
experiments/baselines.py; ``bp``, ``fa`` and ``eg`` with experiments/train.py's. Then each
trained network is evaluated: biological metrics, robustness, few-shot accuracy
(docs/sparse_rule.md, section 5).

The defaults are a budget for two CPU cores, smaller than a paper's: 8,000 training steps,
attacks on the first 500 test images (PGD 20 steps, Square 500 queries), few-shot with 2 seeds
and few steps per ``k`` (``few_shot.num_steps``). ``quick=True`` applies ``quick_settings``
(a smoke test; its numbers mean nothing).

``SPARSE_OVERRIDES`` is the rule's preset, ``ABLATIONS`` its one-ingredient-off variants and
``EARLIER`` the preset before the tuning sweep; experiments/sparse_rule_ablation.py and
experiments/sparse_rule_sweep.py import them.
"""

import ml_collections

from experiments import train

# The sparse rule's settings, applied on top of experiments/train.py.
SPARSE_OVERRIDES = {
    "rule": ("sparse+eg", "bp+eg"),
    "learning_rate": 2e-2,
    "num_steps": 8000,
    "mlp": {"hidden": (4000,), "center_hidden": True, "weight_init": "dale",
            "inhibitory_fraction": 0.2},
    "rule_options": {"rules": ("bp", "sparse"),
                     "sparse": {"competition": True, "temperature": 0.1, "homeostasis": True,
                                "target_rate": 0.18, "homeostasis_rate": 0.05,
                                "elimination": True, "elimination_threshold": 0.05}},
}

# One ingredient off at a time (applied on top of SPARSE_OVERRIDES).
ABLATIONS = {
    "full": {},
    "no_competition": {"rule_options": {"sparse": {"competition": False}}},
    "no_homeostasis": {"rule_options": {"sparse": {"homeostasis": False}}},
    "no_elimination": {"rule_options": {"sparse": {"elimination": False}}},
    "additive": {"rule": ("sparse", "bp+eg")},
    "mixed_init": {"mlp": {"weight_init": "mixed"}},
}

# The preset before the tuning sweep of docs/sparse_rule.md section 4 (changes to
# SPARSE_OVERRIDES); experiments/sparse_rule_sweep.py starts most variants from it.
EARLIER = {"mlp": {"hidden": (1000,)}, "num_steps": 3000, "learning_rate": 1e-2,
           "rule_options": {"sparse": {"target_rate": 0.1}}}

# A smoke test's settings (``quick=True``): tiny network, budgets and attacks.
QUICK = {
    "hidden": (32,), "num_steps": 30, "batch_size": 10, "activity_images": 200,
    "robustness": {"num_images": 100, "epsilons": (0.0, 0.05, 0.1), "main_epsilon": 0.05,
                   "pgd_steps": 3, "square_queries": 20, "batch_size": 100},
    "few_shot": {"shots": (1, 5, 10, 50, 100, "all"), "seeds": 1,
                 "num_steps": (5, 5, 5, 5, 5, 5)},
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "sparse_rule"  # biojax.main runs biojax.studies.sparse_rule.run
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
  config.quick = False  # a smoke test: quick_settings replace the sizes above
  config.quick_settings = ml_collections.ConfigDict(QUICK)
  return config
