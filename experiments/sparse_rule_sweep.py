"""Tuning sweep of the sparse rule towards the issue-5 floors (accuracy and zeros).

    python -m experiments.sparse_rule_sweep [name ...]   # default: every variant below

Each variant is the preset of experiments/sparse_rule.py (``full``) with a few settings
changed; the measurement is experiments/sparse_rule_ablation.py's (one JSON line each, with
the wall time). docs/sparse_rule.md reports what this found.
"""

import json
import sys
import time

from experiments import sparse_rule_ablation

VARIANTS = {
    "base": {},
    "steps8k": {"num_steps": 8000},
    "w2000": {"mlp": {"hidden": (2000,)}},
    "w2000_steps8k": {"mlp": {"hidden": (2000,)}, "num_steps": 8000},
    "w4000": {"mlp": {"hidden": (4000,)}},
    "tau005": {"rule_options": {"sparse_temperature": 0.05}},
    "rho005": {"rule_options": {"sparse_target_rate": 0.05}},
    "lr3e-3_steps8k": {"learning_rate": 3e-3, "num_steps": 8000},
    "lr3e-2": {"learning_rate": 3e-2},
    "two_layers": {"rule": ("sparse+eg", "sparse+eg", "bp+eg"), "mlp": {"hidden": (1000, 1000)}},
    "eps007_steps8k": {"num_steps": 8000,
                       "rule_options": {"sparse_elimination_threshold": 0.07}},
    "w2000_eps007_steps8k": {"mlp": {"hidden": (2000,)}, "num_steps": 8000,
                             "rule_options": {"sparse_elimination_threshold": 0.07}},
    "additive_classifier": {"rule": ("sparse+eg", "bp")},  # diagnostic: breaks Dale there
    "w4000_steps8k": {"mlp": {"hidden": (4000,)}, "num_steps": 8000},
    "steps15k": {"num_steps": 15000},
    "w2000_steps15k": {"mlp": {"hidden": (2000,)}, "num_steps": 15000},
    "two_layers_w2000_steps8k": {"rule": ("sparse+eg", "sparse+eg", "bp+eg"),
                                 "mlp": {"hidden": (2000, 2000)}, "num_steps": 8000},
    "w2000_tau005_steps8k": {"mlp": {"hidden": (2000,)}, "num_steps": 8000,
                             "rule_options": {"sparse_temperature": 0.05}},
    "w2000_lr3e-3_steps8k": {"mlp": {"hidden": (2000,)}, "num_steps": 8000,
                             "learning_rate": 3e-3},
    "w4000_eps007_steps15k": {"mlp": {"hidden": (4000,)}, "num_steps": 15000,
                              "rule_options": {"sparse_elimination_threshold": 0.07}},
}


if __name__ == "__main__":
  for name in sys.argv[1:] or list(VARIANTS):
    start = time.time()
    result = sparse_rule_ablation.run("full", extra=VARIANTS[name])
    result.update(name=name, seconds=round(time.time() - start, 1))
    print(json.dumps(result, default=str), flush=True)
