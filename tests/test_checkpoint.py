"""biojax.checkpoint: save and restore, the fallback past a corrupt latest checkpoint (set
aside in checkpoints_corrupt/), and load_checkpoint as NumPy arrays."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biojax import checkpoint, rules


def tree(value: float) -> dict:
  """A small state: every leaf is determined by ``value``."""
  return {"params": {"w": jnp.full((3, 2), value, jnp.float32)},
          "step": jnp.asarray(int(value), jnp.int32)}


def abstract(example):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                      example)


def save_three(workdir: str) -> checkpoint.Checkpointer:
  saver = checkpoint.Checkpointer(os.path.join(workdir, checkpoint.CHECKPOINT_DIR), keep=2)
  for step in (1, 2, 3):
    saver.save(step, tree(float(step)), {"wall_seconds": step * 10.0})
  return saver


def corrupt(workdir: str, step: int) -> None:
  folder = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step), "state")
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.write(b"\x00garbage" * (os.path.getsize(path) // 8 + 1))


def assert_tree(actual, value: float):
  np.testing.assert_array_equal(np.asarray(actual["params"]["w"]), np.full((3, 2), value))
  assert int(actual["step"]) == int(value)


def test_keeps_the_latest_and_restores_them(tmp_path):
  saver = save_three(str(tmp_path))
  assert saver.steps() == [2, 3]  # keep=2
  state, meta = saver.restore_latest(abstract(tree(0.0)))
  assert_tree(state, 3.0)
  # Every checkpoint records the registry's rule names, in id order (docs/rules.md, section 7).
  assert meta == {"wall_seconds": 30.0, "rule_names": list(rules.rule_names())}
  saver.close()
  assert_tree(checkpoint.load_checkpoint(str(tmp_path)), 3.0)
  assert_tree(checkpoint.load_checkpoint(str(tmp_path), step=2), 2.0)


def test_no_checkpoint_restores_none(tmp_path):
  saver = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  assert saver.restore_latest(abstract(tree(0.0))) is None
  saver.close()
  with pytest.raises(FileNotFoundError):
    checkpoint.load_checkpoint(str(tmp_path))


def test_a_corrupt_latest_checkpoint_falls_back_and_is_set_aside(tmp_path, caplog):
  save_three(str(tmp_path)).close()
  corrupt(str(tmp_path), 3)
  saver = checkpoint.Checkpointer(str(tmp_path / checkpoint.CHECKPOINT_DIR), keep=2)
  with caplog.at_level(logging.WARNING):
    state, meta = saver.restore_latest(abstract(tree(0.0)))
  assert_tree(state, 2.0)
  assert meta == {"wall_seconds": 20.0, "rule_names": list(rules.rule_names())}
  assert any("step 3" in r.getMessage() and "unreadable" in r.getMessage()
             for r in caplog.records)
  aside = os.listdir(tmp_path / checkpoint.CORRUPT_CHECKPOINT_DIR)
  assert len(aside) == 1 and aside[0].startswith("3-")
  assert saver.steps() == [2]
  saver.close()


def test_when_no_checkpoint_is_readable_it_raises_and_moves_nothing(tmp_path):
  save_three(str(tmp_path)).close()
  corrupt(str(tmp_path), 2)
  corrupt(str(tmp_path), 3)
  saver = checkpoint.Checkpointer(str(tmp_path / checkpoint.CHECKPOINT_DIR), keep=2)
  with pytest.raises(RuntimeError, match="No checkpoint .* is readable"):
    saver.restore_latest(abstract(tree(0.0)))
  assert saver.steps() == [2, 3]
  assert not os.path.exists(tmp_path / checkpoint.CORRUPT_CHECKPOINT_DIR)
  saver.close()


def test_quiet_orbax_drops_only_orbax_info():
  quiet = checkpoint.QuietOrbax()

  def record(path, level):
    return logging.LogRecord("absl", level, path, 1, "message", (), None)

  orbax_file = os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "manager.py")
  assert not quiet.filter(record(orbax_file, logging.INFO))
  assert quiet.filter(record(orbax_file, logging.WARNING))
  assert quiet.filter(record(os.path.join(os.sep, "biojax", "loop.py"), logging.INFO))
