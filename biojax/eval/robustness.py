"""Adversarial robustness with true gradients, a black-box attack and a transfer attack.

Why true gradients. A bio-inspired rule replaces the backward pass (feedback alignment sends
the error through a random matrix ``B``, DFA projects it, SoftHebb sends none). An attack
that differentiates through that pseudo-gradient attacks the wrong function: its steps can
be poor even though the network itself is not robust (gradient masking), which is what the
public code of Hamzaoui & Baghdadi (ECAI 2025, arXiv:2507.13485) did (docs/eval.md). Here
every white-box attack
differentiates the model's forward function itself. biojax layers run a plain, differentiable
forward pass whenever the ``assignment`` collection is absent (biojax/nn/layers.py:
``_RuleAware._rule_forward`` then calls ``forward(x, kernel)`` without the custom VJP, and
``tap`` returns its input unchanged), so :class:`TrueForward` drops that collection. Because
a white-box attack can still be blunted by a forward function with flat or noisy gradients,
two attacks that need no gradient of the target are included: the Square attack (black-box,
score-based) and a transfer attack (PGD on a back-propagation-trained surrogate, evaluated
on the target).

Conventions:

* a classifier is ``apply_fn(variables, images) -> logits``, a hashable function (a module-
  level function or :class:`TrueForward`), so the attacks are jitted with it static and one
  compiled program serves every set of weights and every epsilon;
* every attack has the signature ``attack(apply_fn, variables, images, labels, epsilon, key,
  input_range, **settings) -> adversarial images`` and is deterministic given ``key``;
* ``epsilon`` is the L-infinity radius in the units of ``input_range.scale``: with
  :meth:`InputRange.normalised` (inputs normalised as ``(pixel - mean) / std``) it is in
  pixel units of ``[0, 1]`` images, so ``8/255`` means what it usually means; adversarial
  images are clipped to ``[input_range.lower, input_range.upper]`` (the valid pixels).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from biojax.eval._forward import plain_variables

Array = jax.Array
Classifier = Callable[[Any, Array], Array]
Attack = Callable[..., Array]

LOSSES = ("cross_entropy", "margin")


@dataclasses.dataclass(frozen=True)
class TrueForward:
  """``(variables, images) -> logits``: a biojax model's plain forward pass (evaluation mode).

  Drops the ``assignment`` collection (and the training-only DFA taps) from ``variables``, so
  every rule-aware layer is an ordinary differentiable function and ``jax.grad`` through it
  is the true gradient, whatever rules trained the weights. ``variables`` may also be a
  :class:`biojax.TrainState` (its ``variables()`` are used). Hashable (a frozen dataclass of a
  Flax module), so it can be a static argument of ``jax.jit``.
  """

  model: nn.Module

  def __call__(self, variables: Any, images: Array) -> Array:
    return self.model.apply(plain_variables(variables), images, train=False)


@flax.struct.dataclass
class InputRange:
  """The valid inputs and the unit of epsilon (arrays broadcastable to one image).

  ``lower``/``upper`` bound every adversarial input; a perturbation of radius ``epsilon``
  changes an input by at most ``epsilon * scale``. Per-channel values have shape ``(C,)``
  (they broadcast against NHWC images).
  """

  lower: Array
  upper: Array
  scale: Array

  @classmethod
  def pixels(cls, lower: float = 0.0, upper: float = 1.0) -> InputRange:
    """Raw inputs in ``[lower, upper]``; epsilon in the same units."""
    return cls(jnp.asarray(lower, jnp.float32), jnp.asarray(upper, jnp.float32),
               jnp.asarray(1.0, jnp.float32))

  @classmethod
  def normalised(cls, mean: Sequence[float], std: Sequence[float]) -> InputRange:
    """Inputs ``(p - mean) / std`` of pixels ``p`` in [0, 1] (per channel); epsilon in pixel
    units: the valid range is ``[-mean / std, (1 - mean) / std]`` and ``scale = 1 / std``."""
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return cls(-mean / std, (1.0 - mean) / std, 1.0 / std)

  @classmethod
  def from_dataset(cls, dataset: Any) -> InputRange:
    """:meth:`normalised` with a data set's ``mean`` and ``std`` (a biojax ArrayDataset)."""
    return cls.normalised(dataset.mean, dataset.std)


PIXELS = InputRange.pixels()


