"""The stored-activation fast path: SimpleRNN, LSTM and GRU layers whose forward pass keeps, per
step, exactly what the backward recurrence multiplies by (see `bptt_keras.fast`)."""

from __future__ import annotations

import tensorflow as tf

from bptt_keras.fast.common import (
    ACTIVATIONS,
    captured_state,
    gru_back_step,
    lstm_back_step,
    read_weights,
    simple_rnn_back_step,
    time_major,
    transposed,
    zeros_for_none,
)


def simple_rnn_layer(layer, x, h0, capture_at):
    """Runs a SimpleRNN layer; returns `(outputs (B, T, u), final h, captured h)`."""
    cell = layer.cell
    activation = cell.activation.__name__
    act = ACTIVATIONS[activation]
    return _simple_rnn(x, h0, *read_weights(cell), tf.cast(capture_at, tf.int32), act, activation)


def _simple_rnn(x, h0, kernel, recurrent, bias, capture_at, act, activation):
    @tf.custom_gradient
    def run(x, h0, kernel, recurrent, bias):
        xw = time_major(tf.einsum("btf,fu->btu", x, kernel) + bias)  # (T, B, u)
        steps = tf.shape(xw)[0]
        hs = tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape)

        def body(t, h, hs):
            h = act(xw[t] + tf.matmul(h, recurrent))
            return t + 1, h, hs.write(t, h)

        _, final, hs = tf.while_loop(
            lambda t, *_: t < steps, body, (0, h0, hs), maximum_iterations=steps
        )
        seq = hs.stack()  # (T, B, u)
        captured = captured_state(seq, h0, capture_at)

        out = time_major(seq)

        def grad(d_out, d_final, d_captured):
            d_out, d_final, d_captured = zeros_for_none(
                [d_out, d_final, d_captured], [out, final, captured]
            )
            d_seq = time_major(d_out)
            das = tf.TensorArray(x.dtype, size=steps, element_shape=h0.shape)
            recurrent_t = transposed(recurrent)

            def back(t, carry, das):
                # The final and the captured state's gradients join the carry at their step;
                # the slope f'(a_t) comes from h_t. Nothing of size (T, B, u) beyond the
                # stored outputs and the per-step deltas is materialised.
                g = d_seq[t] + carry
                g += tf.where(t == steps - 1, d_final, tf.zeros_like(d_final))
                g += tf.where(t == capture_at - 1, d_captured, tf.zeros_like(d_captured))
                h = seq[t]
                slope = 1.0 - tf.square(h) if activation == "tanh" else tf.cast(h > 0, h.dtype)
                d_prev, da = simple_rnn_back_step(g, slope, recurrent_t)
                return t - 1, d_prev, das.write(t, da)

            _, d_h0, das = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, tf.zeros_like(h0), das),
                maximum_iterations=steps,
            )
            d_h0 += tf.where(capture_at == 0, d_captured, tf.zeros_like(d_captured))
            da = das.stack()  # (T, B, u)
            previous = tf.concat([h0[None], seq[:-1]], axis=0)
            d_kernel = tf.einsum("tbf,tbu->fu", time_major(x), da)
            d_recurrent = tf.einsum("tbi,tbu->iu", previous, da)
            d_bias = tf.reduce_sum(da, axis=[0, 1])
            d_x = time_major(tf.einsum("tbu,fu->tbf", da, kernel))
            return d_x, d_h0, d_kernel, d_recurrent, d_bias

        return (out, final, captured), grad

    return run(x, h0, kernel, recurrent, bias)


def lstm_layer(layer, x, h0, c0, capture_at):
    """Runs an LSTM layer; returns `(outputs, [h, c] final, [h, c] captured)`."""
    cell = layer.cell
    out, h_final, c_final, h_captured, c_captured = _lstm(
        x, h0, c0, *read_weights(cell), tf.cast(capture_at, tf.int32)
    )
    return out, [h_final, c_final], [h_captured, c_captured]


def _gate_affine(units, dtype):
    """`(s, k)` with `[sigmoid, sigmoid, tanh, sigmoid](z) = s * tanh(s * z) + k` per column.

    sigmoid(z) = tanh(z / 2) / 2 + 1 / 2, so with the scale `s` folded into the weights all
    four gates come from one `tanh` of the whole `(batch, 4u)` pre-activation, and their
    slopes from it too: d gate / dz = s^2 (1 - tanh(s z)^2). Under XLA on a CPU separate
    sigmoids cost a large share of a step's matrix product (benchmarks/RESULTS.md).
    """
    half, one, zero = (tf.fill([units], tf.constant(v, dtype)) for v in (0.5, 1.0, 0.0))
    return tf.concat([half, half, one, half], 0), tf.concat([half, half, zero, half], 0)


