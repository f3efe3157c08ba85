"""biojax.builders: config checks, rule specs, the model, and the one optimizer builder
(its optax chain against a NumPy transcription of the update equations)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from biojax import builders, rules
from experiments import train


def train_config() -> ml_collections.ConfigDict:
  return train.get_config()


@pytest.mark.parametrize("rule, expected", [
    ("fa", "fa"),
    ("usf+eg", "usf+eg"),
    ("('fa','bp','bp')", ["fa", "bp", "bp"]),
    ("['dfa', 'kp']", ["dfa", "kp"]),
    ("fa, bp ,bp", ["fa", "bp", "bp"]),
    (("fa", "bp"), ["fa", "bp"]),
    ("{'classifier': 'bp', 'dense_0': 'fa'}", {"classifier": "bp", "dense_0": "fa"}),
])
def test_parse_rule(rule, expected):
  assert builders.parse_rule(rule) == expected


def test_parse_rule_rejects_what_is_not_a_spec():
  with pytest.raises(ValueError, match="not a valid list"):
    builders.parse_rule("('fa', ")
  with pytest.raises(ValueError, match="must be a rule spec"):
    builders.parse_rule(3)


def test_check_config_names_the_field():
  builders.check_config(train_config())  # the defaults are valid
  config = train_config()
  del config["task"]  # optional: what biojax.main runs
  builders.check_config(config)
  config = train_config()
  config.lerning_rate = 0.1
  with pytest.raises(ValueError, match="'lerning_rate' \\(did you mean 'learning_rate'\\?\\)"):
    builders.check_config(config)
  config = train_config()
  del config["log_every"]
  with pytest.raises(ValueError, match="missing: log_every"):
    builders.check_config(config)
  for field, value, message in (("batch_size", 0, "positive integer"),
                                ("keep_checkpoints", 1, ">= 2"),
                                ("task", "search", "a training config has task 'train'")):
    config = train_config()
    config[field] = value
    with pytest.raises(ValueError, match=message):
      builders.check_config(config)


def test_build_model_takes_its_kwargs_as_hashable_values():
  config = train_config()
  config.model_kwargs.mlp.hidden = [7, 5]  # a list, as from a JSON file
  model = builders.build_model(config, 3)
  assert model.hidden == (7, 5) and model.num_classes == 3
  hash(model)  # the compiled programs are cached by model
  assert builders.build_rule_options(config) == rules.RuleOptions()  # the config's defaults
  config.model_kwargs.mlp.widths = (1,)
  with pytest.raises(ValueError, match="does not fit model 'mlp'"):
    builders.build_model(config, 3)


# ------------------------------------------------------------------------------- optimizer

GRADS = [{"a": np.random.default_rng(k).normal(size=(3, 2)).astype(np.float32),
          "b": np.random.default_rng(k + 10).normal(size=(4,)).astype(np.float32) * 3}
         for k in range(4)]
PARAMS = {"a": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
          "b": np.arange(1, 5, dtype=np.float32)}


def section(**fields) -> ml_collections.ConfigDict:
  base = dict(optimizer="sgd", learning_rate=0.1, schedule="constant", num_steps=10,
              warmup_steps=0, momentum=0.0, weight_decay=0.0, clip_norm=0.0)
  return ml_collections.ConfigDict({**base, **fields})


def run_optax(cfg, **kwargs) -> list[dict]:
  tx, _ = builders.build_optimizer(cfg, **kwargs)
  params = jax.tree.map(jnp.asarray, PARAMS)
  state, out = tx.init(params), []
  geometry = jax.tree.map(lambda _: jnp.int32(0), params)  # additive on every leaf
  for grads in GRADS:
    updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, params,
                               geometry=geometry)
    params = jax.tree.map(jnp.add, params, updates)
    out.append(jax.tree.map(np.asarray, params))
  return out


def warmup_cosine(lr, warmup, total, t):
  if t < warmup:
    return lr * t / warmup
  return lr * 0.5 * (1 + math.cos(math.pi * min(t - warmup, total - warmup) / (total - warmup)))


def run_numpy(optimizer, lr_at, momentum=0.0, weight_decay=0.0, clip_norm=0.0):
  """The chain [clip] -> [decay] -> sgd/adam/adamw, written out in float64."""
  p = {k: v.astype(np.float64) for k, v in PARAMS.items()}
  trace = {k: np.zeros_like(v) for k, v in p.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v2 = {k: np.zeros_like(v) for k, v in p.items()}
  out = []
  for t, grads in enumerate(GRADS):
    g = {k: x.astype(np.float64) for k, x in grads.items()}
    if clip_norm:
      norm = math.sqrt(sum(float(np.sum(x ** 2)) for x in g.values()))
      if norm >= clip_norm:
        g = {k: x * clip_norm / norm for k, x in g.items()}
    if weight_decay and optimizer != "adamw":
      g = {k: x + weight_decay * p[k] for k, x in g.items()}
    for k in p:
      if optimizer == "sgd":
        trace[k] = g[k] + momentum * trace[k]
        step = trace[k]
      else:
        m[k] = 0.9 * m[k] + 0.1 * g[k]
        v2[k] = 0.999 * v2[k] + 0.001 * g[k] ** 2
        step = (m[k] / (1 - 0.9 ** (t + 1))) / (np.sqrt(v2[k] / (1 - 0.999 ** (t + 1))) + 1e-8)
        if optimizer == "adamw":
          step = step + weight_decay * p[k]
      p[k] = p[k] - lr_at(t) * step
    out.append({k: x.copy() for k, x in p.items()})
  return out


@pytest.mark.parametrize("fields, reference", [
    (dict(optimizer="sgd", momentum=0.9, weight_decay=1e-2, clip_norm=1.5,
          schedule="warmup_cosine", warmup_steps=2, num_steps=5),
     lambda: run_numpy("sgd", lambda t: warmup_cosine(0.1, 2, 5, t), momentum=0.9,
                       weight_decay=1e-2, clip_norm=1.5)),
    (dict(optimizer="adam", schedule="cosine", num_steps=6),
     lambda: run_numpy("adam", lambda t: warmup_cosine(0.1, 0, 6, t))),
    (dict(optimizer="adamw", weight_decay=0.1),
     lambda: run_numpy("adamw", lambda t: 0.1, weight_decay=0.1)),
])
def test_build_optimizer_follows_the_update_equations(fields, reference):
  for actual, expected in zip(run_optax(section(**fields)), reference(), strict=True):
    for name in PARAMS:
      np.testing.assert_allclose(actual[name], expected[name], rtol=2e-5, atol=1e-6)


def test_the_schedule_spans_the_section_steps_or_total_steps():
  warm = dict(schedule="warmup_cosine", warmup_steps=2)
  _, schedule = builders.build_optimizer(section(num_steps=8, **warm))
  expected = [warmup_cosine(0.1, 2, 8, t) for t in range(10)]
  np.testing.assert_allclose([float(schedule(t)) for t in range(10)], expected, atol=1e-7)
  # A NAS section names its length `steps`; total_steps overrides either.
  nas = section(**warm)
  del nas["num_steps"]
  nas.steps = 8
  _, schedule = builders.build_optimizer(nas)
  np.testing.assert_allclose([float(schedule(t)) for t in range(10)], expected, atol=1e-7)
  _, schedule = builders.build_optimizer(nas, total_steps=4)
  np.testing.assert_allclose([float(schedule(t)) for t in range(6)],
                             [warmup_cosine(0.1, 2, 4, t) for t in range(6)], atol=1e-7)


def test_optimizer_settings_are_hashable_and_default_the_optional_fields():
  minimal = ml_collections.ConfigDict({"optimizer": "adam", "learning_rate": 1})
  settings = builders.optimizer_settings(minimal)
  assert settings == builders.OptimizerSettings("adam", 1.0, "constant", 0, 0, 0.0, 0.0, 0.0)
  assert builders.optimizer_settings(section()) == builders.optimizer_settings(section())
  assert len({builders.optimizer_settings(section()),
              builders.optimizer_settings(section(learning_rate=0.2))}) == 2
  # Settings build the same optimizer as the section they came from.
  cfg = section(optimizer="sgd", momentum=0.9, clip_norm=1.5, weight_decay=1e-2)
  for a, b in zip(run_optax(cfg), run_optax(builders.optimizer_settings(cfg)), strict=True):
    for name in PARAMS:
      np.testing.assert_array_equal(a[name], b[name])
  with pytest.raises(ValueError, match="Valid optimizers"):
    builders.build_optimizer(section(optimizer="lion"))