def attack_loss(logits: Array, labels: Array, loss: str = "cross_entropy") -> Array:
  """Per-example loss that the attacker maximises.

  ``cross_entropy``: ``-log softmax(z)_y``. ``margin``: ``max_{k != y} z_k - z_y`` (Carlini &
  Wagner 2017), positive exactly when the example is misclassified.
  """
  if loss == "cross_entropy":
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if loss == "margin":
    return -_margin(logits, labels)
  raise ValueError(f"Unknown attack loss {loss!r}. Valid losses: {', '.join(LOSSES)}.")


def _margin(logits: Array, labels: Array) -> Array:
  """``z_y - max_{k != y} z_k``: positive when the example is classified correctly."""
  true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return true - jnp.max(others, axis=-1)


def _check(images: Array, labels: Array) -> None:
  chex.assert_rank(labels, 1)
  chex.assert_equal(images.shape[0], labels.shape[0])


def _input_gradient(apply_fn: Classifier, variables: Any, x: Array, labels: Array,
                    loss: str) -> tuple[Array, Array]:
  """``(d sum_examples loss / dx, logits)``: each example's own input gradient."""

  def objective(x_):
    logits = apply_fn(variables, x_)
    return jnp.sum(attack_loss(logits, labels, loss)), logits

  gradient, logits = jax.grad(objective, has_aux=True)(x)
  return gradient, logits


@functools.partial(jax.jit, static_argnames=("apply_fn", "loss"))
def fgsm(apply_fn: Classifier, variables: Any, images: Array, labels: Array,
         epsilon: float | Array, key: Array | None = None, input_range: InputRange = PIXELS,
         *, loss: str = "cross_entropy") -> Array:
  """Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015), L-infinity.

      x_adv = clip(x + epsilon * scale * sign(grad_x L(f(x), y)), lower, upper)

  with ``L`` the attack loss (:func:`attack_loss`) and the true input gradient of
  ``apply_fn``. ``key`` is unused (FGSM is deterministic); it is there so that every attack
  has one signature.

  Args:
    apply_fn: ``(variables, images) -> logits``, e.g. ``TrueForward(model)``.
    variables: the classifier's variables.
    images: ``(batch, ...)`` inputs; labels: ``(batch,)`` integer labels.
    epsilon: L-infinity radius in units of ``input_range.scale``.
    input_range: valid inputs and the unit of epsilon.
    loss: ``"cross_entropy"`` or ``"margin"``.
  """
  del key
  _check(images, labels)
  gradient, _ = _input_gradient(apply_fn, variables, images, labels, loss)
  radius = epsilon * input_range.scale
  return jnp.clip(images + radius * jnp.sign(gradient), input_range.lower, input_range.upper)


@functools.partial(jax.jit, static_argnames=("apply_fn", "steps", "restarts", "loss"))
def pgd(apply_fn: Classifier, variables: Any, images: Array, labels: Array,
        epsilon: float | Array, key: Array, input_range: InputRange = PIXELS, *,
        steps: int = 20, restarts: int = 1, relative_step_size: float | None = None,
        loss: str = "cross_entropy") -> Array:
  """Projected gradient descent with a random start (Madry et al. 2018), L-infinity.

  From ``x_0 = P(x + epsilon * scale * u)``, ``u ~ Uniform[-1, 1]`` elementwise,

      x_{t+1} = P(x_t + alpha * epsilon * scale * sign(grad_x L(f(x_t), y)))

  for ``steps`` steps, where ``P`` clips to the ball ``|x' - x|_inf <= epsilon * scale`` and
  then to ``[lower, upper]``, and ``alpha = relative_step_size`` (default ``2.5 / steps``,
  Madry et al.'s ratio, so the iterates can cross the ball). Each example keeps the first
  iterate that is misclassified (else the last one); with ``restarts > 1`` the attack is run
  from that many random starts and an example counts as broken if any restart breaks it.
  The gradient is the true input gradient of ``apply_fn``.

  Args:
    apply_fn, variables, images, labels, epsilon, input_range, loss: as :func:`fgsm`.
    key: PRNG key of the random starts (restart ``r`` uses ``fold_in(key, r)``).
    steps: gradient steps per restart.
    restarts: random starts.
    relative_step_size: step size as a fraction of epsilon.
  """
  _check(images, labels)
  alpha = 2.5 / steps if relative_step_size is None else relative_step_size
  radius = jnp.broadcast_to(epsilon * input_range.scale, images.shape[1:])
  lower = jnp.maximum(images - radius, input_range.lower)
  upper = jnp.minimum(images + radius, input_range.upper)
  rows = lambda mask: mask.reshape((-1,) + (1,) * (images.ndim - 1))  # noqa: E731

  def misclassified(logits):
    return jnp.argmax(logits, axis=-1) != labels

  def attack_once(restart_key):
    noise = jax.random.uniform(restart_key, images.shape, images.dtype, -1.0, 1.0)
    start = jnp.clip(images + radius * noise, lower, upper)

    def step(carry, _):
      x, found, fooled = carry
      gradient, logits = _input_gradient(apply_fn, variables, x, labels, loss)
      wrong = misclassified(logits)
      found = jnp.where(rows(wrong & ~fooled), x, found)
      fooled = fooled | wrong
      x = jnp.clip(x + alpha * radius * jnp.sign(gradient), lower, upper)
      return (x, found, fooled), None

    initial = (start, start, jnp.zeros(labels.shape, bool))
    (x, found, fooled), _ = jax.lax.scan(step, initial, None, length=steps)
    fooled_last = misclassified(apply_fn(variables, x))
    return jnp.where(rows(fooled), found, x), fooled | fooled_last

  def restart(r, carry):
    # An example keeps the first restart that broke it; until then, the latest restart's.
    best, fooled = carry
    x, fooled_r = attack_once(jax.random.fold_in(key, r))
    return jnp.where(rows(fooled), best, x), fooled | fooled_r

  best, _ = jax.lax.fori_loop(0, restarts, restart, (images, jnp.zeros(labels.shape, bool)))
  return best