def _lstm(x, h0, c0, kernel, recurrent, bias, capture_at):
    units = h0.shape[-1]
    features = x.shape[-1]

    @tf.custom_gradient
    def run(x, h0, c0, kernel, recurrent, bias):
        dtype = x.dtype
        scale, shift = _gate_affine(units, dtype)
        xs = time_major(x)
        steps = tf.shape(xs)[0]
        ones = tf.ones_like(h0[:, :1])
        # One matrix product per step, [h, x_t, 1] [U; W; b]: no (T, B, 4u) x W + b array is
        # written before the loop and read back inside it.
        weights = tf.concat([recurrent, kernel, bias[None]], 0) * scale
        hs = tf.TensorArray(dtype, size=steps, element_shape=h0.shape)
        # Per step, what the backward pass needs and nothing else (see `back`): the gates'
        # slopes (B, 4u) and [o (1 - tanh(c)^2), f] (B, 2u). Two rows, not one of 6u: outside
        # XLA, (B, 6u) pieces landed in the allocator's large-buffer pool and a T = 4000 step
        # peaked about 300 MiB higher (benchmarks/RESULTS.md).
        slope_rows = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 4 * units])
        cell_rows = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 2 * units])

        def body(t, h, c, c_captured, hs, slope_rows, cell_rows):
            a = tf.tanh(tf.matmul(tf.concat([h, xs[t], ones], -1), weights))
            i, f, g, o = tf.split(a * scale + shift, 4, axis=-1)
            c_next = f * c + i * g
            tc = tf.tanh(c_next)
            h = o * tc
            # dz_t = [dc_t, dc_t, dc_t, dh_t] * slopes_t: the gates' slopes times what each
            # gate multiplies, known in the forward pass while its values are at hand.
            slopes = scale * scale * (1.0 - tf.square(a)) * tf.concat([g, c, i, tc], -1)
            cell = tf.concat([o * (1.0 - tf.square(tc)), f], -1)
            c_captured = tf.where(t + 1 == capture_at, c_next, c_captured)
            return (
                t + 1,
                h,
                c_next,
                c_captured,
                hs.write(t, h),
                slope_rows.write(t, slopes),
                cell_rows.write(t, cell),
            )

        _, h_final, c_final, c_captured, hs, slope_rows, cell_rows = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (0, h0, c0, c0, hs, slope_rows, cell_rows),
            maximum_iterations=steps,
        )
        h_seq = hs.stack()  # (T, B, u)
        slope_seq, cell_seq = slope_rows.stack(), cell_rows.stack()  # (T, B, 4u), (T, B, 2u)
        h_captured = captured_state(h_seq, h0, capture_at)
        outputs = (time_major(h_seq), h_final, c_final, h_captured, c_captured)

        def grad(*d_outputs):
            d_out, d_h_final, d_c_final, d_h_captured, d_c_captured = zeros_for_none(
                list(d_outputs), list(outputs)
            )
            d_h_seq = time_major(d_out)
            dzs = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 4 * units])
            recurrent_t = transposed(recurrent)

            def back(t, dh_carry, dc_carry, dzs):
                # Final/captured gradients join the carries at their step; the rest is the
                # step's rows: a few element-wise ops and one matmul per step.
                at_end, at_capture = t == steps - 1, t == capture_at - 1
                dh = d_h_seq[t] + dh_carry
                dh += tf.where(at_end, d_h_final, tf.zeros_like(d_h_final))
                dh += tf.where(at_capture, d_h_captured, tf.zeros_like(d_h_captured))
                dc = dc_carry + tf.where(at_end, d_c_final, tf.zeros_like(d_c_final))
                dc += tf.where(at_capture, d_c_captured, tf.zeros_like(d_c_captured))
                to_c, f = tf.split(cell_seq[t], 2, axis=-1)
                dh, dc, dz = lstm_back_step(dh, dc, to_c, f, slope_seq[t], recurrent_t)
                return t - 1, dh, dc, dzs.write(t, dz)

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
            # dU, dW and db as one matrix product: [h_(t-1), x_t, 1]^T dz over all t.
            h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
            inputs = tf.concat([h_prev, xs, tf.ones_like(xs[..., :1])], -1)
            d_weights = tf.einsum("tbk,tbg->kg", inputs, dz)
            d_recurrent, d_kernel, d_bias = tf.split(d_weights, [units, features, 1], axis=0)
            d_x = time_major(tf.einsum("tbg,fg->tbf", dz, kernel))
            return d_x, d_h0, d_c0, d_kernel, d_recurrent, d_bias[0]

        return outputs, grad

    return run(x, h0, c0, kernel, recurrent, bias)


def gru_layer(layer, x, h0, capture_at):
    """Runs a GRU layer (either `reset_after`); returns `(outputs, final h, captured h)`."""
    cell = layer.cell
    return _gru(x, h0, *read_weights(cell), tf.cast(capture_at, tf.int32), cell.reset_after)


