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
    keras_options.py  what `compile()` and Keras' `fit` options (clipping, validation_split,
                   initial_epoch, ...) become
    gradients.py   `bptt_gradients`
    evaluate.py    `evaluate`, and validation inside `fit`
    fit.py         `fit`
"""

from bptt_keras.engine.evaluate import evaluate
from bptt_keras.engine.fit import fit
from bptt_keras.engine.gradients import bptt_gradients
from bptt_keras.engine.step import value_and_grad

__all__ = ["bptt_gradients", "evaluate", "fit", "value_and_grad"]
