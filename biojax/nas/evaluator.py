"""The population evaluator: genomes ``(P, G)`` -> fitness ``(P,)``.

Each candidate is initialised from the caller's key (the same initial state for every
candidate: common random numbers), trains for a proxy budget of ``steps`` on the
same stacked training batches, and is scored by its mask-weighted accuracy on the stacked
validation batches (docs/design.md). That initial state and the per-step keys come from a
set-up shared by every strategy and population size (two small programs: the keys, and the
network's initialisation, :func:`biojax.train.init_program`); four strategies then train
and score the candidates:

- ``"vmap"``: one jitted program, ``jax.vmap`` over the whole population and
  ``jax.lax.scan`` over steps (the default on accelerators);
- ``"map"``: one jitted program, ``jax.lax.map`` over candidates, one at a time;
- ``"chunked"``: one jitted program, ``jax.lax.map`` over chunks of ``chunk_size``
  candidates, each chunk vmapped (the population is padded to a multiple of ``chunk_size``
  with copies of its first genome, whose results are dropped);
- ``"sequential"``: candidates one after another and steps one after another from Python,
  each step one call of a compiled single-candidate train step (the same program for every
  candidate, step and generation). The default on CPU: XLA:CPU runs a convolution inside a
  loop (``scan``, ``lax.map``) about 7x slower than the same convolution called on its own
  (docs/performance.md), which makes the in-program strategies slow there.

Operations and rules are genome data, so a new population never recompiles (only a new
population size, batch shape or budget does; ``"sequential"`` does not depend on the
population size at all). A candidate whose training loss, parameters, rule state or batch
statistics, or validation loss become NaN/Inf gets fitness ``-inf`` and a reason code
(:data:`REASONS`); the other candidates' computations are independent of it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from biojax import builders
from biojax import train as train_lib
from biojax.nas.candidate import as_candidate
from biojax.nas.space import SearchSpace

Array = jax.Array

STRATEGIES = ("vmap", "map", "chunked", "sequential")
POPULATION_AXIS = "population"

# Reason codes of info["reason"] (int32 per candidate).
OK = 0
NONFINITE_LOSS = 1  # a training step's loss was NaN/Inf
NONFINITE_STATE = 2  # parameters, rule state or batch statistics became NaN/Inf in training
NONFINITE_VALIDATION = 3  # training stayed finite, but the validation loss is NaN/Inf
REASONS = {OK: "ok", NONFINITE_LOSS: "non-finite training loss",
           NONFINITE_STATE: "non-finite parameters or state",
           NONFINITE_VALIDATION: "non-finite validation loss"}


def default_strategy(backend: str | None = None) -> str:
  """The strategy used when none is given: ``"sequential"`` on CPU (XLA:CPU runs
  convolutions inside loops about 7x slower, and vmapped ones about 2x slower per candidate,
  docs/performance.md), ``"vmap"`` on accelerators."""
  backend = backend or jax.default_backend()
  return "sequential" if backend == "cpu" else "vmap"


# The entries of a proxy config (``config.proxy``) that are PopulationEvaluator settings.
PROXY_SETTINGS = ("steps", "batch_size", "optimizer", "learning_rate", "momentum",
                  "weight_decay", "clip_norm", "schedule", "warmup_steps", "strategy",
                  "chunk_size", "compiler_options")


def proxy_settings(proxy: Mapping[str, Any]) -> dict[str, Any]:
  """The :class:`PopulationEvaluator` settings of a proxy config (``config.proxy``): its
  :data:`PROXY_SETTINGS`, with ``strategy`` None resolved by :func:`default_strategy` and
  ``compiler_options`` (a mapping, or ``(name, value)`` pairs) as sorted pairs."""
  settings = {name: proxy[name] for name in PROXY_SETTINGS}
  settings["strategy"] = settings["strategy"] or default_strategy()
  settings["compiler_options"] = tuple(sorted(dict(settings["compiler_options"]).items()))
  return settings


def population_mesh(devices: Iterable[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh (``"population"``) over ``devices`` (default: all devices, of every
  process in a multi-host run), for :class:`PopulationEvaluator`'s ``mesh``."""
  return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()),
              (POPULATION_AXIS,))


