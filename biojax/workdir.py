"""One run per work directory: an exclusive lock held for the run.

Two runs writing one work directory corrupt each other: checkpoints collide in orbax's
temporary directory, and ``metrics.jsonl`` / ``history.jsonl`` get interleaved records.
:func:`workdir_lock` holds an exclusive ``fcntl.flock`` lock on ``WORKDIR/biojax.lock`` for
the whole run. The operating system releases it when the process ends, however it ends, so a
crash cannot leave a lock behind. The file names the holder (``pid host``), so that a second
run fails at once with the process to wait for. A clean exit empties the file; a name still
in it when the lock is free was left by a run that crashed or was killed, and is taken over
with a warning.

The lock is re-entrant within a process (``biojax.main`` locks the workdir and then runs the
task, which locks it again), and only process 0 of a multi-process run takes it (all
processes of one run share its work directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator

import jax
from absl import logging

LOCK_FILE = "biojax.lock"

_held: dict[str, int] = {}  # lock file path -> nesting depth, in this process


class WorkdirInUseError(RuntimeError):
  """Another process holds the work directory's lock."""


def _holder(fd: int) -> tuple[int | None, str]:
  """The ``(pid, host)`` written in the lock file (``(None, "")`` if none)."""
  os.lseek(fd, 0, os.SEEK_SET)
  words = os.read(fd, 256).decode(errors="replace").split()
  if not words or not words[0].isdigit():
    return None, ""
  return int(words[0]), words[1] if len(words) > 1 else ""


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock (created if needed) until the block ends.

  Raises:
    WorkdirInUseError: another process holds it; the message names the process.
  """
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  if path in _held:
    _held[path] += 1
    try:
      yield
    finally:
      _held[path] -= 1
    return
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    pid, host = _holder(fd)
    os.close(fd)
    who = f"process {pid}" + (f" on {host}" if host else "") if pid else "another process"
    raise WorkdirInUseError(
        f"workdir {workdir} is in use by {who} (lock file {path}). Wait for that run to "
        "finish, stop it, or give this run another --workdir.") from None
  try:
    pid, host = _holder(fd)
    if pid is not None:  # a clean exit empties the file: that run ended another way
      logging.warning("workdir %s: taking over the lock left by process %d%s, which ended "
                      "without releasing it (a crash or a kill); its outputs are resumed "
                      "as usual.", workdir, pid, f" on {host}" if host else "")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    os.fsync(fd)
    _held[path] = 1
    try:
      yield
    finally:
      del _held[path]
      os.ftruncate(fd, 0)  # a clean exit leaves no name behind
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
