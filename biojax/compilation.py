"""Counting XLA compilations, to show that a new assignment never recompiles."""

from __future__ import annotations

import threading

from jax import monitoring

_EVENT = "/jax/core/compile/backend_compile_duration"
_lock = threading.Lock()
_count = 0
_registered = False


def _listener(event: str, duration: float, **kwargs) -> None:
  del duration, kwargs
  global _count
  if event == _EVENT:
    with _lock:
      _count += 1


def compilations() -> int:
  """Number of XLA backend compilations in this process since biojax started counting."""
  global _registered
  if not _registered:
    monitoring.register_event_duration_secs_listener(_listener)
    _registered = True
  return _count


class CompileCounter:
  """``with CompileCounter() as c: ...; c.count`` = XLA compilations inside the block."""

  def __enter__(self) -> CompileCounter:
    self._start = compilations()
    self.count = 0
    return self

  def __exit__(self, *exc) -> None:
    self.count = compilations() - self._start
