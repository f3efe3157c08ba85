"""The training state of one search candidate: a TrainState plus its architecture genes.

In the NAS-Bench-201 space the operation on each cell edge is data (docs/design.md),
read by the model from the ``architecture`` variable collection. :class:`CandidateState`
carries that collection beside the parameters, rule state and assignment, so that
:func:`biojax.make_train_step` (which applies the model to ``state.variables()``) trains any
architecture with one compiled program, and ``jax.vmap`` over stacked states trains a
population of different architectures with different per-layer rules at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax

from biojax.train import TrainState

ARCHITECTURE = "architecture"


@flax.struct.dataclass
class CandidateState(TrainState):
  """A :class:`biojax.TrainState` whose ``variables()`` include the ``architecture``
  collection (for NAS-Bench-201, ``{"ops": int32 (6,)}``; empty for spaces whose
  architecture is compiled in)."""

  architecture: Any = flax.struct.field(default_factory=dict)

  def variables(self) -> dict:
    out = super().variables()
    if self.architecture:
      out[ARCHITECTURE] = self.architecture
    return out


def as_candidate(state: TrainState, architecture: Any) -> CandidateState:
  """``state`` (a :class:`biojax.TrainState`) with the ``architecture`` collection added."""
  fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(TrainState)}
  return CandidateState(**fields, architecture=architecture)
