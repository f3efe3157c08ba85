"""The ordered list of built-in rules. Their positions are their integer ids (the on-disk
format of checkpoints and genomes): append, never reorder."""

from biojax.rules._dfa import DFA
from biojax.rules._feedback import BP, BRSF, FA, FRSF, USF
from biojax.rules._kp import KP
from biojax.rules._registry import register
from biojax.rules._softhebb import SOFTHEBB
from biojax.rules._sparse import SPARSE

BUILTIN_RULES = (BP, FA, USF, BRSF, FRSF, KP, DFA, SOFTHEBB, SPARSE)

for _rule in BUILTIN_RULES:
  register(_rule)
