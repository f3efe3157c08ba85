"""Quickstart: a vectorised evolutionary search over NAS-Bench-201 cells and the learning rule
of every layer, on Fashion-MNIST, in a few minutes on two CPU cores.

    python -m biojax.main --config=experiments/quickstart.py --workdir=runs/quickstart

Regularised evolution (population 16, tournament 3, 8 children per generation, 9
generations: 72 candidates) over the NAS-Bench-201 space with a rule gene on every weight
layer, choosing among the eight rules of ``nb201.DEFAULT_RULES`` (every built-in rule but
``sparse``, which it leaves out to keep these results reproducible; see its comment in
biojax/nas/_rule_genes.py). Every candidate trains for a proxy budget of
60 steps of 64 images (12x12: the 28x28 images are centre-cropped to 24x24 and average-pooled
2x2, so that a candidate costs about 2 s on two cores) on the same batches from the same
initial state, and is scored on 2,000 held-out validation images. Then the baselines (the
best cell with each single rule, and with 8 random rule assignments) run in the same program
and budget, and the best genome is retrained for 1,200 steps of 64 and tested once.

Outputs in the workdir: report.json, history.jsonl, candidates.jsonl, fitness.png,
rule_frequency.png, accuracy_vs_params.png, checkpoints/ (docs/nas.md). Running the same
command again resumes an interrupted search. Every field can be overridden, e.g.
``--config.search.generations=20 --config.proxy.steps=100``.
"""

import ml_collections

from biojax import rules
from biojax.nas import nb201

placeholder = ml_collections.config_dict.placeholder


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "search"  # biojax.main runs biojax.nas.search.search
  config.seed = 0

  # Data (biojax.data.get_dataset; docs/data.md).
  config.dataset = "fashion_mnist"
  config.data_dir = placeholder(str)
  config.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"
  config.validation_size = 5000  # carved out of the training split; fitness comes from it
  config.limit_train = placeholder(int)
  config.augment = False
  config.image_crop = 24  # centre crop (None: none), then
  config.image_pool = 2  # average pooling: 28x28 -> 24x24 -> 12x12 (H, W divisible by 4)

  # The search space: NAS-Bench-201 cells, a rule gene on every weight layer.
  config.space = ml_collections.ConfigDict({
      "name": "nb201",
      "rules": nb201.DEFAULT_RULES,  # the alphabet of the edge rule genes
      "macro_rules": placeholder(tuple),  # stem / reduction / classifier; None: as `rules`
      "C": 8,  # channels of the first stage (NAS-Bench-201: 16)
      "N": 1,  # cells per stage (NAS-Bench-201: 5)
      "dfa": placeholder(bool),  # DFA matrices; None: when a gene can choose DFA
  })
  options = rules.RuleOptions().to_dict()  # {rule: {field: default}}
  del options["rules"]  # the space's rules
  config.rule_options = ml_collections.ConfigDict(options)

  # The search (biojax.nas.RegularizedEvolution or RandomSearch).
  config.search = ml_collections.ConfigDict({
      "algorithm": "evolution",  # evolution | random
      "population_size": 16,
      "tournament_size": 3,
      "num_children": 8,  # candidates per generation (one evaluator call)
      "generations": 9,
  })

  # The proxy budget of every candidate (biojax.nas.PopulationEvaluator).
  config.proxy = ml_collections.ConfigDict({
      "steps": 60,
      "batch_size": 64,
      "validation_examples": 2000,
      "eval_batch_size": 500,
      "optimizer": "adam",
      "learning_rate": 3e-3,
      "momentum": 0.0,
      "weight_decay": 0.0,
      "clip_norm": 0.0,
      "schedule": "constant",
      "warmup_steps": 0,
      "strategy": placeholder(str),  # vmap | map | chunked | sequential; None: per backend
      "chunk_size": 8,
      "compiler_options": {},
  })

  # Baselines on the best architecture, in the same program and budget.
  config.baselines = ml_collections.ConfigDict({
      "single_rule": True,  # each rule of the space on every layer
      "random_rules": 8,  # random rule assignments (source paper A's control)
  })

  # The final retrain of the best genome, tested once.
  config.retrain = ml_collections.ConfigDict({
      "steps": 1200,
      "batch_size": 64,
      "eval_batch_size": 1000,
      "optimizer": "adam",
      "learning_rate": 3e-3,
      "momentum": 0.0,
      "weight_decay": 0.0,
      "clip_norm": 0.0,
      "schedule": "cosine",
      "warmup_steps": 0,
      "C": placeholder(int),  # None: the search's C
      "N": placeholder(int),  # None: the search's N
  })

  config.keep_checkpoints = 2
  config.log_every = 250  # retrain steps between log lines
  return config
