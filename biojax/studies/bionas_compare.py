"""BioNAS-DARTS against BioNAS-EG on the same supernet, data and budget, over seeds.

    python -m biojax.main --config=experiments/bionas_compare.py --workdir=DIR

For each method of ``config.methods`` (``"darts"``, ``"eg"``) and each seed of
``config.seeds``, the method's config (``config.configs[method]``, an experiments/ module
name, e.g. ``bionas_darts``) with that seed is searched and its genotype retrained and tested
once, in ``DIR/<method>/seed<seed>`` (each run is resumable on its own; a finished one is read
from its report.json). All runs share one process, so each method's programs compile once.

report.json holds, per method, the mean and sample standard deviation over seeds of the
retrained genotype's test accuracy, the search's wall seconds and the derived network's bp
weight share; and the paired difference of test accuracy (second method minus first, same
seeds) with a t confidence interval, and a one-line verdict: which method wins, or "within
the seed spread" when the interval holds 0. comparison.md is the same as a table.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping

import ml_collections
import numpy as np
from absl import logging
from scipy import stats

from biojax.metrics import to_json
from biojax.nas import bionas, bionas_eg

SEARCHES: dict[str, Callable[[ml_collections.ConfigDict, str], dict]] = {
    "darts": bionas.search, "eg": bionas_eg.search}
CHECKS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    "darts": bionas.check_config, "eg": bionas_eg.check_config}
REPORT_FILE = "report.json"
TABLE_FILE = "comparison.md"


def method_config(config: ml_collections.ConfigDict, method: str, seed: int
                  ) -> ml_collections.ConfigDict:
  """``config.configs[method]``'s ``get_config()`` with ``config.overrides`` (nested, merged
  into every method's config) and the seed."""
  module = importlib.import_module(f"experiments.{config.configs[method]}")
  out = module.get_config()
  out.update(config.overrides)
  out.seed = int(seed)
  return out


def check_config(config: ml_collections.ConfigDict) -> None:
  unknown = [m for m in config.methods if m not in SEARCHES]
  if unknown or len(config.methods) < 1:
    raise ValueError(f"Unknown method(s) {unknown} in config.methods. Valid methods: "
                     f"{', '.join(SEARCHES)}.")
  missing = [m for m in config.methods if m not in config.configs]
  if missing:
    raise ValueError(f"config.configs has no experiments/ module for {missing}.")
  if len(set(config.seeds)) != len(config.seeds) or not config.seeds:
    raise ValueError(f"config.seeds={tuple(config.seeds)} must be distinct and not empty.")
  for method in config.methods:  # a bad override fails here, before any search starts
    CHECKS[method](method_config(config, method, config.seeds[0]))


def summary(values: list[float]) -> dict:
  """Mean and sample standard deviation (ddof=1; None for one value)."""
  x = np.asarray(values, np.float64)
  return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else None,
          "n": len(x), "values": x.tolist()}


def paired_difference(a: list[float], b: list[float], confidence: float = 0.95) -> dict:
  """``b - a`` over paired seeds: mean, and its t confidence interval (None for one pair)."""
  d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
  out = {"mean": float(d.mean()), "values": d.tolist(), "confidence": confidence,
         "interval": None}
  if len(d) > 1:
    half = stats.t.ppf((1 + confidence) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    out["interval"] = [float(d.mean() - half), float(d.mean() + half)]
  return out


def verdict(first: str, second: str, difference: Mapping) -> str:
  interval = difference["interval"]
  if interval is None:
    return (f"{second} minus {first}: {difference['mean']:+.4f} test accuracy from one seed; "
            "no interval.")
  lo, hi = interval
  if lo <= 0 <= hi:
    return (f"Within the seed spread: {second} minus {first} = {difference['mean']:+.4f} "
            f"test accuracy, {difference['confidence']:.0%} interval [{lo:+.4f}, {hi:+.4f}] "
            "holds 0.")
  winner, loser = (second, first) if difference["mean"] > 0 else (first, second)
  return (f"{winner} beats {loser} by {abs(difference['mean']):.4f} test accuracy "
          f"({difference['confidence']:.0%} interval of {second} minus {first}: "
          f"[{lo:+.4f}, {hi:+.4f}]).")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Every (method, seed) search and retrain, then the comparison (also
  ``workdir/report.json`` and ``workdir/comparison.md``)."""
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  runs: dict[str, dict[int, dict]] = {}
  for method in config.methods:
    runs[method] = {}
    for seed in config.seeds:
      directory = os.path.join(workdir, method, f"seed{seed}")
      path = os.path.join(directory, bionas.REPORT_FILE)
      if os.path.exists(path):
        with open(path) as f:
          report = json.load(f)
        logging.info("%s seed %d: finished already (%s).", method, seed, path)
      else:
        report = SEARCHES[method](method_config(config, method, seed), directory)
        if report.get("interrupted"):
          return report
      runs[method][seed] = report
  out = {"config": to_json(config), "methods": {}}
  for method, reports in runs.items():
    rows = [reports[s] for s in config.seeds]
    out["methods"][method] = {
        "test_accuracy": summary([r["test_accuracy"] for r in rows]),
        "search_seconds": summary([r["search_seconds"] for r in rows]),
        "wall_seconds": summary([r["wall_seconds"] for r in rows]),
        "bp_weight_share_derived": summary([r["bp_weight_share"]["derived"] for r in rows]),
        "supernet_validation_accuracy": summary([r["validation_accuracy"] for r in rows]),
        "genotypes": {str(s): reports[s]["genotype"] for s in config.seeds},
        "compiles": {str(s): reports[s]["compiles"] for s in config.seeds},
    }
  if len(config.methods) >= 2:
    first, second = config.methods[:2]
    difference = paired_difference([runs[first][s]["test_accuracy"] for s in config.seeds],
                                   [runs[second][s]["test_accuracy"] for s in config.seeds])
    out["difference"] = {"of": f"{second} - {first}", **difference}
    out["verdict"] = verdict(first, second, difference)
  if "verdict" in out:
    logging.info("%s", out["verdict"])
  with open(os.path.join(workdir, REPORT_FILE), "w") as f:
    json.dump(out, f, indent=2)
  with open(os.path.join(workdir, TABLE_FILE), "w") as f:
    f.write(table(out))
  return out


def _cell(s: Mapping, digits: int = 4) -> str:
  if s["std"] is None:
    return f"{s['mean']:.{digits}f}"
  return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def table(out: Mapping) -> str:
  """The comparison as a Markdown table (mean ± std over seeds)."""
  lines = ["| method | seeds | test accuracy | search s | wall s | bp share (derived) |",
           "|---|---|---|---|---|---|"]
  for method, m in out["methods"].items():
    lines.append(f"| {method} | {m['test_accuracy']['n']} | {_cell(m['test_accuracy'])} | "
                 f"{_cell(m['search_seconds'], 0)} | {_cell(m['wall_seconds'], 0)} | "
                 f"{_cell(m['bp_weight_share_derived'], 3)} |")
  if "verdict" in out:
    lines += ["", out["verdict"]]
  return "\n".join(lines) + "\n"
