"""The BPTT engine: exact gradients and training loops over unrolled sequences.

`bptt_gradients` returns the gradient of the loss with the weights as they are, for full
BPTT, truncated BPTT(k) or TBPTT(k1, k2) (see `bptt_keras.truncation`). `fit` trains with one
optimizer update per block of `k1` steps, carrying the state from block to block; `evaluate`
scores a model with the same loss definition (`bptt_keras.losses`).

    arguments.py   every check, into a frozen `FitArgs`, before anything is traced
    step.py        the compiled block step (`Engine`, `BlockSpec`); the one GradientTape
    multi_step.py  many updates in one compiled call, around the step
    epochs.py      the order of rows and updates in an epoch, and which updates share a call
    resume.py      training position, checkpoints, Ctrl-C
    gradients.py   `bptt_gradients`
    fit.py         `fit` and `evaluate`
"""

from bptt_keras.engine.fit import evaluate, fit
from bptt_keras.engine.gradients import bptt_gradients
from bptt_keras.engine.step import value_and_grad

__all__ = ["bptt_gradients", "evaluate", "fit", "value_and_grad"]
