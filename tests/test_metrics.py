"""biojax.metrics: JSON-ready values, JSON lines written and read back, and MetricsWriter's
resume rules (records after the checkpoint dropped, none written twice)."""

import json
import os

import numpy as np

from biojax import metrics


def test_to_json_turns_nan_into_null():
  value = {"a": float("nan"), "b": np.float32(np.inf), "c": (1, np.int64(2)), "d": 0.5}
  assert json.dumps(metrics.to_json(value)) == '{"a": null, "b": null, "c": [1, 2], "d": 0.5}'


def test_jsonl_round_trip_skips_a_torn_last_line(tmp_path):
  path = str(tmp_path / "log.jsonl")
  assert metrics.read_jsonl(path) == []
  metrics.rewrite_jsonl(path, [{"generation": 0}])
  metrics.append_jsonl(path, [{"generation": 1, "fitness": np.float32(0.5),
                               "genome": np.arange(2)}, {"generation": 2, "x": float("nan")}])
  with open(path, "a") as f:
    f.write('{"generation": 3, "fit')  # a run killed while writing
  assert metrics.read_jsonl(path) == [{"generation": 0},
                                      {"generation": 1, "fitness": 0.5, "genome": [0, 1]},
                                      {"generation": 2, "x": None}]
  metrics.rewrite_jsonl(path, [{"generation": 0}])
  assert metrics.read_jsonl(path) == [{"generation": 0}]


def test_writer_resumes_as_an_uninterrupted_run(tmp_path):
  workdir = str(tmp_path)
  writer = metrics.MetricsWriter(workdir, resume_step=None)
  for step in (0, 1, 2, 3):
    writer.write({"step": step, "split": "train", "loss": 1.0 / (step + 1)})
  writer.write({"step": 2, "split": "validation", "accuracy": float("nan")})
  writer.close()
  path = os.path.join(workdir, metrics.METRICS_FILE)
  assert [(r["step"], r["split"]) for r in metrics.read_metrics(path)] == [
      (0, "train"), (1, "train"), (2, "train"), (3, "train"), (2, "validation")]
  assert metrics.read_metrics(path)[-1]["accuracy"] is None

  # Resumed from a checkpoint at step 2: step 3 goes, step 2 is not written again.
  writer = metrics.MetricsWriter(workdir, resume_step=2)
  writer.write({"step": 2, "split": "train", "loss": 99.0})
  writer.write({"step": 3, "split": "train", "loss": 0.2})
  writer.close()
  assert metrics.read_metrics(path) == [
      {"step": 0, "split": "train", "loss": 1.0}, {"step": 1, "split": "train", "loss": 0.5},
      {"step": 2, "split": "train", "loss": 1 / 3},
      {"step": 2, "split": "validation", "accuracy": None},
      {"step": 3, "split": "train", "loss": 0.2}]
  assert any(n.startswith("events.out.tfevents")
             for n in os.listdir(os.path.join(workdir, metrics.TENSORBOARD_DIR)))

  # A fresh run (no resume step) starts the file afresh.
  metrics.MetricsWriter(workdir, resume_step=None).close()
  assert metrics.read_metrics(path) == []
