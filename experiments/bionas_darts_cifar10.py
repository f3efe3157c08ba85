"""BioNAS-DARTS at the paper's scale on CIFAR-10: DARTS's supernet search over (operation,
rule) candidates, then the derived genotype retrained on DARTS's evaluation network.

    python -m biojax.main --config=experiments/bionas_darts_cifar10.py --workdir=runs/bionas_c10

Settings of the paper (source paper A) and of the DARTS code it builds on (Liu, Simonyan &
Yang 2019, ICLR, arXiv:1806.09055; quark0/darts, cnn/train_search.py and cnn/train.py; the
authors' imanehmz/LR-NAS), as summarised in docs/bionas.md:

- search: half of CIFAR-10's 50,000 training images for the weights and half for alpha; 50
  epochs of batch 64 (391 steps each); supernet C=16, 8 cells; the 20 candidates of
  :data:`biojax.nas.darts.supernet.PAPER_OPERATIONS` x (fa, usf, brsf, frsf); SGD lr 0.025
  cosine to 0.001, momentum 0.9, weight decay 3e-4, gradient clip 5; alpha by Adam lr 3e-4,
  betas (0.5, 0.999), weight decay 1e-3, initialised 1e-3 N(0, 1); first order.
- where biojax departs from the paper's code: every layer outside the candidates (stem,
  preprocessing, FactorizedReduce, classifier) learns by fa, not bp; one parameter-free
  skip_connect instead of three copies.
- retrain: C=36, 20 cells, 600 epochs of batch 96 (521 steps), SGD lr 0.025 cosine, momentum
  0.9, weight decay 3e-4, clip 5 (without DARTS's auxiliary head, drop-path and cutout).

Too large for a CPU (tests/nas/test_bionas_configs.py lowers its full-size step and dry-runs it
shrunk on mock data).
"""

import ml_collections

from biojax.nas.darts import supernet
from experiments import bionas_darts


def get_config() -> ml_collections.ConfigDict:
  config = bionas_darts.get_config()
  config.dataset = "cifar10"
  config.validation_size = 25_000  # train_search.py: --train_portion 0.5
  config.augment = True  # random crop (padding 4) and horizontal flip
  config.image_crop = None
  config.image_pool = 1

  config.supernet.operations = supernet.PAPER_OPERATIONS
  config.supernet.rules = supernet.PAPER_RULES
  config.supernet.macro_rules = "fa"
  config.supernet.C = 16
  config.supernet.layers = 8

  config.search.epochs = 50
  config.search.steps_per_epoch = 391  # ceil(25,000 / 64)
  config.search.batch_size = 64
  config.search.order = 1
  config.search.validation_examples = None  # the whole alpha half
  config.search.eval_batch_size = 500
  config.search.alpha.learning_rate = 3e-4

  config.retrain.C = 36
  config.retrain.layers = 20
  config.retrain.steps = 600 * 521  # 600 epochs of 96 over 50,000 images
  config.retrain.batch_size = 96
  config.retrain.eval_batch_size = 500
  config.retrain.optimizer = "sgd"
  config.retrain.learning_rate = 0.025
  config.retrain.momentum = 0.9
  config.retrain.weight_decay = 3e-4
  config.retrain.clip_norm = 5.0
  config.retrain.schedule = "cosine"
  config.log_every = 1000
  return config
