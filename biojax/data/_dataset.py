"""The :class:`Dataset` interface and its in-memory implementation for small image data sets.

Determinism contract (shared by every implementation):

* Training is an infinite stream of global batches. With ``B`` the global batch size and
  ``n`` the number of training examples, an epoch has ``n // B`` steps (the remainder is
  dropped, a different remainder each epoch). The batch at global step ``k`` belongs to epoch
  ``e = k // (n // B)`` and is a function of ``(seed, k)`` only: the order comes from a
  permutation drawn from ``(seed, e)``, the augmentation from ``(seed, k)``. Starting an
  iterator at ``start_step=k`` therefore yields exactly what an iterator started at 0 yields
  after ``k`` advances (bitwise-exact resume).
* With several JAX processes, process ``p`` yields rows ``[p*b, (p+1)*b)`` of each global
  batch, ``b = B // jax.process_count()``; the global batch is the same for any process count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import jax
import numpy as np

Batch = dict[str, np.ndarray]

EVAL_SPLITS = ("validation", "test")

# Independent random streams, all derived from the user's seed (NumPy SeedSequence entropy).
_CARVE_STREAM = 0
_ORDER_STREAM = 1
_AUGMENT_STREAM = 2


def seed_entropy(seed: int, stream: int, *counters: int) -> list[int]:
  """Entropy for ``np.random.default_rng``: non-negative words from a (possibly negative) seed."""
  return [int(seed) % 2**64, stream, *counters]


def process_batch_size(batch_size: int) -> tuple[int, int]:
  """Returns ``(per-process batch size, process index)`` for a global ``batch_size``."""
  count, index = jax.process_count(), jax.process_index()
  if batch_size <= 0 or batch_size % count:
    raise ValueError(
        f"batch_size={batch_size} must be a positive multiple of jax.process_count()={count}."
    )
  return batch_size // count, index


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full global batches per epoch (the remainder is dropped)."""
  if batch_size > num_examples:
    raise ValueError(
        f"batch_size={batch_size} is larger than the {num_examples} training examples."
    )
  return num_examples // batch_size


def normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """uint8 images -> float32 ``(x / 255 - mean) / std`` per channel."""
  return ((images.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)


def pad_crop_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray,
                  padding: int) -> np.ndarray:
  """Zero-pads by ``padding``, crops back to ``(H, W)`` at ``offsets`` and mirrors where ``flips``.

  Args:
    images: uint8 ``(b, H, W, C)``.
    offsets: int ``(b, 2)``, the top-left corner (row, column) of each crop in the padded image,
      each in ``[0, 2 * padding]``.
    flips: bool ``(b,)``, mirror left-right.
    padding: pixels of zero padding on every side; 0 for no crop.
  """
  b, height, width, _ = images.shape
  if padding:
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    # (b, 2p+1, 2p+1, C, H, W) view of every crop; pick one per example.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))
    images = windows[np.arange(b), offsets[:, 0], offsets[:, 1]].transpose(0, 2, 3, 1)
  return np.where(flips[:, None, None, None], images[:, :, ::-1], images)


