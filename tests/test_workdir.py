"""One run per work directory (biojax.workdir): a second run on a workdir in use fails at once
and writes nothing; a lock left by a killed run is taken over; nesting in one process works.

The failure this guards against (two runs on one workdir interleaving their records and
colliding in orbax's temporary directory) needs two processes, so the holder here is a real
subprocess."""

import os
import subprocess
import sys

import pytest

from biojax import main
from biojax import workdir as workdir_lib
from biojax.nas import search as search_lib
from experiments import quickstart, train

HOLD = """
import sys, time
from biojax.workdir import workdir_lock
with workdir_lock(sys.argv[1]):
  print("held", flush=True)
  sys.stdin.readline()  # hold until the test closes stdin (or kills this process)
"""


def _holder(workdir):
  process = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert process.stdout.readline().strip() == "held"
  return process


def _lock_text(workdir):
  with open(os.path.join(workdir, workdir_lib.LOCK_FILE)) as f:
    return f.read()


def test_a_second_run_on_a_workdir_in_use_fails_at_once_and_writes_nothing(tmp_path):
  holder = _holder(tmp_path)
  try:
    assert _lock_text(tmp_path).split()[0] == str(holder.pid)
    configs = {"train": train.get_config(), "search": quickstart.get_config()}
    for config in configs.values():
      with pytest.raises(workdir_lib.WorkdirInUseError,
                         match=f"workdir {tmp_path} is in use by process {holder.pid}"):
        main.run(config, str(tmp_path))
    # The library entry points lock too (a notebook calls them directly).
    with pytest.raises(workdir_lib.WorkdirInUseError):
      search_lib.search(configs["search"], str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == [workdir_lib.LOCK_FILE]  # nothing written
  finally:
    holder.stdin.close()
    holder.wait(timeout=60)
  assert holder.returncode == 0
  assert _lock_text(tmp_path) == ""  # released, and a clean exit leaves no name
  with workdir_lib.workdir_lock(str(tmp_path)):  # free again
    assert _lock_text(tmp_path).split()[0] == str(os.getpid())


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
  holder = _holder(tmp_path)
  holder.kill()  # SIGKILL: no clean-up runs; the kernel releases the lock
  holder.wait(timeout=60)
  assert _lock_text(tmp_path).split()[0] == str(holder.pid)
  with caplog.at_level("WARNING"):
    with workdir_lib.workdir_lock(str(tmp_path)):
      assert _lock_text(tmp_path).split()[0] == str(os.getpid())
  assert f"taking over the lock left by process {holder.pid}" in caplog.text
  assert _lock_text(tmp_path) == ""


def test_the_lock_is_reentrant_within_a_process(tmp_path):
  with workdir_lib.workdir_lock(str(tmp_path)):
    with workdir_lib.workdir_lock(str(tmp_path / ".." / tmp_path.name)):  # the same directory
      assert _lock_text(tmp_path).split()[0] == str(os.getpid())
    assert _lock_text(tmp_path).split()[0] == str(os.getpid())  # still held by the outer
  assert _lock_text(tmp_path) == ""
