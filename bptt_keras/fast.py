"""The fast path: SimpleRNN and LSTM layers with a hand-derived BPTT backward pass.

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
order i, f, c, o). Gradients equal the plain path's (`tests/test_fast.py`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

_ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu}


def supports(layer) -> bool:
    """Whether `layer` has a hand-derived fast path (else the engine uses the plain loop)."""
    cell = getattr(layer, "cell", None)
    activation = getattr(getattr(cell, "activation", None), "__name__", None)
    if not getattr(cell, "use_bias", False) or activation not in _ACTIVATIONS:
        return False
    if isinstance(layer, keras.layers.SimpleRNN):
        return True
    if isinstance(layer, keras.layers.LSTM):
        return activation == "tanh" and cell.recurrent_activation.__name__ == "sigmoid"
    return False


def _time_major(x):
    return tf.transpose(x, [1, 0, 2])


def _captured(seq, h0, capture_at):
    """The state after `capture_at` steps: `h0` if 0, else `seq[capture_at - 1]` (time-major)."""
    index = tf.maximum(capture_at - 1, 0)
    return tf.where(capture_at > 0, tf.gather(seq, index), h0)


def simple_rnn_layer(layer, x, h0, capture_at):
    """Runs a SimpleRNN layer; returns `(outputs (B, T, u), final h, captured h)`."""
    cell = layer.cell
    activation = cell.activation.__name__
    act = _ACTIVATIONS[activation]
    return _simple_rnn(x, h0, *_read(cell), tf.cast(capture_at, tf.int32), act, activation)


def _read(cell):
    # Tensors read from the variables under the caller's tape, so gradients reach them.
    return [tf.convert_to_tensor(v) for v in (cell.kernel, cell.recurrent_kernel, cell.bias)]


def _zeros_for_none(grads, like):
    return [tf.zeros_like(t) if g is None else g for g, t in zip(grads, like, strict=True)]


def _simple_rnn(x, h0, kernel, recurrent, bias, capture_at, act, activation):
    @tf.custom_gradient
    def run(x, h0, kernel, recurrent, bias):
        xw = _time_major(tf.einsum("btf,fu->btu", x, kernel) + bias)  # (T, B, u)
        steps = tf.shape(xw)[0]
        hs = tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape)

        def body(t, h, hs):
            h = act(xw[t] + tf.matmul(h, recurrent))
            return t + 1, h, hs.write(t, h)

        _, final, hs = tf.while_loop(
            lambda t, *_: t < steps, body, (0, h0, hs), maximum_iterations=steps
        )
        seq = hs.stack()  # (T, B, u)
        captured = _captured(seq, h0, capture_at)

        out = _time_major(seq)

        def grad(d_out, d_final, d_captured):
            d_out, d_final, d_captured = _zeros_for_none(
                [d_out, d_final, d_captured], [out, final, captured]
            )
            d_seq = _time_major(d_out)
            das = tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape)

            def back(t, carry, das):
                # The final and the captured state's gradients join the carry at their step;
                # the slope f'(a_t) comes from h_t. Nothing of size (T, B, u) beyond the
                # stored outputs and the per-step deltas is materialised.
                g = d_seq[t] + carry
                g += tf.where(t == steps - 1, d_final, tf.zeros_like(d_final))
                g += tf.where(t == capture_at - 1, d_captured, tf.zeros_like(d_captured))
                h = seq[t]
                slope = 1.0 - tf.square(h) if activation == "tanh" else tf.cast(h > 0, h.dtype)
                da = g * slope
                return t - 1, tf.matmul(da, recurrent, transpose_b=True), das.write(t, da)

            _, d_h0, das = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, tf.zeros_like(h0), das),
                maximum_iterations=steps,
            )
            d_h0 += tf.where(capture_at == 0, d_captured, tf.zeros_like(d_captured))
            da = das.stack()  # (T, B, u)
            previous = tf.concat([h0[None], seq[:-1]], axis=0)
            d_kernel = tf.einsum("tbf,tbu->fu", _time_major(x), da)
            d_recurrent = tf.einsum("tbi,tbu->iu", previous, da)
            d_bias = tf.reduce_sum(da, axis=[0, 1])
            d_x = _time_major(tf.einsum("tbu,fu->tbf", da, kernel))
            return d_x, d_h0, d_kernel, d_recurrent, d_bias

        return (out, final, captured), grad

    return run(x, h0, kernel, recurrent, bias)


def lstm_layer(layer, x, h0, c0, capture_at):
    """Runs an LSTM layer; returns `(outputs, [h, c] final, [h, c] captured)`."""
    cell = layer.cell
    out, h_final, c_final, h_captured, c_captured = _lstm(
        x, h0, c0, *_read(cell), tf.cast(capture_at, tf.int32)
    )
    return out, [h_final, c_final], [h_captured, c_captured]


def _lstm(x, h0, c0, kernel, recurrent, bias, capture_at):
    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent, bias):
        xw = _time_major(tf.einsum("btf,fg->btg", x, kernel) + bias)  # (T, B, 4u)
        steps = tf.shape(xw)[0]
        shape = h0.shape
        hs = tf.TensorArray(x.dtype, size=steps, element_shape=shape)
        cs = tf.TensorArray(x.dtype, size=steps, element_shape=shape)
        gates = tf.TensorArray(x.dtype, size=steps, element_shape=xw.shape[1:])

        def body(t, h, c, hs, cs, gates):
            z = xw[t] + tf.matmul(h, recurrent)
            zi, zf, zg, zo = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
            c = f * c + i * g
            h = o * tf.tanh(c)
            return (
                t + 1,
                h,
                c,
                hs.write(t, h),
                cs.write(t, c),
                gates.write(t, tf.concat([i, f, g, o], axis=-1)),
            )

        _, h_final, c_final, hs, cs, gates = tf.while_loop(
            lambda t, *_: t < steps, body, (0, h0, c0, hs, cs, gates), maximum_iterations=steps
        )
        h_seq, c_seq, gate_seq = hs.stack(), cs.stack(), gates.stack()
        h_captured, c_captured = _captured(h_seq, h0, capture_at), _captured(c_seq, c0, capture_at)
        outputs = (_time_major(h_seq), h_final, c_final, h_captured, c_captured)

        def grad(*d_outputs):
            d_out, d_h_final, d_c_final, d_h_captured, d_c_captured = _zeros_for_none(
                list(d_outputs), list(outputs)
            )
            d_h_seq = _time_major(d_out)
            dzs = tf.TensorArray(x.dtype, size=steps, element_shape=xw.shape[1:])

            def back(t, dh_carry, dc_carry, dzs):
                # Final/captured gradients join the carries at their step, and c_(t-1) is
                # read from the stored states: no extra (T, B, u) tensors in the backward pass.
                at_end, at_capture = t == steps - 1, t == capture_at - 1
                dh = d_h_seq[t] + dh_carry
                dh += tf.where(at_end, d_h_final, tf.zeros_like(d_h_final))
                dh += tf.where(at_capture, d_h_captured, tf.zeros_like(d_h_captured))
                dc_in = dc_carry + tf.where(at_end, d_c_final, tf.zeros_like(d_c_final))
                dc_in += tf.where(at_capture, d_c_captured, tf.zeros_like(d_c_captured))
                i, f, g, o = tf.split(gate_seq[t], 4, axis=-1)
                c_prev = tf.where(t > 0, c_seq[tf.maximum(t - 1, 0)], c0)
                tc = tf.tanh(c_seq[t])
                dc = dc_in + dh * o * (1.0 - tf.square(tc))
                dz = tf.concat(
                    [
                        dc * g * i * (1.0 - i),
                        dc * c_prev * f * (1.0 - f),
                        dc * i * (1.0 - tf.square(g)),
                        dh * tc * o * (1.0 - o),
                    ],
                    axis=-1,
                )
                return (
                    t - 1,
                    tf.matmul(dz, recurrent, transpose_b=True),
                    dc * f,
                    dzs.write(t, dz),
                )

            _, d_h0, d_c0, dzs = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, tf.zeros_like(h0), tf.zeros_like(c0), dzs),
                maximum_iterations=steps,
            )
            zero_capture = capture_at == 0
            d_h0 += tf.where(zero_capture, d_h_captured, tf.zeros_like(d_h_captured))
            d_c0 += tf.where(zero_capture, d_c_captured, tf.zeros_like(d_c_captured))
            dz = dzs.stack()  # (T, B, 4u)
            h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
            d_kernel = tf.einsum("tbf,tbg->fg", _time_major(x), dz)
            d_recurrent = tf.einsum("tbu,tbg->ug", h_prev, dz)
            d_bias = tf.reduce_sum(dz, axis=[0, 1])
            d_x = _time_major(tf.einsum("tbg,fg->tbf", dz, kernel))
            return d_x, d_h0, d_c0, d_kernel, d_recurrent, d_bias

        return outputs, grad

    return run(x, h0, c0, kernel, recurrent, bias)
