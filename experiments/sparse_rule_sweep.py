"""The tuning sweep of the sparse rule towards the floors of docs/sparse_rule.md, section 4
(biojax.studies.sparse_rule_sweep).

    python -m biojax.main --config=experiments/sparse_rule_sweep.py --workdir=DIR \
        [--config.probe=True] [--config.train.seed=N] [--config.names="('preset','base')"]

Each variant is the rule's preset (experiments/sparse_rule.py, ``SPARSE_OVERRIDES``) with a few
settings changed; the measurement is the ablation's (experiments/sparse_rule_ablation.py: one
JSON line each, with the wall time; ``probe=True`` adds the hidden layer's linear-probe
accuracy). Most variants start from the EARLIER preset (1,000 hidden units, 3,000 steps, Adam
1e-2, target rate 0.1), which the sweep was run from; the current preset is the variant
``preset``. docs/sparse_rule.md reports what this found.
"""

import ml_collections

from experiments import sparse_rule, train


def on_earlier(**changes) -> dict:
  """A variant that starts from EARLIER (merged into the preset), then ``changes`` (``mlp``
  and ``rule_options`` merged key by key)."""
  return {"start": "earlier", "changes": changes}


def on_preset(**changes) -> dict:
  """A variant that starts from the preset itself, then ``changes``."""
  return {"start": "preset", "changes": changes}


def _hidden(n):
  return {"hidden": (n,)}


RHO18 = {"sparse": {"target_rate": 0.18}}

VARIANTS = {
    # The current preset, and the earlier one.
    "preset": on_preset(),
    "base": on_earlier(),
    # First round (earlier preset; docs/sparse_rule.md section 4.1).
    "steps8k": on_earlier(num_steps=8000),
    "w2000": on_earlier(mlp=_hidden(2000)),
    "w2000_steps8k": on_earlier(mlp=_hidden(2000), num_steps=8000),
    "w4000": on_earlier(mlp=_hidden(4000)),
    "tau005": on_earlier(rule_options={"sparse": {"temperature": 0.05}}),
    "rho005": on_earlier(rule_options={"sparse": {"target_rate": 0.05}}),
    "lr3e-3_steps8k": on_earlier(learning_rate=3e-3, num_steps=8000),
    "lr3e-2": on_earlier(learning_rate=3e-2),
    "two_layers": on_earlier(rule=("sparse+eg", "sparse+eg", "bp+eg"),
                             mlp={"hidden": (1000, 1000)}),
    "eps007_steps8k": on_earlier(num_steps=8000,
                                 rule_options={"sparse": {"elimination_threshold": 0.07}}),
    "w2000_eps007_steps8k": on_earlier(mlp=_hidden(2000), num_steps=8000,
                                       rule_options={"sparse": {"elimination_threshold": 0.07}}),
    "additive_classifier": on_earlier(rule=("sparse+eg", "bp")),  # diagnostic: breaks Dale
    "w4000_steps8k": on_earlier(mlp=_hidden(4000), num_steps=8000),
    "steps15k": on_earlier(num_steps=15000),
    "w2000_steps15k": on_earlier(mlp=_hidden(2000), num_steps=15000),
    "two_layers_w2000_steps8k": on_earlier(rule=("sparse+eg", "sparse+eg", "bp+eg"),
                                           mlp={"hidden": (2000, 2000)}, num_steps=8000),
    "w2000_tau005_steps8k": on_earlier(mlp=_hidden(2000), num_steps=8000,
                                       rule_options={"sparse": {"temperature": 0.05}}),
    "w2000_lr3e-3_steps8k": on_earlier(mlp=_hidden(2000), num_steps=8000, learning_rate=3e-3),
    "w4000_eps007_steps15k": on_earlier(mlp=_hidden(4000), num_steps=15000,
                                        rule_options={"sparse": {"elimination_threshold": 0.07}}),
    # Second round (earlier preset; section 4.2): activity target, E/I split, optimizer.
    "rho015": on_earlier(rule_options={"sparse": {"target_rate": 0.15}}),
    "rho02": on_earlier(rule_options={"sparse": {"target_rate": 0.2}}),
    "tau03": on_earlier(rule_options={"sparse": {"temperature": 0.3}}),
    "inh05": on_earlier(mlp={"inhibitory_fraction": 0.5}),
    "inh01": on_earlier(mlp={"inhibitory_fraction": 0.1}),
    "mixed_rho02": on_earlier(mlp={"weight_init": "mixed"},
                              rule_options={"sparse": {"target_rate": 0.2}}),
    "unconstrained": on_earlier(rule=("sparse", "bp"), mlp={"weight_init": "lecun"},
                                rule_options={"sparse": {"elimination": False}}),
    "sgd_lr03": on_earlier(optimizer="sgd", momentum=0.9, learning_rate=0.3),
    "sgd_lr1": on_earlier(optimizer="sgd", momentum=0.9, learning_rate=1.0),
    "sgd_lr3": on_earlier(optimizer="sgd", momentum=0.9, learning_rate=3.0),
    # Third round: wider, rate 0.18, longer, faster (section 4.2; the last is the preset).
    "w2000_rho018": on_earlier(mlp=_hidden(2000), rule_options=RHO18),
    "w4000_rho018": on_earlier(mlp=_hidden(4000), rule_options=RHO18),
    "w2000_rho018_steps8k": on_earlier(mlp=_hidden(2000), num_steps=8000, rule_options=RHO18),
    "w4000_rho018_steps8k": on_earlier(mlp=_hidden(4000), num_steps=8000, rule_options=RHO18),
    "w2000_rho018_steps8k_lr2e-2": on_earlier(mlp=_hidden(2000), num_steps=8000,
                                              learning_rate=2e-2, rule_options=RHO18),
    "w2000_rho018_steps8k_lr3e-2": on_earlier(mlp=_hidden(2000), num_steps=8000,
                                              learning_rate=3e-2, rule_options=RHO18),
    "w2000_rho018_steps12k_lr2e-2": on_earlier(mlp=_hidden(2000), num_steps=12000,
                                               learning_rate=2e-2, rule_options=RHO18),
    "w3000_rho018_steps8k_lr2e-2": on_earlier(mlp=_hidden(3000), num_steps=8000,
                                              learning_rate=2e-2, rule_options=RHO18),
}


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "sparse_rule_sweep"  # biojax.main runs biojax.studies.sparse_rule_sweep
  config.train = train.get_config()  # under every variant: data, seed, batch size, schedule
  config.preset = sparse_rule.SPARSE_OVERRIDES
  config.earlier_settings = sparse_rule.EARLIER
  config.variants = VARIANTS  # name -> {"start": "preset" | "earlier", "changes": {...}}
  # The variants to run, in this order (a ConfigDict's own keys come out sorted).
  config.names = tuple(VARIANTS)
  config.probe = False  # also the hidden layer's linear-probe accuracy
  return config
