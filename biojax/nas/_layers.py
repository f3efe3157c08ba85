"""Pieces the NAS networks share (NAS-Bench-201 and DARTS train as their PyTorch code does)."""

from __future__ import annotations

import flax.linen as nn
import jax

from biojax.nn.layers import Conv

Array = jax.Array


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
  """PyTorch's BatchNorm2d defaults, as NAS-Bench-201 and DARTS train with: momentum 0.1
  (Flax's 0.9), eps 1e-5, affine."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def tap(layer: Conv, h: Array, dfa: bool) -> Array:
  """``h`` marked as ``layer``'s DFA tap (where the output error is injected), if ``dfa``."""
  return layer.tap(h) if dfa else h
