"""The NAS workloads of sections 2, 3, 5 and 6: a search space, its network and the search
settings (the layout of experiments/quickstart.py), on synthetic data of the settings' shapes
(cost does not depend on pixel values)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from biojax import nn as bnn
from biojax import rules
from biojax.bench.timing import KEY_IMPL, MNIST_SHAPE, NUM_CLASSES
from biojax.nas import evaluator as evaluator_lib
from biojax.nas import search as search_lib
from biojax.nas.layer_rules import LayerRuleSpace


@dataclasses.dataclass(frozen=True, eq=False)
class NasWorkload:
  """A search space, its network and the search settings (quickstart layout) it runs with."""

  name: str
  config: ml_collections.ConfigDict
  space: Any
  model: nn.Module
  image_shape: tuple[int, ...]  # one input image, after the config's crop and pooling

  def describe(self, config: ml_collections.ConfigDict) -> dict:
    p = config.proxy
    return {"network": self.name, "input_shape": list(self.image_shape),
            "rules": list(getattr(self.space, "rules", ())),
            "steps": p.steps, "batch_size": p.batch_size,
            "validation_examples": p.validation_examples,
            "eval_batch_size": p.eval_batch_size, "optimizer": p.optimizer,
            "compiler_options": dict(p.compiler_options)}



def nb201_workload(config: ml_collections.ConfigDict) -> NasWorkload:
  space = search_lib.build_space(config)
  model = search_lib.build_network(config, space, NUM_CLASSES)
  shape = search_lib.transform_images(np.zeros((1, *MNIST_SHAPE), np.float32),
                                      config.image_crop, config.image_pool).shape[1:]
  return NasWorkload(f"nb201 C={model.C} N={model.N}", config, space, model, tuple(shape))



def mlp_workload(config: ml_collections.ConfigDict, hidden: tuple[int, ...]) -> NasWorkload:
  space = LayerRuleSpace(tuple(config.space.rules), len(hidden) + 1)
  options = rules.RuleOptions.from_dict({**dict(config.rule_options), "rules": space.rule_names})
  model = bnn.MLP(NUM_CLASSES, hidden=hidden, options=options)
  name = "mlp " + "-".join(str(d) for d in (784, *hidden, NUM_CLASSES))
  return NasWorkload(name, config, space, model, MNIST_SHAPE)



def build_evaluator(workload: NasWorkload, config) -> evaluator_lib.PopulationEvaluator:
  # The search's own builder (cached on the settings: equal settings share one program).
  return search_lib.build_evaluator(config, workload.space, workload.model)



def proxy_data(workload: NasWorkload, config, seed: int = 0) -> tuple[dict, dict]:
  """Synthetic stacked proxy batches with the shapes biojax.nas.search.proxy_batches makes."""
  p, r = config.proxy, np.random.default_rng(seed)
  train = {"image": r.random((p.steps, p.batch_size, *workload.image_shape), np.float32),
           "label": r.integers(0, NUM_CLASSES, (p.steps, p.batch_size)).astype(np.int32)}
  examples = p.validation_examples or 1000
  batches = -(-examples // p.eval_batch_size)
  shape = (batches, p.eval_batch_size)
  mask = (np.arange(batches * p.eval_batch_size) < examples).astype(np.float32)
  validation = {"image": r.random((*shape, *workload.image_shape), np.float32),
                "label": r.integers(0, NUM_CLASSES, shape).astype(np.int32),
                "mask": mask.reshape(shape)}
  return jax.device_put(train), jax.device_put(validation)



def distinct_genomes(space, key: jax.Array, num: int) -> np.ndarray:
  genomes = np.unique(np.asarray(space.random_genomes(key, 4 * num)), axis=0)
  genomes = genomes[np.random.default_rng(0).permutation(len(genomes))][:num]
  if len(genomes) < num:
    raise ValueError(f"The space holds fewer than {num} distinct genomes.")
  return genomes



def evaluation_key() -> jax.Array:
  return jax.random.key(0, impl=KEY_IMPL)



def strategy_config(config, strategy: str, chunk_size: int) -> ml_collections.ConfigDict:
  """``config`` with the evaluator's strategy set (sections 5 and 6 share these programs)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.proxy.strategy = strategy
    config.proxy.chunk_size = chunk_size
  return config



def workload_config(config, **proxy) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for k, v in proxy.items():
      config.proxy[k] = v
  return config
