"""Paper-scale search over the NAS-Bench-201 space with rule genes, CIFAR-100.

    python -m biojax.main --config=experiments/nas_nb201_cifar100.py --workdir=runs/nb201_c100

experiments/nas_nb201_cifar10.py (NAS-Bench-201's space, budgets and REA settings, each with
its source) on CIFAR-100; see docs/darts.md, "Paper-scale configs".
"""

import ml_collections

from experiments import nas_nb201_cifar10


def get_config() -> ml_collections.ConfigDict:
  # CIFAR-100: 50,000 training images. NAS-Bench-201 trains on all 50,000 and splits the
  # 10,000 test images into 5,000 validation / 5,000 test (paper, Section 2.2). biojax carves
  # validation out of the training split only, so the search validates on 5,000 training
  # images (the same count) and trains its proxy on the other 45,000; the retrain uses all
  # 50,000 and tests on the whole test split. Proxy: 12 x ceil(45,000 / 256) = 2,112 steps;
  # retrain: 200 x ceil(50,000 / 256) = 39,200 steps.
  return nas_nb201_cifar10.nb201_config("cifar100", num_train=50_000, validation_size=5_000)
