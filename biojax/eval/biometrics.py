"""Biological metrics of a trained network, for any model and any learning rule.

Every function works on host arrays (NumPy; JAX arrays are converted) and on Flax parameter
pytrees; none depends on the rule that trained the weights. docs/eval.md gives each formula
with its convention.

Weight layout (the biojax and Flax convention): a dense kernel is ``(in, out)``, so the
presynaptic unit of ``W[i, j]`` is input ``i`` (a row) and its outgoing synapses are row
``i``; a convolution kernel is ``(*window, in_channels, out_channels)`` (HWIO), so the
presynaptic unit is input channel ``i`` and its outgoing synapses are ``W[..., i, :]``. In
both cases the presynaptic axis is the second-to-last one. A weight layer is a leaf named
``kernel``; biases, batch-norm parameters and rule state (the ``feedback`` collection) are not
synapses and are left out.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from biojax.eval._forward import plain_variables
from biojax.nn.assignment import weight_layers

ArrayLike = Any


# ---------------------------------------------------------------------------------- kernels


def kernels(params: Mapping | ArrayLike, layers: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
  """``{layer: kernel}`` for every leaf named ``kernel`` in ``params``, as NumPy arrays.

  Args:
    params: a parameter pytree (``variables["params"]``; a whole variables dict with a
      ``params`` collection is accepted too), a flat ``{layer: kernel}`` dict, or a single
      array, returned as ``{"": array}``.
    layers: keep only these layer paths (``"dense_0"``, ``"stage1_block0/conv1"``), in this
      order; None keeps all, in the pytree's (sorted) order.

  Raises:
    ValueError: a named layer has no kernel.
  """
  if not isinstance(params, Mapping):
    return {"": np.asarray(params)}
  params = flax.core.unfreeze(params)
  if "kernel" not in params and not any(isinstance(v, Mapping) for v in params.values()):
    params = {name: {"kernel": w} for name, w in params.items()}  # already {layer: kernel}
  if "params" in params and isinstance(params["params"], Mapping):
    params = params["params"]
  flat = traverse_util.flatten_dict(params)
  found = {"/".join(path[:-1]): np.asarray(value) for path, value in flat.items()
           if path[-1] == "kernel"}
  if layers is None:
    return found
  missing = [name for name in layers if name not in found]
  if missing:
    raise ValueError(f"No kernel for layer(s) {', '.join(missing)}. Layers with a kernel: "
                     f"{', '.join(found)}.")
  return {name: found[name] for name in layers}


# ------------------------------------------------------------------------ synapse sparsity


def synapse_sparsity(params: Mapping | ArrayLike, relative_threshold: float = 0.01,
                     layers: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
  """Fractions of absent and of weak synapses, per layer and over all layers.

  For a kernel ``W`` with ``n`` entries:

      zero_fraction  = #{w : w == 0} / n
      small_fraction = #{w : |w| < relative_threshold * max|W|} / n

  (exact zeros count as small; for an all-zero kernel ``small_fraction`` is 1). ``overall``
  pools the synapses of all layers: its fractions are the per-layer counts summed over the
  summed sizes, so large layers weigh more. The 1 % threshold follows the usual magnitude-
  pruning convention: a weight 100 times smaller than the layer's largest barely contributes.

  Returns:
    ``{layer: {"zero_fraction", "small_fraction", "count"}, ..., "overall": {...}}``.
  """
  out: dict[str, dict[str, float]] = {}
  zeros = small = total = 0
  for name, w in kernels(params, layers).items():
    magnitude = np.abs(w)
    largest = float(magnitude.max()) if magnitude.size else 0.0
    layer_zeros = int(np.count_nonzero(w == 0))
    layer_small = (int(np.count_nonzero(magnitude < relative_threshold * largest))
                   if largest > 0 else magnitude.size)
    out[name] = {"zero_fraction": layer_zeros / max(w.size, 1),
                 "small_fraction": layer_small / max(w.size, 1), "count": int(w.size)}
    zeros, small, total = zeros + layer_zeros, small + layer_small, total + w.size
  out["overall"] = {"zero_fraction": zeros / max(total, 1),
                    "small_fraction": small / max(total, 1), "count": int(total)}
  return out


# ----------------------------------------------------------------------- activity sparsity


def _treves_rolls(rates: np.ndarray, axis: int) -> np.ndarray:
  """``(mean r)^2 / mean(r^2)`` along ``axis``; NaN where every rate is zero."""
  mean = rates.mean(axis=axis)
  mean_square = np.square(rates).mean(axis=axis)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(mean_square > 0, np.square(mean) / mean_square, np.nan)


def activity_sparsity(activations: ArrayLike, threshold: float = 0.0) -> dict[str, float]:
  """Population and lifetime sparsity of hidden units (Treves-Rolls), and units active.

  ``activations`` is ``(inputs, units)``: ``r[s, i] >= 0`` is the response of unit ``i`` to
  input ``s`` (e.g. ReLU outputs; a convolutional layer's ``(inputs, H, W, C)`` maps are
  flattened, so every position-channel pair is a unit). The Treves-Rolls measure (Treves &
  Rolls 1991; Rolls & Tovee 1995) of ``n`` non-negative responses ``r_1..r_n`` is

      a = ((1/n) sum_k r_k)^2 / ((1/n) sum_k r_k^2)          in [1/n, 1].

  **Convention: small ``a`` means sparse.** ``a = 1`` when all responses are equal (dense);
  ``a = 1/n`` when exactly one is non-zero (as sparse as possible). Also given is Vinje &
  Gallant's (2000) normalisation ``S = (1 - a) / (1 - 1/n)`` in [0, 1], where **1 means
  sparse**.

  * population sparsity: ``a`` over the units for each input (how many units one input
    drives), averaged over inputs; inputs to which no unit responds are left out of the mean
    (``a`` is 0/0 there) and counted in ``silent_input_fraction``;
  * lifetime sparsity: ``a`` over the inputs for each unit (how selective one unit is),
    averaged over units; units that never respond are left out and counted in
    ``dead_unit_fraction``;
  * ``active_fraction``: the fraction of units with ``r > threshold`` for each input,
    averaged over inputs (silent inputs included, as 0).

  Raises:
    ValueError: ``activations`` is not at least 2-D, or has negative entries (the measure is
      defined for firing rates).
  """
  r = np.asarray(activations, np.float64)
  if r.ndim < 2:
    raise ValueError(f"activations must be (inputs, units, ...), got shape {r.shape}.")
  r = r.reshape(r.shape[0], -1)
  if np.any(r < 0):
    raise ValueError("activity_sparsity needs non-negative responses (firing rates, e.g. ReLU "
                     f"outputs); the smallest is {r.min():.3g}.")
  inputs, units = r.shape
  population = _treves_rolls(r, axis=1)  # (inputs,)
  lifetime = _treves_rolls(r, axis=0)  # (units,)

  def mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")

  def normalised(a: float, n: int) -> float:
    return (1.0 - a) / (1.0 - 1.0 / n) if n > 1 else float("nan")

  population_a, lifetime_a = mean(population), mean(lifetime)
  return {
      "population_treves_rolls": population_a,
      "lifetime_treves_rolls": lifetime_a,
      "population_sparseness": normalised(population_a, units),
      "lifetime_sparseness": normalised(lifetime_a, inputs),
      "active_fraction": float(np.mean(r > threshold)),
      "silent_input_fraction": float(np.mean(np.isnan(population))),
      "dead_unit_fraction": float(np.mean(np.isnan(lifetime))),
  }


@functools.lru_cache(maxsize=16)
def _capture_program(model: nn.Module):
  def capture(variables, images):
    _, state = model.apply(variables, images, train=False, mutable=["intermediates"],
                           capture_intermediates=lambda module, method: method == "tap")
    return state["intermediates"]

  return jax.jit(capture)


def hidden_activations(model: nn.Module, variables: Mapping, images: ArrayLike,
                       batch_size: int = 1000) -> dict[str, np.ndarray]:
  """The post-activation output of every hidden weight layer of a biojax model.

  biojax models mark each hidden layer's output with ``layer.tap(h)`` (the ReLU output, or a
  residual block's output after its addition). This runs the plain forward pass (evaluation
  mode, no ``assignment`` collection, so no rule is involved) with Flax's
  ``capture_intermediates`` keeping the values of those ``tap`` calls.

  Args:
    model: a biojax model (``biojax.nn.MLP``, ``ConvNet``, ``ResNet``, ...).
    variables: its variables (``params``, ``feedback``, ``batch_stats`` if any); a
      ``TrainState`` is accepted too.
    images: ``(n, ...)`` model inputs, normalised as in training.
    batch_size: inputs per forward pass (the last batch is padded, so one program serves all).

  Returns:
    ``{layer: (n, units)}`` in the order the model applies its layers, conv maps flattened.
  """
  variables = plain_variables(variables)
  images = np.asarray(images)
  program = _capture_program(model)
  pieces: dict[str, list[np.ndarray]] = {}
  n = len(images)
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    real = len(chunk)
    if real < batch_size and n > batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - real, *chunk.shape[1:]),
                                              chunk.dtype)])
    captured = traverse_util.flatten_dict(flax.core.unfreeze(program(variables, chunk)))
    for path, values in captured.items():
      (h,) = values  # one tap call per layer and forward pass
      layer = "/".join(path[:-1])
      pieces.setdefault(layer, []).append(np.asarray(h)[:real].reshape(real, -1))
  order = [name for name in weight_layers(variables) if name in pieces]
  return {name: np.concatenate(pieces[name]) for name in order}


# --------------------------------------------------------------------------- lognormal fit


def _ks_normal(values: np.ndarray) -> tuple[float, float, float]:
  """KS distance between ``values`` and the normal of their mean and (MLE) std."""
  from scipy import stats  # only here: the rest of biojax does not need SciPy

  mu, sigma = float(np.mean(values)), float(np.std(values))
  if not sigma > 0:
    return 1.0, mu, sigma
  # Standardised first: the same distance, and newer SciPy releases reject `args=` here.
  z = (values - mu) / sigma
  return float(stats.kstest(z, "norm").statistic), mu, sigma


def lognormal_fit(params: Mapping | ArrayLike, layers: Sequence[str] | None = None
                  ) -> dict[str, dict[str, float]]:
  """How lognormal the non-zero weight magnitudes are, beside how normal the weights are.

  For each layer, with ``v`` the non-zero kernel entries:

      ks_lognormal = sup_x |F_n(x) - Phi((x - mu) / sigma)|,  data log|v|,
                     mu, sigma = mean and (maximum-likelihood, ddof=0) std of log|v|
      ks_normal    = the same statistic for the data v itself and its own fitted normal

  ``F_n`` is the empirical distribution function and ``Phi`` the standard normal one: the
  Kolmogorov-Smirnov distance (Kolmogorov 1933; Smirnov 1948; computed by
  ``scipy.stats.kstest``). Small means a good fit: ``ks_lognormal`` well below
  ``ks_normal`` says the magnitudes are closer to lognormal (as cortical synaptic strengths
  are: Song et al. 2005; Buzsaki & Mizuseki 2014) than the weights are to normal. Both use
  the same non-zero weights, so pruned synapses neither form a spike at 0 in the normal fit
  nor ``log 0`` in the lognormal one. As the parameters are fitted to the same data, the
  statistic is a distance, not a test (its p-value would need Lilliefors' correction).

  Returns:
    ``{layer: {"ks_lognormal", "ks_normal", "log_mean", "log_std", "count"}, ...,
    "overall": {"ks_lognormal", "ks_normal", "count"}}`` where ``overall`` averages the
    per-layer distances weighted by their counts (layers have different scales, so their
    weights are not pooled). A layer with fewer than two non-zero weights gets NaN.
  """
  out: dict[str, dict[str, float]] = {}
  weighted_log = weighted_normal = total = 0.0
  for name, w in kernels(params, layers).items():
    v = w[w != 0].astype(np.float64).ravel()
    if v.size < 2:
      out[name] = {"ks_lognormal": float("nan"), "ks_normal": float("nan"),
                   "log_mean": float("nan"), "log_std": float("nan"), "count": int(v.size)}
      continue
    ks_log, log_mean, log_std = _ks_normal(np.log(np.abs(v)))
    ks_lin, _, _ = _ks_normal(v)
    out[name] = {"ks_lognormal": ks_log, "ks_normal": ks_lin, "log_mean": log_mean,
                 "log_std": log_std, "count": int(v.size)}
    weighted_log += ks_log * v.size
    weighted_normal += ks_lin * v.size
    total += v.size
  out["overall"] = {"ks_lognormal": weighted_log / total if total else float("nan"),
                    "ks_normal": weighted_normal / total if total else float("nan"),
                    "count": int(total)}
  return out


# ------------------------------------------------------------------------------ Dale's law


def dale_adherence(params: Mapping | ArrayLike, layers: Sequence[str] | None = None,
                   relative_threshold: float = 0.0) -> dict[str, dict[str, float]]:
  """Fraction of presynaptic units whose non-zero outgoing synapses all share one sign.

  Dale's principle (Eccles 1976; Dale 1935): a neuron releases the same transmitter at all
  its synapses, so it is excitatory everywhere or inhibitory everywhere. For a kernel whose
  second-to-last axis is the presynaptic unit (dense ``(in, out)``: a row; convolution
  ``(*window, in, out)``: an input channel, all positions and output channels), unit ``i``
  adheres when ``W[..., i, :]`` restricted to its non-zero synapses (``|w| >
  relative_threshold * max|W|``; the default 0 counts every exact non-zero) is all positive
  (excitatory) or all negative (inhibitory):

      adherence = #{adhering units} / #{units with at least one non-zero synapse}

  Units with no synapse left are ``silent`` and excluded. ``overall`` pools the units of all
  layers. For a grouped convolution (``feature_group_count > 1``) the axis indexes the input
  channel within its group, so the corresponding channels of all groups are pooled as one
  unit; use it on ordinary kernels only.

  Returns:
    ``{layer: {"adherence", "excitatory_fraction", "inhibitory_fraction", "units",
    "silent_units"}, ..., "overall": {...}}``; fractions are over non-silent units.
  """
  out: dict[str, dict[str, float]] = {}
  totals = {"excitatory": 0, "inhibitory": 0, "units": 0, "silent": 0}
  for name, w in kernels(params, layers).items():
    if w.ndim < 2:
      raise ValueError(f"Layer {name!r}: a kernel needs a presynaptic and a postsynaptic axis, "
                       f"got shape {w.shape}.")
    outgoing = np.moveaxis(w, -2, 0).reshape(w.shape[-2], -1)  # (presynaptic units, synapses)
    floor = relative_threshold * float(np.abs(w).max()) if w.size else 0.0
    present = np.abs(outgoing) > floor
    positive = np.any(present & (outgoing > 0), axis=1)
    negative = np.any(present & (outgoing < 0), axis=1)
    silent = ~(positive | negative)
    excitatory = int(np.sum(positive & ~negative))
    inhibitory = int(np.sum(negative & ~positive))
    live = int(np.sum(~silent))
    out[name] = _dale_record(excitatory, inhibitory, live, int(outgoing.shape[0]),
                             int(np.sum(silent)))
    totals["excitatory"] += excitatory
    totals["inhibitory"] += inhibitory
    totals["units"] += int(outgoing.shape[0])
    totals["silent"] += int(np.sum(silent))
  live = totals["units"] - totals["silent"]
  out["overall"] = _dale_record(totals["excitatory"], totals["inhibitory"], live,
                                totals["units"], totals["silent"])
  return out


def _dale_record(excitatory: int, inhibitory: int, live: int, units: int,
                 silent: int) -> dict[str, float]:
  nan = float("nan")
  return {"adherence": (excitatory + inhibitory) / live if live else nan,
          "excitatory_fraction": excitatory / live if live else nan,
          "inhibitory_fraction": inhibitory / live if live else nan,
          "units": units, "silent_units": silent}


# ----------------------------------------------------------------------------------- plots


def first_layer_kernel(variables: Mapping) -> np.ndarray:
  """The kernel of the first weight layer a biojax model applies (by its recorded order)."""
  if hasattr(variables, "variables"):
    variables = variables.variables()
  first = weight_layers(variables)[0]
  return kernels(variables["params"], [first])[first]


def plot_receptive_fields(kernel: ArrayLike, path: str,
                          image_shape: Sequence[int] | None = None, max_units: int = 64,
                          columns: int | None = None, order: str = "index",
                          title: str | None = None) -> str:
  """Draws the first layer's receptive fields as an image grid and saves it to ``path``.

  Args:
    kernel: a dense kernel ``(in, out)`` (unit ``j``'s field is column ``j``, reshaped to
      ``image_shape``) or a convolution kernel ``(h, w, in, out)`` (unit ``j``'s field is
      ``kernel[..., j]``).
    path: the PNG to write (directories are created).
    image_shape: ``(H, W)`` or ``(H, W, C)`` of the input, for a dense kernel; None guesses
      a square grey image (``in`` must be a perfect square).
    max_units: at most this many fields are drawn.
    columns: grid columns (default: about the square root of the number drawn).
    order: ``"index"`` (units 0, 1, ...) or ``"norm"`` (largest-norm units first).
    title: the figure title.

  Each field is scaled on its own: one-channel fields on a diverging map (red positive,
  blue negative, white 0, symmetric limits ``+-max|w|``), three-channel fields mapped
  linearly from ``[-max|w|, max|w|]`` to ``[0, 1]`` per field.

  Returns:
    ``path``.
  """
  from matplotlib.figure import Figure  # no pyplot: no global backend state

  w = np.asarray(kernel, np.float64)
  if w.ndim == 2:
    if image_shape is None:
      side = math.isqrt(w.shape[0])
      if side * side != w.shape[0]:
        raise ValueError(f"Give image_shape: {w.shape[0]} inputs are not a square image.")
      image_shape = (side, side)
    fields = w.T.reshape(w.shape[1], *image_shape)
  elif w.ndim == 4:
    fields = np.moveaxis(w, -1, 0)  # (out, h, w, in)
  else:
    raise ValueError(f"kernel must be (in, out) or (h, w, in, out), got shape {w.shape}.")
  if fields.ndim == 4 and fields.shape[-1] == 1:
    fields = fields[..., 0]
  if fields.ndim == 4 and fields.shape[-1] != 3:
    raise ValueError(f"Fields with {fields.shape[-1]} channels cannot be drawn as images "
                     "(1 or 3 channels).")
  if order == "norm":
    units = np.argsort(-np.sqrt(np.sum(np.square(fields.reshape(len(fields), -1)), axis=1)),
                       kind="stable")
  elif order == "index":
    units = np.arange(len(fields))
  else:
    raise ValueError(f"order={order!r} must be 'index' or 'norm'.")
  units = units[:max_units]
  columns = columns or max(1, math.ceil(math.sqrt(len(units))))
  rows = max(1, math.ceil(len(units) / columns))
  figure = Figure(figsize=(1.1 * columns, 1.1 * rows + (0.4 if title else 0)),
                  layout="constrained")
  axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
  for ax in axes:
    ax.set_axis_off()
  for ax, unit in zip(axes, units, strict=False):
    field = fields[unit]
    limit = float(np.abs(field).max()) or 1.0
    if field.ndim == 2:
      ax.imshow(field, cmap="bwr", vmin=-limit, vmax=limit, interpolation="nearest")
    else:
      ax.imshow((field / limit + 1.0) / 2.0, interpolation="nearest")
    ax.set_title(str(int(unit)), fontsize=6)
  if title:
    figure.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  return path


def plot_weight_histograms(params: Mapping | ArrayLike, path: str,
                           layers: Sequence[str] | None = None, bins: int = 60,
                           title: str | None = None) -> str:
  """Histogram of log10|w| (non-zero weights) per layer with the fitted lognormal's density.

  One panel per layer; the curve is the normal density of :func:`lognormal_fit`'s fitted
  ``log_mean``, ``log_std`` drawn on the log10 axis (a lognormal magnitude distribution is a
  Gaussian there), with both KS distances in the panel's title. Returns ``path``.
  """
  from matplotlib.figure import Figure

  selected = kernels(params, layers)
  fits = lognormal_fit(selected)
  figure = Figure(figsize=(3.2 * max(len(selected), 1), 2.8), layout="constrained")
  axes = np.atleast_1d(figure.subplots(1, max(len(selected), 1), squeeze=False).ravel())
  for ax, (name, w) in zip(axes, selected.items(), strict=False):
    v = np.abs(w[w != 0].astype(np.float64))
    fit = fits[name]
    if v.size >= 2:
      logs = np.log10(v)
      ax.hist(logs, bins=bins, density=True, alpha=0.6, color="tab:blue")
      mu, sigma = fit["log_mean"] / math.log(10), fit["log_std"] / math.log(10)
      if sigma > 0:
        grid = np.linspace(logs.min(), logs.max(), 200)
        ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)),
                color="tab:red", label="fitted lognormal")
    ax.set_xlabel("log10 |w|")
    ax.set_title(f"{name or 'kernel'}\nKS lognormal {fit['ks_lognormal']:.3f}, "
                 f"normal {fit['ks_normal']:.3f}", fontsize=8)
  if title:
    figure.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  return path
