"""Paper-scale search over the DARTS space with rule genes, ImageNet (ILSVRC 2012).

    python -m biojax.main --config=experiments/nas_darts_imagenet.py --workdir=runs/darts_in

experiments/nas_darts_cifar10.py with DARTS's ImageNet network (``variant="imagenet"``: three
stride-2 stem convolutions) on ImageNet at 224x224 (TFDS imagenet2012, streamed; docs/data.md),
retrained with DARTS's ImageNet recipe (Liu, Simonyan & Yang 2019, Section 3.4 and
Appendix A.2.2; the authors' cnn/train_imagenet.py). DARTS did not search on ImageNet (it
transferred its CIFAR-10 cell), so the search budget here is ours. See docs/darts.md,
"Paper-scale configs".
"""

import ml_collections

from experiments import nas_darts_cifar10, nas_nb201_cifar10

IMAGENET_TRAIN = 1_281_167  # ILSVRC 2012 training images (TFDS imagenet2012 "train")


def get_config() -> ml_collections.ConfigDict:
  config = nas_darts_cifar10.get_config()
  config.dataset = "imagenet2012"
  config.image_size = 224  # DARTS: RandomResizedCrop(224); eval Resize(256) + CenterCrop(224)
  # Ours: 10,000 training images carved out as the search's validation set (the ImageNet
  # validation set is the test split here).
  config.validation_size = 10_000

  # No DFA: its matrices (classes x every hidden activation) would hold about 1e11 floats at
  # 1000 classes and 224x224; every other built-in rule stays.
  config.space.rules = tuple(r for r in config.space.rules if r != "dfa")
  # The search network: DARTS's ImageNet stems with the search network's size (C=16, 8 cells,
  # as on CIFAR-10; ours), 224x224 inputs (28x28 after the stems).
  config.space.variant = "imagenet"
  config.space.C = 16
  config.space.layers = 8
  # The proxy: 5,000 steps of batch 128, about half an epoch (ours; no paper gives one), with
  # the ImageNet recipe's optimiser below; scored on the 10,000 carved images.
  config.proxy.update({
      "steps": 5_000,
      "batch_size": 128,
      "validation_examples": None,
      "eval_batch_size": 500,
      "optimizer": "sgd",
      "learning_rate": 0.1,
      "momentum": 0.9,
      "weight_decay": 3e-5,
      "clip_norm": 5.0,
      "schedule": "cosine",
  })

  # The final training: DARTS's ImageNet evaluation network and recipe (paper, Section 3.4:
  # C=48, 14 cells, 250 epochs, batch 128, SGD lr 0.1, momentum 0.9, weight decay 3e-5;
  # train_imagenet.py: --grad_clip 5) on all 1,281,167 training images:
  # 250 x ceil(1,281,167 / 128) = 2,502,500 steps. Later works train with batch 1024 (and
  # lr 0.5) in fewer steps; override batch_size/learning_rate/steps for that. Departures
  # (not in biojax): DARTS decays the learning rate by 0.97 every epoch (train_imagenet.py:
  # StepLR, gamma 0.97) where this uses cosine to 0; it also uses label smoothing 0.1,
  # the auxiliary head (0.4) and colour jitter (brightness/contrast/saturation 0.4, hue 0.2).
  # (train_imagenet.py's own defaults, --epochs 1000 --init_channels 50, differ from the
  # paper's 250 epochs and C=48; the paper's are used.)
  config.retrain.update({
      "steps": nas_nb201_cifar10.steps_for(250, IMAGENET_TRAIN, 128),
      "batch_size": 128,
      "eval_batch_size": 500,
      "optimizer": "sgd",
      "learning_rate": 0.1,
      "momentum": 0.9,
      "weight_decay": 3e-5,
      "clip_norm": 5.0,
      "schedule": "cosine",
      "C": 48,
  })
  config.retrain.layers = 14
  config.retrain.validation_size = 0
  return config
