"""ImageNet (ILSVRC 2012) streamed from TFDS with tf.data: never loaded into memory.

Train: Inception-style random-resized crop + horizontal flip (Szegedy et al. 2015, "Going deeper
with convolutions"; parameters of the TensorFlow official ResNet input pipeline: crop area in
[8 %, 100 %] of the image, aspect ratio in [3/4, 4/3], at least 10 % of the image covered,
10 attempts, else the whole image). Eval: a centred square of ``size / (size + 32)`` of the
shorter side (224 of 256), resized to ``size``. Both decode only the crop of the JPEG.

Splits: TFDS stores the train records pre-shuffled, so the validation split is a contiguous
block of ``validation_size`` train records whose start is drawn from ``seed`` (reading it touches
a few files, not the whole split); train is every other train record; test is TFDS's
``validation`` split (50,000 images, the ILSVRC 2012 validation set).

Order and multi-process reading: process ``p`` of ``P`` reads its own contiguous ``1/P`` of
the records, shuffled per epoch ``e`` by a file-order shuffle and a shuffle buffer, both
seeded by ``(seed, e)``; an epoch is ``local_records // local_batch`` steps. Augmentation
is seeded by ``(seed, step, process, row)``. Resuming at ``start_step=k`` replays the epoch's
order and skips the ``k mod steps_per_epoch`` batches already seen (records are read, not
decoded, while skipping), so the stream is the same as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from biojax.data import _tfds
from biojax.data._dataset import (
    _CARVE_STREAM,
    _ORDER_STREAM,
    EVAL_SPLITS,
    Batch,
    Dataset,
    even_range,
    pad_batch,
    process_batch_size,
    seed_entropy,
    steps_per_epoch,
)

TFDS_NAME = "imagenet2012"
NUM_CLASSES = 1000
# Per-channel RGB mean and std of the ImageNet train set, in [0, 1] units: the constants of the
# torchvision / PyTorch ResNet reference (https://pytorch.org/vision/stable/models.html).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Eval centre crop: size / (size + 32) of the shorter side (TF official ResNet preprocessing).
_CROP_PADDING = 32
# Encoded JPEGs (~110 kB each) held by the shuffle buffer: about 0.9 GB.
SHUFFLE_BUFFER = 8192


def manual_download_instructions(data_dir: str) -> str:
  """Where the ImageNet tar files go and how to prepare them."""
  return (
      "ImageNet (ILSVRC 2012) cannot be downloaded automatically. Register at "
      "https://image-net.org/, download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, "
      f"put both in {data_dir}/downloads/manual/ and run\n"
      f"  {_tfds.prepare_command(TFDS_NAME, data_dir)}\n"
      "(several hours and about 300 GB of disk; it writes the TFDS records into data_dir)."
  )


def _split_string(tfds_split: str, ranges: list[tuple[int, int]]) -> str | None:
  """``[(a, b), ...]`` -> ``'train[a:b]+...'`` (empty ranges dropped; None if nothing is left)."""
  pieces = [f"{tfds_split}[{a}:{b}]" for a, b in ranges if b > a]
  return "+".join(pieces) if pieces else None


@dataclasses.dataclass(eq=False)
class ImageNetDataset(Dataset):
  """ImageNet streamed from TFDS records; ``image_shape`` is ``(image_size, image_size, 3)``."""

  data_dir: str | None = dataclasses.field(kw_only=True)
  augment: bool = dataclasses.field(kw_only=True)
  validation_start: int = dataclasses.field(kw_only=True)  # first train record of validation
  shuffle_buffer: int = dataclasses.field(default=SHUFFLE_BUFFER, kw_only=True)

  def _builder(self) -> Any:
    return _tfds.builder(TFDS_NAME, self.data_dir)

  def _as_dataset(self, split: str, **kwargs: Any) -> Any:
    tf, tfds = _tfds.import_tensorflow()
    builder = self._builder()
    options = tf.data.Options()
    options.deterministic = True
    read_config = tfds.ReadConfig(options=options, shuffle_seed=kwargs.pop("shuffle_seed", None))
    return _tfds.as_dataset(
        builder, split, read_config=read_config,
        decoders={"image": tfds.decode.SkipDecoding()},
        instructions=manual_download_instructions(str(builder.data_dir_root)), **kwargs)

  def _train_ranges(self, lo: int, hi: int) -> list[tuple[int, int]]:
    """Train records ``[lo, hi)`` counted without the validation block -> TFDS train ranges."""
    start, size = self.validation_start, self.num_validation
    ranges = []
    if lo < start:
      ranges.append((lo, min(hi, start)))
    if hi > start:
      ranges.append((max(lo, start) + size, hi + size))
    return ranges

  def _preprocess(self, image_bytes: Any, key: Any, train: bool) -> Any:
    """JPEG bytes -> normalised float32 ``(size, size, 3)``; ``key`` an int64 pair (train only)."""
    tf, _ = _tfds.import_tensorflow()
    size = self.image_shape[0]
    shape = tf.image.extract_jpeg_shape(image_bytes)
    if train and self.augment:
      begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
          shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
          seed=key, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
          area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
      window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    else:
      shorter = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
      crop = tf.cast(size / (size + _CROP_PADDING) * shorter, tf.int32)
      window = tf.stack([(shape[0] - crop + 1) // 2, (shape[1] - crop + 1) // 2, crop, crop])
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    if train and self.augment:
      image = tf.image.stateless_random_flip_left_right(image, seed=key + tf.constant([0, 1],
                                                                                      tf.int64))
    mean = tf.constant(MEAN, tf.float32)
    std = tf.constant(STD, tf.float32)
    return (image / 255.0 - mean) / std

  def train_batches(self, batch_size: int, seed: int, start_step: int = 0) -> Iterator[Batch]:
    tf, tfds = _tfds.import_tensorflow()
    local_batch, process = process_batch_size(batch_size)
    count = jax.process_count()
    if start_step < 0:
      raise ValueError(f"start_step={start_step} must be >= 0.")
    lo, hi = even_range(self.num_train, process, count)
    split = _split_string("train", self._train_ranges(lo, hi))
    steps = steps_per_epoch(hi - lo, local_batch)
    seed_word = int(seed) % 2**63
    epoch, first = divmod(start_step, steps)
    while True:
      rng = np.random.default_rng(seed_entropy(seed, _ORDER_STREAM, epoch))
      file_seed, buffer_seed = (int(s) for s in rng.integers(0, 2**31, size=2))
      ds = self._as_dataset(split, shuffle_files=True, shuffle_seed=file_seed)
      ds = ds.shuffle(self.shuffle_buffer, seed=buffer_seed, reshuffle_each_iteration=False)
      ds = ds.take(steps * local_batch).enumerate().skip(first * local_batch)

      def preprocess(position, example, epoch=epoch):
        step = epoch * steps + position // local_batch
        row = (step * count + process) * local_batch + position % local_batch
        # The crop uses the key (seed, 2 row), the flip (seed, 2 row + 1).
        key = tf.stack([tf.constant(seed_word, tf.int64), 2 * row])
        return {"image": self._preprocess(example["image"], key, train=True),
                "label": tf.cast(example["label"], tf.int32)}

      ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
      yield from tfds.as_numpy(ds)
      epoch, first = epoch + 1, 0

  def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
    if split not in EVAL_SPLITS:
      raise ValueError(f"Unknown eval split {split!r}. Valid splits: {', '.join(EVAL_SPLITS)}.")
    tf, tfds = _tfds.import_tensorflow()
    local_batch, process = process_batch_size(batch_size)
    count = jax.process_count()
    total = self.num_validation if split == "validation" else self.num_test
    # Every process yields the same number of batches, padding where its share is smaller.
    num_batches = math.ceil(math.ceil(total / count) / local_batch)
    lo, hi = even_range(total, process, count)
    if split == "validation":
      tfds_split = _split_string("train", [(self.validation_start + lo,
                                            self.validation_start + hi)])
    else:
      tfds_split = _split_string("validation", [(lo, hi)])
    yielded = 0
    if tfds_split is not None:
      ds = self._as_dataset(tfds_split, shuffle_files=False).take(hi - lo)
      ds = ds.map(lambda example: (self._preprocess(example["image"], None, train=False),
                                   example["label"]), num_parallel_calls=tf.data.AUTOTUNE)
      for image, label in tfds.as_numpy(ds.batch(local_batch).prefetch(tf.data.AUTOTUNE)):
        if yielded == num_batches:
          break
        yield pad_batch(image, label, local_batch)
        yielded += 1
    empty = np.zeros((0, *self.image_shape), np.float32)
    for _ in range(yielded, num_batches):
      yield pad_batch(empty, np.zeros((0,), np.int32), local_batch)


def make_imagenet_dataset(*, data_dir: str | None, validation_size: int, seed: int, augment: bool,
                          limit_train: int | None, image_size: int) -> ImageNetDataset:
  """Checks that the TFDS records exist and sets up the splits (see the module docstring)."""
  if image_size <= 0:
    raise ValueError(f"image_size={image_size} must be positive.")
  builder = _tfds.builder(TFDS_NAME, data_dir)
  instructions = manual_download_instructions(str(builder.data_dir_root))
  num_records = _tfds.split_size(builder, "train", instructions=instructions)
  num_test = _tfds.split_size(builder, "validation", instructions=instructions)
  if not 0 <= validation_size < num_records:
    raise ValueError(f"validation_size={validation_size} must be in [0, {num_records}).")
  rng = np.random.default_rng(seed_entropy(seed, _CARVE_STREAM))
  validation_start = int(rng.integers(0, num_records - validation_size + 1))
  num_train = num_records - validation_size
  if limit_train is not None:
    num_train = min(num_train, limit_train)
  return ImageNetDataset(
      name=TFDS_NAME,
      num_classes=NUM_CLASSES,
      image_shape=(image_size, image_size, 3),
      num_train=num_train,
      num_validation=validation_size,
      num_test=num_test,
      data_dir=data_dir,
      augment=augment,
      validation_start=validation_start,
  )