def _square_fraction(iteration: Array, queries: int, p_init: float) -> Array:
  """The fraction ``p`` of pixels a square covers at ``iteration`` (Andriushchenko et al.
  2020, Appendix; their code's ``p_selection``): ``p_init`` halved at 10, 50, 200, 500,
  1000, 2000, 4000, 6000 and 8000 of 10,000 iterations, rescaled to ``queries``."""
  progress = jnp.floor(iteration * 10_000 / queries)
  halvings = jnp.sum(progress > jnp.asarray([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]))
  return p_init / 2.0**halvings


@functools.partial(jax.jit, static_argnames=("apply_fn", "queries"))
def square_attack(apply_fn: Classifier, variables: Any, images: Array, labels: Array,
                  epsilon: float | Array, key: Array, input_range: InputRange = PIXELS, *,
                  queries: int = 1000, p_init: float = 0.05) -> Array:
  """Square attack, L-infinity (Andriushchenko, Croce, Flammarion & Hein 2020, Algorithm 1).

  A score-based black-box attack: it reads only the logits, never a gradient, so a rule
  that yields flat or misleading input gradients cannot hide from it. On NHWC images
  ``(B, H, W, C)`` with ``delta = epsilon * scale``:

  1. start from vertical stripes: ``x = clip(x0 + delta * s)``, one sign ``s in {-1, +1}``
     per column and channel (constant down each column);
  2. at iteration ``i``, the square side is ``h = round(sqrt(p_i * H * W))`` clipped to
     ``[1, min(H, W) - 1]``, with ``p_i`` from ``p_init`` halved on the paper's schedule;
     an ``h x h`` window is placed uniformly at random and, inside it, the candidate is set
     to ``x0 + delta * s_c`` with one random sign ``s_c`` per channel (so every pixel of
     ``x`` stays at a vertex of the ball, clipped to ``[lower, upper]``);
  3. the candidate replaces ``x`` when it lowers the margin ``z_y - max_{k != y} z_k``.

  An example stops once it is misclassified (margin < 0); the loop ends when all are or
  after ``queries`` iterations (one forward pass per iteration, plus one at the start).
  Where the paper resamples signs that would leave the window unchanged, this flips them
  (the same proposal for one channel, a deterministic alternative for more). Windows may
  sit at every position ``0 .. H - h`` (the authors' code omits the last one).

  Args:
    apply_fn, variables, images, labels, epsilon, input_range: as :func:`fgsm`; ``images``
      must be ``(batch, H, W, C)``.
    key: PRNG key of the stripes, windows and signs.
    queries: iterations (forward passes) at most.
    p_init: initial fraction of pixels per square (the paper's L-infinity default 0.05).
  """
  _check(images, labels)
  chex.assert_rank(images, 4)
  batch, height, width, channels = images.shape
  delta = jnp.broadcast_to(epsilon * input_range.scale, images.shape)
  vertex = lambda signs: jnp.clip(images + delta * signs, input_range.lower,  # noqa: E731
                                  input_range.upper)
  margin = lambda x: _margin(apply_fn(variables, x), labels)  # noqa: E731
  stripes_key, loop_key = jax.random.split(key)
  stripes = jax.random.rademacher(stripes_key, (batch, 1, width, channels), images.dtype)
  x = vertex(stripes)
  rows = jnp.arange(height)[None, :, None, None]
  columns = jnp.arange(width)[None, None, :, None]

  def body(carry):
    i, x, best = carry
    side = jnp.round(jnp.sqrt(_square_fraction(i, queries, p_init) * height * width))
    side = jnp.clip(side, 1, min(height, width) - 1).astype(jnp.int32)
    row_key, column_key, sign_key = jax.random.split(jax.random.fold_in(loop_key, i), 3)
    top = jax.random.randint(row_key, (batch, 1, 1, 1), 0, height - side + 1)
    left = jax.random.randint(column_key, (batch, 1, 1, 1), 0, width - side + 1)
    window = ((rows >= top) & (rows < top + side) & (columns >= left)
              & (columns < left + side))
    signs = jax.random.rademacher(sign_key, (batch, 1, 1, channels), images.dtype)
    candidate = jnp.where(window, vertex(signs), x)
    unchanged = jnp.all(candidate == x, axis=(1, 2, 3), keepdims=True)
    candidate = jnp.where(unchanged, jnp.where(window, vertex(-signs), x), candidate)
    proposal = margin(candidate)
    accept = (best > 0) & (proposal < best)
    x = jnp.where(accept[:, None, None, None], candidate, x)
    return i + 1, x, jnp.where(accept, proposal, best)

  def running(carry):
    i, _, best = carry
    return (i < queries) & jnp.any(best > 0)

  _, x, _ = jax.lax.while_loop(running, body, (jnp.asarray(0), x, margin(x)))
  return x


