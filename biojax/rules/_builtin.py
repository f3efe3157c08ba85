"""Registers the built-in rules. The order fixes their integer ids: append, never reorder."""

from biojax.rules import _feedback, _softhebb, _sparse
from biojax.rules._registry import Rule, register

register(Rule("bp", "feedback", _feedback.bp_feedback, "Rumelhart, Hinton & Williams 1986",
              "back-propagation: B = W"))
register(Rule("fa", "feedback", _feedback.fa_feedback, "Lillicrap et al. 2016",
              "feedback alignment: fixed random B"))
register(Rule("usf", "feedback", _feedback.usf_feedback, "Xiao et al. 2018",
              "uniform sign-concordant: B = sign(W) sqrt(2/(fan_in+fan_out))"))
register(Rule("brsf", "feedback", _feedback.brsf_feedback, "Xiao et al. 2018",
              "batchwise random-magnitude sign-concordant: B = |R_t| sign(W)"))
register(Rule("frsf", "feedback", _feedback.frsf_feedback, "Xiao et al. 2018",
              "fixed random-magnitude sign-concordant: B = |R| sign(W)"))
register(Rule("kp", "feedback", _feedback.kp_feedback, "Akrout et al. 2019",
              "Kolen-Pollack: B learned with W's update plus decay, B -> W"))
register(Rule("dfa", "direct", None, "Nokland 2016",
              "direct feedback alignment: output error through fixed random B_l"))


def _softhebb_signal(u, state, options):
  del state
  return _softhebb.softhebb_postsynaptic(u, options.softhebb_temperature,
                                         options.softhebb_anti_hebbian)


def _softhebb_update(hebbian, w, u, y, options):
  delta = _softhebb.softhebb_delta_from_hebbian(hebbian, w, u, y)
  return _softhebb.softhebb_finish(delta, w, options.softhebb_normalize)


register(Rule("softhebb", "local", None, "Journe et al. 2023",
              "soft winner-take-all Hebbian plasticity, no feedback",
              local_signal=_softhebb_signal, local_update=_softhebb_update))


def _sparse_signal(u, state, options):
  threshold = 0.0 if state is None else state["threshold"]
  return _sparse.sparse_postsynaptic(u, threshold, options.sparse_temperature,
                                     options.sparse_competition)


def _sparse_update(hebbian, w, u, y, options):
  del options
  return _sparse.sparse_update(hebbian, w, u, y)


register(Rule("sparse", "local", None, "after Inoue, Rohrbein & Knoblauch 2026",
              "competitive Hebbian plasticity with homeostatic thresholds and elimination",
              local_signal=_sparse_signal, local_update=_sparse_update))
