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
    sparse_competition: the ``sparse`` rule's soft winner-take-all among the units of a layer
      (off: each unit learns when it fires, ``y = 1[u > theta]``).
    sparse_temperature: ``tau`` of that soft winner-take-all.
    sparse_homeostasis: adapt each unit's firing threshold ``theta`` towards the target rate.
    sparse_target_rate: ``rho``, the target fraction of inputs on which a unit fires.
    sparse_homeostasis_rate: ``eta_theta``, the threshold's step per unit of rate error.
    sparse_elimination: structural plasticity: a synapse weaker than
      ``sparse_elimination_threshold`` times its unit's strongest synapse becomes exactly 0.
    sparse_elimination_threshold: ``epsilon`` of that criterion.
    rules: the rules that assignments may use (``None``: every registered rule). Compiled
      programs contain branches for these rules only; any assignment within them runs
      without recompiling. Leaving out the local rules (SoftHebb) when no layer uses them
      removes a conditional from every backward pass, which XLA on CPU runs slowly
      (docs/performance.md).
  """

  softhebb_temperature: float = 1.0
  softhebb_anti_hebbian: bool = True
  softhebb_normalize: bool = True
  kp_decay: float = 1e-3
  sparse_competition: bool = True
  sparse_temperature: float = 0.1
  sparse_homeostasis: bool = True
  sparse_target_rate: float = 0.1
  sparse_homeostasis_rate: float = 0.05
  sparse_elimination: bool = True
  sparse_elimination_threshold: float = 0.05
  rules: tuple[str, ...] | None = None

  def __post_init__(self):
    if self.rules is not None:
      from biojax.rules._registry import rule_id
      object.__setattr__(self, "rules", tuple(self.rules))
      for name in self.rules:
        rule_id(name)  # raises, listing the valid names
      if not self.rules:
        raise ValueError("RuleOptions.rules is empty: name at least one rule, or None for all.")

  def allows(self, name: str) -> bool:
    return self.rules is None or name in self.rules

  @classmethod
  def from_dict(cls, values: dict | None) -> RuleOptions:
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(
          f"Unknown rule option(s) {', '.join(unknown)}. Valid options: {', '.join(sorted(known))}."
      )
    if values.get("rules") is not None:
      values["rules"] = tuple(values["rules"])
    return cls(**values)
