"""The experiment pipeline end to end (biojax.main, biojax.pipeline, experiments/train.py).

One uninterrupted in-process run is the reference. Runs that need their own process (a
SIGTERM, a SIGKILL, eight host devices) start together at the first test that asks for them
and work while the reference trains; their restarts run in this process, sharing its compiled
programs.
"""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from absl import flags
from conftest import xla_flags
from ml_collections import config_flags

from biojax import data as data_lib
from biojax import pipeline
from biojax.checkpoint import CHECKPOINT_DIR, CORRUPT_CHECKPOINT_DIR, load_checkpoint
from biojax.loop import NonFiniteLossError
from biojax.metrics import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = os.path.join(REPO, "experiments", "train.py")
NUM_STEPS = 2000
CHECKPOINT_EVERY = 400
# Every run of the reliability tests uses exactly these overrides.
OVERRIDES = (
    "--config.dataset=synthetic",
    "--config.model_kwargs.mlp.hidden=(64,32)",
    "--config.rule=('brsf','kp','bp')",  # a per-step random rule, a rule with state, and bp
    f"--config.num_steps={NUM_STEPS}",
    "--config.eval_every=400",
    f"--config.checkpoint_every={CHECKPOINT_EVERY}",
    "--config.log_every=50",
)
TIMEOUT = 240  # seconds for any subprocess

