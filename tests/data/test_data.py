"""Tests of biojax.data that need no TensorFlow: IDX parsing, Fashion-MNIST, the in-memory
pipeline (determinism, resume, carve, padding, process shards) and the synthetic data set."""

import gzip
import os
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import data
from biojax.data import _dataset, _synthetic

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
HAVE_FASHION_MNIST = all(
    os.path.isfile(os.path.join(FASHION_MNIST_DIR, f))
    for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


# ----------------------------------------------------------------------------- IDX format


def _idx_bytes(type_code: int, shape: tuple[int, ...], body: bytes) -> bytes:
  """An IDX file written by hand from the format description (big-endian header)."""
  return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + body


def test_read_idx_ubyte_gzipped_and_plain(tmp_path):
  body = bytes(range(12))
  raw = _idx_bytes(0x08, (2, 3, 2), body)
  (tmp_path / "a.idx").write_bytes(raw)
  (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
  expected = np.array([[[0, 1], [2, 3], [4, 5]], [[6, 7], [8, 9], [10, 11]]], np.uint8)
  for name in ("a.idx", "a.idx.gz"):
    array = data.read_idx(tmp_path / name)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, expected)


def test_parse_idx_big_endian_int32_and_float64():
  values = data.parse_idx(_idx_bytes(0x0C, (3,), struct.pack(">iii", 1, -2, 65536)))
  np.testing.assert_array_equal(values, [1, -2, 65536])
  assert values.dtype == np.int32 and values.dtype.isnative
  doubles = data.parse_idx(_idx_bytes(0x0E, (2,), struct.pack(">dd", 0.5, -3.25)))
  np.testing.assert_array_equal(doubles, [0.5, -3.25])


@pytest.mark.parametrize("raw", [
    b"\x01\x00\x08\x01\x00\x00\x00\x01\x00",  # bad magic
    b"\x00\x00\x07\x01\x00\x00\x00\x01\x00",  # unknown type code
    b"\x00\x00\x08\x01\x00\x00\x00\x03\x00",  # body shorter than the shape says
])
def test_parse_idx_rejects_malformed(raw):
  with pytest.raises(ValueError):
    data.parse_idx(raw)


def _write_fashion_mnist(directory, train_images, train_labels, test_images, test_labels):
  directory.mkdir(exist_ok=True)
  for name, array in (("train-images-idx3-ubyte.gz", train_images),
                      ("train-labels-idx1-ubyte.gz", train_labels),
                      ("t10k-images-idx3-ubyte.gz", test_images),
                      ("t10k-labels-idx1-ubyte.gz", test_labels)):
    raw = _idx_bytes(0x08, array.shape, array.astype(np.uint8).tobytes())
    (directory / name).write_bytes(gzip.compress(raw))


def test_fashion_mnist_from_hand_written_idx_files(tmp_path):
  rng = np.random.default_rng(0)
  train_images = rng.integers(0, 256, (7, 4, 4), dtype=np.uint8)
  test_images = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
  train_labels, test_labels = np.arange(7) % 10, np.array([9, 2, 1])
  _write_fashion_mnist(tmp_path / "fm", train_images, train_labels, test_images, test_labels)
  ds = data.get_dataset("fashion_mnist", fashion_mnist_dir=str(tmp_path / "fm"),
                        validation_size=2)
  assert (ds.num_train, ds.num_validation, ds.num_test) == (5, 2, 3)
  assert ds.image_shape == (4, 4, 1) and ds.num_classes == 10
  (batch,) = list(ds.eval_batches("test", 4))
  expected = (test_images[..., None] / 255.0 - 0.2860) / 0.3530  # published constants
  np.testing.assert_allclose(batch["image"][:3], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(batch["label"], [9, 2, 1, 0])
  np.testing.assert_array_equal(batch["mask"], [1, 1, 1, 0])


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_counts_labels_and_normalisation():
  train_labels = data.read_idx(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz"))
  test_labels = data.read_idx(os.path.join(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
  images = data.read_idx(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
  # Published: 60,000 train / 10,000 test 28x28 images; first labels as in the release.
  assert images.shape == (60_000, 28, 28) and test_labels.shape == (10_000,)
  np.testing.assert_array_equal(train_labels[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
  np.testing.assert_array_equal(test_labels[:10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
  np.testing.assert_array_equal(np.bincount(train_labels), [6000] * 10)
  pixels = images / 255.0
  assert abs(pixels.mean() - 0.2860) < 5e-4 and abs(pixels.std() - 0.3530) < 5e-4
  ds = data.get_dataset("fashion_mnist")
  assert (ds.num_train, ds.num_validation, ds.num_test) == (55_000, 5_000, 10_000)
  assert ds.image_shape == (28, 28, 1)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    data.get_dataset("fashion_mnist", fashion_mnist_dir=str(tmp_path / "none"),
                     data_dir=str(tmp_path / "tfds"))
  assert isinstance(info.value, data.DatasetNotFoundError)
  message = str(info.value)
  assert "apt-get install dataset-fashion-mnist" in message
  assert "fashion_mnist_dir" in message
  assert ("tfds.builder('fashion_mnist', data_dir='" + str(tmp_path / "tfds") +
          "').download_and_prepare()") in message


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError) as info:
    data.get_dataset("fashion-mnist")
  for name in data.DATASETS:
    assert name in str(info.value)
  assert set(data.DATASETS) == {"fashion_mnist", "mnist", "cifar10", "cifar100",
                                "imagenet16_120", "imagenet2012", "synthetic"}


def test_importing_biojax_does_not_import_tensorflow():
  code = ("import sys, biojax, biojax.data as d; d.get_dataset('synthetic'); "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- in-memory pipeline


def _indexed_dataset(num=100, num_test=13, validation_size=20, seed=0, crop_padding=0,
                     flip=False, limit_train=None, shape=(4, 4, 1)):
  """A data set whose image ``i`` stores ``i`` in its first pixel (mean 0, std 1 in [0,1] units)."""
  def images(start, count):
    array = np.zeros((count, *shape), np.uint8)
    array[:, 0, 0, 0] = np.arange(start, start + count)
    return array
  return _dataset.make_array_dataset(
      "indexed", num_classes=10, train=(images(0, num), np.arange(num) % 10),
      test=(images(200, num_test), np.arange(num_test) % 10), mean=(0.0,) * shape[-1],
      std=(1.0,) * shape[-1], crop_padding=crop_padding, flip=flip,
      validation_size=validation_size, seed=seed, limit_train=limit_train)


def _ids(images):
  return np.round(images[:, 0, 0, 0] * 255).astype(int)


def test_validation_is_carved_from_train_only_and_disjoint():
  ds = _indexed_dataset(num=100, validation_size=20, seed=3)
  train_ids, validation_ids = _ids(ds.train_images / 255.0), _ids(ds.validation_images / 255.0)
  assert len(set(train_ids)) == 80 and len(set(validation_ids)) == 20
  assert not set(train_ids) & set(validation_ids)
  assert set(train_ids) | set(validation_ids) == set(range(100))  # never a test image (>= 200)
  same = _indexed_dataset(num=100, validation_size=20, seed=3)
  other = _indexed_dataset(num=100, validation_size=20, seed=4)
  np.testing.assert_array_equal(same.validation_images, ds.validation_images)
  assert not np.array_equal(other.validation_images, ds.validation_images)
  batches = list(ds.eval_batches("validation", 8))
  seen = np.concatenate([_ids(b["image"])[b["mask"] == 1] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.sort(validation_ids))


def test_limit_train_keeps_first_examples_after_carve():
  full = _indexed_dataset(num=100, validation_size=20)
  limited = _indexed_dataset(num=100, validation_size=20, limit_train=30)
  assert limited.num_train == 30 and limited.num_validation == 20
  np.testing.assert_array_equal(limited.train_images, full.train_images[:30])
  np.testing.assert_array_equal(limited.validation_images, full.validation_images)


def test_train_epochs_are_permutations_and_seed_dependent():
  ds = _indexed_dataset(num=100, validation_size=20)  # 80 train: 10 steps of 8 per epoch
  train_ids = set(_ids(ds.train_images / 255.0))
  it = ds.train_batches(8, seed=5)
  epochs = [np.concatenate([_ids(next(it)["image"]) for _ in range(10)]) for _ in range(2)]
  for epoch in epochs:
    assert sorted(epoch) == sorted(train_ids)
  assert not np.array_equal(epochs[0], epochs[1])
  other = _ids(next(ds.train_batches(8, seed=6))["image"])
  assert not np.array_equal(other, epochs[0][:8])


@pytest.mark.parametrize("augment", [False, True])
def test_start_step_resumes_bitwise(augment):
  ds = _indexed_dataset(num=100, validation_size=10, crop_padding=2 if augment else 0,
                        flip=augment, shape=(6, 6, 3))  # 90 train: 5 steps of 16 per epoch
  it = ds.train_batches(16, seed=11)
  stream = [next(it) for _ in range(13)]  # crosses two epoch boundaries
  for k in (0, 1, 4, 5, 6, 12):
    resumed = next(ds.train_batches(16, seed=11, start_step=k))
    for key in ("image", "label"):
      np.testing.assert_array_equal(resumed[key], stream[k][key])
      assert resumed[key].dtype == stream[k][key].dtype
  assert stream[0]["image"].dtype == np.float32 and stream[0]["label"].dtype == np.int32


def _reference_crop_flip(image, offset, flip, padding):
  """Per-example loop: pad with zeros, slice, mirror."""
  h, w, _ = image.shape
  padded = np.zeros((h + 2 * padding, w + 2 * padding, image.shape[2]), image.dtype)
  padded[padding:padding + h, padding:padding + w] = image
  crop = padded[offset[0]:offset[0] + h, offset[1]:offset[1] + w]
  return crop[:, ::-1] if flip else crop


def test_pad_crop_flip_matches_reference_loop():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (20, 5, 7, 3), dtype=np.uint8)
  offsets = rng.integers(0, 5, (20, 2))
  flips = rng.random(20) < 0.5
  out = _dataset.pad_crop_flip(images, offsets, flips, 2)
  for i in range(20):
    np.testing.assert_array_equal(out[i], _reference_crop_flip(images[i], offsets[i], flips[i], 2))


def test_augmented_batches_are_shifted_or_mirrored_originals():
  rng = np.random.default_rng(1)
  train = rng.integers(1, 256, (40, 6, 6, 3), dtype=np.uint8)
  ds = _dataset.make_array_dataset(
      "random", num_classes=10, train=(train, np.arange(40) % 10), test=(train[:4], np.zeros(4)),
      mean=(0.0,) * 3, std=(1.0,) * 3, crop_padding=2, flip=True, validation_size=0, seed=0,
      limit_train=None)
  batch = next(ds.train_batches(40, seed=2))
  candidates = [
      _reference_crop_flip(image, (dy, dx), flip, 2)
      for image in train for dy in range(5) for dx in range(5) for flip in (False, True)]
  candidates = {c.tobytes() for c in candidates}
  produced = np.round(batch["image"] * 255).astype(np.uint8)
  assert all(image.tobytes() in candidates for image in produced)
  # Not all identity: some crops moved or flipped.
  identity = {image.tobytes() for image in train}
  assert sum(image.tobytes() not in identity for image in produced) > 20


@pytest.mark.parametrize("batch_size", [5, 8, 13, 64])
def test_eval_padding_and_mask_sum_to_split_size(batch_size):
  ds = _indexed_dataset(num=100, num_test=13, validation_size=20)
  for split, size in (("test", 13), ("validation", 20)):
    batches = list(ds.eval_batches(split, batch_size))
    assert all(b["image"].shape == (batch_size, 4, 4, 1) for b in batches)
    assert all(b["label"].shape == b["mask"].shape == (batch_size,) for b in batches)
    assert sum(b["mask"].sum() for b in batches) == size
    assert len(batches) == -(-size // batch_size)
    last = batches[-1]
    assert np.all(last["image"][last["mask"] == 0] == 0)
  ids = np.concatenate([_ids(b["image"])[b["mask"] == 1] for b in ds.eval_batches("test", 5)])
  np.testing.assert_array_equal(ids, np.arange(200, 213))  # fixed (stored) order
  with pytest.raises(ValueError, match="validation, test"):
    next(ds.eval_batches("train", 4))


def test_process_shards_concatenate_to_the_global_batch(monkeypatch):
  ds = _indexed_dataset(num=100, validation_size=10, crop_padding=1, flip=True)
  whole_train = next(ds.train_batches(8, seed=1, start_step=3))
  whole_eval = list(ds.eval_batches("test", 8))
  shards_train, shards_eval = [], []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  for process in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda process=process: process)
    shards_train.append(next(ds.train_batches(8, seed=1, start_step=3)))
    shards_eval.append(list(ds.eval_batches("test", 8)))
  for key in ("image", "label"):
    np.testing.assert_array_equal(
        np.concatenate([shard[key] for shard in shards_train]), whole_train[key])
  assert len(shards_eval[0]) == len(shards_eval[1]) == len(whole_eval)
  for k, whole in enumerate(whole_eval):
    for key in ("image", "label", "mask"):
      np.testing.assert_array_equal(
          np.concatenate([shards_eval[0][k][key], shards_eval[1][k][key]]), whole[key])
  with pytest.raises(ValueError, match="multiple"):
    next(ds.train_batches(7, seed=0))


def test_bad_sizes_are_rejected():
  with pytest.raises(ValueError, match="validation_size"):
    data.get_dataset("synthetic", validation_size=10_000)
  with pytest.raises(ValueError, match="larger than"):
    next(data.get_dataset("synthetic", limit_train=10).train_batches(16, seed=0))
  with pytest.raises(ValueError, match="image_size"):
    data.get_dataset("synthetic", image_size=32)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_normalisation_constants():
  ds = data.get_dataset("synthetic")
  assert ds.image_shape == (8, 8, 1) and ds.num_classes == 10
  assert (ds.num_train, ds.num_validation, ds.num_test) == (5_000, 5_000, 2_000)
  (train_images, train_labels), _ = _synthetic.generate()
  pixels = train_images / 255.0
  assert abs(pixels.mean() - _synthetic.MEAN[0]) < 1e-3
  assert abs(pixels.std() - _synthetic.STD[0]) < 1e-3
  np.testing.assert_array_equal(np.bincount(train_labels), [1000] * 10)
  batch = next(ds.train_batches(256, seed=0))
  assert abs(batch["image"].mean()) < 0.1 and abs(batch["image"].std() - 1) < 0.1


def test_small_mlp_learns_synthetic_above_90_percent():
  ds = data.get_dataset("synthetic", validation_size=1000)
  key1, key2 = jax.random.split(jax.random.key(0))
  params = {"w1": jax.random.normal(key1, (64, 32)) / 8.0, "b1": jnp.zeros(32),
            "w2": jax.random.normal(key2, (32, 10)) / np.sqrt(32), "b2": jnp.zeros(10)}

  def logits(params, images):
    hidden = jax.nn.relu(images.reshape(len(images), -1) @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]

  def loss(params, batch):
    log_probs = jax.nn.log_softmax(logits(params, batch["image"]))
    return -jnp.mean(jnp.take_along_axis(log_probs, batch["label"][:, None], axis=1))

  @jax.jit
  def sgd_step(params, batch):
    grads = jax.grad(loss)(params, batch)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  batches = ds.train_batches(32, seed=0)
  for _ in range(300):
    params = sgd_step(params, next(batches))
  correct = total = 0.0
  for batch in ds.eval_batches("test", 500):
    predicted = np.asarray(jnp.argmax(logits(params, batch["image"]), -1))
    correct += np.sum((predicted == batch["label"]) * batch["mask"])
    total += batch["mask"].sum()
  assert total == 2000 and correct / total > 0.9
