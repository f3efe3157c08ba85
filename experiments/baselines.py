"""Single-rule baselines: every registered rule (and the eg geometry) on the MLP and the
ConvNet, Fashion-MNIST, same budget per model (biojax.studies.baselines).

    python -m biojax.main --config=experiments/baselines.py --workdir=runs/baselines \
        [--config.models="('mlp',)"] [--config.num_steps.mlp=2000]

Each run is ``experiments/train.py`` with ``model`` and ``rule`` set; a local rule (SoftHebb)
trains the hidden layers and the classifier learns by the delta rule (``bp`` at the output
layer is exactly the delta rule). Results: ``results.md`` and ``results.json`` in the
workdir, one sub-directory per run (each resumable).
"""

import ml_collections

from biojax import rules
from experiments import train


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "baselines"  # biojax.main runs biojax.studies.baselines.run
  config.train = train.get_config()
  config.models = ("mlp", "convnet")
  config.rules = tuple(rules.rule_names()) + ("eg",)
  # Training length per model (steps of config.train.batch_size).
  config.num_steps = ml_collections.ConfigDict({"mlp": 8600, "convnet": 2000})
  # Per-rule settings that the rule's own paper prescribes, applied on top of `train`.
  # SoftHebb (Journe et al. 2023): plain SGD (Adam's per-weight normalisation cancels the
  # norm-adaptive rate), weights initialised at 25/sqrt(fan_in), centred layer inputs.
  config.rule_overrides = ml_collections.ConfigDict({
      "softhebb": {"optimizer": "sgd", "learning_rate": 0.05,
                   "mlp": {"center_hidden": True, "hidden_init_scale": 25.0}},
  })
  return config