class _ScaleState(NamedTuple):
  scale: Array


def _step_scale() -> optax.GradientTransformation:
  """Multiplies the final parameter step by a scale held in the optimizer state (1 by
  default; the evaluator sets it per candidate)."""

  def init(params):
    del params
    return _ScaleState(scale=jnp.ones((), jnp.float32))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates), state

  return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True, eq=False)
class PopulationEvaluator:
  """Static settings of the population evaluator; :meth:`evaluate` is the program.

  Attributes:
    space: the search space (:class:`biojax.nas.space.SearchSpace`: genome layout, genome ->
      assignment and architecture).
    model: the network, e.g. :class:`biojax.nas.NB201Network`; its ``options`` must compile
      every rule of ``space`` (``RuleOptions(rules=space.rule_names)``).
    steps: proxy budget in training steps; ``train_batches`` must hold exactly this many.
    batch_size: training batch size; ``train_batches`` must have it.
    optimizer, learning_rate, momentum, weight_decay, clip_norm: as
      :func:`biojax.make_optimizer`.
    schedule, warmup_steps: as :func:`biojax.make_schedule`, over ``steps``.
    strategy: one of :data:`STRATEGIES`; ``None`` picks :func:`default_strategy`.
    chunk_size: candidates per vmapped chunk for ``"chunked"``.
    mesh: a device mesh with a ``"population"`` axis (:func:`population_mesh`): the
      candidates are split across its devices (the population is padded to a multiple of
      the device count with copies of its first genome, whose results are dropped), each
      device evaluating its share with ``strategy``. ``None``: one device.
    compiler_options: XLA options for compiling the program, as ``(name, value)`` pairs
      (``jax.jit``'s ``compiler_options``); e.g. ``(("xla_backend_optimization_level", 0),)``
      compiles faster on CPU and runs slower (the tests use it).
  """

  space: SearchSpace
  model: nn.Module
  steps: int
  batch_size: int
  optimizer: str = "sgd"
  learning_rate: float = 0.1
  momentum: float = 0.0
  weight_decay: float = 0.0
  clip_norm: float = 0.0
  schedule: str = "constant"
  warmup_steps: int = 0
  strategy: str | None = None
  chunk_size: int = 8
  compiler_options: tuple[tuple[str, Any], ...] = ()
  mesh: Mesh | None = None

  def __post_init__(self):
    if self.strategy is None:
      object.__setattr__(self, "strategy", default_strategy())
    if self.strategy not in STRATEGIES:
      raise ValueError(f"Unknown strategy {self.strategy!r}. Valid strategies: "
                       f"{', '.join(STRATEGIES)}.")
    if self.chunk_size < 1:
      raise ValueError(f"chunk_size={self.chunk_size} must be >= 1.")
    if self.steps < 1 or self.batch_size < 1:
      raise ValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1.")

  @functools.cached_property
  def tx(self) -> optax.GradientTransformationExtraArgs:
    """The optimizer: :func:`biojax.make_optimizer` followed by the per-candidate step
    scale (``step_scale`` of :meth:`evaluate`)."""
    base, _ = builders.build_optimizer(self)  # the fields of a config's optimizer section
    return optax.chain(base, _step_scale())

  def evaluate(self, genomes: Array, train_batches: Mapping, validation_batches: Mapping,
               key: Array, step_scale: Array | None = None) -> tuple[Array, dict]:
    """Fitness of every genome (larger is better) and per-candidate information.

    Args:
      genomes: int32 ``(P, G)``.
      train_batches: ``{"image": (steps, batch_size, ...), "label": (steps, batch_size)}``
        (:func:`stack_train_batches`); every candidate trains on these, in this order.
      validation_batches: ``{"image": (V, b, ...), "label": (V, b), "mask": (V, b)}``
        (:func:`stack_eval_batches`); without ``mask`` every example counts.
      key: PRNG key (a typed key, e.g. ``jax.random.key(0, impl="rbg")``) for the initial
        weights and the per-step keys of the rules (the same for every candidate).
      step_scale: optional float ``(P,)`` multiplying each candidate's parameter steps
        (default 1; an exact no-op at 1).

    Returns:
      ``(fitness, info)``: ``fitness`` float32 ``(P,)`` is the validation accuracy, ``-inf``
      for a failed candidate. ``info`` holds, per candidate: ``validation_accuracy`` and
      ``validation_loss`` (mask-weighted means), ``train_loss`` (the last step's),
      ``failed`` (bool), ``reason`` (int32, :data:`REASONS`) and ``failed_step`` (int32:
      the first training step whose loss or resulting state was non-finite; ``steps`` for a
      validation failure; -1 if none).
    """
    if not isinstance(genomes, jax.core.Tracer):
      # A gene out of range: a clear error here (inside a trace, a non-finite candidate).
      genomes = self.space.validate(genomes)
    genomes = jnp.asarray(genomes, jnp.int32)
    if step_scale is None:
      step_scale = np.ones(genomes.shape[:1], np.float32)
    step_scale = jnp.asarray(step_scale, jnp.float32)
    if self.strategy == "sequential":
      return self._evaluate_sequential(genomes, train_batches, validation_batches, key,
                                       step_scale)
    # The initial state comes from the set-up's programs (the same for every strategy and
    # population size), not from a part of each population program: a new population size
    # compiles the training and validation only.
    variables, step_keys = self._setup(key, train_batches["image"][0, :1])
    return self._program(genomes, train_batches, validation_batches, variables, step_keys,
                         step_scale)

  def _compile_count(self) -> int:
    """Number of compiled variants of the program (``jax.jit``'s cache size)."""
    return self._program._cache_size()

  @functools.cached_property
  def _pieces(self) -> _Pieces:
    """The pure functions both the in-program and the sequential evaluation are made of."""
    model, space, tx, steps = self.model, self.space, self.tx, self.steps
    train_step = train_lib.make_train_step(model, tx)
    eval_step = train_lib.make_eval_step(model)

    def start(variables, genome, scale):
      # The assignment is built from these variables (inside a trace their dict lists the
      # layers in the order of application).
      assign = space.assignment_fn(variables, getattr(model, "options", None))
      state = train_lib.train_state_from_variables(variables, tx, assign(genome))
      # tx is chain(base, _step_scale()): its state is (base state, _ScaleState). (Not
      # optax.tree_utils.tree_set(..., scale=...): that also matches Adam's moments of
      # every parameter named "scale", such as BatchNorm's.)
      base_state, _ = state.opt_state
      state = as_candidate(state, space.architecture(genome)).replace(
          opt_state=(base_state, _ScaleState(scale=scale)))
      return state, jnp.asarray(-1, jnp.int32), jnp.asarray(OK, jnp.int32)

    def train(carry, xs):
      state, failed_step, reason = carry
      batch, step_key = xs
      state, metrics = train_step(state, batch, step_key)
      loss_ok = jnp.isfinite(metrics["loss"])
      state_ok = train_lib.all_finite((state.params, state.feedback, state.batch_stats))
      first = (reason == OK) & ~(loss_ok & state_ok)
      failed_step = jnp.where(first, state.step - 1, failed_step)
      reason = jnp.where(first, jnp.where(loss_ok, NONFINITE_STATE, NONFINITE_LOSS), reason)
      return (state, failed_step, reason), metrics["loss"]

    def validate(state, totals, batch):
      return jax.tree.map(jnp.add, totals, eval_step(state, batch))

    def finish(carry, totals, last_loss):
      _, failed_step, reason = carry
      count = jnp.maximum(totals["count"], 1.0)
      accuracy, val_loss = totals["correct"] / count, totals["loss_sum"] / count
      bad_val = (reason == OK) & ~jnp.isfinite(val_loss)
      failed_step = jnp.where(bad_val, steps, failed_step)
      reason = jnp.where(bad_val, NONFINITE_VALIDATION, reason)
      failed = reason != OK
      fitness = jnp.where(failed, -jnp.inf, accuracy)
      info = {"validation_accuracy": accuracy, "validation_loss": val_loss,
              "train_loss": last_loss, "failed": failed, "reason": reason,
              "failed_step": failed_step}
      return fitness, info

    return _Pieces(start, train, validate, finish)

  def _check(self, genomes, train_batches) -> None:
    images = train_batches["image"]
    if images.shape[:2] != (self.steps, self.batch_size):
      raise ValueError(f"train_batches['image'] has shape {images.shape}: expected "
                       f"(steps={self.steps}, batch_size={self.batch_size}, ...).")
    if genomes.ndim != 2 or genomes.shape[1] != len(self.space.gene_sizes):
      raise ValueError(
          f"genomes must be (P, {len(self.space.gene_sizes)}), got {genomes.shape}.")

  @functools.cached_property
  def _setup(self) -> Callable[[Array, Array], tuple[dict, Array]]:
    """``(key, sample) -> (variables, step_keys)``: common random numbers, one initial state
    and one key per step for every candidate, from two compiled programs: the keys and the
    initialisation (:func:`biojax.train.init_program`, which the search's retrain of the same
    network shares)."""
    init = train_lib.init_program(self.model,
                                  tuple(sorted(dict(self.compiler_options).items())))
    steps = self.steps

    def setup(key, sample):
      init_key, step_keys = _setup_keys_program(key, steps)
      return init(init_key, sample), step_keys

    setup.programs = {"keys": _setup_keys_program, "init": init}
    return setup

  @functools.cached_property
  def _program(self):
    pieces = self._pieces

    def run(genomes, train_batches, validation_batches, variables, step_keys, step_scale):
      self._check(genomes, train_batches)
      if self.mesh is None or self.mesh.size == 1:
        return evaluate_local(genomes, step_scale, train_batches, validation_batches,
                              variables, step_keys)
      # The population axis is split across the mesh's devices; the data and the initial
      # state are replicated (common random numbers).
      population = genomes.shape[0]
      pad = -population % self.mesh.size
      padded = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]),
                            (genomes, step_scale))
      sharded = jax.shard_map(
          evaluate_local, mesh=self.mesh, in_specs=(P(POPULATION_AXIS),) * 2 + (P(),) * 4,
          out_specs=P(POPULATION_AXIS), check_vma=False)
      out = sharded(*padded, train_batches, validation_batches, variables, step_keys)
      return jax.tree.map(lambda x: x[:population], out)

    def evaluate_local(genomes, step_scale, train_batches, validation_batches, variables,
                       step_keys):
      def candidate(genome, scale):
        carry, losses = jax.lax.scan(pieces.train, pieces.start(variables, genome, scale),
                                     (train_batches, step_keys))
        totals, _ = jax.lax.scan(lambda t, b: (pieces.validate(carry[0], t, b), None),
                                 _zero_totals(), validation_batches)
        return pieces.finish(carry, totals, losses[-1])

      population = genomes.shape[0]
      args = (genomes, step_scale)
      if self.strategy == "vmap":
        return jax.vmap(candidate)(*args)
      if self.strategy == "map":
        return jax.lax.map(lambda a: candidate(*a), args)
      chunk = self.chunk_size
      chunks = -(-population // chunk)
      pad = chunks * chunk - population
      padded = jax.tree.map(
          lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]).reshape(
              (chunks, chunk) + x.shape[1:]), args)
      out = jax.lax.map(lambda a: jax.vmap(candidate)(*a), padded)
      return jax.tree.map(lambda x: x.reshape((chunks * chunk,) + x.shape[2:])[:population],
                          out)

    return jax.jit(run, compiler_options=self._compiler_options)

  @property
  def _compiler_options(self) -> dict | None:
    return dict(self.compiler_options) or None

  @functools.cached_property
  def _sequential_programs(self) -> _Pieces:
    """The pieces, each jitted on its own (one step per call), for ``"sequential"``."""
    pieces, options = self._pieces, self._compiler_options

    def train(carry, train_batches, step_keys, t):
      batch = jax.tree.map(lambda x: x[t], train_batches)
      return pieces.train(carry, (batch, step_keys[t]))

    def validate(state, totals, validation_batches, v):
      return pieces.validate(state, totals, jax.tree.map(lambda x: x[v], validation_batches))

    return _Pieces(
        start=jax.jit(pieces.start, compiler_options=options),
        train=jax.jit(train, compiler_options=options),
        validate=jax.jit(validate, compiler_options=options),
        finish=jax.jit(pieces.finish, compiler_options=options))

  def _evaluate_sequential(self, genomes, train_batches, validation_batches, key, step_scale):
    """Candidates one after another, steps one after another, each step one call of the
    same compiled program (XLA:CPU runs convolutions inside loops far slower, section
    "Convolutions inside loops" of docs/performance.md)."""
    self._check(genomes, train_batches)
    programs = self._sequential_programs
    train_batches = jax.device_put(dict(train_batches))
    validation_batches = jax.device_put(dict(validation_batches))
    variables, step_keys = self._setup(key, train_batches["image"][0, :1])
    num_validation = int(np.shape(validation_batches["label"])[0])
    results = []
    # Host copies: iterating over device arrays would dispatch (and compile) slicing ops.
    genomes, step_scale = np.asarray(genomes), np.asarray(step_scale)
    for genome, scale in zip(genomes, step_scale, strict=True):
      carry = programs.start(variables, genome, scale)
      loss = None
      for t in range(self.steps):
        carry, loss = programs.train(carry, train_batches, step_keys, np.int32(t))
      totals = _zero_totals()
      for v in range(num_validation):
        totals = programs.validate(carry[0], totals, validation_batches, np.int32(v))
      results.append(programs.finish(carry, totals, loss))
    # Stacked on the host: an eager stack would compile anew for each population size.
    return jax.tree.map(lambda *xs: jax.device_put(np.stack(xs)), *jax.device_get(results))


