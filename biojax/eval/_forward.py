"""The plain forward pass of a biojax model: its variables without the training-only parts."""

from __future__ import annotations

from typing import Any

import flax

from biojax.nn.layers import DFA_TAPS

# Collections that only training reads. Without ``assignment`` every rule-aware layer runs
# ``forward(x, kernel)`` without its custom VJP (biojax/nn/layers.py), so gradients are true
# gradients and ``tap`` returns its input unchanged.
TRAINING_ONLY = ("assignment", DFA_TAPS, "intermediates")


def plain_variables(variables: Any) -> dict:
  """``variables`` (a dict, or a TrainState's ``variables()``) without :data:`TRAINING_ONLY`."""
  if hasattr(variables, "variables"):
    variables = variables.variables()
  return {k: v for k, v in flax.core.unfreeze(variables).items() if k not in TRAINING_ONLY}
