"""Full BPTT with recomputation inside the fast path's custom gradient (Chen et al. 2016;
Gruslys et al. 2016): keep the outputs and one state per segment, rebuild each segment's
gates in the backward pass, one segment at a time.

The layer's outputs h_t are kept anyway (the next layer or the head needs them, and so does
its gradient), so the recurrence's other quantities can be rebuilt from them: for a segment
[s, s + K) the pre-activations are one matrix product, Z = X W + b + H_prev U, with H_prev =
(h_(s-1), ..., h_(s+K-2)) read from the outputs; only the LSTM's cell state must be rerun,
an element-wise recurrence c_t = f_t c_(t-1) + i_t g_t started from the c stored at the
segment's boundary. So the forward pass keeps the outputs plus one state per segment, and
the backward pass walks the segments in reverse, one at a time (a `while_loop` with
`parallel_iterations=1`, so that TensorFlow cannot run ahead into the next segment's
recomputation), each time rebuilding that segment's gates, running the BPTT recurrence
over it and adding its share of dW, dU, db (one matrix product each per segment).
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from bptt_keras.fast.common import (
    ACTIVATIONS,
    gru_back_step,
    lstm_back_step,
    read_weights,
    simple_rnn_back_step,
    transposed,
    zeros_for_none,
)
from bptt_keras.fast.common import time_major as to_time_major


def fusable_head(layer) -> bool:
    """Whether a per-step `layer` can be folded into `recomputed_layer` (a plain `Dense`)."""
    return (
        type(layer) is keras.layers.Dense
        and not layer.lora_enabled
        and layer.quantization_mode is None
    )


def recomputed_layer(layer, x, states, segment: int, *, time_major: bool = False, head=None):
    """Full BPTT over `layer` keeping only the outputs and every `segment`-th state.

    Args:
        layer: a layer for which `supports(layer)` holds.
        x: `(batch, time, features)` inputs (`(time, batch, features)` if `time_major`),
            `time` static.
        states: the layer's initial states (`[h]` or `[h, c]`; GRU `[h]`).
        segment: steps per recomputed segment (any positive int; a last, shorter segment
            takes the remainder, and `segment >= time` means one segment).
        time_major: inputs and outputs with time first, which saves transposed copies of
            the `(time, batch, units)` outputs and of their gradient.
        head: optional per-step `Dense` layer (`fusable_head`) applied inside: the result
            is then its pre-activation `h W_head + b_head` (apply `head.activation` to it),
            and the `(time, batch, units)` gradient of the outputs is never materialised,
            only one segment's share at a time.

    Returns:
        `(outputs or head pre-activations, final states)`; their gradients are exact (the
        same equations as the stored-activation fast path, evaluated on recomputed gates).
    """
    cell = layer.cell
    if isinstance(layer, keras.layers.LSTM):
        step, back = _lstm_step, _lstm_segment_back
    elif isinstance(layer, keras.layers.GRU):
        reset_after = cell.reset_after
        step = functools.partial(_gru_step, reset_after=reset_after)
        back = functools.partial(_gru_segment_back, reset_after=reset_after)
    else:
        act = ACTIVATIONS[cell.activation.__name__]
        step = functools.partial(_simple_step, act=act)
        back = functools.partial(_simple_segment_back, relu=act is tf.nn.relu)
    head_weights = []
    if head is not None:
        head_weights = [tf.convert_to_tensor(head.kernel)]
        if head.bias is not None:
            head_weights.append(tf.convert_to_tensor(head.bias))
    xs = x if time_major else to_time_major(x)
    out, finals = _segmented(
        xs, list(states), read_weights(cell), head_weights, int(segment), step, back
    )
    return (out if time_major else to_time_major(out)), finals


def _split_bias(bias):
    """`(input bias, recurrent bias or None)`: a GRU with `reset_after` has a (2, 3u) bias."""
    if bias.shape.rank == 2:
        return bias[0], bias[1]
    return bias, None


def _plain_weight_grads(h_prev, dz):
    """dU and db of a cell whose pre-activations are x W + h_(t-1) U + b (SimpleRNN, LSTM)."""
    return tf.einsum("lbu,lbg->ug", h_prev, dz), tf.reduce_sum(dz, axis=[0, 1])


def _simple_step(xw_t, states, recurrent, recurrent_bias, *, act):
    del recurrent_bias
    return [act(xw_t + tf.matmul(states[0], recurrent))]


def _simple_segment_back(
    xw, recurrent, recurrent_bias, h_prev, h_seg, states_in, d_seg, carry, *, relu
):
    """dL/da over one SimpleRNN segment; f'(a_t) comes from the stored h_t (nothing to redo)."""
    del xw, recurrent_bias, states_in
    size = h_seg.shape[0]
    slope = tf.cast(h_seg > 0, h_seg.dtype) if relu else 1.0 - tf.square(h_seg)
    das = tf.TensorArray(h_seg.dtype, size=size, element_shape=carry[0].shape)
    recurrent_t = transposed(recurrent)

    def body(t, dh, das):
        d_prev, da = simple_rnn_back_step(d_seg[t] + dh, slope[t], recurrent_t)
        return t - 1, d_prev, das.write(t, da)

    _, dh, das = tf.while_loop(
        lambda t, *_: t >= 0, body, (size - 1, carry[0], das), maximum_iterations=size
    )
    da = das.stack()
    return [dh], da, *_plain_weight_grads(h_prev, da)


