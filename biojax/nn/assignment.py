"""Assignments: which rule (and step geometry) each weight layer of a model uses, as data.

An :class:`Assignment` holds two flat dicts keyed by layer path (``"stage1/block0/conv1"``):
``rule`` (int32 rule ids, see :func:`biojax.rules.rule_names`) and ``geometry`` (0 additive,
1 exponentiated gradient). It is a pytree, so it can be stacked along a leading population
axis and passed through ``jax.vmap`` (docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from biojax import rules as rules_lib

Array = jax.Array


@flax.struct.dataclass
class Assignment:
  """Per-layer rule ids and step geometries (int32 arrays, possibly with leading axes).

  ``layers`` (static metadata) keeps the weight layers in the order the model applies them:
  JAX transformations return dicts with sorted keys, so the dicts' own order is not it.
  """

  rule: dict[str, Array]
  geometry: dict[str, Array]
  layers: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())

  def as_collection(self) -> dict:
    """The nested ``assignment`` variable collection that rule-aware layers read."""
    flat = {tuple(name.split("/")) + ("rule",): r for name, r in self.rule.items()}
    return traverse_util.unflatten_dict(flat)

  def with_ids_from(self, saved_names) -> Assignment:
    """This assignment, written where the registry held ``saved_names`` (in id order, as a
    checkpoint records them), with its rule ids translated to this process's ids.

    Raises:
      ValueError: listing saved rules that are not registered here.
    """
    ids = np.asarray(rules_lib.ids_from_names(saved_names, "This assignment"), np.int32)
    if (ids == np.arange(len(ids))).all():
      return self
    rule = {}
    for name, r in self.rule.items():
      r = np.asarray(r)
      for old in np.unique(r):
        if not 0 <= old < len(ids):
          raise ValueError(f"Layer {name} holds rule id {int(old)}, but only {len(ids)} rules "
                           f"were recorded with it ({', '.join(saved_names)}).")
      rule[name] = jnp.asarray(ids[r], jnp.int32)
    return self.replace(rule=rule)

  def describe(self) -> dict[str, str]:
    """``{layer: "fa"}`` or ``{layer: "usf+eg"}`` for a single (unbatched) assignment."""
    out = {}
    for name in self.layers or tuple(self.rule):
      r = np.asarray(self.rule[name])
      if r.ndim:
        raise ValueError("describe() needs a single assignment, not a batch of them.")
      rule = rules_lib.check_rule_id(r, f"layer {name}")
      out[name] = rules_lib.format_rule_spec(rule, int(np.asarray(self.geometry[name])))
    return out


def weight_layers(variables: Mapping) -> tuple[str, ...]:
  """Paths of the rule-aware weight layers of a model, in the order they are applied.

  ``variables`` is what ``model.init`` returns (or any dict with its ``feedback``
  collection, also after ``jit``, ``vmap`` or a checkpoint round trip): every rule-aware layer
  keeps its rule state and its position (``feedback/<layer>/order``) there.
  """
  if "feedback" not in variables:
    raise ValueError(
        "These variables have no 'feedback' collection: initialise the model with "
        "model.init(...) and pass the whole result (not only variables['params']).")
  flat = traverse_util.flatten_dict(flax.core.unfreeze(variables["feedback"]))
  layers = {}
  for path, value in flat.items():
    if path[-1] == "order":
      try:
        layers["/".join(path[:-1])] = int(np.asarray(value).ravel()[0])
      except (TypeError, jax.errors.ConcretizationTypeError):
        # Abstract values (eval_shape, tracing): fall back to the dict's own order.
        layers["/".join(path[:-1])] = len(layers)
  return tuple(sorted(layers, key=layers.get))


def _full(value: int) -> Array:
  return jnp.asarray(value, jnp.int32)


def make_assignment(variables: Mapping, spec: str | Sequence[str] | Mapping[str, str]
                    ) -> Assignment:
  """Builds an assignment for the model whose ``variables`` are given.

  Args:
    variables: the model's variables (``model.init`` output).
    spec: one rule spec for every layer (``"fa"``, ``"usf+eg"``); a list with one spec per
      weight layer, in the order of :func:`weight_layers`; or a dict ``{layer: spec}`` naming
      every layer.

  Raises:
    ValueError: for an unknown rule name (listing the valid ones), a list of the wrong
      length, or a dict whose layers do not match the model's (naming the missing and extra
      layers).
  """
  layers = weight_layers(variables)
  if isinstance(spec, str):
    specs = dict.fromkeys(layers, spec)
  elif isinstance(spec, Mapping):
    check_layers(layers, spec.keys())
    specs = dict(spec)
  else:
    spec = list(spec)
    if len(spec) != len(layers):
      raise ValueError(
          f"The model has {len(layers)} weight layers ({', '.join(layers)}) but {len(spec)} "
          "rule specs were given.")
    specs = dict(zip(layers, spec, strict=True))
  parsed = {name: rules_lib.parse_rule_spec(s) for name, s in specs.items()}
  return Assignment(
      rule={name: _full(parsed[name][0]) for name in layers},
      geometry={name: _full(parsed[name][1]) for name in layers}, layers=layers)


def single_rule_specs(rule: str, num_layers: int) -> list[str]:
  """``rule`` on every weight layer, except that a local rule (SoftHebb), which never sees
  the labels, leaves the classifier (the last layer) to the delta rule: ``bp`` at the output
  layer is exactly the delta rule."""
  credit = rules_lib.get_rule(rules_lib.parse_rule_spec(rule)[0]).credit
  if credit == "local":
    return [rule] * (num_layers - 1) + ["bp"]
  return [rule] * num_layers


def random_assignment(key: Array, variables: Mapping,
                      rules: Sequence[str] | None = None,
                      geometries: Sequence[str] = ("additive",)) -> Assignment:
  """An assignment with each layer's rule drawn uniformly from ``rules`` (default: all)."""
  layers = weight_layers(variables)
  if rules is not None and not list(rules):
    raise ValueError("random_assignment: `rules` is empty; give at least one rule name.")
  rule_ids = jnp.asarray(
      [rules_lib.rule_id(r) for r in (rules or rules_lib.rule_names())], jnp.int32)
  geometry_ids = jnp.asarray([rules_lib.geometry_id(g) for g in geometries], jnp.int32)
  rule_key, geometry_key = jax.random.split(key)
  r = jax.random.choice(rule_key, rule_ids, (len(layers),))
  g = jax.random.choice(geometry_key, geometry_ids, (len(layers),))
  return Assignment(rule={n: r[i] for i, n in enumerate(layers)},
                    geometry={n: g[i] for i, n in enumerate(layers)}, layers=layers)


