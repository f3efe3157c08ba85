"""Runs issue 5's experiment (experiments/sparse_rule.py) and prints its table.

    python launch/sparse_rule.py --workdir=runs/sparse_rule  # see docs/sparse_rule.md
    python launch/sparse_rule.py --workdir=/tmp/sparse_quick --config.quick=True

Writes ``report.json`` (per rule: test_accuracy, dale_adherence, lognormal_ks,
synapse_sparsity, activity_sparsity, robustness, few_shot), ``results.md``, ``robustness.png``
and ``few_shot.png`` into the workdir, and per rule ``<rule>/weights.png``,
``<rule>/receptive_fields.png``, ``<rule>/evaluation.json`` and the training run
(``<rule>/train``). Resumable: finished trainings and evaluations are not repeated.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from biojax import experiment  # noqa: E402
from experiments import sparse_rule  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/sparse_rule.py",
                                          "Sparse-rule experiment config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/sparse_rule", "Output directory.")


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(experiment.QuietOrbax())
  report = sparse_rule.run(_CONFIG.value, _WORKDIR.value)
  with open(os.path.join(os.path.abspath(_WORKDIR.value), "results.md")) as f:
    print(f.read())
  print(f"{report['wall_seconds']:.0f} s; report: "
        f"{os.path.join(os.path.abspath(_WORKDIR.value), 'report.json')}")


if __name__ == "__main__":
  app.run(main)
