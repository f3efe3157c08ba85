"""Plots of a training run's ``metrics.jsonl`` records (matplotlib, no pyplot state)."""

from __future__ import annotations

from collections.abc import Iterable


def plot_curves(records: list[dict], path: str) -> None:
  """Loss and accuracy against step: training (per log interval), validation and test."""
  from matplotlib.figure import Figure  # no pyplot: no global backend state

  figure = Figure(figsize=(10, 4), layout="constrained")
  axes = figure.subplots(1, 2)
  for split, style in (("train", "-"), ("validation", "o-"), ("test", "s")):
    rows = [r for r in records if r.get("split") == split and r.get("loss") is not None]
    if not rows:
      continue
    steps = [r["step"] for r in rows]
    axes[0].plot(steps, [r["loss"] for r in rows], style, label=split, markersize=4)
    axes[1].plot(steps, [r["accuracy"] for r in rows], style, label=split, markersize=4)
  for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_yscale("log")
  figure.savefig(path, dpi=100)


def plot_alignment(records: list[dict], layers: Iterable[str], path: str) -> None:
  """Angle between each layer's W and its feedback matrix B against step (the validation
  records' ``alignment``)."""
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6, 4), layout="constrained")
  ax = figure.subplots()
  rows = [r for r in records if r.get("split") == "validation" and "alignment" in r]
  plotted = False
  for layer in layers:
    points = [(r["step"], r["alignment"].get(layer)) for r in rows]
    points = [(s, a) for s, a in points if a is not None]
    if points:
      ax.plot(*zip(*points, strict=True), "o-", label=layer, markersize=3)
      plotted = True
  ax.set_xlabel("step")
  ax.set_ylabel("angle(W, B) [degrees]")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  if plotted:
    ax.legend()
  else:
    ax.text(0.5, 0.5, "no layer has a feedback matrix\n(bp is 0 degrees by definition;\n"
            "dfa and softhebb have none)", ha="center", va="center", transform=ax.transAxes)
  figure.savefig(path, dpi=100)
