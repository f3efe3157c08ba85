"""Paper-scale search over the NAS-Bench-201 space with a rule gene on every layer, CIFAR-10.

    python -m biojax.main --config=experiments/nas_nb201_cifar10.py --workdir=runs/nb201_c10

experiments/quickstart.py's layout with the NAS-Bench-201 budgets (Dong & Yang 2020, ICLR,
arXiv:2001.00326; the authors' code D-X-Y/AutoDL-Projects). Too large for a CPU: a dry run on
mock data checks it (tests/nas/test_paper_configs.py). See docs/darts.md, "Paper-scale
configs". Every budget number below names its source; "ours" marks a choice of this project.
"""

import math

import ml_collections

from experiments import quickstart

# NAS-Bench-201's training recipe for every architecture ("H^200" in the paper, Section 2.3;
# the `hp="200"` records): SGD with Nesterov momentum 0.9, learning rate 0.1 decayed to 0 by
# cosine annealing, weight decay 5e-4, batch 256, 200 epochs; random crop (padding 4 on CIFAR,
# 2 on ImageNet16-120) and horizontal flip (biojax.data applies these when augment=True).
NB201_BATCH = 256
NB201_EPOCHS = 200
# The proxy: NAS-Bench-201's 12-epoch training (the `hp="12"` records), the signal its own
# regularised-evolution baseline searches with (exps/NAS-Bench-201-algos/R_EA.py,
# use_012_epoch_training=True: "trained for 12 epochs, with LR being decayed from 0.1 to 0").
PROXY_EPOCHS = 12


def steps_for(epochs: int, examples: int, batch_size: int) -> int:
  """Steps of ``epochs`` passes over ``examples`` (the last batch of an epoch counted, as
  PyTorch's DataLoader without drop_last)."""
  return epochs * math.ceil(examples / batch_size)


def nb201_config(dataset: str, num_train: int, validation_size: int
                 ) -> ml_collections.ConfigDict:
  """quickstart's config with the NAS-Bench-201 space and budgets on ``dataset``, whose
  training split has ``num_train`` examples, ``validation_size`` of which are carved out for
  the search's validation."""
  config = quickstart.get_config()
  config.dataset = dataset
  config.validation_size = validation_size
  config.augment = True
  config.image_crop = None  # full-size images (32x32 CIFAR, 16x16 ImageNet16-120)
  config.image_pool = 1

  # NAS-Bench-201's macro skeleton: C=16, N=5 (paper, Section 2.1). The rule alphabet stays
  # quickstart's (every built-in rule); source paper A's is
  # --config.space.rules='("fa","usf","brsf","frsf")' --config.space.macro_rules='("bp",)'.
  config.space.C = 16
  config.space.N = 5

  # Regularised evolution: population 10, tournament (sample) 3 and 200 evaluated
  # architectures, NAS-Bench-201's REA reference (scripts-search/NAS-Bench-201-algos/R-EA.sh:
  # --ea_population 10 --ea_sample_size 3 --ea_cycles 200; it also stops at a simulated time
  # budget of 12,000 s, which has no counterpart here). REA makes one child per cycle; ours
  # batches 5 children per generation for the population evaluator (ours), 40 generations:
  # the same 200 evaluations.
  config.search.population_size = 10
  config.search.tournament_size = 3
  config.search.num_children = 5
  config.search.generations = 40

  train_examples = num_train - validation_size
  config.proxy.update({
      "steps": steps_for(PROXY_EPOCHS, train_examples, NB201_BATCH),
      "batch_size": NB201_BATCH,
      "validation_examples": None,  # the whole carved validation split
      "eval_batch_size": 500,
      # NAS-Bench-201's optimiser. biojax's SGD has plain (heavy-ball) momentum: Nesterov is
      # not available (make_optimizer), a small departure.
      "optimizer": "sgd",
      "learning_rate": 0.1,
      "momentum": 0.9,
      "weight_decay": 5e-4,
      "clip_norm": 0.0,
      "schedule": "cosine",  # to 0 over the proxy's own 12 epochs, as hp="12"
      "warmup_steps": 0,
  })
  config.baselines.random_rules = 10  # ours: source paper A does not say how many it drew

  # The final training: NAS-Bench-201's 200 epochs on the whole training split
  # (validation_size=0 here), tested once on the test split.
  config.retrain.update({
      "steps": steps_for(NB201_EPOCHS, num_train, NB201_BATCH),
      "batch_size": NB201_BATCH,
      "eval_batch_size": 500,
      "optimizer": "sgd",
      "learning_rate": 0.1,
      "momentum": 0.9,
      "weight_decay": 5e-4,
      "clip_norm": 0.0,
      "schedule": "cosine",
      "warmup_steps": 0,
  })
  config.retrain.validation_size = 0
  config.log_every = 1000
  return config


def get_config() -> ml_collections.ConfigDict:
  # CIFAR-10: 50,000 training images. NAS-Bench-201 searches on "cifar10-valid": half of the
  # training set trains, the other half (25,000) validates (paper, Section 2.2); then
  # retrains on all 50,000 ("ori-test" records) and tests on the 10,000 test images.
  # Proxy: 12 x ceil(25,000 / 256) = 1,176 steps; retrain: 200 x ceil(50,000 / 256) = 39,200.
  return nb201_config("cifar10", num_train=50_000, validation_size=25_000)
