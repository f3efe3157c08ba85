"""Train one model with one rule assignment and evaluate it (biojax.pipeline).

    python -m biojax.main --config=experiments/train.py --workdir=/tmp/run \
        --config.rule=fa --config.num_steps=2000

Every field can be overridden from the command line (``--config.<field>=value``); a name that
is not a field fails with that name. ``rule`` is one rule spec for every weight layer
(``"fa"``, ``"usf+eg"``) or one per layer, in the order the model applies them:
``--config.rule="('fa','bp','bp')"`` or ``--config.rule=fa,bp,bp``. See docs/pipeline.md.

The defaults train the 784-256-256-10 MLP on Fashion-MNIST for 20 epochs (8,600 steps of 128)
with Adam and a cosine schedule: well under a minute on two CPU cores (docs/pipeline.md has the
measured accuracies).
"""

import ml_collections

from biojax import rules

placeholder = ml_collections.config_dict.placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "train"  # biojax.main runs biojax.pipeline.train_and_evaluate

  # Data (biojax.data.get_dataset; docs/data.md).
  config.dataset = "fashion_mnist"
  config.data_dir = placeholder(str)  # TFDS data directory; None: $TFDS_DATA_DIR or ~/...
  config.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"  # Debian IDX files
  config.validation_size = 5000  # carved out of the training split
  config.limit_train = placeholder(int)  # keep only the first N training examples
  config.augment = True  # the data set's standard training augmentation, if it has one
  config.image_size = placeholder(int)  # imagenet2012 only (default 224)

  # Model and learning rules.
  config.model = "mlp"  # one of biojax.nn.MODELS
  # Constructor arguments of each model; only the entry of `model` is used.
  config.model_kwargs = ml_collections.ConfigDict({
      "mlp": {"hidden": (256, 256)},
      "convnet": {"channels": (32, 64), "hidden": 128},
      "resnet20": {"widths": (16, 32, 64)},
      "resnet56": {"widths": (16, 32, 64)},
  })
  config.rule = "bp"  # one spec for all weight layers, or one per layer
  config.rule_options = ml_collections.ConfigDict(rules.RuleOptions().to_dict())

  # Optimisation.
  config.seed = 0
  config.batch_size = 128  # global: split across the devices
  config.num_steps = 8600  # 20 epochs of the 55,000 training images
  config.optimizer = "adam"  # sgd | adam | adamw
  config.learning_rate = 1e-3
  config.momentum = 0.0  # sgd only
  config.schedule = "cosine"  # constant | cosine | warmup_cosine
  config.warmup_steps = 0  # warmup_cosine only
  config.weight_decay = 0.0
  config.clip_norm = 0.0  # 0: no clipping

  # Evaluation, checkpoints and logging (all in steps).
  config.eval_batch_size = 1000
  config.eval_every = 500  # validation accuracy and alignment angles
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3  # at least 2, so a corrupt latest one has a fallback
  config.log_every = 100
  return config
