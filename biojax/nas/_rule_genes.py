"""What every search space with rule genes shares: rule alphabets, and genome -> assignment.

A space's rule genes index *alphabets* of rule specs (``"fa"``, ``"usf+eg"``): one for the
genes of the searched cells, one for the other (macro) layers. Each weight layer of the
network reads one gene through one alphabet (``gene_of_layer(name) -> (gene, group)``, group
0 the cell alphabet and 1 the macro one); :func:`assignment_fn` turns that map into a pure,
jittable ``genome -> Assignment``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from biojax import rules as rules_lib
from biojax.nn.assignment import Assignment, weight_layers

Array = jax.Array


def canonical_spec(spec: str) -> str:
  """``spec`` in its canonical form (unknown rule names: an error listing every rule)."""
  return rules_lib.format_rule_spec(*rules_lib.parse_rule_spec(spec))


def canonical_alphabet(owner: str, field: str, alphabet) -> tuple[str, ...] | None:
  """A rule alphabet, checked (non-empty, no rule twice) and canonicalised; None stays
  None. ``owner.field`` names it in errors."""
  if alphabet is None:
    return None
  if isinstance(alphabet, str) or not len(alphabet):
    raise ValueError(f"{owner}.{field} must be a non-empty sequence of rule specs, "
                     f"got {alphabet!r}.")
  canonical = tuple(canonical_spec(s) for s in alphabet)
  if len(set(canonical)) != len(canonical):
    raise ValueError(f"{owner}.{field} lists a rule twice: {alphabet!r}.")
  return canonical


def rule_index(spec: str, alphabet: Sequence[str], where: str) -> int:
  """The gene value of ``spec`` in ``alphabet``; the error names ``where`` and the
  alphabet."""
  canonical = canonical_spec(spec)
  if canonical not in alphabet:
    raise ValueError(f"Rule {spec!r} ({where}) is not in this space's rule alphabet. "
                     f"Valid rules: {', '.join(alphabet)}.")
  return list(alphabet).index(canonical)


def rule_names(*alphabets: Sequence[str]) -> tuple[str, ...]:
  """The registered rules the alphabets reach, in registry order."""
  ids = {rules_lib.parse_rule_spec(s)[0] for a in alphabets for s in a}
  return tuple(rules_lib.get_rule(i).name for i in sorted(ids))


def assignment_fn(variables: Mapping, options: rules_lib.RuleOptions | None,
                  alphabets: tuple[Sequence[str], Sequence[str]],
                  gene_of_layer: Callable[[str], tuple[int, int]]
                  ) -> Callable[[Array], Assignment]:
  """``genome (..., G) -> Assignment`` for a model with ``variables`` (the layer list is
  read here, once; works under ``jit``; a leading population axis gives a stacked
  assignment).

  Raises:
    ValueError: if ``options`` leaves out a rule the alphabets reach; if an alphabet holds a
      direct-feedback rule (DFA) but a hidden layer reading it has no DFA matrix; or (from
      ``gene_of_layer``) for a layer the space does not know.
  """
  names = rule_names(*alphabets)
  allows = getattr(options, "allows", None)
  left_out = [n for n in names if allows is not None and not allows(n)]
  if left_out:
    raise ValueError(
        f"The model's rule options leave out {', '.join(left_out)}, which this space's genes "
        f"can choose: build it with RuleOptions(rules=space.rule_names) ({', '.join(names)}).")
  layers = weight_layers(variables)
  flat_feedback = traverse_util.flatten_dict(flax.core.unfreeze(variables["feedback"]))
  genes, groups = [], []
  for name in layers:
    gene, group = gene_of_layer(name)
    genes.append(gene)
    groups.append(group)
    direct = [s for s in alphabets[group]
              if rules_lib.get_rule(rules_lib.parse_rule_spec(s)[0]).credit == "direct"]
    if direct and name != "classifier" and (*name.split("/"), "direct") not in flat_feedback:
      raise ValueError(
          f"The rule alphabet holds {', '.join(direct)}, but layer {name} has no DFA "
          "matrix: build the network with dfa=True, or leave DFA out of the space's rules.")
  width = max(len(a) for a in alphabets)
  parsed = [[rules_lib.parse_rule_spec(s) for s in a] + [(0, 0)] * (width - len(a))
            for a in alphabets]
  rule_table = jnp.asarray([[r for r, _ in row] for row in parsed], jnp.int32)
  geometry_table = jnp.asarray([[g for _, g in row] for row in parsed], jnp.int32)
  gene_index = np.asarray(genes, np.int32)
  group_index = np.asarray(groups, np.int32)

  def assign(genome: Array) -> Assignment:
    values = jnp.asarray(genome, jnp.int32)[..., gene_index]  # (..., layers)
    rule = rule_table[group_index, values]
    geometry = geometry_table[group_index, values]
    return Assignment(rule={n: rule[..., i] for i, n in enumerate(layers)},
                      geometry={n: geometry[..., i] for i, n in enumerate(layers)},
                      layers=layers)

  return assign
