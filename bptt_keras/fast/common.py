"""Pieces both fast paths share: layout, weights read under the tape, and the ONE backward
step of each cell's BPTT recurrence.

The stored-activation path (`stored`) and the recompute path (`recompute`) differ only in
where a step's slopes come from (kept from the forward pass, or rebuilt from the stored
outputs); the recurrence that turns dL/dh into the pre-activation gradient is the same
function for both (`simple_rnn_back_step`, `lstm_back_step`).
"""

from __future__ import annotations

import tensorflow as tf

ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu}


def time_major(x):
    return tf.transpose(x, [1, 0, 2])


def captured_state(seq, h0, capture_at):
    """The state after `capture_at` steps: `h0` if 0, else `seq[capture_at - 1]` (time-major)."""
    index = tf.maximum(capture_at - 1, 0)
    return tf.where(capture_at > 0, tf.gather(seq, index), h0)


def read_weights(cell):
    # Tensors read from the variables under the caller's tape, so gradients reach them.
    return [tf.convert_to_tensor(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias)]


def zeros_for_none(grads, like):
    return [tf.zeros_like(t) if g is None else g for g, t in zip(grads, like, strict=True)]


def transposed(recurrent):
    """U^T, materialised once before a backward loop.

    Inside the loop `dz @ U^T` as `matmul(dz, U^T)` runs about 1.3x faster under XLA on a CPU
    than `matmul(dz, U, transpose_b=True)` (B = 32, 4u = 1024, u = 256: 155 vs 118 GFLOP/s,
    benchmarks/RESULTS.md), and XLA does not hoist the transpose out of the loop itself.
    """
    return tf.transpose(recurrent)


def simple_rnn_back_step(dh, slope, recurrent_t):
    """One step of a SimpleRNN's backward recurrence.

    Args:
        dh: `(B, u)` total dL/dh_t: from the step's output plus what step t + 1 passed back.
        slope: `(B, u)` f'(a_t) (from h_t: `1 - h_t^2` for tanh, `h_t > 0` for relu).
        recurrent_t: `(u, u)` the recurrent kernel's transpose U^T (see `transposed`).

    Returns:
        `(dL/dh_(t-1) through the recurrence (B, u), dL/da_t (B, u))`.
    """
    da = dh * slope
    return tf.matmul(da, recurrent_t), da


def lstm_back_step(dh, dc, to_c, f, slopes, recurrent_t):
    """One step of an LSTM's backward recurrence (Keras gate order i, f, c, o).

    Args:
        dh: `(B, u)` total dL/dh_t (output gradient plus the carry from step t + 1).
        dc: `(B, u)` dL/dc_t carried from step t + 1.
        to_c: `(B, u)` dh_t/dc_t = o_t (1 - tanh(c_t)^2).
        f: `(B, u)` the forget gate f_t (dc_t/dc_(t-1)).
        slopes: `(B, 4u)` each gate's slope times what it multiplies:
            [g i', c_(t-1) f', i g', tanh(c_t) o'] (primes: derivatives w.r.t. the
            pre-activations z).
        recurrent_t: `(4u, u)` the recurrent kernel's transpose U^T (see `transposed`).

    Returns:
        `(dL/dh_(t-1) (B, u), dL/dc_(t-1) (B, u), dL/dz_t (B, 4u))`.
    """
    dc = dc + dh * to_c
    dz = tf.concat([dc, dc, dc, dh], -1) * slopes
    return tf.matmul(dz, recurrent_t), dc * f, dz


def gru_back_step(dh, rows, z, r, recurrent_t, *, reset_after: bool):
    """One step of a GRU's backward recurrence (Keras gate order z, r, h;
    h_t = z h_(t-1) + (1 - z) n, n = tanh(x W_h + b_h + r * (h_(t-1) U_h + b'_h)) with
    `reset_after`, else n = tanh(x W_h + b_h + (r * h_(t-1)) U_h)).

    Args:
        dh: `(B, u)` total dL/dh_t (output gradient plus the carry from step t + 1).
        rows: `(B, 3u)` [(h_(t-1) - n) z', (1 - z) n', c] stored by the forward pass, primes
            meaning derivatives w.r.t. the pre-activations; `c` is the reset gate's slope
            times what it multiplies: (h_(t-1) U_h + b'_h) r' with `reset_after`, else
            h_(t-1) r' (elementwise).
        z, r: `(B, u)` the update and reset gates.
        recurrent_t: `(3u, u)` U^T (see `transposed`).
        reset_after: Keras' `reset_after` (True by default in Keras 3).

    Returns:
        `(dL/dh_(t-1) (B, u), dL/d(x W + b) (B, 3u))`: the second is also the gradient of
        the recurrent pre-activations, except its candidate block, which is multiplied by r
        (`reset_after`) or belongs to (r * h_(t-1)) U_h (see `gru_layer`).
    """
    to_z, to_n, to_r = tf.split(rows, 3, axis=-1)
    da_z, da_n = dh * to_z, dh * to_n
    if reset_after:
        da_r = da_n * to_r
        d_rec = tf.concat([da_z, da_r, da_n * r], -1)  # dL/d(h U + b')
        return dh * z + tf.matmul(d_rec, recurrent_t), tf.concat([da_z, da_r, da_n], -1)
    units = dh.shape[-1]
    d_rh = tf.matmul(da_n, recurrent_t[2 * units :])  # dL/d(r * h_(t-1))
    da_r = d_rh * to_r
    d_zr = tf.concat([da_z, da_r], -1)
    d_prev = dh * z + d_rh * r + tf.matmul(d_zr, recurrent_t[: 2 * units])
    return d_prev, tf.concat([d_zr, da_n], -1)