def check_layers(expected: Sequence[str], given) -> None:
  """Raises a ValueError naming missing and extra layers if ``given`` != ``expected``."""
  missing = [n for n in expected if n not in set(given)]
  extra = [n for n in given if n not in set(expected)]
  if missing or extra:
    parts = []
    if missing:
      parts.append(f"missing layers: {', '.join(missing)}")
    if extra:
      parts.append(f"extra layers: {', '.join(extra)}")
    raise ValueError(
        f"The assignment does not match the model ({'; '.join(parts)}). The model's weight "
        f"layers are: {', '.join(expected)}.")


def validate_assignment(assignment: Assignment, variables: Mapping,
                        options: rules_lib.RuleOptions | None = None) -> None:
  """Checks that ``assignment`` names exactly the model's weight layers, that every rule id
  is a registered rule and every geometry id a geometry, and, given the model's ``options``,
  that it uses only the rules its compiled programs contain.

  Rule ids that are tracers (inside ``jit``) cannot be read here; an unknown one makes the
  compiled step's update non-finite (:func:`biojax.nn.known_rule`).

  Raises:
    ValueError: naming the layer, the id and the rules this process knows.
  """
  layers = weight_layers(variables)
  check_layers(layers, assignment.rule.keys())
  check_layers(layers, assignment.geometry.keys())
  allowed = None
  if options is not None and options.rules is not None:
    allowed = {rules_lib.rule_id(n) for n in options.rules}
  for layer in layers:
    ids, geometries = assignment.rule[layer], assignment.geometry[layer]
    if isinstance(ids, jax.core.Tracer) or isinstance(geometries, jax.core.Tracer):
      continue  # inside jit: the compiled step guards (known_rule)
    for g in np.unique(np.asarray(geometries)):
      rules_lib.check_geometry_id(g, f"layer {layer}")
    for r in np.unique(np.asarray(ids)):
      rules_lib.check_rule_id(r, f"layer {layer}")
      if allowed is not None and int(r) not in allowed:
        raise ValueError(
            f"Layer {layer} is assigned {rules_lib.get_rule(int(r)).name!r}, but the model "
            f"was built with RuleOptions(rules={options.rules}); add it there.")


def geometry_tree(assignment: Assignment, params: Mapping) -> dict:
  """A pytree of ``params``' structure: the layer's geometry on each kernel, 0 elsewhere.

  Biases and normalisation parameters always take additive steps (a bias initialised at zero
  could never move multiplicatively).
  """
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  out = {}
  for path in flat:
    layer = "/".join(path[:-1])
    if path[-1] == "kernel" and layer in assignment.geometry:
      out[path] = leading_axes(jnp.asarray(assignment.geometry[layer], jnp.int32),
                               flat[path])
    else:
      out[path] = jnp.zeros((), jnp.int32)
  return traverse_util.unflatten_dict(out)


def leading_axes(value: Array, leaf: Array) -> Array:
  """``value`` (a layer's rule id or geometry) with trailing axes of size 1 so that it
  broadcasts against ``leaf`` (one of the layer's variables). A layer whose variables carry
  leading axes of their own (the supernet's rule copies, ``(rules, *kernel_shape)``) holds
  one id per entry of those axes; a scalar id is returned as it is."""
  value = jnp.asarray(value)
  extra = jnp.ndim(leaf) - value.ndim
  return value.reshape(value.shape + (1,) * extra) if value.ndim and extra > 0 else value


def stack(trees: Sequence):
  """Stacks pytrees of equal structure (assignments, train states) along a new leading
  (population) axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
