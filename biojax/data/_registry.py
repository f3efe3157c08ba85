"""The named data sets: where each comes from, its normalisation and its augmentation."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import numpy as np

from biojax.data import _idx, _imagenet, _synthetic, _tfds
from biojax.data._dataset import Dataset, make_array_dataset
from biojax.data._tfds import DatasetNotFoundError

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian dataset-fashion-mnist

# File names of the Fashion-MNIST release (Xiao et al. 2017), as shipped by Debian.
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# ImageNet16-120 (Chrabaszcz et al. 2017, "A downsampled variant of ImageNet as an alternative
# to the CIFAR datasets"; the NAS-Bench-201 benchmark, Dong & Yang 2020): the 16x16 box-resized
# ImageNet images of the first 120 classes. TFDS `imagenet_resized` subtracts 1 from the authors'
# 1-based labels, so the classes are the TFDS labels 0..119.
IMAGENET16_TFDS_NAME = "imagenet_resized/16x16"
IMAGENET16_NUM_CLASSES = 120
IMAGENET16_120_COUNTS = {"train": 151_700, "test": 6_000}
# Records of the full imagenet_resized splits; seeing these means the real data is present.
_IMAGENET_RESIZED_RECORDS = {"train": 1_281_167, "validation": 50_000}

Splits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class _Sources:
  data_dir: str | None
  fashion_mnist_dir: str


@dataclasses.dataclass(frozen=True)
class _Spec:
  """A small data set: loader, class count, normalisation and train augmentation."""

  num_classes: int
  mean: tuple[float, ...]  # per channel, [0, 1] units
  std: tuple[float, ...]
  crop_padding: int  # random pad-and-crop by this many pixels; 0: none
  flip: bool  # random horizontal flip
  load: Callable[[_Sources], Splits]


def _tfds_name_dir(data_dir: str | None) -> str:
  """The directory TFDS uses for ``data_dir=None``, for messages (TFDS's own default rule)."""
  return data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")


@functools.lru_cache(maxsize=2)
def _read_fashion_mnist_idx(directory: str) -> Splits:
  arrays = {key: _idx.read_idx(os.path.join(directory, file))
            for key, file in FASHION_MNIST_FILES.items()}
  for key in ("train", "test"):
    images, labels = arrays[f"{key}_images"], arrays[f"{key}_labels"]
    if images.ndim != 3 or labels.shape != images.shape[:1]:
      raise ValueError(f"Malformed Fashion-MNIST {key} files in {directory}: images "
                       f"{images.shape}, labels {labels.shape}.")
  for array in arrays.values():
    array.flags.writeable = False  # cached: callers must not change them
  # IDX images are (n, 28, 28); add the channel axis.
  return ((arrays["train_images"][..., None], arrays["train_labels"].astype(np.int64)),
          (arrays["test_images"][..., None], arrays["test_labels"].astype(np.int64)))


def _load_fashion_mnist(sources: _Sources) -> Splits:
  directory = sources.fashion_mnist_dir
  missing = [f for f in FASHION_MNIST_FILES.values()
             if not os.path.isfile(os.path.join(directory, f))]
  if not missing:
    return _read_fashion_mnist_idx(os.path.abspath(directory))
  try:  # fall back to a TFDS copy, already prepared in data_dir
    return _load_tfds("fashion_mnist")(sources)
  except (DatasetNotFoundError, ImportError) as error:
    tfds_dir = _tfds_name_dir(sources.data_dir)
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found: {', '.join(missing)} missing in {directory}, and no TFDS "
        f"'fashion_mnist' prepared in {tfds_dir}"
        + (f" (TFDS unusable: {error})" if isinstance(error, ImportError) else "") + ".\n"
        "Get it in one of two ways:\n"
        "  1. apt-get install dataset-fashion-mnist  (Debian/Ubuntu; installs the IDX files in "
        f"{DEFAULT_FASHION_MNIST_DIR}), or put the four files "
        f"({', '.join(FASHION_MNIST_FILES.values())}) in a directory and pass "
        "fashion_mnist_dir=that directory;\n"
        "  2. on a machine with internet:\n"
        f"     {_tfds.prepare_command('fashion_mnist', tfds_dir)}\n"
        f"     then copy {tfds_dir} here and pass data_dir=it."
    ) from error


def _load_tfds(tfds_name: str) -> Callable[[_Sources], Splits]:
  def load(sources: _Sources) -> Splits:
    return (_tfds.load_arrays(tfds_name, "train", sources.data_dir),
            _tfds.load_arrays(tfds_name, "test", sources.data_dir))
  return load


def _is_full_imagenet_resized(data_dir: str | None) -> bool:
  """True when TFDS metadata reports the complete imagenet_resized splits (the real data)."""
  splits = _tfds.builder(IMAGENET16_TFDS_NAME, data_dir).info.splits
  try:
    return all(splits[split].num_examples == records
               for split, records in _IMAGENET_RESIZED_RECORDS.items())
  except KeyError:
    return False


def check_imagenet16_120_counts(num_train: int, num_test: int) -> None:
  """Raises ValueError unless the counts are the published 151,700 train / 6,000 test."""
  expected = IMAGENET16_120_COUNTS
  if (num_train, num_test) != (expected["train"], expected["test"]):
    raise ValueError(
        f"ImageNet16-120 has {num_train} train / {num_test} test images; Chrabaszcz et al. "
        f"(2017) and NAS-Bench-201 have {expected['train']} / {expected['test']}. Is the TFDS "
        f"{IMAGENET16_TFDS_NAME!r} data complete?"
    )


