"""The tuning sweep of the sparse rule towards the floors of docs/sparse_rule.md (section 4).

    python -m biojax.main --config=experiments/sparse_rule_sweep.py --workdir=DIR \
        [--config.probe=True] [--config.train.seed=N] [--config.names="('preset','base')"]

Each variant of ``config.variants`` is ``{"start": "preset" | "earlier", "changes": {...}}``:
the preset ``config.preset``, for ``"earlier"`` with the preset before the sweep
(``config.earlier_settings``) merged in, then ``changes``
(:func:`biojax.studies.sparse_rule_ablation.merge_settings`). It is trained and measured as
an ablation variant (:func:`biojax.studies.sparse_rule_ablation.measure`; one JSON line each,
with the wall time; ``config.probe`` adds the hidden layer's linear-probe accuracy).
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from biojax.studies import sparse_rule_ablation as ablation

STARTS = ("preset", "earlier")


def variant_settings(config: ml_collections.ConfigDict, variant: Mapping) -> dict:
  """The merged settings of one entry of ``config.variants``."""
  start = variant["start"]
  if start not in STARTS:
    raise ValueError(f"Unknown start {start!r}. Valid starts: {', '.join(STARTS)}.")
  base = [config.earlier_settings] if start == "earlier" else []
  return ablation.merge_settings(config.preset, *base, variant["changes"])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Every variant of ``config.names``, in order (all of ``config.variants`` if empty); returns
  ``{"variants": {name: record}, "config"}`` (also ``workdir/report.json``)."""
  names = ablation.check_names(config.names, config.variants, "variant")
  return ablation.run_variants(config, workdir, {
      name: variant_settings(config, config.variants[name]) for name in names})
