"""Reader for the IDX format of the (Fashion-)MNIST files.

The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <dtype code> <number of dimensions>``, then one big-endian uint32 per dimension,
then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes) -> np.ndarray:
  """Parses the bytes of an (uncompressed) IDX file into an array of native byte order."""
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError("Not an IDX file: the magic number must start with two zero bytes.")
  type_code, ndim = data[2], data[3]
  if type_code not in _IDX_DTYPES:
    raise ValueError(f"Unknown IDX type code 0x{type_code:02X}.")
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise ValueError("Truncated IDX header.")
  shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header_size != expected:
    raise ValueError(
        f"IDX body has {len(data) - header_size} bytes, expected {expected} for shape {shape}."
    )
  array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzipped (``.gz``) or not."""
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    return parse_idx(f.read())
