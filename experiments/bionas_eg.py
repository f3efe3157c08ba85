"""BioNAS-EG on Fashion-MNIST, sized for two CPU cores: the supernet's weights learn by their
rules while CMA-ES (evosax) searches the architecture weights; then the derived genotype is
retrained and tested once.

    python -m biojax.main --config=experiments/bionas_eg.py --workdir=runs/bionas_eg

Source paper A's evolutionary method (EG-NAS, Cai et al. AAAI 2024; docs/bionas.md) at a
scale this machine can run, on BioNAS-DARTS's CPU supernet and data (experiments/
bionas_darts.py: the same 7 candidates, C=4, 3 cells, the same 120 weight steps of 64 images
and the same retrain). How it departs from the paper's CIFAR-10 search
(experiments/bionas_eg_cifar10.py):

- budget: 6 epochs of 20 weight steps, the first 2 warm-up (EG-NAS: 50 epochs over 25,000
  images, 15 warm-up), so that CMA-ES moves alpha 4 times;
- CMA-ES: a population of 16 for 2 generations per epoch (EG-NAS: 50, and three one-generation
  runs), fitness on one validation batch of 128 (EG-NAS: 128, half its batch size).

Outputs in the workdir: report.json, history.jsonl (with each epoch's CMA-ES figures under
"eg"), alpha.png, rule_share.png, losses.png, checkpoints/ (one per epoch, with the CMA-ES
state; the same command resumes an interrupted search).
"""

import ml_collections

from experiments import bionas_darts


def get_config() -> ml_collections.ConfigDict:
  config = bionas_darts.get_config()
  config.task = "bionas_eg"  # biojax.main runs biojax.nas.bionas_eg.search

  s = config.search
  s.epochs = 6
  s.steps_per_epoch = 20
  # DARTS's alpha settings do not apply: alpha moves by CMA-ES alone.
  del s["order"], s["alpha_gradient"]
  s.alpha = ml_collections.ConfigDict({"init_scale": 1e-3})
  s.eg = ml_collections.ConfigDict({
      "population_size": 16,
      "generations": 2,  # CMA-ES ask/tell rounds per epoch; the best sample of all moves alpha
      "step_size": 0.1,  # alpha += step_size * mixing(best sample)
      "similarity_weight": 0.4,  # 0: fitness is the cross-entropy alone
      "warmup_epochs": 2,
      # CMA-ES's initial step size around softmax(alpha). EG-NAS's schedule max(1/(epoch+1),
      # 0.02) at its first search epoch (15); its code samples with 1 (the epoch counter never
      # advances). CMA-ES adapts it from there.
      "std_init": 0.0625,
      "batch_size": 128,  # the validation batch each epoch's fitness is measured on
      # Samples per vmapped pass (None: the whole population in one; lower it when the
      # population's activations do not fit in memory). python -m biojax.bench.eg_population
      "chunk_size": ml_collections.config_dict.placeholder(int),
  })
  return config
