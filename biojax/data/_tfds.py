"""TensorFlow Datasets access. TensorFlow is imported here only, lazily, when TFDS is read.

Nothing ever downloads at run time: a data set that is not prepared in ``data_dir`` raises
:class:`DatasetNotFoundError` with the command that prepares it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CHUNK = 8192  # examples per tf.data batch when loading a split into memory


class DatasetNotFoundError(FileNotFoundError):
  """A data set's files are missing; the message says how to get them."""


def import_tensorflow() -> tuple[Any, Any]:
  """Returns ``(tf, tfds)``; TensorFlow is kept off any GPU so that JAX owns the accelerators."""
  try:
    import tensorflow as tf
    import tensorflow_datasets as tfds
  except ImportError as error:
    raise ImportError(
        "Reading TFDS data sets needs TensorFlow: pip install tensorflow-cpu"
    ) from error
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # devices already initialised by an earlier call
    pass
  return tf, tfds


def prepare_command(tfds_name: str, data_dir: str) -> str:
  """The shell command that downloads and prepares ``tfds_name`` into ``data_dir``."""
  return (
      'python -c "import tensorflow_datasets as tfds; '
      f"tfds.builder('{tfds_name}', data_dir='{data_dir}').download_and_prepare()\""
  )


def download_instructions(tfds_name: str, data_dir: str) -> str:
  """How to get a TFDS data set that TFDS can download by itself."""
  return (
      f"On a machine with internet, run\n  {prepare_command(tfds_name, data_dir)}\n"
      f"and copy {data_dir} to this machine (or pass data_dir= / set TFDS_DATA_DIR to where it "
      "is)."
  )


def builder(tfds_name: str, data_dir: str | None) -> Any:
  """A TFDS builder. ``data_dir=None``: TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
  _, tfds = import_tensorflow()
  return tfds.builder(tfds_name, data_dir=data_dir)


def registered_name(tfds_builder: Any) -> str:
  """The name ``tfds.builder`` accepts, with the config: e.g. ``'imagenet_resized/16x16'``."""
  config = tfds_builder.builder_config
  return tfds_builder.name if config is None else f"{tfds_builder.name}/{config.name}"


def as_dataset(tfds_builder: Any, split: str, *, instructions: str | None = None,
               **kwargs: Any) -> Any:
  """``builder.as_dataset`` that turns 'not prepared' into a :class:`DatasetNotFoundError`."""
  try:
    return tfds_builder.as_dataset(split=split, **kwargs)
  except (AssertionError, FileNotFoundError) as error:
    if tfds_builder.is_prepared():
      raise
    data_dir = str(tfds_builder.data_dir_root)
    if instructions is None:
      instructions = download_instructions(registered_name(tfds_builder), data_dir)
    raise DatasetNotFoundError(
        f"TFDS data set {registered_name(tfds_builder)!r} is not prepared in {data_dir}. "
        + instructions
    ) from error


def split_size(tfds_builder: Any, split: str, *, instructions: str | None = None) -> int:
  """Number of examples of ``split`` (from the metadata, else by counting the records)."""
  try:
    return int(tfds_builder.info.splits[split].num_examples)
  except KeyError:  # metadata without split sizes (e.g. under tfds.testing.mock_data)
    pass
  _, tfds = import_tensorflow()
  ds = as_dataset(tfds_builder, split, instructions=instructions,
                  decoders={"image": tfds.decode.SkipDecoding()})
  size = int(ds.cardinality())
  return size if size >= 0 else int(ds.reduce(0, lambda count, _: count + 1))


def load_arrays(tfds_name: str, split: str, data_dir: str | None, *,
                max_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads a TFDS image-classification split into memory, in the stored order.

  Returns uint8 images ``(n, H, W, C)`` and int64 labels ``(n,)``. With ``max_label``, only
  examples with ``label < max_label`` are kept; the filter runs before the images are decoded.
  """
  tf, tfds = import_tensorflow()
  tfds_builder = builder(tfds_name, data_dir)
  ds = as_dataset(tfds_builder, split, shuffle_files=False,
                  decoders={"image": tfds.decode.SkipDecoding()})
  if max_label is not None:
    ds = ds.filter(lambda example: example["label"] < max_label)
  image_feature = tfds_builder.info.features["image"]
  ds = ds.map(lambda example: (image_feature.decode_example(example["image"]), example["label"]),
              num_parallel_calls=tf.data.AUTOTUNE)
  chunks = list(tfds.as_numpy(ds.batch(_CHUNK).prefetch(2)))
  if not chunks:
    return np.zeros((0, *image_feature.shape), np.uint8), np.zeros((0,), np.int64)
  images = np.concatenate([images for images, _ in chunks])
  labels = np.concatenate([labels for _, labels in chunks])
  return images.astype(np.uint8), labels.astype(np.int64)
