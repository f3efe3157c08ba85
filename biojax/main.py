"""Launcher: ``python -m biojax.main --config=experiments/train.py --workdir=DIR``.

A config with ``task = "search"`` (experiments/quickstart.py) runs the architecture and
learning-rule search (:func:`biojax.nas.search.search`, docs/nas.md); any other trains one
model (:func:`biojax.experiment.train_and_evaluate`, docs/pipeline.md).

Any config field can be overridden: ``--config.rule=fa``, ``--config.num_steps=500``,
``--config.model_kwargs.mlp.hidden="(512,)"``. Running again with the same workdir resumes
from its latest checkpoint. See docs/pipeline.md.
"""

from __future__ import annotations

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from biojax import experiment

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots "
                               "and report.json; a run in it is resumed.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py, defining get_config()).",
    lock_config=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(experiment.QuietOrbax())
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  logging.info("JAX process %d of %d; devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  config = _CONFIG.value
  if config.get("task", "train") == "search":
    from biojax.nas import search  # noqa: PLC0415 (only searches need it)
    report = search.search(config, _WORKDIR.value)
    if report.get("interrupted"):
      logging.info("Interrupted before generation %d; the search state is saved.",
                   report["generation"])
    return
  report = experiment.train_and_evaluate(config, _WORKDIR.value)
  if report.get("interrupted"):
    logging.info("Interrupted at step %d; the checkpoint is saved.", report["step"])


if __name__ == "__main__":
  app.run(main)