def _lstm_step(xw_t, states, recurrent, recurrent_bias):
    del recurrent_bias
    h, c = states
    zi, zf, zg, zo = tf.split(xw_t + tf.matmul(h, recurrent), 4, axis=-1)
    c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
    return [tf.sigmoid(zo) * tf.tanh(c), c]


def _lstm_segment_back(xw, recurrent, recurrent_bias, h_prev, h_seg, states_in, d_seg, carry):
    """dL/dz over one LSTM segment: gates rebuilt from the stored h, c rerun from its boundary."""
    del h_seg, recurrent_bias
    size = h_prev.shape[0]
    z = xw() + tf.einsum("lbu,ug->lbg", h_prev, recurrent)
    zi, zf, zg, zo = tf.split(z, 4, axis=-1)
    i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
    ig = i * g
    cs = tf.TensorArray(z.dtype, size=size, element_shape=carry[1].shape)

    def forward(t, c, cs):
        c = f[t] * c + ig[t]
        return t + 1, c, cs.write(t, c)

    _, _, cs = tf.while_loop(
        lambda t, *_: t < size, forward, (0, states_in[1], cs), maximum_iterations=size
    )
    c_seq = cs.stack()
    tc = tf.tanh(c_seq)
    c_prev = tf.concat([states_in[1][None], c_seq[:-1]], axis=0)
    # dz_t = [dc_t, dc_t, dc_t, dh_t] * scale_t: everything but the two carries is known
    # before the backward recurrence, so each step is a few element-wise ops and one matmul.
    to_c = o * (1.0 - tf.square(tc))
    scale = tf.concat(
        [g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - tf.square(g)), tc * o * (1.0 - o)],
        axis=-1,
    )
    dzs = tf.TensorArray(z.dtype, size=size, element_shape=z.shape[1:])
    recurrent_t = transposed(recurrent)

    def back(t, dh, dc, dzs):
        dh, dc, dz = lstm_back_step(d_seg[t] + dh, dc, to_c[t], f[t], scale[t], recurrent_t)
        return t - 1, dh, dc, dzs.write(t, dz)

    _, dh, dc, dzs = tf.while_loop(
        lambda t, *_: t >= 0, back, (size - 1, *carry, dzs), maximum_iterations=size
    )
    dz = dzs.stack()
    return [dh, dc], dz, *_plain_weight_grads(h_prev, dz)


def _gru_gates(x_part, h_prev, recurrent, recurrent_bias, reset_after):
    """`(z, r, n, partner)` from x W + b and h_(t-1), for one step or a whole segment at once
    (a GRU's only state is h, which the outputs hold: nothing to rerun sequentially).
    `partner` is what r multiplies: h U_h + b'_h with `reset_after`, else h_(t-1)."""
    units = h_prev.shape[-1]
    x_z, x_r, x_h = tf.split(x_part, 3, axis=-1)
    if reset_after:
        h_z, h_r, h_h = tf.split(tf.matmul(h_prev, recurrent) + recurrent_bias, 3, axis=-1)
    else:
        h_z, h_r = tf.split(tf.matmul(h_prev, recurrent[:, : 2 * units]), 2, axis=-1)
    z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
    if reset_after:
        return z, r, tf.tanh(x_h + r * h_h), h_h
    return z, r, tf.tanh(x_h + tf.matmul(r * h_prev, recurrent[:, 2 * units :])), h_prev


def _gru_step(xw_t, states, recurrent, recurrent_bias, *, reset_after):
    h = states[0]
    z, _, n, _ = _gru_gates(xw_t, h, recurrent, recurrent_bias, reset_after)
    return [z * h + (1.0 - z) * n]