def transfer_attack(apply_fn: Classifier, variables: Any, images: Array, labels: Array,
                    epsilon: float | Array, key: Array, input_range: InputRange = PIXELS, *,
                    surrogate_apply: Classifier, surrogate_variables: Any, steps: int = 20,
                    restarts: int = 1, relative_step_size: float | None = None,
                    loss: str = "cross_entropy") -> Array:
  """Transfer attack: PGD (:func:`pgd`) on a surrogate, to be evaluated on the target.

  The adversarial images are crafted with the true gradients of ``surrogate_apply`` (a
  network of the same task trained by back-propagation, typically the same architecture
  from another seed); the target's ``apply_fn`` and ``variables`` are not used to craft
  them (they are in the signature so that every attack has the same one). A target that
  resists white-box PGD but falls to examples transferred from a surrogate is masking its
  gradients, not robust (Athalye, Carlini & Wagner 2018).
  """
  del apply_fn, variables
  return pgd(surrogate_apply, surrogate_variables, images, labels, epsilon, key, input_range,
             steps=steps, restarts=restarts, relative_step_size=relative_step_size, loss=loss)


def default_attacks(surrogate_apply: Classifier | None = None,
                    surrogate_variables: Any = None, *, pgd_steps: int = 20,
                    pgd_restarts: int = 1, square_queries: int = 1000
                    ) -> dict[str, Attack]:
  """``{"fgsm", "pgd", "square"[, "transfer"]}``: the attacks of :func:`robustness_curves`
  with these settings (``transfer`` only when a surrogate is given)."""
  attacks: dict[str, Attack] = {
      "fgsm": fgsm,
      "pgd": functools.partial(pgd, steps=pgd_steps, restarts=pgd_restarts),
      "square": functools.partial(square_attack, queries=square_queries),
  }
  if surrogate_apply is not None:
    attacks["transfer"] = functools.partial(
        transfer_attack, surrogate_apply=surrogate_apply,
        surrogate_variables=surrogate_variables, steps=pgd_steps, restarts=pgd_restarts)
  return attacks


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _correct(apply_fn: Classifier, variables: Any, images: Array, labels: Array,
             mask: Array) -> Array:
  hits = jnp.argmax(apply_fn(variables, images), axis=-1) == labels
  return jnp.sum(jnp.where(mask > 0, hits, False))


