"""biojax: biologically inspired learning rules, rule-aware networks and rule search in JAX."""

from biojax import diagnostics, nn, rules
from biojax.learning import (
    cross_entropy,
    learning_signal,
    structural_plasticity,
    update_rule_state,
)
from biojax.train import (
    TrainState,
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
)

__version__ = "0.1.0"

__all__ = [
    "TrainState", "create_train_state", "cross_entropy", "diagnostics", "learning_signal",
    "make_eval_step", "make_optimizer", "make_schedule", "make_train_step", "nn", "rules",
    "structural_plasticity", "update_rule_state",
]
