"""The sparse rule with one ingredient off at a time (biojax.studies.sparse_rule_ablation).

    python -m biojax.main --config=experiments/sparse_rule_ablation.py --workdir=DIR
    python -m biojax.main --config=experiments/sparse_rule_ablation.py --workdir=DIR \
        --config.earlier=True --config.names="('full','additive')"

Each variant is the preset (experiments/sparse_rule.py ``SPARSE_OVERRIDES``) with one entry of
``ABLATIONS`` merged in (with ``earlier=True`` also ``EARLIER``, the preset before the tuning
sweep), on top of experiments/train.py (its data pipeline without augmentation: 55,000
training images, seed 0). Prints one JSON line per variant: the floors of
docs/sparse_rule.md, section 4.
"""

import ml_collections

from experiments import sparse_rule, train


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "sparse_rule_ablation"  # biojax.main runs biojax.studies.sparse_rule_ablation
  config.train = train.get_config()  # under every variant: data, seed, batch size, schedule
  config.preset = sparse_rule.SPARSE_OVERRIDES
  config.ablations = sparse_rule.ABLATIONS  # name -> changes to the preset
  config.earlier = False  # also apply earlier_settings (the preset before the tuning sweep)
  config.earlier_settings = sparse_rule.EARLIER
  # The ablations to run, in this order (a ConfigDict's own keys come out sorted).
  config.names = tuple(sparse_rule.ABLATIONS)
  config.probe = False  # also the hidden layer's linear-probe accuracy
  return config
