"""Static hyper-parameters of the rules (not data: changing them recompiles)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RuleOptions:
  """Hyper-parameters shared by every layer of a model.

  Attributes:
    softhebb_temperature: ``tau`` of the soft winner-take-all (Journe et al. 2023 use 1).
    softhebb_anti_hebbian: negate the plasticity signal of the losing neurons.
    softhebb_normalize: divide each update by its largest magnitude, as the authors' code.
    kp_decay: ``lambda`` of Kolen-Pollack; ``B - W`` shrinks by ``1 - lambda`` per step.
  """

  softhebb_temperature: float = 1.0
  softhebb_anti_hebbian: bool = True
  softhebb_normalize: bool = True
  kp_decay: float = 1e-3

  @classmethod
  def from_dict(cls, values: dict | None) -> RuleOptions:
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(
          f"Unknown rule option(s) {', '.join(unknown)}. Valid options: {', '.join(sorted(known))}."
      )
    return cls(**values)
