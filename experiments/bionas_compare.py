"""BioNAS-DARTS against BioNAS-EG on Fashion-MNIST, 3 seeds each, on the same supernet (7
(operation, rule) candidates, C=4, 3 cells), data, 120 weight steps of 64 images and retrain
(C=8, 3 cells, 400 steps): experiments/bionas_darts.py and experiments/bionas_eg.py as they
are, with the seed changed.

    python -m biojax.main --config=experiments/bionas_compare.py --workdir=runs/bionas_compare

Outputs: report.json (per method: test accuracy, search and wall seconds, bp share, mean and
std over seeds; the paired difference with a 95% t interval and the verdict), comparison.md,
and each run's own outputs in <workdir>/<method>/seed<k>/. Runs resume one by one.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "bionas_compare"  # biojax.main runs biojax.studies.bionas_compare.run
  config.methods = ("darts", "eg")
  config.seeds = (0, 1, 2)
  config.configs = ml_collections.ConfigDict({"darts": "bionas_darts", "eg": "bionas_eg"})
  # Merged into every method's config (e.g. {"retrain": {"steps": 0}} for a quick look).
  config.overrides = ml_collections.ConfigDict()
  return config
