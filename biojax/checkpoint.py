"""Orbax checkpoints of a train (or search) state, with a fallback past corrupt ones.

:class:`Checkpointer` keeps the latest ``keep`` checkpoints under a directory and restores the
latest readable one; :func:`load_checkpoint` reads a saved train state as NumPy arrays (for a
notebook or an evaluation script). :class:`QuietOrbax` hides orbax's INFO chatter.
"""

from __future__ import annotations

import logging as python_logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from biojax import rules as rules_lib

CHECKPOINT_DIR = "checkpoints"  # under the workdir
CORRUPT_CHECKPOINT_DIR = "checkpoints_corrupt"  # beside it: unreadable checkpoints set aside


class QuietOrbax(python_logging.Filter):
  """Drops orbax's INFO chatter (dozens of lines per checkpoint); its warnings still show."""

  def filter(self, record: python_logging.LogRecord) -> bool:
    return (record.levelno >= python_logging.WARNING
            or f"{os.sep}orbax{os.sep}" not in record.pathname)


class Checkpointer:
  """Orbax checkpoints of a state pytree (and a little JSON metadata) under ``directory``.

  Keeps the latest ``keep`` checkpoints. Orbax writes each one to a temporary directory and
  renames it when complete, so a run killed while saving leaves no half-written checkpoint.

  The metadata of every checkpoint records the registry's rule names in id order
  (``rule_names``): rule ids in a state mean nothing without them (docs/rules.md, "Ids,
  names and checkpoints").
  """

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: Mapping) -> None:
    meta = {**meta, "rule_names": list(rules_lib.rule_names())}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def restore_latest(self, abstract_state: Any, check_rules: bool = True
                     ) -> tuple[Any, dict] | None:
    """``(state, meta)`` of the latest readable checkpoint, or None when there is none.

    ``abstract_state``: the state's structure as ``jax.ShapeDtypeStruct`` leaves (with the
    shardings to restore to). An unreadable checkpoint is reported with a warning and moved to
    ``checkpoints_corrupt/`` beside ``directory`` once an older one has been read; if none is
    readable, raises RuntimeError and moves nothing.

    With ``check_rules`` (for states that hold rule ids and every rule's state), a checkpoint
    written where other rules were registered is refused before its state is read: a
    ValueError lists the rules one side lacks (the state of a rule is part of the state's
    structure). The same rules in another order restore; ``meta["rule_names"]`` then says
    which id meant which rule (:meth:`biojax.nn.Assignment.with_ids_from`).
    """
    failures = []
    for step in reversed(self.steps()):
      if check_rules:
        self._check_rules(step)
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as error:  # any failure to read means "corrupt"
        logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                        "the previous one.", step, self.directory, type(error).__name__,
                        str(error).splitlines()[0][:300] if str(error) else "")
        failures.append(step)
        continue
      if failures:
        self._set_aside(failures)
      return restored.state, dict(restored.meta)
    if failures:
      raise RuntimeError(
          f"No checkpoint in {self.directory} is readable (steps {failures}). Move the "
          "directory away to start afresh.")
    return None

  def _check_rules(self, step: int) -> None:
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      saved = meta.meta.get("rule_names")
    except Exception:  # unreadable metadata: the restore below reports it as corrupt
      return
    if saved is None:  # written before checkpoints recorded rule names: built-in ids
      return
    what = f"The checkpoint at step {step} in {self.directory}"
    rules_lib.ids_from_names(saved, what)  # raises for rules registered there, not here
    extra = [n for n in rules_lib.rule_names() if n not in saved]
    if extra:
      raise ValueError(
          f"{what} was written without the rules {', '.join(extra)}, which this process has "
          "registered: their state is not in it. Resume in a process that does not register "
          f"them, or start a new work directory. Rules of that run: {', '.join(saved)}.")

  def _set_aside(self, steps: Iterable[int]) -> None:
    aside = os.path.join(os.path.dirname(self.directory), CORRUPT_CHECKPOINT_DIR)
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        target = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(os.path.join(self.directory, str(step)), target)
        logging.warning("Moved the unreadable checkpoint of step %d to %s.", step, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("biojax_checkpoints_set_aside")
    self._manager.reload()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def load_checkpoint(workdir: str, step: int | None = None) -> dict:
  """The train state saved in ``workdir`` at ``step`` (default: the latest), as nested dicts
  of NumPy arrays (``params``, ``feedback``, ``opt_state``, ``assignment``, ``step``, ...).

  Works on any device count: a checkpoint written by an 8-device run loads on one device.
  """
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if step is None:
    steps = sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    if not steps:
      raise FileNotFoundError(f"No checkpoint in {directory}.")
    step = steps[-1]
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.metadata(path).item_metadata
  device = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          tree)
  return jax.device_get(checkpointer.restore(path, abstract))
