"""Few-shot read-outs of the sparse-rule study's label-free hidden layers
(biojax.studies.sparse_rule_label_free; docs/sparse_rule.md, section 5).

    python -m biojax.main --config=experiments/sparse_rule_label_free.py \
        --workdir=runs/sparse_rule   # after experiments/sparse_rule.py on the same workdir

experiments/sparse_rule.py's config (the same networks, data and few-shot subsets: pass the
same overrides as for that run) with the read-out's L2 weight ``l2``, fixed in advance, not
tuned on test data. Writes ``label_free_few_shot.json`` in the workdir.
"""

import ml_collections

from experiments import sparse_rule


def get_config() -> ml_collections.ConfigDict:
  config = sparse_rule.get_config()
  config.task = "sparse_rule_label_free"  # biojax.studies.sparse_rule_label_free.run
  config.l2 = 1e-3  # L2 weight of the linear read-out (biojax.eval.linear_probe)
  return config
