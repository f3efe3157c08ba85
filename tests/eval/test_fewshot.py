"""Few-shot subsets and the few-shot protocol on the synthetic data set."""

import numpy as np
import pytest

from biojax import eval as bev
from biojax.data import get_dataset
from experiments import train


def train_config():
  return train.get_config()


def dataset():
  return get_dataset("synthetic", validation_size=1000)


def test_subset_draws_exactly_k_per_class_deterministically():
  data = dataset()
  for k in (1, 5, 37):
    subset = bev.few_shot_subset(data, k, seed=4)
    counts = np.bincount(subset.train_labels, minlength=data.num_classes)
    np.testing.assert_array_equal(counts, np.full(data.num_classes, k))
    assert subset.num_train == k * data.num_classes == len(subset.train_images)
    # Every drawn example is a training example with its own label.
    flat = data.train_images.reshape(data.num_train, -1)
    index = {row.tobytes(): label for row, label in zip(flat, data.train_labels, strict=True)}
    for image, label in zip(subset.train_images, subset.train_labels, strict=True):
      assert index[image.tobytes()] == label
    np.testing.assert_array_equal(subset.test_images, data.test_images)
  same = bev.few_shot_subset(data, 5, seed=4)
  np.testing.assert_array_equal(same.train_images, bev.few_shot_subset(data, 5, 4).train_images)
  other = bev.few_shot_subset(data, 5, seed=5)
  assert not np.array_equal(same.train_images, other.train_images)
  assert bev.few_shot_subset(data, "all", 0) is data
  with pytest.raises(ValueError, match="fewer than"):
    bev.few_shot_subset(data, 10_000, 0)
  with pytest.raises(ValueError, match="positive"):
    bev.few_shot_subset(data, 0, 0)


def test_few_shot_trains_per_seed_and_reports_mean_and_std(tmp_path):
  config = train_config()
  config.model_kwargs.mlp.hidden = (16,)
  config.rule = "fa"
  config.rule_options.rules = ("bp", "fa")
  config.batch_size = 20  # k = 2 and 3 (20, 30 examples) and "all" share one batch shape
  config.learning_rate = 1e-2
  config.eval_batch_size = 500
  results = bev.few_shot(config, dataset(), shots=(2, 3, "all"), seeds=(0, 0, 1),
                         num_steps=lambda k: 40)
  assert list(results) == [2, 3, "all"]
  for result in results.values():
    accuracies = result["accuracies"]
    assert accuracies[0] == accuracies[1]  # the same seed gives the same run
    assert result["mean"] == pytest.approx(np.mean(accuracies))
    assert result["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert result["num_steps"] == 40 and result["seeds"] == [0, 0, 1]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
  assert results[2]["num_train"] == 20 and results["all"]["num_train"] == 9000
  assert results[2]["accuracies"][0] != results[2]["accuracies"][2]  # another seed, another run
  assert results["all"]["mean"] > 0.25  # it learns (chance: 0.1; fa after 40 steps: about 0.45)
  path = bev.plot_few_shot({"fa": results}, str(tmp_path / "few_shot.png"))
  with open(path, "rb") as f:
    assert f.read(4) == b"\x89PNG"
