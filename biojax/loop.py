"""The training loop: :func:`fit` over steps, and :func:`evaluate` over a split.

One loop serves the pipeline (biojax.pipeline), the NAS retrain, few-shot training and the
studies (docs/design.md). It owns what every loop needs: the PRNG key of step ``k`` is
``fold_in(key, k)`` (so a run resumed at step ``k`` continues exactly as the uninterrupted
one), the training metrics are summed per log interval and checked for NaN/Inf, progress is
logged through absl, and a SIGTERM (``should_stop``) ends the loop between two steps. All the
rest (evaluation, checkpoints, metric files) comes in as plain callables.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from biojax.preemption import format_eta

# (step, state) after the step-th training step (step counts from 1): evaluation, checkpoints.
Hook = Callable[[int, Any], None]


class NonFiniteLossError(FloatingPointError):
  """The training loss (or the parameters) became NaN or infinite; ``step`` says where."""

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step


class TrainMetrics:
  """The per-step training metrics (``loss``, ``accuracy``) since the last log.

  Steps are added as device arrays (no synchronisation); :meth:`check` moves them to the
  host and raises :class:`NonFiniteLossError` at the first non-finite loss. ``host`` (a list
  of ``(step, loss, accuracy)``) is what a checkpoint saves so that the log interval it
  interrupts is summarised exactly as in an uninterrupted run (``pending``).
  """

  def __init__(self, pending: Iterable[Iterable[float]] = ()):
    self._device: list[tuple[int, dict]] = []
    self.host: list[tuple[int, float, float]] = [tuple(p) for p in pending]

  def add(self, step: int, metrics: dict) -> None:
    self._device.append((step, metrics))

  def check(self, strict: bool = True) -> None:
    """Moves the metrics to the host; raises NonFiniteLossError at the first bad step
    (``strict=False``: never raises)."""
    device, self._device = self._device, []
    if not device:
      return
    values = jax.device_get([m for _, m in device])
    for (step, _), m in zip(device, values, strict=True):
      loss = float(m["loss"])
      if strict and not math.isfinite(loss):
        raise NonFiniteLossError(f"The training loss is {loss} at step {step}.", step)
      self.host.append((step, loss, float(m["accuracy"])))

  def summary(self) -> dict:
    """Mean loss and accuracy and the number of steps since the last summary (resets)."""
    self.check(strict=False)
    losses = [loss for _, loss, _ in self.host]
    accuracies = [acc for _, _, acc in self.host]
    self.host = []
    return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(accuracies)),
            "steps": len(losses)}


@dataclasses.dataclass(frozen=True)
class FitResult:
  """What :func:`fit` returns."""

  state: Any
  step: int  # the state's step (== num_steps unless interrupted)
  interrupted: bool  # should_stop ended the loop early
  steps_per_second: float | None  # over this session's timed steps (see fit)


def every(period: int, hook: Hook, last: int | None = None) -> Hook:
  """``hook`` called at the steps that are multiples of ``period``, and at ``last``."""

  def periodic(step: int, state: Any) -> None:
    if step % period == 0 or step == last:
      hook(step, state)

  return periodic


def fit(train_step: Callable, state: Any, batches: Iterator, key: jax.Array, num_steps: int,
        *, log_every: int = 100, hooks: Sequence[Hook] = (),
        on_log: Callable[[int, dict], None] | None = None,
        should_stop: Callable[[int], bool] | None = None,
        metrics: TrainMetrics | None = None, check_finite: bool = True,
        name: str = "step") -> FitResult:
  """Trains from ``state.step`` to ``num_steps``: ``state, m = train_step(state, batch,
  fold_in(key, step))`` with ``batch = next(batches)``, for step = state.step, state.step+1, ...

  Args:
    train_step: ``(state, batch, key) -> (state, metrics)`` with scalar ``loss`` and
      ``accuracy`` in ``metrics`` (biojax.make_train_step, jitted).
    state: a train state whose ``step`` is where to start; ``batches`` must start there too.
    key: the training key; step ``k`` gets ``fold_in(key, k)``.
    log_every: every ``log_every`` steps and at the last one, the metrics since the last
      log are checked for NaN/Inf (``check_finite``), summarised (``loss``, ``accuracy``,
      ``steps``, ``steps_per_second``), passed to ``on_log(step, summary)`` and logged.
    hooks: ``hook(step, state)`` after every step, in order (:func:`every` makes a periodic
      one); the time they take is not counted in the throughput.
    should_stop: ``should_stop(step)`` before each step; True ends the loop there
      (``FitResult.interrupted``).
    metrics: the accumulator to use (a resumed run passes one holding the ``pending``
      metrics of its checkpoint; a checkpoint hook saves ``metrics.host``).
    check_finite: False: a non-finite loss is logged, not raised.
    name: the word before the step in the log lines.

  Returns:
    A :class:`FitResult`. Its ``steps_per_second`` leaves out the first step of this call
    (compilation) and the hooks; None when no step was timed.

  Raises:
    NonFiniteLossError: a non-finite training loss, at the log after it.
  """
  metrics = TrainMetrics() if metrics is None else metrics
  step = int(state.step)
  timed_steps, timed_seconds = 0, 0.0
  interval_steps, interval_start, interval_paused = 0, None, 0.0
  while step < num_steps:
    if should_stop is not None and should_stop(step):
      return FitResult(state, step, True, timed_steps / timed_seconds if timed_steps else None)
    state, step_metrics = train_step(state, next(batches), jax.random.fold_in(key, step))
    step += 1
    metrics.add(step, step_metrics)
    if interval_start is None:  # the first step of this call: compilation, not throughput
      jax.block_until_ready(step_metrics)
      interval_start = time.time()
    else:
      interval_steps += 1
    if step % log_every == 0 or step == num_steps:
      metrics.check(strict=check_finite)
      seconds = time.time() - interval_start - interval_paused
      rate = interval_steps / seconds if interval_steps else float("nan")
      timed_steps, timed_seconds = timed_steps + interval_steps, timed_seconds + seconds
      summary = {**metrics.summary(), "steps_per_second": rate}
      if on_log is not None:
        on_log(step, summary)
      logging.info("%s %d/%d  loss %.4f  accuracy %.4f  %.1f steps/s  ETA %s", name, step,
                   num_steps, summary["loss"], summary["accuracy"], rate,
                   format_eta((num_steps - step) / rate) if rate > 0 else "?")
      interval_steps, interval_start, interval_paused = 0, time.time(), 0.0
    pause_start = time.time()
    for hook in hooks:
      hook(step, state)
    interval_paused += time.time() - pause_start
  return FitResult(state, step, False, timed_steps / timed_seconds if timed_steps else None)


def evaluate(eval_step: Callable, state: Any, batches: Iterable) -> dict:
  """Loss and accuracy over a whole split: ``eval_step(state, batch)`` returns sums
  (``loss_sum``, ``correct``, ``count``; padding masked out), added up on the device.

  Returns ``{"loss", "accuracy", "count"}`` (loss and accuracy None for an empty split).
  """
  totals = None
  for batch in batches:
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  if totals is None:
    return {"loss": None, "accuracy": None, "count": 0}
  totals = jax.device_get(totals)
  count = float(totals["count"])
  if not count:
    return {"loss": None, "accuracy": None, "count": 0}
  return {"loss": float(totals["loss_sum"]) / count,
          "accuracy": float(totals["correct"]) / count, "count": int(round(count))}


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Keeps ``size`` items in flight (device transfers overlap the running step)."""
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) >= size:
      yield queue.popleft()
  yield from queue
