"""TFDS paths of biojax.data, run on tfds.testing.mock_data (no real data, no network)."""

import os

import numpy as np
import pytest

from biojax import data

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616])


def _reference_split(name, split, data_dir):
  """The mock examples as plain TFDS returns them (mock data are the same on every read)."""
  (batch,) = tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, batch_size=10_000))
  return batch


def test_cifar10_from_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=60):
    ds = data.get_dataset("cifar10", data_dir=str(tmp_path), validation_size=12)
    test = _reference_split("cifar10", "test", str(tmp_path))
    train = _reference_split("cifar10", "train", str(tmp_path))
  assert (ds.num_train, ds.num_validation, ds.num_test) == (48, 12, 60)
  assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10
  # Eval: stored order, normalised with the published CIFAR-10 constants, no augmentation.
  batches = list(ds.eval_batches("test", 32))
  images = np.concatenate([b["image"] for b in batches])[:60]
  np.testing.assert_allclose(images, (test["image"] / 255.0 - CIFAR10_MEAN) / CIFAR10_STD,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:60], test["label"])
  assert sum(b["mask"].sum() for b in batches) == 60
  # Validation and train are train images (never test), disjoint.
  train_set = {image.tobytes() for image in train["image"]}
  raw = lambda x: np.round((x * CIFAR10_STD + CIFAR10_MEAN) * 255).astype(np.uint8)
  validation = [raw(b["image"][b["mask"] == 1]) for b in ds.eval_batches("validation", 5)]
  validation = {image.tobytes() for image in np.concatenate(validation)}
  assert len(validation) == 12 and validation <= train_set
  assert not validation & {image.tobytes() for image in ds.train_images}
  # Train: augmented (pad 4, crop, flip), resumable.
  assert ds.crop_padding == 4 and ds.flip
  it = ds.train_batches(16, seed=7)
  stream = [next(it) for _ in range(5)]  # 3 steps per epoch: crosses an epoch boundary
  for k in (0, 2, 3, 4):
    resumed = next(ds.train_batches(16, seed=7, start_step=k))
    np.testing.assert_array_equal(resumed["image"], stream[k]["image"])
    np.testing.assert_array_equal(resumed["label"], stream[k]["label"])
  assert stream[0]["image"].shape == (16, 32, 32, 3)


def test_imagenet16_120_keeps_labels_below_120(tmp_path):
  with tfds.testing.mock_data(num_examples=400):
    ds = data.get_dataset("imagenet16_120", data_dir=str(tmp_path), validation_size=5)
    train = _reference_split("imagenet_resized/16x16", "train", str(tmp_path))
    test = _reference_split("imagenet_resized/16x16", "validation", str(tmp_path))
  assert train["label"].max() >= 120  # the mock has all 1000 classes: the filter matters
  keep_train, keep_test = train["label"] < 120, test["label"] < 120
  assert ds.num_classes == 120 and ds.image_shape == (16, 16, 3)
  assert ds.num_train + ds.num_validation == keep_train.sum()
  assert ds.num_test == keep_test.sum()
  kept = np.concatenate([ds.train_labels, ds.validation_labels])
  np.testing.assert_array_equal(np.sort(kept), np.sort(train["label"][keep_train]))
  np.testing.assert_array_equal(ds.test_labels, test["label"][keep_test])
  np.testing.assert_array_equal(ds.test_images, test["image"][keep_test])
  assert ds.crop_padding == 2 and ds.flip  # NAS-Bench-201 augmentation for 16x16
  batch = next(ds.train_batches(8, seed=0))
  assert batch["image"].shape == (8, 16, 16, 3) and batch["label"].max() < 120


def test_imagenet16_120_published_counts():
  data.check_imagenet16_120_counts(151_700, 6_000)
  with pytest.raises(ValueError, match="151700"):
    data.check_imagenet16_120_counts(151_699, 6_000)


@pytest.mark.skipif(
    not os.path.isdir(os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
                      + "/imagenet_resized/16x16"),
    reason="real imagenet_resized/16x16 not prepared")
def test_real_imagenet16_120_counts():
  assert data.verify_imagenet16_120() == {"train": 151_700, "test": 6_000}


def test_imagenet2012_streams_resumes_and_pads(tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    ds = data.get_dataset("imagenet2012", data_dir=str(tmp_path), validation_size=4,
                          image_size=32)
    assert (ds.num_train, ds.num_validation, ds.num_test) == (20, 4, 24)
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 1000
    it = ds.train_batches(8, seed=3)
    stream = [next(it) for _ in range(3)]  # 2 steps per epoch
    resumed = [next(ds.train_batches(8, seed=3, start_step=k)) for k in (1, 2)]
    evaluation = list(ds.eval_batches("test", 10))
    validation = list(ds.eval_batches("validation", 8))
  assert stream[0]["image"].shape == (8, 32, 32, 3) and stream[0]["image"].dtype == np.float32
  assert stream[0]["label"].dtype == np.int32
  for k, batch in zip((1, 2), resumed, strict=True):  # inside an epoch, and a new epoch
    np.testing.assert_array_equal(batch["image"], stream[k]["image"])
    np.testing.assert_array_equal(batch["label"], stream[k]["label"])
  assert not np.array_equal(stream[0]["image"], stream[2]["image"])
  assert len(evaluation) == 3 and sum(b["mask"].sum() for b in evaluation) == 24
  assert all(b["image"].shape == (10, 32, 32, 3) for b in evaluation)
  assert len(validation) == 1 and validation[0]["mask"].sum() == 4


@pytest.mark.parametrize("name, tfds_name", [("cifar10", "cifar10"), ("mnist", "mnist"),
                                             ("imagenet16_120", "imagenet_resized/16x16")])
def test_missing_tfds_data_says_how_to_prepare(tmp_path, name, tfds_name):
  with pytest.raises(FileNotFoundError) as info:
    data.get_dataset(name, data_dir=str(tmp_path))
  assert isinstance(info.value, data.DatasetNotFoundError)
  assert (f"tfds.builder('{tfds_name}', data_dir='{tmp_path}').download_and_prepare()"
          in str(info.value))


def test_missing_imagenet_says_where_the_tar_files_go(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.get_dataset("imagenet2012", data_dir=str(tmp_path))
  message = str(info.value)
  assert f"{tmp_path}/downloads/manual/" in message
  assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
  assert f"tfds.builder('imagenet2012', data_dir='{tmp_path}').download_and_prepare()" in message


def test_fashion_mnist_falls_back_to_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=30):
    ds = data.get_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"),
                          fashion_mnist_dir=str(tmp_path / "no_idx_files"), validation_size=10)
  assert (ds.num_train, ds.num_validation, ds.num_test) == (20, 10, 30)
  assert ds.image_shape == (28, 28, 1)
