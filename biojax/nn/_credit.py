"""Credit assignment, implemented once (docs/design.md, "Credit assignment").

A rule-aware layer computes ``y = forward(x, W)`` with ``forward`` linear in each argument
(a dense product or a convolution). Its custom VJP

* sends the error to the layer below through the matrix ``B`` that the layer's rule produces
  (``vjp_x forward(., B)``), and
* gives ``W`` the local update ``vjp_W forward(x, .)(delta)`` for error-driven rules, or, for
  local rules (SoftHebb, sparse), the rule's ``local_update`` from the pre x post term
  ``vjp_W forward(x, .)(s)`` with the rule's postsynaptic signal
  ``s = local_signal(u, local_state)`` (``local_state``: per-unit rule state such as the
  firing thresholds).

The rule is an integer (data); both choices are ``lax.switch`` over the registry, so one
compiled program serves every assignment, and ``jax.vmap`` over rule ids trains candidates
with different rules at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from biojax import rules as rules_lib

Array = jax.Array


def feedback_matrix(rule: Array, w: Array, state: dict, key: Array,
                    options: rules_lib.RuleOptions | None = None) -> Array:
  """The matrix ``B`` that carries the error below a layer with rule id ``rule``.

  Feedback rules give their own ``B``; a ``direct`` (DFA) layer passes its error down exactly
  (``B = W``: a layer below that is itself direct ignores it); a ``local`` layer sends none
  (``B = 0``). ``state`` is the layer's rule state (every registered rule's variables).
  """
  # Rules that share a feedback function (bp, and direct rules, pass W; local rules pass
  # zeros) share one copy of it in the compiled program: a lookup table maps rule ids to
  # distinct branches.
  transport, none = rules_lib.exact_feedback, jnp.zeros_like
  functions = [transport, none]
  table = []
  for r in rules_lib.rules():
    if options is not None and not options.allows(r.name):
      fn = transport  # never selected: assignments are checked against options
    elif r.credit == "feedback":
      fn = r.feedback
    else:
      fn = transport if r.credit == "direct" else none
    if fn not in functions:
      functions.append(fn)
    table.append(functions.index(fn))
  used = [f for i, f in enumerate(functions) if i in table]
  branches = [(lambda w_: w_) if f is transport else f if f is none
              else functools.partial(f, state=state, key=key) for f in used]
  if len(branches) == 1:
    return branches[0](w)
  index = jnp.asarray([used.index(functions[t]) for t in table], jnp.int32)[rule]
  return jax.lax.switch(index, branches, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def credit(forward, options, x, w, b, rule, local_state=None):
  """``forward(x, w)`` whose backward pass follows the rule ``rule`` with feedback ``b``.

  ``local_state`` (the layer's rule-state variables that local rules read, e.g.
  ``{"threshold": theta}``; None: the state's initial values) is read by local rules only;
  it receives no cotangent.
  """
  del options, b, rule, local_state
  return forward(x, w)


def _credit_fwd(forward, options, x, w, b, rule, local_state):
  u = forward(x, w)
  return u, (x, w, b, rule, local_state, u)


def _local_rules(options):
  return [r for r in options.compiled_rules() if r.credit == "local"]


def known_rule(rule: Array, options: rules_lib.RuleOptions | None = None) -> Array:
  """True where ``rule`` (an id, possibly batched) is a registered rule that ``options``
  compiles. Inside a compiled step an unknown id cannot raise, and ``lax.switch`` (like any
  gather) would clamp it to a valid branch: :func:`biojax.learning_signal` makes every
  update of the network NaN instead, so the result cannot pass for another rule's."""
  compiled = [options is None or options.allows(r.name) for r in rules_lib.rules()]
  in_range = (rule >= 0) & (rule < len(compiled))
  if all(compiled):
    return in_range
  return in_range & jnp.asarray(compiled)[jnp.clip(rule, 0, len(compiled) - 1)]


def _credit_bwd(forward, options, residuals, delta):
  x, w, b, rule, local_state, u = residuals
  no_state = jax.tree.map(jnp.zeros_like, local_state)
  # An id outside the compiled rules selects a clamped branch here; learning_signal turns
  # the whole network's update into NaN for it (one select per parameter, not one per layer
  # in this backward pass, which cost about 9% of the MLP's bp step: docs/performance.md).
  _, transpose_x = jax.vjp(lambda x_: forward(x_, b), x)
  (dx,) = transpose_x(delta)
  _, transpose_w = jax.vjp(lambda w_: forward(x, w_), w)
  local = _local_rules(options)
  if not local:
    return dx, transpose_w(delta)[0], jnp.zeros_like(b), None, no_state
  # Branch 0: error-driven (the signal is the error delta, the update x^T delta); branch k:
  # the k-th local rule. Only elementwise work is inside lax.switch: the one transposed
  # product (x^T signal) is outside, because XLA on CPU runs a convolution inside a
  # conditional tens of times slower (measured: docs/performance.md).
  table = []
  for r in rules_lib.rules():
    table.append(1 + local.index(r) if r in local else 0)
  index = jnp.asarray(table, jnp.int32)[rule]
  signals = [lambda: delta] + [
      functools.partial(r.local_signal, u, local_state, options.of(r)) for r in local]
  signal = jax.lax.switch(index, signals)
  (pre_post,) = transpose_w(signal)
  updates = [lambda: pre_post] + [
      functools.partial(r.local_update, pre_post, w, u, signal, options.of(r)) for r in local]
  dw = jax.lax.switch(index, updates)
  return dx, dw, jnp.zeros_like(b), None, no_state


credit.defvjp(_credit_fwd, _credit_bwd)


def is_local(rule: Array) -> Array:
  """True where ``rule`` (an id, possibly batched) is a local rule."""
  local_ids = jnp.array([r.credit == "local" for r in rules_lib.rules()])
  return local_ids[rule]


def is_direct(rule: Array) -> Array:
  """True where ``rule`` is a direct-feedback rule (DFA)."""
  direct_ids = jnp.array([r.credit == "direct" for r in rules_lib.rules()])
  return direct_ids[rule]
