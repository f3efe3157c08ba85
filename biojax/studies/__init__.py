"""Studies: experiments made of several trainings and evaluations.

Each module holds one study as a function ``run(config, workdir) -> report``, run by
``python -m biojax.main --config=experiments/<study>.py --workdir=DIR`` through the task table
of :mod:`biojax.main` (``config.task``; docs/pipeline.md, "Tasks"):

* :mod:`~biojax.studies.baselines`: every rule on the MLP and the ConvNet (docs/results.md);
* :mod:`~biojax.studies.sparse_rule`: the sparse rule against bp, fa, softhebb and eg, with
  biological metrics, robustness and few-shot accuracy (docs/sparse_rule.md, section 5);
* :mod:`~biojax.studies.sparse_rule_ablation`: its ingredients switched off one at a time
  (section 4), and :mod:`~biojax.studies.sparse_rule_sweep`: the tuning sweep (section 4);
* :mod:`~biojax.studies.sparse_rule_label_free`: a few-shot read-out of the trained networks'
  label-free hidden layers (section 5).

Studies train through :func:`biojax.pipeline.train_and_evaluate` or :func:`biojax.loop.fit`
and the builders; their settings (presets, variant tables) come from the config only. Nothing
in biojax imports this package but :mod:`biojax.main`.
"""