def _gru_segment_back(
    xw, recurrent, recurrent_bias, h_prev, h_seg, states_in, d_seg, carry, *, reset_after
):
    """dL/d(x W + b) over one GRU segment, its gates rebuilt from the stored outputs in one
    batched product; the recurrence is `gru_back_step`, as on the stored path."""
    del h_seg, states_in
    size, units = h_prev.shape[0], h_prev.shape[-1]
    z, r, n, partner = _gru_gates(xw(), h_prev, recurrent, recurrent_bias, reset_after)
    rows = tf.concat(
        [(h_prev - n) * z * (1.0 - z), (1.0 - z) * (1.0 - tf.square(n)), partner * r * (1 - r)],
        axis=-1,
    )
    dms = tf.TensorArray(h_prev.dtype, size=size, element_shape=rows.shape[1:])
    recurrent_t = transposed(recurrent)

    def back(t, dh, dms):
        dh, dm = gru_back_step(d_seg[t] + dh, rows[t], z[t], r[t], recurrent_t,
                               reset_after=reset_after)  # fmt: skip
        return t - 1, dh, dms.write(t, dm)

    _, dh, dms = tf.while_loop(
        lambda t, *_: t >= 0, back, (size - 1, carry[0], dms), maximum_iterations=size
    )
    dm = dms.stack()  # (L, B, 3u)
    d_input_bias = tf.reduce_sum(dm, axis=[0, 1])
    dm_zr, dm_h = dm[..., : 2 * units], dm[..., 2 * units :]
    if reset_after:
        d_rec = tf.concat([dm_zr, dm_h * r], -1)
        d_recurrent = tf.einsum("lbu,lbg->ug", h_prev, d_rec)
        d_bias = tf.stack([d_input_bias, tf.reduce_sum(d_rec, axis=[0, 1])])
    else:
        d_recurrent = tf.concat(
            [
                tf.einsum("lbu,lbg->ug", h_prev, dm_zr),
                tf.einsum("lbu,lbg->ug", r * h_prev, dm_h),
            ],
            -1,
        )
        d_bias = d_input_bias
    return [dh], dm, d_recurrent, d_bias


