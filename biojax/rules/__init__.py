"""Learning rules as small pure functions, each one :class:`Rule` record in an ordered registry.

Feedback-path rules (``bp fa usf brsf frsf kp``) give the matrix ``B`` that carries error to
the layer below; ``dfa`` sends the output error directly; ``softhebb`` and ``sparse`` are
local. The step geometry ``eg`` (exponentiated gradient) combines with any of them. A rule,
stateful or not, is one module that builds a :class:`Rule` and calls :func:`register`. See
docs/rules.md and docs/sparse_rule.md.
"""

from biojax.rules._builtin import BUILTIN_RULES
from biojax.rules._dfa import direct_feedback, init_direct_feedback
from biojax.rules._eg import (
    exponentiated_gradient,
    exponentiated_update,
    multiplicative,
    multiplicative_step,
)
from biojax.rules._feedback import (
    bp_feedback,
    brsf_feedback,
    fa_feedback,
    fans,
    frsf_feedback,
    glorot_std,
    init_feedback_state,
    random_feedback,
    usf_feedback,
)
from biojax.rules._kp import KPOptions, kp_feedback, kp_feedback_update
from biojax.rules._options import RuleOptions
from biojax.rules._registry import (
    CREDITS,
    GEOMETRIES,
    LayerShapes,
    NoOptions,
    Rule,
    StateVariable,
    check_geometry_id,
    check_rule_id,
    describe_ids,
    exact_feedback,
    format_rule_spec,
    geometry_id,
    get_rule,
    ids_from_names,
    parse_rule_spec,
    register,
    rule_id,
    rule_names,
    rules,
    state_variables,
    unregister,
)
from biojax.rules._softhebb import (
    SoftHebbOptions,
    dense_forward,
    softhebb_delta,
    softhebb_postsynaptic,
    softhebb_rate,
    softhebb_update,
)
from biojax.rules._sparse import (
    SparseOptions,
    eliminate_weak_synapses,
    firing_rate,
    homeostatic_threshold,
    sparse_delta,
    sparse_postsynaptic,
    sparse_update,
)

__all__ = [
    "BUILTIN_RULES", "CREDITS", "GEOMETRIES", "KPOptions", "LayerShapes", "NoOptions", "Rule",
    "RuleOptions", "SoftHebbOptions", "SparseOptions", "StateVariable", "bp_feedback",
    "brsf_feedback", "check_geometry_id", "check_rule_id", "dense_forward", "describe_ids",
    "direct_feedback", "eliminate_weak_synapses", "exact_feedback", "exponentiated_gradient",
    "exponentiated_update", "fa_feedback", "fans", "firing_rate", "format_rule_spec",
    "frsf_feedback", "geometry_id", "get_rule", "glorot_std", "homeostatic_threshold",
    "ids_from_names", "init_direct_feedback", "init_feedback_state", "kp_feedback",
    "kp_feedback_update", "multiplicative", "multiplicative_step", "parse_rule_spec",
    "random_feedback", "register", "rule_id", "rule_names", "rules", "softhebb_delta",
    "softhebb_postsynaptic", "softhebb_rate", "softhebb_update", "sparse_delta",
    "sparse_postsynaptic", "sparse_update", "state_variables", "unregister", "usf_feedback",
]
