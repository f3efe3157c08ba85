"""The sparse, neurobiologically guided rule on Fashion-MNIST (issue 5): preset and ablations.

The preset (``sparse_overrides``) is what docs/sparse_rule.md measured: a 784-1000-10 MLP, the
hidden layer learning by the ``sparse`` rule with multiplicative steps (``sparse+eg``), the
classifier by the delta rule with multiplicative steps (``bp+eg``, so that its signs, too, stay
those of the E/I initialisation), Adam 1e-2 with a cosine schedule, 3,000 steps of 128.
``ablations`` switch one ingredient off each. ``train_config(variant)`` gives a config for
``biojax.experiment.train_and_evaluate`` (or ``python -m biojax.main``); the measurement of
the table is ``python -m experiments.sparse_rule_ablation``.

The evaluation suite of the experiment (robustness, few-shot, biological metrics: biojax/eval)
is built separately; this file only fixes how the new rule is trained.
"""

import ml_collections

from experiments import train

# The sparse rule's settings, applied on top of experiments/train.py.
SPARSE_OVERRIDES = {
    "rule": ("sparse+eg", "bp+eg"),
    "learning_rate": 1e-2,
    "num_steps": 3000,
    "mlp": {"hidden": (1000,), "center_hidden": True, "weight_init": "dale",
            "inhibitory_fraction": 0.2},
    "rule_options": {"rules": ("bp", "sparse"), "sparse_competition": True,
                     "sparse_temperature": 0.1, "sparse_homeostasis": True,
                     "sparse_target_rate": 0.1, "sparse_homeostasis_rate": 0.05,
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


def _merged(variant: str) -> dict:
  out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SPARSE_OVERRIDES.items()}
  for key, value in ABLATIONS[variant].items():
    if isinstance(value, dict):
      out[key] = {**out[key], **value}
    else:
      out[key] = value
  return out


def train_config(variant: str = "full") -> ml_collections.ConfigDict:
  """An experiments/train.py config for one variant of the sparse rule."""
  settings = _merged(variant)
  values = train.get_config().to_dict()
  values.update(model="mlp", rule=settings["rule"], learning_rate=settings["learning_rate"],
                num_steps=settings["num_steps"])
  values["model_kwargs"]["mlp"] = settings["mlp"]
  values["rule_options"].update(settings["rule_options"])
  return ml_collections.ConfigDict(values)


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.train = train.get_config()
  config.rules = ("sparse", "bp", "fa", "softhebb", "eg")
  # Per-rule settings, applied on top of `train` (as experiments/baselines.py does).
  config.rule_overrides = ml_collections.ConfigDict({"sparse": _merged("full")})
  config.ablations = tuple(ABLATIONS)
  return config
