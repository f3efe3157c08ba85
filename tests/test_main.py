"""The launcher (biojax.main): its task table, an unknown task, and every config file of
experiments/ loaded as the launcher loads it."""

import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from biojax import main

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG_FILES = sorted(p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__")
# The task of each config file (docs/pipeline.md, "Tasks").
EXPECTED_TASKS = {
    "train": "train", "quickstart": "search", "nas_nb201_cifar10": "search",
    "nas_nb201_cifar100": "search", "nas_nb201_imagenet16_120": "search",
    "nas_darts_cifar10": "search", "nas_darts_imagenet": "search", "baselines": "baselines",
    "sparse_rule": "sparse_rule", "sparse_rule_ablation": "sparse_rule_ablation",
    "sparse_rule_sweep": "sparse_rule_sweep", "sparse_rule_label_free": "sparse_rule_label_free",
    "bionas_darts": "bionas_darts", "bionas_darts_cifar10": "bionas_darts",
    "bionas_eg": "bionas_eg", "bionas_eg_cifar10": "bionas_eg",
    "bionas_compare": "bionas_compare",
}
VALID = ("train, search, bionas_darts, bionas_eg, baselines, bionas_compare, sparse_rule, "
         "sparse_rule_ablation, sparse_rule_sweep, sparse_rule_label_free")

# ml_collections loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def load(name: str, *overrides: str):
  """experiments/<name>.py's config as `python -m biojax.main --config=...` parses it."""
  argv = ["main", f"--config={REPO / 'experiments' / f'{name}.py'}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv, lock_config=True)
  values(argv)
  return values.config


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_loads_and_names_its_task(name):
  config = load(name)
  assert config.task in main.TASKS
  assert config.task == EXPECTED_TASKS[name], "a new config file: add it to EXPECTED_TASKS"


def test_the_task_table_runs_the_pipeline_the_search_and_the_studies():
  from biojax import pipeline
  from biojax.nas import search
  from biojax.studies import sparse_rule

  assert ", ".join(main.TASKS) == VALID
  assert main.TASKS["train"] is pipeline.train_and_evaluate
  assert main.TASKS["search"] is search.search
  from biojax.nas import bionas, bionas_eg
  from biojax.studies import bionas_compare
  assert main.TASKS["bionas_darts"] is bionas.search
  assert main.TASKS["bionas_eg"] is bionas_eg.search
  assert main.TASKS["bionas_compare"] is bionas_compare.run
  assert main.TASKS["sparse_rule"] is sparse_rule.run


def test_an_unknown_or_missing_task_names_the_valid_ones(tmp_path):
  config = load("train", "--config.task=trian")
  with pytest.raises(ValueError, match=f"Unknown task 'trian' \\(config.task\\). Valid tasks: "
                                       f"{VALID}\\."):
    main.run(config, str(tmp_path))
  with config.unlocked():
    del config["task"]
  with pytest.raises(ValueError, match="Unknown task None"):
    main.run(config, str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_the_command_line_rejects_an_unknown_task_before_any_work(tmp_path):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "biojax.main", "--config=experiments/train.py",
       f"--workdir={workdir}", "--config.task=serch"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode != 0
  assert f"Unknown task 'serch' (config.task). Valid tasks: {VALID}." in result.stderr
  assert not workdir.exists()
