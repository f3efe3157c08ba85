"""Input pipeline: named image data sets with deterministic, resumable, per-process batches.

``get_dataset(name)`` returns a :class:`Dataset` whose ``train_batches`` and ``eval_batches``
yield NumPy batches. Small data sets live in memory as uint8 arrays; ImageNet streams from TFDS.
TensorFlow is imported only when a TFDS data set is read, never by ``import biojax``.
See docs/data.md.
"""

from biojax.data._dataset import ArrayDataset, Dataset
from biojax.data._idx import parse_idx, read_idx
from biojax.data._registry import (
    DATASETS,
    IMAGENET16_120_COUNTS,
    check_imagenet16_120_counts,
    get_dataset,
    verify_imagenet16_120,
)
from biojax.data._tfds import DatasetNotFoundError

__all__ = [
    "DATASETS", "IMAGENET16_120_COUNTS", "ArrayDataset", "Dataset", "DatasetNotFoundError",
    "check_imagenet16_120_counts", "get_dataset", "parse_idx", "read_idx",
    "verify_imagenet16_120",
]