# ml_collections loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def parse_config(*overrides: str):
  """The config as `python -m biojax.main --config=experiments/train.py *overrides` sees it."""
  argv = ["main", f"--config={CONFIG_FILE}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)
  values(argv)
  return values.config


def params_of(workdir: str, step: int | None = None) -> dict:
  return load_checkpoint(workdir, step)["params"]


def assert_trees_equal(actual, expected):
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree.leaves_with_path(expected)]
  for path, a, e in zip(paths, jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(a, e, err_msg=path)


def without_timings(records):
  drop = ("wall_seconds", "steps_per_second")
  return [{k: v for k, v in r.items() if k not in drop} for r in records]


def checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


@dataclasses.dataclass
class Launched:
  """A `python -m biojax.main` subprocess, and a watcher that signals it when `ready()`."""

  workdir: str
  process: subprocess.Popen
  log: str
  signalled_at: float | None = None
  watcher: threading.Thread | None = None

  def finish(self) -> int:
    if self.watcher is not None:
      self.watcher.join(TIMEOUT)
    code = self.process.wait(TIMEOUT)
    self.stderr = open(self.log).read()
    return code


def launch(workdir: str, env: dict | None = None, signum: int | None = None,
           ready=None) -> Launched:
  log = workdir + ".log"
  with open(log, "w") as stderr:
    process = subprocess.Popen(
        [sys.executable, "-m", "biojax.main", f"--config={CONFIG_FILE}", f"--workdir={workdir}",
         *OVERRIDES], cwd=REPO, env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=stderr)
  run = Launched(workdir, process, log)
  if signum is not None:

    def watch():
      while process.poll() is None:
        if ready():
          process.send_signal(signum)
          run.signalled_at = time.time()
          return
        time.sleep(0.002)

    run.watcher = threading.Thread(target=watch, daemon=True)
    run.watcher.start()
  return run


def logged_steps(workdir: str) -> list[int]:
  return [r["step"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if r["split"] == "train"]


@pytest.fixture(scope="module")
def background(tmp_path_factory):
  """Starts the subprocess runs; they overlap the reference run."""
  root = tmp_path_factory.mktemp("background")
  first = os.path.join(str(root / "sigterm"), CHECKPOINT_DIR, str(CHECKPOINT_EVERY))
  runs = {
      # SIGTERM as soon as the first checkpoint is complete (orbax renames it into place).
      "sigterm": launch(str(root / "sigterm"), signum=signal.SIGTERM,
                        ready=lambda: os.path.isdir(first)),
      # SIGKILL once training has logged past the first checkpoint, before the second.
      "sigkill": launch(str(root / "sigkill"), signum=signal.SIGKILL,
                        ready=lambda: any(CHECKPOINT_EVERY < s < 2 * CHECKPOINT_EVERY
                                          for s in logged_steps(str(root / "sigkill")))),
      "sharded": launch(str(root / "sharded"),
                        env={"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=8")}),
  }
  yield runs
  for run in runs.values():
    if run.process.poll() is None:
      run.process.kill()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  report = pipeline.train_and_evaluate(parse_config(*OVERRIDES), workdir)
  return workdir, report


@pytest.mark.slow  # four training runs in subprocesses and one in-process
def test_report_and_outputs(background, reference):
  del background  # started first, so that it overlaps this run
  workdir, report = reference
  with open(os.path.join(workdir, "report.json")) as f:
    assert json.load(f) == report
  assert report["step"] == NUM_STEPS
  assert 0.9 < report["test_accuracy"] <= 1.0
  assert 0.9 < report["validation_accuracy"] <= 1.0
  assert report["rules"] == {"dense_0": "brsf", "dense_1": "kp", "classifier": "bp"}
  # Weights are kernel entries: 64x64 (input 8x8) + 64x32 + 32x10, of which bp has 32x10.
  assert report["bp_weight_share"] == pytest.approx(320 / (4096 + 2048 + 320))
  angles = {layer: v["angle"] for layer, v in report["alignment"].items()}
  assert list(angles) == ["dense_0", "dense_1", "classifier"]
  assert angles["classifier"] == pytest.approx(0.0, abs=0.1)  # bp: B = W
  assert 0.0 <= angles["dense_0"] <= 180.0 and 0.0 <= angles["dense_1"] < 90.0
  assert report["wall_seconds"] > 0 and report["steps_per_second"] > 0
  assert report["dataset"] == {"name": "synthetic", "num_classes": 10, "image_shape": [8, 8, 1],
                               "train": 5000, "validation": 5000, "test": 2000}
  assert report["devices"] == 1 and report["resumed_from_step"] is None
  assert report["config"]["rule"] == "('brsf','kp','bp')"
  assert report["config"]["model_kwargs"]["mlp"]["hidden"] == [64, 32]

  records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  train = [r for r in records if r["split"] == "train"]
  validation = [r for r in records if r["split"] == "validation"]
  test = [r for r in records if r["split"] == "test"]
  assert [r["step"] for r in train] == list(range(50, NUM_STEPS + 1, 50))
  assert [r["step"] for r in validation] == list(range(0, NUM_STEPS + 1, 400))
  assert [r["accuracy"] for r in test] == [report["test_accuracy"]]
  assert all(r["steps"] == 50 and np.isfinite(r["loss"]) and r["learning_rate"] >= 0
             for r in train)
  assert train[-1]["loss"] < train[0]["loss"]
  assert set(validation[-1]["alignment"]) == set(angles)
  assert validation[-1]["alignment"] == angles
  for name in ("curves.png", "alignment.png"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert any(n.startswith("events.out.tfevents")
             for n in os.listdir(os.path.join(workdir, "tensorboard")))
  assert checkpoint_steps(workdir) == [1200, 1600, 2000]


def test_sigterm_saves_and_a_rerun_ends_exactly_as_uninterrupted(background, reference):
  run = background["sigterm"]
  assert run.finish() == 0, run.stderr[-3000:]
  assert run.signalled_at is not None, "the run ended before its first checkpoint appeared"
  assert not os.path.exists(os.path.join(run.workdir, "report.json")), "it was not interrupted"
  assert "SIGTERM: saving a checkpoint" in run.stderr
  interrupted_at = checkpoint_steps(run.workdir)[-1]
  assert CHECKPOINT_EVERY <= interrupted_at < NUM_STEPS

  report = pipeline.train_and_evaluate(parse_config(*OVERRIDES), run.workdir)
  assert report["resumed_from_step"] == interrupted_at
  workdir, expected = reference
  assert_trees_equal(params_of(run.workdir), params_of(workdir))
  assert report["test_accuracy"] == expected["test_accuracy"]
  read = lambda w: without_timings(read_metrics(os.path.join(w, "metrics.jsonl")))
  assert read(run.workdir) == read(workdir)


def test_sigkill_between_checkpoints_then_rerun_ends_exactly_as_uninterrupted(background,
                                                                               reference):
  run = background["sigkill"]
  assert run.finish() == -signal.SIGKILL, run.stderr[-3000:]
  assert not os.path.exists(os.path.join(run.workdir, "report.json"))
  last_checkpoint = checkpoint_steps(run.workdir)[-1]
  assert max(logged_steps(run.workdir)) > last_checkpoint  # work after it was lost

  report = pipeline.train_and_evaluate(parse_config(*OVERRIDES), run.workdir)
  assert report["resumed_from_step"] == last_checkpoint
  workdir, expected = reference
  assert_trees_equal(load_checkpoint(run.workdir),
                     load_checkpoint(workdir))  # params, optimizer and rule state
  assert report["test_accuracy"] == expected["test_accuracy"]
  read = lambda w: without_timings(read_metrics(os.path.join(w, "metrics.jsonl")))
  assert read(run.workdir) == read(workdir)


def test_eight_devices_train_as_one(background, reference):
  run = background["sharded"]
  assert run.finish() == 0, run.stderr[-3000:]
  with open(os.path.join(run.workdir, "report.json")) as f:
    report = json.load(f)
  assert report["devices"] == 8
  workdir, expected = reference
  sharded, single = params_of(run.workdir), params_of(workdir)
  for a, e in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
  assert abs(report["test_accuracy"] - expected["test_accuracy"]) <= 0.002


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(reference, tmp_path, caplog):
  workdir, expected = reference
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  latest = os.path.join(copy, CHECKPOINT_DIR, str(NUM_STEPS), "state")
  for folder, _, files in os.walk(latest):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "r+b") as f:
        f.write(b"\x00garbage" * (os.path.getsize(path) // 8 + 1))
  os.remove(os.path.join(copy, "report.json"))

  report = pipeline.train_and_evaluate(parse_config(*OVERRIDES), copy)
  assert any("unreadable" in r.getMessage() and str(NUM_STEPS) in r.getMessage()
             for r in caplog.records if r.levelname == "WARNING")
  assert report["resumed_from_step"] == NUM_STEPS - CHECKPOINT_EVERY
  assert_trees_equal(params_of(copy), params_of(workdir))
  assert report["test_accuracy"] == expected["test_accuracy"]
  assert os.listdir(os.path.join(copy, CORRUPT_CHECKPOINT_DIR))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  config = parse_config(*OVERRIDES, "--config.optimizer=sgd", "--config.learning_rate=50.0",
                        "--config.schedule=constant", "--config.checkpoint_every=5",
                        "--config.log_every=5")
  workdir = str(tmp_path)
  with pytest.raises(NonFiniteLossError) as error:
    pipeline.train_and_evaluate(config, workdir)
  message = str(error.value)
  steps = checkpoint_steps(workdir)
  assert steps, "no checkpoint was saved before the loss diverged"
  bad_step = int(re.search(r"(?:at|by) step (\d+)", message).group(1))
  assert f"last good checkpoint (step {steps[-1]})" in message
  assert steps[-1] < bad_step <= steps[-1] + 5
  assert "learning_rate" in message
  state = load_checkpoint(workdir)
  assert int(state["step"]) == steps[-1]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


@pytest.mark.parametrize("override, name", [
    ("--config.num_step=5", "num_step"),
    ("--config.model_kwargs.mlp.hiden=(3,)", "hiden"),
    ("--config.rule_options.kp_dcay=0.1", "kp_dcay"),
])
def test_a_typo_in_an_override_names_the_key(override, name):
  with pytest.raises(Exception, match=name):
    parse_config(override)


def test_a_typo_in_a_config_file_names_the_key(tmp_path):
  config = parse_config()
  config.unlock()
  config.lerning_rate = 0.1
  with pytest.raises(ValueError, match="'lerning_rate' \\(did you mean 'learning_rate'\\?\\)"):
    pipeline.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing was started


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  config = parse_config(f"--config.fashion_mnist_dir={tmp_path}",
                        f"--config.data_dir={tmp_path}")
  with pytest.raises(data_lib.DatasetNotFoundError) as error:
    pipeline.train_and_evaluate(config, str(tmp_path / "run"))
  assert "apt-get install dataset-fashion-mnist" in str(error.value)
  assert "download_and_prepare" in str(error.value)
