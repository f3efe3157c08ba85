"""Preemption: a SIGTERM sets a flag, and loops stop at their next safe point.

Cloud schedulers send SIGTERM some time before they kill a job; :class:`Preemption` turns it
into a flag that a training or search loop reads between steps (or generations), so the loop
can save a checkpoint and return, and the same command resumes it.
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils


class Preemption:
  """``with Preemption() as preemption: ... if preemption.stop(step, every): save; return``.

  Sets a flag on SIGTERM (the previous handler is restored on exit). Only the main thread can
  install a signal handler; elsewhere SIGTERM keeps its previous meaning (with a warning).
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> Preemption:
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    else:
      logging.warning("Not in the main thread: SIGTERM will not save a checkpoint.")
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self.requested = True

  def stop(self, step: int, check_every: int) -> bool:
    """Whether to stop before this step. With several processes the flag is shared (every
    ``check_every`` steps), so that all of them save the same step."""
    if jax.process_count() == 1:
      return self.requested
    if step % check_every:
      return False
    flags = multihost_utils.process_allgather(np.asarray(self.requested))
    return bool(np.any(flags))

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def format_eta(seconds: float) -> str:
  """``H:MM:SS`` of a non-negative duration (negative: 0:00:00)."""
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