@dataclasses.dataclass
class Dataset:
  """An image-classification data set with train / validation / test splits.

  ``num_train`` counts the training examples left after carving out the validation split
  (and after ``limit_train``). See the module docstring for the determinism contract.
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]  # H, W, C
  num_train: int
  num_validation: int
  num_test: int

  def train_batches(self, batch_size: int, seed: int, start_step: int = 0) -> Iterator[Batch]:
    """Infinite iterator of ``{'image': float32 (b, H, W, C), 'label': int32 (b,)}``.

    Normalised and (if enabled) augmented. Deterministic in ``(seed, step)``: starting at
    ``start_step=k`` yields exactly the batches an iterator started at 0 yields from its
    ``k``-th advance on. Epoch ``e`` uses a permutation drawn from ``(seed, e)``, augmentation
    randomness comes from ``(seed, step)``. ``b = batch_size // jax.process_count()``: each
    process yields its own rows of the global batch.
    """
    raise NotImplementedError

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    """Finite iterator over ``split`` in ``{'validation', 'test'}``: fixed order, no augmentation.

    Every batch has ``b = batch_size // jax.process_count()`` rows: the last one is padded, so a
    jitted eval step never recompiles, and ``'mask'`` float32 ``(b,)`` is 1 for real examples
    and 0 for padding (padding images are zeros, labels 0). Summed over all batches and
    processes, the mask equals the split size.
    """
    raise NotImplementedError


@dataclasses.dataclass(eq=False)
class ArrayDataset(Dataset):
  """A small data set held in memory as uint8 NumPy arrays and batched with NumPy."""

  train_images: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  train_labels: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  validation_images: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  validation_labels: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  test_images: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  test_labels: np.ndarray = dataclasses.field(repr=False, kw_only=True)
  mean: tuple[float, ...] = dataclasses.field(kw_only=True)  # per channel, in [0, 1] units
  std: tuple[float, ...] = dataclasses.field(kw_only=True)
  crop_padding: int = dataclasses.field(default=0, kw_only=True)  # 0: no random crop
  flip: bool = dataclasses.field(default=False, kw_only=True)  # random horizontal flip

  def _normalise(self, images: np.ndarray) -> np.ndarray:
    return normalise(images, np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32))

  def train_batches(self, batch_size: int, seed: int, start_step: int = 0) -> Iterator[Batch]:
    local_batch, process = process_batch_size(batch_size)
    steps = steps_per_epoch(self.num_train, batch_size)
    if start_step < 0:
      raise ValueError(f"start_step={start_step} must be >= 0.")
    rows = slice(process * local_batch, (process + 1) * local_batch)
    permutation_epoch, permutation = -1, None
    step = start_step
    while True:
      epoch, in_epoch = divmod(step, steps)
      if epoch != permutation_epoch:
        rng = np.random.default_rng(seed_entropy(seed, _ORDER_STREAM, epoch))
        permutation_epoch, permutation = epoch, rng.permutation(self.num_train)
      indices = permutation[in_epoch * batch_size:(in_epoch + 1) * batch_size][rows]
      images = self.train_images[indices]
      if self.crop_padding or self.flip:
        # Drawn for the whole global batch, so a process's rows do not depend on the count.
        rng = np.random.default_rng(seed_entropy(seed, _AUGMENT_STREAM, step))
        offsets = rng.integers(0, 2 * self.crop_padding + 1, size=(batch_size, 2))[rows]
        flips = (rng.random(batch_size) < 0.5)[rows] & self.flip
        images = pad_crop_flip(images, offsets, flips, self.crop_padding)
      yield {"image": self._normalise(images), "label": self.train_labels[indices]}
      step += 1

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    if split == "validation":
      images, labels = self.validation_images, self.validation_labels
    elif split == "test":
      images, labels = self.test_images, self.test_labels
    else:
      raise ValueError(f"Unknown eval split {split!r}. Valid splits: {', '.join(EVAL_SPLITS)}.")
    local_batch, process = process_batch_size(batch_size)
    num = len(labels)
    for k in range(math.ceil(num / batch_size)):
      start = min(k * batch_size + process * local_batch, num)
      stop = min(start + local_batch, num)
      yield pad_batch(self._normalise(images[start:stop]), labels[start:stop], local_batch)


def even_range(num: int, part: int, parts: int) -> tuple[int, int]:
  """The ``part``-th of ``parts`` contiguous, near-equal ranges of ``range(num)``."""
  return num * part // parts, num * (part + 1) // parts


def pad_batch(image: np.ndarray, label: np.ndarray, size: int) -> Batch:
  """Pads ``r <= size`` real rows to ``size`` with zero images, label 0 and mask 0."""
  real = len(label)
  padding = size - real
  return {
      "image": np.concatenate([image.astype(np.float32),
                               np.zeros((padding, *image.shape[1:]), np.float32)]),
      "label": np.concatenate([label.astype(np.int32), np.zeros((padding,), np.int32)]),
      "mask": np.concatenate([np.ones((real,), np.float32), np.zeros((padding,), np.float32)]),
  }


def carve_validation(num_examples: int, validation_size: int, seed: int) -> tuple[np.ndarray, ...]:
  """Sorted (train, validation) indices: a random ``validation_size`` subset fixed by ``seed``."""
  if not 0 <= validation_size < num_examples:
    raise ValueError(
        f"validation_size={validation_size} must be in [0, {num_examples}) "
        f"(the training split has {num_examples} examples)."
    )
  permutation = np.random.default_rng(seed_entropy(seed, _CARVE_STREAM)).permutation(num_examples)
  return np.sort(permutation[validation_size:]), np.sort(permutation[:validation_size])


def make_array_dataset(name: str, *, num_classes: int, train: tuple[np.ndarray, np.ndarray],
                       test: tuple[np.ndarray, np.ndarray], mean: tuple[float, ...],
                       std: tuple[float, ...], crop_padding: int, flip: bool,
                       validation_size: int, seed: int,
                       limit_train: int | None) -> ArrayDataset:
  """Carves validation out of ``train`` and wraps the arrays (uint8 NHWC, integer labels)."""
  train_images, train_labels = train
  test_images, test_labels = test
  if train_images.ndim != 4 or train_images.dtype != np.uint8:
    raise ValueError(f"{name}: expected uint8 (n, H, W, C) images, got "
                     f"{train_images.dtype} {train_images.shape}.")
  train_indices, validation_indices = carve_validation(len(train_labels), validation_size, seed)
  if limit_train is not None:
    train_indices = train_indices[:limit_train]
  labels = lambda x: np.asarray(x, np.int32)
  return ArrayDataset(
      name=name,
      num_classes=num_classes,
      image_shape=tuple(int(d) for d in train_images.shape[1:]),
      num_train=len(train_indices),
      num_validation=len(validation_indices),
      num_test=len(test_labels),
      train_images=train_images[train_indices],
      train_labels=labels(train_labels[train_indices]),
      validation_images=train_images[validation_indices],
      validation_labels=labels(train_labels[validation_indices]),
      test_images=test_images,
      test_labels=labels(test_labels),
      mean=tuple(mean),
      std=tuple(std),
      crop_padding=crop_padding,
      flip=flip,
  )
