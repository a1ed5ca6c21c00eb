"""The fast path: SimpleRNN, LSTM and GRU layers with a hand-derived BPTT backward pass.

Autodiff through `tf.while_loop` records every op of every step and replays ~20 small ops per
step backwards, each with its own dispatch cost; at the sizes RNNs are trained on a CPU that
overhead, not arithmetic, sets the step time. Here each layer is one `tf.custom_gradient`
function whose forward pass

    XW = x W + b                            one matmul for all steps (B, T, 4u or u)
    h_t = f(XW_t + h_(t-1) U)               the only per-step work (SimpleRNN)

and whose backward pass are the BPTT equations themselves,

    g_t   = dL/dh_t (from the outputs) + da_(t+1) U^T          the recurrence, per step
    da_t  = g_t * f'(a_t)
    dW = sum_t x_t^T da_t,  dU = sum_t h_(t-1)^T da_t,  db = sum_t da_t,  dx = DA W^T
                                                                (one matmul each, after it)

with the same equations for the LSTM's four gates (Hochreiter & Schmidhuber 1997; Keras gate
order i, f, c, o). The LSTM step is shaped for XLA on a CPU, where each element-wise pass
over a step's (B, 4u) gates costs a noticeable share of its matrix product: one
product [h, x_t, 1] [U; W; b] per step, all four gates from one `tanh` (sigmoid(z) =
tanh(z/2)/2 + 1/2, the 1/2 folded into the weights), and the forward pass stores per step
exactly what the backward recurrence multiplies by (the gates' slopes times their partners,
o (1 - tanh(c)^2) and f), so that a backward step is a few element-wise ops and one product;
dU, dW and db are then one product [h_(t-1), x_t, 1]^T dz over all steps. Gradients equal
the plain path's (`tests/test_fast.py`, float64 to 1e-10).

The GRU (`gru_layer`, Keras gate order z, r, h, either `reset_after`) has the same
structure: x W + b for all steps in one product, per step h U (two products without
`reset_after`, whose candidate multiplies r * h), and stored per step the three slopes the
backward recurrence multiplies by and the gates z and r (`common.gru_back_step`).

This path stores h and 6u further numbers (the rows above) of every step (GRU: 5u).
`recomputed_layer` is full BPTT with recomputation (Chen et al. 2016; Gruslys et al. 2016)
inside the same kind of custom gradient: it keeps the outputs and one state per segment of
K steps and rebuilds each segment's gates in the backward pass, so that its memory grows
far more slowly with T (benchmarks/RESULTS.md).

    common.py     layout helpers and the ONE backward step of each cell, used by both paths
    stored.py     the stored-activation path (`simple_rnn_layer`, `lstm_layer`, `gru_layer`)
    recompute.py  full BPTT with recomputation (`recomputed_layer`)
"""

from __future__ import annotations

import keras

from bptt_keras.fast.common import ACTIVATIONS
from bptt_keras.fast.recompute import fusable_head, recomputed_layer
from bptt_keras.fast.stored import gru_layer, lstm_layer, simple_rnn_layer

__all__ = [
    "fusable_head",
    "gru_layer",
    "lstm_layer",
    "recomputed_layer",
    "simple_rnn_layer",
    "supports",
    "supports_recompute",
]


def supports(layer) -> bool:
    """Whether `layer` has a hand-derived fast path (else the engine uses the plain loop)."""
    cell = getattr(layer, "cell", None)
    activation = getattr(getattr(cell, "activation", None), "__name__", None)
    if not getattr(cell, "use_bias", False) or activation not in ACTIVATIONS:
        return False
    if isinstance(layer, keras.layers.SimpleRNN):
        return True
    if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        return activation == "tanh" and cell.recurrent_activation.__name__ == "sigmoid"
    return False


def supports_recompute(layer) -> bool:
    """Whether `recomputed_layer` handles `layer` (every layer `supports` accepts)."""
    return supports(layer)
