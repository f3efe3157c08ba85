"""BioNAS-DARTS on Fashion-MNIST, sized for two CPU cores: DARTS's differentiable search
over (operation, learning rule) candidates, then the derived genotype retrained and tested
once.

    python -m biojax.main --config=experiments/bionas_darts.py --workdir=runs/bionas_darts

Source paper A's method (docs/bionas.md) at a scale this machine can run. How it departs
from the paper's CIFAR-10 search (experiments/bionas_darts_cifar10.py):

- data: Fashion-MNIST (offline), centre-cropped to 24x24 and pooled to 12x12; the alpha half
  is 10,000 images carved out of the training split (the paper: half of CIFAR-10's);
- supernet: C=4 and 3 cells (normal, reduce, reduce) instead of C=16 and 8 cells; the
  candidates are 4 operations (none, max_pool_3x3, skip_connect, sep_conv_3x3) with
  sep_conv_3x3 under each of fa, usf, brsf, frsf: 7 candidates, not 20 (compiling the
  search step is most of this run's time on a CPU, and it grows with the candidates);
- budget: 3 epochs of 40 steps of 64 images, not 50 epochs over 25,000 images; so that alpha
  moves in so few steps its Adam learning rate is 3e-3 (DARTS: 3e-4);
- every weight layer outside the candidates learns by fa (the paper's code keeps them on bp);
- the derived genotype is retrained at C=8 with 3 cells for 400 steps (the paper: C=36, 20
  cells, 600 epochs).

Outputs in the workdir: report.json, history.jsonl, alpha.png, rule_share.png, losses.png,
checkpoints/ (one per epoch; the same command resumes an interrupted search).
"""

import ml_collections

from biojax import rules

placeholder = ml_collections.config_dict.placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "bionas_darts"  # biojax.main runs biojax.nas.bionas.search
  config.seed = 0

  # Data (biojax.data.get_dataset; docs/data.md). The weight half is the training split, the
  # alpha half its carved-out validation split; the test split is touched once, at the end.
  config.dataset = "fashion_mnist"
  config.data_dir = placeholder(str)
  config.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"
  config.validation_size = 10000
  config.limit_train = placeholder(int)
  config.augment = False
  config.image_crop = 24
  config.image_pool = 2

  # The supernet (biojax.nas.darts.supernet.DartsSupernet).
  config.supernet = ml_collections.ConfigDict({
      "operations": ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"),
      "rules": ("fa", "usf", "brsf", "frsf"),
      # stem, preprocess, skip_reduce (skip_connect's FactorizedReduce), classifier: one rule
      # spec for all, or a dict naming each.
      "macro_rules": "fa",
      "C": 4,
      "layers": 3,
      "layout": "vmap",  # vmap | separate (rule copies; docs/bionas.md)
  })
  options = rules.RuleOptions().to_dict()
  del options["rules"]  # the supernet's rules
  config.rule_options = ml_collections.ConfigDict(options)

  # The search (DARTS's settings except where the docstring says).
  config.search = ml_collections.ConfigDict({
      "epochs": 3,
      "steps_per_epoch": 40,
      "batch_size": 64,
      "order": 1,  # 1: first order; 2: second order (unrolled)
      "alpha_gradient": "rules",  # rules (as the paper's code) | true
      "validation_examples": 2000,  # the supernet's validation accuracy per epoch
      "eval_batch_size": 500,
      "weights": {"optimizer": "sgd", "learning_rate": 0.025, "min_learning_rate": 0.001,
                  "momentum": 0.9, "weight_decay": 3e-4, "clip_norm": 5.0},
      "alpha": {"learning_rate": 3e-3, "b1": 0.5, "b2": 0.999, "weight_decay": 1e-3,
                "init_scale": 1e-3},
  })

  # The retrain of the derived genotype (biojax.nas.search.retrain), tested once.
  config.retrain = ml_collections.ConfigDict({
      "C": 8,
      "layers": 3,
      "steps": 400,
      "batch_size": 64,
      "eval_batch_size": 1000,
      "optimizer": "adam",
      "learning_rate": 3e-3,
      "momentum": 0.0,
      "weight_decay": 0.0,
      "clip_norm": 0.0,
      "schedule": "cosine",
      "warmup_steps": 0,
  })

  config.keep_checkpoints = 2
  config.log_every = 200
  return config