def robustness_curves(apply_fn: Classifier, variables: Any, images: np.ndarray,
                      labels: np.ndarray, epsilons: Sequence[float], key: Array,
                      input_range: InputRange = PIXELS,
                      attacks: Mapping[str, Attack] | None = None, batch_size: int = 500
                      ) -> dict[str, dict[float, float]]:
  """Accuracy under each attack at each epsilon: ``{attack: {epsilon: accuracy}}``.

  The examples are attacked in batches of ``batch_size`` (the last one padded with zero
  images that are not counted, so each attack compiles once); epsilon is traced, so all
  epsilons share the program. The key of attack ``name``, batch ``b`` and epsilon index
  ``j`` is ``fold_in(fold_in(fold_in(key, crc32(name)), b), j)``: the result depends only on
  the inputs and ``key``, and adding an attack does not change the others. Include ``0.0`` in
  ``epsilons`` for the clean accuracy (every attack returns its input at epsilon 0).

  Args:
    apply_fn: ``(variables, images) -> logits`` (``TrueForward(model)`` for a biojax model).
    variables: the target's variables.
    images: ``(n, ...)`` inputs (normalised as in training); labels: ``(n,)``.
    epsilons: L-infinity radii in units of ``input_range.scale``.
    key: PRNG key.
    input_range: valid inputs and the unit of epsilon.
    attacks: ``{name: attack}``, each with the common attack signature (see the module
      docstring); default :func:`default_attacks` ``()`` (FGSM, PGD-20, Square-1000).
    batch_size: examples per attacked batch.
  """
  attacks = default_attacks() if attacks is None else attacks
  images, labels = np.asarray(images), np.asarray(labels, np.int32)
  n = len(labels)
  size = min(batch_size, n)
  correct = {name: np.zeros(len(epsilons)) for name in attacks}
  for b, start in enumerate(range(0, n, size)):
    real = min(size, n - start)
    padding = size - real
    x = jnp.asarray(np.concatenate([images[start:start + real],
                                    np.zeros((padding, *images.shape[1:]), images.dtype)]))
    y = jnp.asarray(np.concatenate([labels[start:start + real], np.zeros(padding, np.int32)]))
    mask = jnp.asarray(np.arange(size) < real, jnp.float32)
    for name, attack in attacks.items():
      name_key = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
      batch_key = jax.random.fold_in(name_key, b)
      for j, epsilon in enumerate(epsilons):
        adversarial = attack(apply_fn, variables, x, y, jnp.float32(epsilon),
                             jax.random.fold_in(batch_key, j), input_range)
        correct[name][j] += float(_correct(apply_fn, variables, adversarial, y, mask))
  return {name: {float(e): float(c / n) for e, c in zip(epsilons, hits, strict=True)}
          for name, hits in correct.items()}


def plot_robustness(curves: Mapping[str, Mapping], path: str, title: str | None = None,
                    epsilon_label: str = "epsilon (L-inf, pixel units)") -> str:
  """Accuracy against epsilon, one panel per attack and one line per model; returns ``path``.

  ``curves`` is one model's ``{attack: {epsilon: accuracy}}`` (from
  :func:`robustness_curves`) or ``{model: {attack: {epsilon: accuracy}}}`` for several
  (e.g. one per rule). Epsilon keys may be strings (a JSON round trip).
  """
  from matplotlib.figure import Figure  # no pyplot: no global backend state

  first = next(iter(curves.values()))
  single = all(not isinstance(v, Mapping) for v in first.values())
  by_model = {"": curves} if single else curves
  attacks = list(dict.fromkeys(a for model in by_model.values() for a in model))
  figure = Figure(figsize=(3.6 * max(len(attacks), 1), 3.2), layout="constrained")
  axes = np.atleast_1d(figure.subplots(1, max(len(attacks), 1), squeeze=False).ravel())
  for ax, attack in zip(axes, attacks, strict=False):
    for model, model_curves in by_model.items():
      if attack not in model_curves:
        continue
      points = sorted((float(e), a) for e, a in model_curves[attack].items())
      ax.plot(*zip(*points, strict=True), "o-", markersize=3, label=model or None)
    ax.set_title(attack)
    ax.set_xlabel(epsilon_label)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if not single:
      ax.legend(fontsize=7)
  if title:
    figure.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  return path
