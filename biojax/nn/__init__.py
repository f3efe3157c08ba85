"""Rule-aware layers, models and assignments."""

from biojax.nn._credit import credit, feedback_matrix, known_rule
from biojax.nn.assignment import (
    Assignment,
    check_layers,
    geometry_tree,
    make_assignment,
    random_assignment,
    single_rule_specs,
    stack,
    validate_assignment,
    weight_layers,
)
from biojax.nn.layers import ACTIVITY, Conv, ConvForward, Dense, dense_forward
from biojax.nn.models import (
    INITS,
    MLP,
    MODELS,
    BasicBlock,
    ConvNet,
    ResNet,
    get_model,
    resnet20,
    resnet56,
    signed_uniform,
)

__all__ = [
    "ACTIVITY", "INITS", "MLP", "MODELS", "Assignment", "BasicBlock", "Conv", "ConvForward",
    "ConvNet", "Dense",
    "ResNet", "check_layers", "credit", "dense_forward", "feedback_matrix", "geometry_tree",
    "get_model", "known_rule", "make_assignment", "random_assignment", "resnet20", "resnet56",
    "signed_uniform", "single_rule_specs", "stack",
    "validate_assignment", "weight_layers",
]