def _gru(x, h0, kernel, recurrent, bias, capture_at, reset_after):
    units = h0.shape[-1]

    @tf.custom_gradient
    def run(x, h0, kernel, recurrent, bias):
        dtype = x.dtype
        input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, None)
        xw = time_major(tf.einsum("btf,fg->btg", x, kernel) + input_bias)  # (T, B, 3u)
        steps = tf.shape(xw)[0]
        u_zr, u_h = recurrent[:, : 2 * units], recurrent[:, 2 * units :]
        hs = tf.TensorArray(dtype, size=steps, element_shape=h0.shape)
        # Per step, what the backward recurrence multiplies by (`gru_back_step`): three
        # slopes (B, 3u), and the gates z and r (B, 2u).
        slope_rows = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 3 * units])
        gate_rows = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 2 * units])

        def body(t, h, hs, slope_rows, gate_rows):
            x_z, x_r, x_h = tf.split(xw[t], 3, axis=-1)
            if reset_after:
                h_z, h_r, h_h = tf.split(tf.matmul(h, recurrent) + recurrent_bias, 3, axis=-1)
            else:
                h_z, h_r = tf.split(tf.matmul(h, u_zr), 2, axis=-1)
            z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
            if reset_after:
                n = tf.tanh(x_h + r * h_h)
                partner = h_h  # what r multiplies
            else:
                n = tf.tanh(x_h + tf.matmul(r * h, u_h))
                partner = h
            slopes = tf.concat(
                [(h - n) * z * (1.0 - z), (1.0 - z) * (1.0 - tf.square(n)), partner * r * (1 - r)],
                -1,
            )
            h_next = z * h + (1.0 - z) * n
            return (
                t + 1,
                h_next,
                hs.write(t, h_next),
                slope_rows.write(t, slopes),
                gate_rows.write(t, tf.concat([z, r], -1)),
            )

        _, final, hs, slope_rows, gate_rows = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (0, h0, hs, slope_rows, gate_rows),
            maximum_iterations=steps,
        )
        seq = hs.stack()  # (T, B, u)
        slope_seq, gate_seq = slope_rows.stack(), gate_rows.stack()
        captured = captured_state(seq, h0, capture_at)
        out = time_major(seq)

        def grad(d_out, d_final, d_captured):
            d_out, d_final, d_captured = zeros_for_none(
                [d_out, d_final, d_captured], [out, final, captured]
            )
            d_seq = time_major(d_out)
            dms = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 3 * units])
            recurrent_t = transposed(recurrent)

            def back(t, carry, dms):
                g = d_seq[t] + carry
                g += tf.where(t == steps - 1, d_final, tf.zeros_like(d_final))
                g += tf.where(t == capture_at - 1, d_captured, tf.zeros_like(d_captured))
                z, r = tf.split(gate_seq[t], 2, axis=-1)
                d_prev, dm = gru_back_step(
                    g, slope_seq[t], z, r, recurrent_t, reset_after=reset_after
                )
                return t - 1, d_prev, dms.write(t, dm)

            _, d_h0, dms = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, tf.zeros_like(h0), dms),
                maximum_iterations=steps,
            )
            d_h0 += tf.where(capture_at == 0, d_captured, tf.zeros_like(d_captured))
            dm = dms.stack()  # (T, B, 3u): dL/d(x W + b)
            previous = tf.concat([h0[None], seq[:-1]], axis=0)
            d_kernel = tf.einsum("tbf,tbg->fg", time_major(x), dm)
            d_input_bias = tf.reduce_sum(dm, axis=[0, 1])
            d_x = time_major(tf.einsum("tbg,fg->tbf", dm, kernel))
            r_seq = gate_seq[..., units:]
            dm_zr, dm_h = dm[..., : 2 * units], dm[..., 2 * units :]
            if reset_after:  # the recurrent pre-activations' gradient: candidate block * r
                d_rec = tf.concat([dm_zr, dm_h * r_seq], -1)
                d_recurrent = tf.einsum("tbi,tbg->ig", previous, d_rec)
                d_bias = tf.stack([d_input_bias, tf.reduce_sum(d_rec, axis=[0, 1])])
            else:  # U_h multiplies r * h_(t-1)
                d_recurrent = tf.concat(
                    [
                        tf.einsum("tbi,tbg->ig", previous, dm_zr),
                        tf.einsum("tbi,tbg->ig", r_seq * previous, dm_h),
                    ],
                    -1,
                )
                d_bias = d_input_bias
            return d_x, d_h0, d_kernel, d_recurrent, d_bias

        return (out, final, captured), grad

    return run(x, h0, kernel, recurrent, bias)
