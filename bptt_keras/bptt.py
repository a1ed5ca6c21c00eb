"""The BPTT engine's public names, where they have always been imported from.

The engine lives in `bptt_keras.engine` (see its docstring for the layout); the losses and
their denominator in `bptt_keras.losses`.
"""

from bptt_keras.engine import bptt_gradients, evaluate, fit, value_and_grad
from bptt_keras.losses import LOSSES, REDUCTIONS

__all__ = ["LOSSES", "REDUCTIONS", "bptt_gradients", "evaluate", "fit", "value_and_grad"]