def verify_imagenet16_120(data_dir: str | None = None) -> dict[str, int]:
  """Counts the ImageNet16-120 examples in the prepared real data and checks them.

  Reads only the labels of TFDS ``imagenet_resized/16x16`` (train: 1,281,167 records,
  validation: 50,000) and keeps labels < 120. Returns ``{'train': 151700, 'test': 6000}``;
  raises :class:`DatasetNotFoundError` if the data are not prepared, ValueError if the counts
  differ from the published ones.
  """
  tf, tfds = _tfds.import_tensorflow()
  builder = _tfds.builder(IMAGENET16_TFDS_NAME, data_dir)
  counts = {}
  for split, tfds_split in (("train", "train"), ("test", "validation")):
    ds = _tfds.as_dataset(builder, tfds_split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
    labels = ds.map(lambda example: example["label"]).batch(65_536)
    counts[split] = sum(int(np.sum(batch < IMAGENET16_NUM_CLASSES))
                        for batch in tfds.as_numpy(labels))
  del tf
  check_imagenet16_120_counts(counts["train"], counts["test"])
  return counts


def _load_imagenet16_120(sources: _Sources) -> Splits:
  load = functools.partial(_tfds.load_arrays, IMAGENET16_TFDS_NAME, data_dir=sources.data_dir,
                           max_label=IMAGENET16_NUM_CLASSES)
  train, test = load("train"), load("validation")  # the ImageNet validation set is the test set
  if _is_full_imagenet_resized(sources.data_dir):
    check_imagenet16_120_counts(len(train[1]), len(test[1]))
  return train, test


def _load_synthetic(sources: _Sources) -> Splits:
  del sources
  return _synthetic.generate()


# Normalisation constants: per-channel mean / std of the training images in [0, 1] units.
# Fashion-MNIST (Xiao et al. 2017) and MNIST: over all pixels of the 60,000 training images
# (MNIST values as in the PyTorch MNIST example; tests/data recomputes Fashion-MNIST's).
# CIFAR-10/100 (Krizhevsky 2009): over all pixels of the 50,000 training images (not the
# often-copied CIFAR-10 std (0.2023, 0.1994, 0.2010)). ImageNet16-120: the
# NAS-Bench-201 constants, mean (122.68, 116.66, 104.01) / 255 and std (63.22, 61.26, 65.09) / 255
# (Dong & Yang 2020, AutoDL-Projects lib/datasets/get_dataset_with_transform.py).
# Augmentation: pad-and-crop + flip for the natural-image sets (the standard CIFAR recipe of He
# et al. 2016; NAS-Bench-201 pads 16x16 ImageNet by 2), none for digits, clothes and synthetic.
_SPECS: dict[str, _Spec] = {
    "fashion_mnist": _Spec(10, (0.2860,), (0.3530,), 0, False, _load_fashion_mnist),
    "mnist": _Spec(10, (0.1307,), (0.3081,), 0, False, _load_tfds("mnist")),
    "cifar10": _Spec(10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True,
                     _load_tfds("cifar10")),
    "cifar100": _Spec(100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
                      _load_tfds("cifar100")),
    "imagenet16_120": _Spec(IMAGENET16_NUM_CLASSES,
                            (122.68 / 255, 116.66 / 255, 104.01 / 255),
                            (63.22 / 255, 61.26 / 255, 65.09 / 255), 2, True,
                            _load_imagenet16_120),
    "synthetic": _Spec(_synthetic.NUM_CLASSES, _synthetic.MEAN, _synthetic.STD, 0, False,
                       _load_synthetic),
}

DATASETS: tuple[str, ...] = (*_SPECS, _imagenet.TFDS_NAME)


def get_dataset(name: str, *, data_dir: str | None = None, validation_size: int = 5000,
                seed: int = 0, augment: bool = True,
                fashion_mnist_dir: str = DEFAULT_FASHION_MNIST_DIR,
                limit_train: int | None = None, image_size: int | None = None) -> Dataset:
  """Returns the named data set (one of :data:`DATASETS`).

  Args:
    name: the data set.
    data_dir: TFDS data directory; None for TFDS's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets). Nothing is downloaded: a missing data set raises
      :class:`DatasetNotFoundError` saying how to prepare it.
    validation_size: examples carved out of the TRAIN split for validation (never from test).
    seed: fixes which training examples form the validation split.
    augment: random augmentation of training batches, where the data set has any.
    fashion_mnist_dir: directory of the Fashion-MNIST IDX files (Debian dataset-fashion-mnist).
    limit_train: keep only the first N training examples after the carve (quick runs).
    image_size: output side length for imagenet2012 (default 224); other data sets have a
      fixed size.
  """
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}. Valid datasets: {', '.join(DATASETS)}.")
  if limit_train is not None and limit_train < 1:
    raise ValueError(f"limit_train={limit_train} must be None or positive.")
  if name == _imagenet.TFDS_NAME:
    return _imagenet.make_imagenet_dataset(
        data_dir=data_dir, validation_size=validation_size, seed=seed, augment=augment,
        limit_train=limit_train, image_size=224 if image_size is None else image_size)
  if image_size is not None:
    raise ValueError(f"image_size applies to {_imagenet.TFDS_NAME} only; {name!r} has a fixed "
                     "image size.")
  spec = _SPECS[name]
  train, test = spec.load(_Sources(data_dir, fashion_mnist_dir))
  return make_array_dataset(
      name, num_classes=spec.num_classes, train=train, test=test, mean=spec.mean, std=spec.std,
      crop_padding=spec.crop_padding if augment else 0, flip=spec.flip and augment,
      validation_size=validation_size, seed=seed, limit_train=limit_train)
