"""A tiny generated data set for fast tests: 10 classes of 8x8x1 class patterns plus noise.

Each class has a random binary 8x8 template; an example is ``0.25 + 0.5 * template + noise``
(Gaussian, standard deviation 0.3), clipped to [0, 1] and stored as uint8. Classes differ in
about 32 pixels by 0.5 each, far above the noise, so a small MLP learns it to > 90 % test
accuracy in a few hundred steps. The data are the same on every machine (fixed generator
seed); the ``seed`` of ``get_dataset`` only chooses the validation carve.
"""

from __future__ import annotations

import functools

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
NUM_TRAIN = 10_000
NUM_TEST = 2_000
# Mean and standard deviation of the 10,000 generated training images (computed from them once;
# tests/data checks them against a fresh NumPy computation).
MEAN = (0.4955,)
STD = (0.3290,)

_GENERATOR_SEED = 881
_NOISE = 0.3


def _sample(rng: np.random.Generator, templates: np.ndarray,
            num: int) -> tuple[np.ndarray, np.ndarray]:
  labels = rng.permutation(np.arange(num) % NUM_CLASSES)  # balanced classes
  values = 0.25 + 0.5 * templates[labels] + rng.normal(0.0, _NOISE, (num, *IMAGE_SHAPE))
  images = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
  return images, labels.astype(np.int64)


@functools.cache
def generate() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """Returns ``((train_images, train_labels), (test_images, test_labels))``, uint8 NHWC."""
  rng = np.random.default_rng(_GENERATOR_SEED)
  templates = (rng.random((NUM_CLASSES, *IMAGE_SHAPE)) < 0.5).astype(np.float64)
  train = _sample(rng, templates, NUM_TRAIN)
  test = _sample(rng, templates, NUM_TEST)
  for array in (*train, *test):
    array.flags.writeable = False  # cached: callers must not change them
  return train, test
