"""Paper-scale search over the NAS-Bench-201 space with rule genes, ImageNet16-120.

    python -m biojax.main --config=experiments/nas_nb201_imagenet16_120.py \
        --workdir=runs/nb201_in16

experiments/nas_nb201_cifar10.py (NAS-Bench-201's space, budgets and REA settings, each with
its source) on ImageNet16-120 (TFDS imagenet_resized/16x16, classes 0..119; docs/data.md);
see docs/darts.md, "Paper-scale configs".
"""

import ml_collections

from experiments import nas_nb201_cifar10


def get_config() -> ml_collections.ConfigDict:
  # ImageNet16-120: 151,700 training and 6,000 test images (Chrabaszcz et al. 2017;
  # NAS-Bench-201, Section 2.2, which splits the test images 3,000 validation / 3,000 test).
  # As for CIFAR-100, the search validates on 3,000 carved training images instead, trains
  # its proxy on the other 148,700, and the retrain uses all 151,700 and tests on all 6,000.
  # Proxy: 12 x ceil(148,700 / 256) = 6,972 steps; retrain: 200 x ceil(151,700 / 256) =
  # 118,600 steps.
  return nas_nb201_cifar10.nb201_config("imagenet16_120", num_train=151_700, validation_size=3_000)
