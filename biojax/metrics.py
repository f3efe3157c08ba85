"""Metrics on disk: JSON lines (``metrics.jsonl``) and TensorBoard events, chief process only.

:class:`MetricsWriter` appends one record per line and mirrors its scalars to TensorBoard;
:func:`read_metrics` reads the records back. :func:`to_json` makes any record JSON-ready
(NaN/Inf -> null). :func:`read_jsonl`, :func:`rewrite_jsonl` and :func:`append_jsonl` are
the same format for other logs (the search's ``history.jsonl`` and ``candidates.jsonl``).
:func:`machine` describes the machine a report was measured on (the benchmarks, the studies).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def to_json(value: Any) -> Any:
  """A JSON-ready copy: NumPy/JAX scalars -> Python, NaN/Inf -> None, tuples -> lists."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return to_json(value.tolist()) if value.ndim else to_json(value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def machine() -> dict:
  """The CPU model, core count, jax version, backend and devices of this process."""
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  out = {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
         "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
  if jax.default_backend() != "cpu":
    out["device_kind"] = jax.devices()[0].device_kind
  return out


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file ([] if there is none). A malformed line (the torn last
  line of a killed run) is skipped with a warning."""
  records = []
  if not os.path.exists(path):
    return records
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        logging.warning("Skipping a malformed line of %s: %r", path, line[:200])
  return records


def rewrite_jsonl(path: str, records: Iterable[Mapping]) -> None:
  """Replaces the file with ``records`` (JSON-ready already: read back by read_jsonl)."""
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


def append_jsonl(path: str, records: Iterable[Mapping]) -> None:
  """Appends ``records`` (passed through :func:`to_json`), one line each."""
  with open(path, "a") as f:
    f.writelines(json.dumps(to_json(r)) + "\n" for r in records)


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` written by :class:`MetricsWriter`, in order."""
  return read_jsonl(path)


class MetricsWriter:
  """Appends records to ``workdir/metrics.jsonl`` and scalars to TensorBoard (process 0 only).

  A record is a mapping with ``step`` and ``split`` and any scalars; ``alignment`` (a
  ``{layer: angle}`` dict) goes to TensorBoard as ``alignment/<layer>``, other numbers as
  ``<split>/<name>``.

  ``resume_step``: records after it (written by a run killed after its last checkpoint) are
  dropped, as are TensorBoard events after it, so a resumed run's files read as an
  uninterrupted run's; a record whose ``(step, split)`` is already there is not written again
  (a finished run that is run again). None starts both afresh.
  """

  def __init__(self, workdir: str, resume_step: int | None):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tensorboard = None
    if not self.active:
      return
    kept = ([r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            if resume_step is not None else [])
    self._written = {(r.get("step"), r.get("split")) for r in kept}
    rewrite_jsonl(self.path, kept)
    self._file = open(self.path, "a")  # closed in close()
    try:
      from tensorboardX import SummaryWriter  # light; TensorFlow is never imported here
    except ImportError:
      logging.warning("tensorboardX is not installed: no TensorBoard events are written "
                      "(metrics.jsonl holds every metric).")
    else:
      self._tensorboard = SummaryWriter(
          os.path.join(workdir, TENSORBOARD_DIR),
          purge_step=None if resume_step is None else resume_step + 1)

  def write(self, record: Mapping) -> None:
    if not self.active or (record["step"], record["split"]) in self._written:
      return
    self._written.add((record["step"], record["split"]))
    record = to_json(record)
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tensorboard is not None:
      step, split = record["step"], record["split"]
      for name, value in record.items():
        if name in ("step", "split"):
          continue
        if name == "alignment":
          for layer, angle in value.items():
            if angle is not None:
              self._tensorboard.add_scalar(f"alignment/{layer}", angle, step)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tensorboard.add_scalar(f"{split}/{name}", value, step)

  def close(self) -> None:
    if not self.active:
      return
    self._file.close()
    if self._tensorboard is not None:
      self._tensorboard.close()
