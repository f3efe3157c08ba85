"""Static settings of a model's rules: which rules it compiles, and each rule's hyper-parameters.

They are not data: changing them recompiles. Each rule declares its own hyper-parameters as a
frozen dataclass (:attr:`biojax.rules.Rule.options`); :class:`RuleOptions` holds one instance
per rule that differs from its defaults, so a new rule's settings need no change here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from biojax.rules import _registry


class RuleOptions:
  """The rules a model's compiled programs contain, and each rule's hyper-parameters.

  ``RuleOptions(rules=("bp", "sparse"), sparse={"target_rate": 0.18}, kp=KPOptions(decay=0.05))``

  Args:
    rules: the rules that assignments may use (``None``: every registered rule). Compiled
      programs contain branches for these rules only; any assignment within them runs
      without recompiling. Leaving out rules no layer uses removes work from every step
      (local rules add a conditional to every backward pass, which XLA on CPU runs slowly:
      docs/performance.md).
    **hyperparameters: ``<rule name>=`` an instance of that rule's options dataclass, or a
      dict of its fields (unknown fields are an error listing the valid ones). Rules not
      named keep their defaults.

  Instances are immutable and hashable (models hold them as static attributes).
  """

  __slots__ = ("rules", "_values")

  def __init__(self, rules: tuple[str, ...] | None = None, **hyperparameters: Any):
    if rules is not None:
      rules = tuple(rules)
      if not rules:
        raise ValueError("RuleOptions.rules is empty: name at least one rule, or None for all.")
      for name in rules:
        _registry.rule_id(name)  # raises, listing the valid names
    values = {}
    for name, value in hyperparameters.items():
      rule = _rule_for_options(name)
      value = _plain(value)
      if isinstance(value, Mapping):
        value = _options_from_dict(rule, value)
      elif not isinstance(value, rule.options):
        raise TypeError(f"RuleOptions({name}=...) takes a {rule.options.__name__} or a dict "
                        f"of its fields, got {type(value).__name__}.")
      if value != rule.options():
        values[name] = value
    object.__setattr__(self, "rules", rules)
    object.__setattr__(self, "_values", tuple(sorted(values.items())))

  def __setattr__(self, name, value):
    raise dataclasses.FrozenInstanceError(f"RuleOptions is immutable (setting {name!r}); use "
                                          "replace().")

  def of(self, rule: str | _registry.Rule) -> Any:
    """The hyper-parameters of ``rule`` (its options dataclass; defaults unless set)."""
    rule = _registry.get_rule(rule) if isinstance(rule, str) else rule
    return dict(self._values).get(rule.name) or rule.options()

  def allows(self, name: str) -> bool:
    """Whether the compiled programs contain the rule ``name``."""
    return self.rules is None or name in self.rules

  def compiled_rules(self) -> tuple[_registry.Rule, ...]:
    """The registered rules that the compiled programs contain, in id order."""
    return tuple(r for r in _registry.rules() if self.allows(r.name))

  def replace(self, **changes: Any) -> RuleOptions:
    """A copy with ``rules=`` and/or some rules' hyper-parameters replaced."""
    values = dict(self._values)
    rules = changes.pop("rules", self.rules)
    values.update(changes)
    return RuleOptions(rules=rules, **values)

  def to_dict(self) -> dict:
    """``{"rules": ..., <rule>: {field: value}}`` for every registered rule with options: the
    layout of ``config.rule_options`` (experiments/train.py)."""
    out: dict[str, Any] = {"rules": self.rules}
    for rule in _registry.rules():
      if dataclasses.fields(rule.options):
        out[rule.name] = dataclasses.asdict(self.of(rule))
    return out

  @classmethod
  def from_dict(cls, values: Mapping | None) -> RuleOptions:
    """The inverse of :meth:`to_dict`; missing rules and fields keep their defaults.

    Raises:
      ValueError: an unknown rule or field (listing the valid ones), or a flat field name of
        biojax's earlier layout (``sparse_target_rate``: now ``sparse.target_rate``).
    """
    values = {k: _plain(v) for k, v in _plain(values or {}).items()}
    rules = values.pop("rules", None)
    for key, value in values.items():
      if not isinstance(value, Mapping) and not dataclasses.is_dataclass(value):
        prefix = next((r.name for r in _registry.rules() if key.startswith(r.name + "_")), None)
        if prefix is not None:
          raise ValueError(
              f"Rule option {key!r} is the flat name of an earlier biojax version: write "
              f"rule_options.{prefix}.{key[len(prefix) + 1:]} instead.")
        raise ValueError(f"Rule option {key!r} must be a dict of the rule's fields, got "
                         f"{value!r}. {_valid_rules_text()}")
    return cls(rules=None if rules is None else tuple(rules),
               **{k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()})

  def __eq__(self, other):
    return (isinstance(other, RuleOptions) and self.rules == other.rules
            and self._values == other._values)

  def __hash__(self):
    return hash((self.rules, self._values))

  def __repr__(self):
    parts = [f"rules={self.rules!r}"] + [f"{k}={v!r}" for k, v in self._values]
    return f"RuleOptions({', '.join(parts)})"

  def __reduce__(self):
    return (_rebuild, (self.rules, self._values))


def _plain(value):
  """ConfigDicts (ml_collections) as plain dicts."""
  return value.to_dict() if hasattr(value, "to_dict") else value


def _rebuild(rules, values):
  return RuleOptions(rules=rules, **dict(values))


def _valid_rules_text() -> str:
  with_options = [r.name for r in _registry.rules() if dataclasses.fields(r.options)]
  return f"Rules with options: {', '.join(with_options)}."


def _rule_for_options(name: str) -> _registry.Rule:
  if name not in _registry.rule_names():
    raise ValueError(f"Unknown rule {name!r} in the rule options. {_valid_rules_text()}")
  return _registry.get_rule(name)


def _options_from_dict(rule: _registry.Rule, values: Mapping):
  known = [f.name for f in dataclasses.fields(rule.options)]
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(
        f"Unknown option(s) {', '.join(unknown)} of rule {rule.name!r}. Valid options: "
        f"{', '.join(known) or '(none)'}.")
  return rule.options(**values)
