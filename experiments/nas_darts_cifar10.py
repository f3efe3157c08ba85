"""Paper-scale search over the DARTS space with a rule gene on every kept operation, CIFAR-10.

    python -m biojax.main --config=experiments/nas_darts_cifar10.py --workdir=runs/darts_c10

experiments/quickstart.py's layout with the DARTS space (biojax.nas.darts, docs/darts.md):
candidates are searched on DARTS's *search* network (C=16, 8 cells) for a proxy budget and
the best genome is retrained on DARTS's *evaluation* network (C=36, 20 cells) with DARTS's
600-epoch recipe (Liu, Simonyan & Yang 2019, ICLR, arXiv:1806.09055, Section 3.3 and
Appendix A; the authors' code quark0/darts, cnn/train_search.py and cnn/train.py). Programs
are compiled once per distinct architecture. Too large for a CPU: a dry run on mock data
checks it (tests/nas/test_paper_configs.py). See docs/darts.md, "Paper-scale configs".
Every budget number below names its source; "ours" marks a choice of this project.
"""

import ml_collections

from experiments import nas_nb201_cifar10, quickstart


def get_config() -> ml_collections.ConfigDict:
  config = quickstart.get_config()
  config.dataset = "cifar10"
  # DARTS searches on half of CIFAR-10's 50,000 training images and uses the other half as
  # its validation set (train_search.py: --train_portion 0.5).
  config.validation_size = 25_000
  config.augment = True  # DARTS: random crop (padding 4) and flip
  config.image_crop = None
  config.image_pool = 1

  # The DARTS space. The rule alphabet stays quickstart's (every built-in rule); source paper
  # A's is --config.space.rules='("fa","usf","brsf","frsf")' --config.space.macro_rules='("bp",)'.
  config.space.name = "darts"
  config.space.C = 16  # DARTS's search network: 16 initial channels, 8 cells
  config.space.layers = 8  # (train_search.py: --init_channels 16 --layers 8)
  config.space.variant = "cifar"
  del config.space["N"]  # NAS-Bench-201 only

  # Regularised evolution as in the NAS-Bench-201 configs (population 10, sample 3, 200
  # evaluations: NAS-Bench-201's REA reference). DARTS itself searches by gradient (a
  # supernet, 50 epochs); EG-NAS (source paper A's evolutionary variant) by CMA-ES over the
  # supernet: neither gives a discrete evolution budget, so the count is ours.
  config.search.population_size = 10
  config.search.tournament_size = 3
  config.search.num_children = 5
  config.search.generations = 40

  # The proxy: each candidate trains DARTS's search network with DARTS's search-phase weight
  # optimiser (train_search.py: batch 64, SGD lr 0.025 cosine, momentum 0.9, weight decay
  # 3e-4, gradient clipping 5) for 10 epochs of the 25,000 training images (ours: DARTS trains
  # one supernet for 50 epochs, not one network per candidate; 10 epochs, like
  # NAS-Bench-201's 12-epoch proxy, is a short but complete cosine schedule):
  # 10 x ceil(25,000 / 64) = 3,910 steps. DARTS anneals to lr 0.001, biojax's cosine to 0.
  config.proxy.update({
      "steps": nas_nb201_cifar10.steps_for(10, 25_000, 64),
      "batch_size": 64,
      "validation_examples": None,  # all 25,000 (DARTS's search queue)
      "eval_batch_size": 500,
      "optimizer": "sgd",
      "learning_rate": 0.025,
      "momentum": 0.9,
      "weight_decay": 3e-4,
      "clip_norm": 5.0,
      "schedule": "cosine",
      "warmup_steps": 0,
  })
  # DartsEvaluator: candidates per call of one architecture's program (None: 1 under the
  # "sequential" strategy, else padded to powers of two) and architectures kept compiled.
  config.proxy.group_size = ml_collections.config_dict.placeholder(int)
  config.proxy.cache_size = 128
  config.baselines.random_rules = 10  # ours: source paper A does not say how many it drew

  # The final training: DARTS's evaluation network and recipe (paper, Section 3.3; train.py:
  # --init_channels 36 --layers 20 --epochs 600 --batch_size 96 --learning_rate 0.025
  # --momentum 0.9 --weight_decay 3e-4 --grad_clip 5, cosine annealing to 0) on all 50,000
  # training images: 600 x ceil(50,000 / 96) = 312,600 steps, tested once on the 10,000
  # test images. Left out (not in biojax): cutout (16 px), drop-path (0.2) and the auxiliary
  # head (weight 0.4), which DARTS's 2.76% error uses.
  config.retrain.update({
      "steps": nas_nb201_cifar10.steps_for(600, 50_000, 96),
      "batch_size": 96,
      "eval_batch_size": 500,
      "optimizer": "sgd",
      "learning_rate": 0.025,
      "momentum": 0.9,
      "weight_decay": 3e-4,
      "clip_norm": 5.0,
      "schedule": "cosine",
      "warmup_steps": 0,
      "C": 36,
  })
  del config.retrain["N"]
  config.retrain.layers = 20
  config.retrain.validation_size = 0
  config.log_every = 1000
  return config
