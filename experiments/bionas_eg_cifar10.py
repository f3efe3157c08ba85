"""BioNAS-EG at the paper's scale on CIFAR-10: CMA-ES (evosax) over the (operation, rule)
supernet's architecture weights while its weights learn by their rules, then the derived
genotype retrained on DARTS's evaluation network.

    python -m biojax.main --config=experiments/bionas_eg_cifar10.py --workdir=runs/bionas_eg_c10

Settings of EG-NAS (Cai et al., AAAI 2024; caicaicheng/EG-NAS, train_search.py) where they
are its own, else of BioNAS-DARTS's paper config (experiments/bionas_darts_cifar10.py: data
halves, supernet C=16 with 8 cells, the 20 (operation, rule) candidates, weight optimizer,
retrain):

- 50 epochs, the first 15 warm-up; from then on, each epoch, CMA-ES with a population of 50
  samples architecture weights around softmax(alpha); fitness: cross-entropy on one
  validation batch of 128 plus 0.4 x the similarity term; alpha += 0.1 x mixing(best);
- EG-NAS trains with batch 256 and SGD lr 0.1 (cosine), weight decay 3e-4 and 7 operations
  without ``none`` on a PC-DARTS supernet; biojax keeps DARTS's batch 64, lr 0.025 and its
  supernet, so that the two BioNAS methods differ only in how alpha moves;
- generations: 3 ask/tell rounds per epoch (EG-NAS runs three fresh one-generation CMA-ES
  each epoch; biojax keeps one CMA-ES state through the search).

Too large for a CPU (tests/nas/test_bionas_configs.py lowers its full-size EG step and
dry-runs it shrunk on mock data).
"""

import ml_collections

from experiments import bionas_darts_cifar10, bionas_eg


def get_config() -> ml_collections.ConfigDict:
  config = bionas_darts_cifar10.get_config()
  config.task = "bionas_eg"
  s = config.search
  del s["order"], s["alpha_gradient"]
  s.alpha = ml_collections.ConfigDict({"init_scale": 1e-3})
  s.eg = bionas_eg.get_config().search.eg
  s.eg.update(population_size=50, generations=3, step_size=0.1, similarity_weight=0.4,
              warmup_epochs=15, std_init=0.0625, batch_size=128)
  # Ours: 10 samples' forward passes (128 images, C=16, 8 cells) at a time, not all 50, to
  # bound the population pass's activation memory (not measured on an accelerator).
  s.eg.chunk_size = 10
  return config
