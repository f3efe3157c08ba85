"""The evaluation suite: biological metrics, adversarial robustness and few-shot learning.

Usable on any model and any rule (docs/eval.md):

* :mod:`biojax.eval.biometrics`: synapse sparsity, activity sparsity (Treves-Rolls), lognormal
  fit of weight magnitudes, Dale's-law adherence, receptive-field and weight-histogram plots;
* :mod:`biojax.eval.robustness`: FGSM and PGD with the true input gradient, the black-box
  Square attack, a transfer attack from a surrogate, accuracy-vs-epsilon curves;
* :mod:`biojax.eval.fewshot`: training on ``k`` examples per class over seeds;
* :mod:`biojax.eval.probe`: a linear probe (the best regularised softmax read-out of fixed
  features), which separates feature quality from how well a classifier learned to read them.
"""

from biojax.eval.biometrics import (
    activity_sparsity,
    dale_adherence,
    first_layer_kernel,
    hidden_activations,
    kernels,
    lognormal_fit,
    plot_receptive_fields,
    plot_weight_histograms,
    synapse_sparsity,
)
from biojax.eval.fewshot import DEFAULT_SHOTS, few_shot, few_shot_subset, plot_few_shot
from biojax.eval.probe import linear_probe, probe_objective
from biojax.eval.robustness import (
    PIXELS,
    InputRange,
    TrueForward,
    attack_loss,
    default_attacks,
    fgsm,
    pgd,
    plot_robustness,
    robustness_curves,
    square_attack,
    transfer_attack,
)

__all__ = [
    "DEFAULT_SHOTS", "PIXELS", "InputRange", "TrueForward", "activity_sparsity", "attack_loss",
    "dale_adherence", "default_attacks", "few_shot", "few_shot_subset", "fgsm",
    "first_layer_kernel", "hidden_activations", "kernels", "linear_probe", "lognormal_fit", "pgd",
    "plot_few_shot", "plot_receptive_fields", "plot_robustness", "plot_weight_histograms",
    "probe_objective",
    "robustness_curves", "square_attack", "synapse_sparsity", "transfer_attack",
]