def _compiling_with_xla() -> bool:
    """Whether the graph being traced is compiled with XLA (`jit_compile=True`)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without this internal module
        return True  # the XLA-safe choice: functional updates work everywhere
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _empty(steps, like, xla):
    """A `(steps, *like.shape)` buffer that `_set_rows` fills row by row.

    Outside XLA a fresh, uninitialised `Empty` (never constant-folded or shared, so that
    writing into it in place cannot alter another tensor; every row is written before the
    buffer is read); under XLA, zeros (XLA updates loop-carried buffers in place itself).
    """
    shape = tf.concat([[steps], tf.shape(like)], axis=0)
    if xla:
        return tf.zeros(shape, like.dtype)
    return tf.raw_ops.Empty(shape=shape, dtype=like.dtype, init=False)


def _set_rows(buffer, begin, rows, xla):
    """`buffer[begin : begin + len(rows)] = rows`; the result must replace `buffer`.

    Outside XLA this is `InplaceUpdate`, which writes into `buffer` itself: the graph
    executor would otherwise copy the whole buffer at every write (`tensor_scatter_nd_update`)
    or keep per-step pieces beside the stacked result (`TensorArray`), and at T = 4000 those
    copies cost more memory than the outputs. XLA has no `InplaceUpdate` kernel but performs
    the scatter in place.
    """
    index = begin + tf.range(tf.shape(rows)[0])
    if xla:
        return tf.tensor_scatter_nd_update(buffer, index[:, None], rows)
    return tf.raw_ops.InplaceUpdate(x=buffer, i=index, v=rows)


def _segmented(x, states, weights, head, segment, step, back):
    """The recomputing layer, time-major: forward keeping outputs and boundary states,
    backward segment by segment.

    `weights` are the cell's `[W, U, b]`, `head` an optional `[W_head(, b_head)]`;
    `step(xw_t, states, recurrent, recurrent_bias)` is one forward step, and
    `back(xw, recurrent, recurrent_bias, h_prev, h_seg, states_in, d_seg, carry)` one
    segment's backward pass: `xw()` gives the segment's `x W + b` (input bias; computed only
    if called), `h_prev` and `h_seg` the stored outputs entering and leaving each step,
    `states_in` the boundary state, `d_seg` dL/dh from the outputs, `carry` the states'
    gradients after the segment. It returns the states' gradients before the segment, the
    gradients of `x W + b` `(L, B, G)` (from which this function adds dW and dL/dx), and the
    segment's shares of dU and of the whole bias (a GRU's recurrent pre-activations are not
    x W + h U + b, so each cell computes these two itself).
    """
    steps = x.shape[0]
    if steps is None:
        raise ValueError("`recompute` needs a static sequence length.")
    length = max(1, min(segment, steps))
    full, rest = divmod(steps, length)
    count = full + (rest > 0)
    n_head = len(head)
    xla = _compiling_with_xla()

    def window(seq, begin, size):  # seq[begin : begin + size], a static size, no copy
        return tf.slice(seq, [begin, 0, 0], [size, -1, -1])

    @tf.custom_gradient
    def run(x, kernel, recurrent, bias, *rest_args):
        head, states = list(rest_args[:n_head]), list(rest_args[n_head:])
        dtype = x.dtype

        input_bias, recurrent_bias = _split_bias(bias)

        def xw_of(begin, size):  # x W + b per segment: no (T, B, 4u) tensor lives on
            return tf.einsum("lbf,fg->lbg", window(x, begin, size), kernel) + input_bias

        bounds = [tf.TensorArray(dtype, size=count, element_shape=s.shape) for s in states]
        # Each h_t goes straight into its row of the output: no per-step buffers and no
        # stacked copy beside them (at T = 4000 either would cost as much as the outputs).
        out = _empty(steps, states[0], xla)

        def forward_segment(index, begin, size, states, bounds, out):
            bounds = [b.write(index, s) for b, s in zip(bounds, states, strict=True)]
            xw = xw_of(begin, size)

            def body(t, states, out):
                states = step(xw[t], states, recurrent, recurrent_bias)
                return t + 1, states, _set_rows(out, begin + t, states[0][None], xla)

            _, states, out = tf.while_loop(
                lambda t, *_: t < size, body, (0, states, out), maximum_iterations=size
            )
            return states, bounds, out

        def outer(s, states, bounds, out):
            states, bounds, out = forward_segment(s, s * length, length, states, bounds, out)
            return s + 1, states, bounds, out

        _, finals, bounds, out = tf.while_loop(
            lambda s, *_: s < full,
            outer,
            (0, states, bounds, out),
            maximum_iterations=full,
            parallel_iterations=1,
        )
        if rest:
            finals, bounds, out = forward_segment(full, full * length, rest, finals, bounds, out)
        bounds = [b.stack() for b in bounds]  # (count, B, size): the boundary states
        result = out
        if head:
            result = tf.einsum("tbu,uo->tbo", out, head[0])
            result = result + head[1] if n_head > 1 else result

        def grad(d_result, *d_finals):
            d_result, *carry = zeros_for_none([d_result, *d_finals], [result, *finals])

            def backward_segment(index, begin, size, carry, sums):
                states_in = [tf.gather(b, index) for b in bounds]
                h_seg = window(out, begin, size)
                h_prev = tf.concat([states_in[0][None], h_seg[:-1]], axis=0)
                d_seg = window(d_result, begin, size)
                head_sums = []
                if head:  # the head's gradient, and dL/dh of this segment only
                    head_sums = [sums[3] + tf.einsum("lbu,lbo->uo", h_seg, d_seg)]
                    if n_head > 1:
                        head_sums.append(sums[4] + tf.reduce_sum(d_seg, axis=[0, 1]))
                    d_seg = tf.einsum("lbo,uo->lbu", d_seg, head[0])
                carry, dz, d_recurrent, d_bias = back(
                    lambda: xw_of(begin, size),
                    recurrent,
                    recurrent_bias,
                    h_prev,
                    h_seg,
                    states_in,
                    d_seg,
                    carry,
                )
                x_seg = window(x, begin, size)
                sums = [
                    sums[0] + tf.einsum("lbf,lbg->fg", x_seg, dz),
                    sums[1] + d_recurrent,
                    sums[2] + d_bias,
                    *head_sums,
                ]
                for total, weight in zip(sums, (kernel, recurrent, bias, *head), strict=True):
                    total.set_shape(weight.shape)  # loop variables keep their static shapes
                return carry, sums, tf.matmul(dz, kernel, transpose_b=True)

            sums = [tf.zeros_like(v) for v in (kernel, recurrent, bias, *head)]
            d_x = _empty(steps, x[0], xla)
            if rest:
                carry, sums, d_x_rest = backward_segment(full, full * length, rest, carry, sums)
                d_x = _set_rows(d_x, full * length, d_x_rest, xla)

            def outer_back(s, carry, sums, d_x):
                carry, sums, d_x_seg = backward_segment(s, s * length, length, carry, sums)
                return s - 1, carry, sums, _set_rows(d_x, s * length, d_x_seg, xla)

            # One segment at a time: parallel_iterations=1 keeps TensorFlow from starting
            # the next segments' recomputation (which does not depend on the carries) early.
            _, carry, sums, d_x = tf.while_loop(
                lambda s, *_: s >= 0,
                outer_back,
                (full - 1, carry, sums, d_x),
                maximum_iterations=full,
                parallel_iterations=1,
            )
            return (d_x, *sums, *carry)

        return (result, *finals), grad

    result, *finals = run(x, *weights, *head, *states)
    return result, finals