def _setup_keys(key: Array, steps: int) -> tuple[Array, Array]:
  """The initialisation key and one key per training step, from the evaluation key."""
  init_key, train_key = jax.random.split(key)
  return init_key, jax.vmap(functools.partial(jax.random.fold_in, train_key))(
      jnp.arange(steps))


# One program per number of steps for the whole process (every evaluator, every DARTS
# architecture): the keys do not depend on the network.
_setup_keys_program = jax.jit(_setup_keys, static_argnums=1)


class _Pieces(NamedTuple):
  start: Any  # (variables, genome, scale) -> carry = (state, failed_step, reason)
  train: Any  # (carry, (batch, step_key)) -> (carry, loss)
  validate: Any  # (state, totals, batch) -> totals
  finish: Any  # (carry, totals, last_loss) -> (fitness, info)


def _zero_totals() -> dict[str, Array]:
  zero = jnp.zeros((), jnp.float32)
  return {"loss_sum": zero, "correct": zero, "count": zero}


def stack_train_batches(batches: Iterable[Mapping], steps: int) -> dict[str, np.ndarray]:
  """The first ``steps`` batches of an iterator (``Dataset.train_batches(...)``), stacked:
  ``{"image": (steps, b, ...), "label": (steps, b)}``."""
  taken = list(itertools.islice(iter(batches), steps))
  if len(taken) != steps:
    raise ValueError(f"Needed {steps} training batches, got {len(taken)}.")
  return {k: np.stack([np.asarray(b[k]) for b in taken]) for k in taken[0]}


def stack_eval_batches(batches: Iterable[Mapping]) -> dict[str, np.ndarray]:
  """All batches of ``Dataset.eval_batches(split, batch_size)``, stacked (padded rows have
  ``mask`` 0 and do not count)."""
  taken = list(batches)
  if not taken:
    raise ValueError("No evaluation batches.")
  return {k: np.stack([np.asarray(b[k]) for b in taken]) for k in taken[0]}
