"""Launcher: ``python -m biojax.main --config=experiments/<name>.py --workdir=DIR``.

Runs the function that ``config.task`` names in :data:`TASKS` on ``(config, workdir)``:
``"train"`` trains one model (:func:`biojax.pipeline.train_and_evaluate`, docs/pipeline.md),
``"search"`` the architecture and learning-rule search (:func:`biojax.nas.search.search`,
docs/nas.md), every other task a study of :mod:`biojax.studies` (docs/pipeline.md, "Tasks").

Any config field can be overridden: ``--config.rule=fa``, ``--config.num_steps=500``,
``--config.model_kwargs.mlp.hidden="(512,)"``, ``--config.quick=True``. Running again with the
same workdir resumes. Run from the repository root: the configs import each other as the
``experiments`` package.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from biojax import pipeline
from biojax.checkpoint import QuietOrbax
from biojax.nas import bionas, bionas_eg, search
from biojax.studies import (
    baselines,
    bionas_compare,
    sparse_rule,
    sparse_rule_ablation,
    sparse_rule_label_free,
    sparse_rule_sweep,
)
from biojax.workdir import workdir_lock

# config.task -> the function run on (config, workdir); each returns its report.
TASKS: dict[str, Callable[[ml_collections.ConfigDict, str], dict]] = {
    "train": pipeline.train_and_evaluate,
    "search": search.search,
    "bionas_darts": bionas.search,
    "bionas_eg": bionas_eg.search,
    "baselines": baselines.run,
    "bionas_compare": bionas_compare.run,
    "sparse_rule": sparse_rule.run,
    "sparse_rule_ablation": sparse_rule_ablation.run,
    "sparse_rule_sweep": sparse_rule_sweep.run,
    "sparse_rule_label_free": sparse_rule_label_free.run,
}

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots "
                               "and report.json; a run in it is resumed.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py, defining get_config()).",
    lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs).")
flags.mark_flags_as_required(["config", "workdir"])


def task_of(config: ml_collections.ConfigDict) -> Callable[[ml_collections.ConfigDict, str], dict]:
  """The function of ``config.task``; a missing or unknown task raises ValueError naming the
  valid ones."""
  task = config.get("task")
  if task not in TASKS:
    raise ValueError(f"Unknown task {task!r} (config.task). Valid tasks: {', '.join(TASKS)}.")
  return TASKS[task]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs ``config``'s task in ``workdir`` and returns its report."""
  task = task_of(config)  # an unknown task fails before the workdir is touched
  with workdir_lock(workdir):  # one run per workdir, for every task (biojax.workdir)
    report = task(config, workdir)
  if report.get("interrupted"):
    where = ", ".join(f"{k} {report[k]}" for k in ("step", "generation", "run") if k in report)
    logging.info("Interrupted (%s); the state is saved: run the same command to resume.",
                 where)
  return report


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(QuietOrbax())
  config = _CONFIG.value
  task_of(config)  # an unknown task fails before any work
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  logging.info("JAX process %d of %d; devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  run(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
