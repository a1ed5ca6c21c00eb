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
order i, f, c, o). The LSTM step is shaped for XLA on a CPU, where each element-wise pass
over a step's (B, 4u) gates costs a tenth to a seventh of its matrix product: one
product [h, x_t, 1] [U; W; b] per step, all four gates from one `tanh` (sigmoid(z) =
tanh(z/2)/2 + 1/2, the 1/2 folded into the weights), and the forward pass stores per step
exactly what the backward recurrence multiplies by (the gates' slopes times their partners,
o (1 - tanh(c)^2) and f), so that a backward step is a few element-wise ops and one product;
dU, dW and db are then one product [h_(t-1), x_t, 1]^T dz over all steps. Gradients equal
the plain path's (`tests/test_fast.py`, float64 to 1e-10).

This path stores h and 6u further numbers (the rows above) of every step.
`recomputed_layer` is full BPTT with recomputation (Chen et al. 2016; Gruslys et al. 2016)
inside the same kind of custom gradient: it keeps the outputs and one state per segment of
K steps and rebuilds each segment's gates in the backward pass, so that at T = 4000 its
memory grows by about a sixth of plain autodiff's (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools

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


def _gate_affine(units, dtype):
    """`(s, k)` with `[sigmoid, sigmoid, tanh, sigmoid](z) = s * tanh(s * z) + k` per column.

    sigmoid(z) = tanh(z / 2) / 2 + 1 / 2, so with the scale `s` folded into the weights all
    four gates come from one `tanh` of the whole `(batch, 4u)` pre-activation, and their
    slopes from it too: d gate / dz = s^2 (1 - tanh(s z)^2). Under XLA on a CPU the three
    separate sigmoids cost about two thirds of a step's matrix product (benchmarks/RESULTS.md).
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
        xs = _time_major(x)
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
        h_captured = _captured(h_seq, h0, capture_at)
        outputs = (_time_major(h_seq), h_final, c_final, h_captured, c_captured)

        def grad(*d_outputs):
            d_out, d_h_final, d_c_final, d_h_captured, d_c_captured = _zeros_for_none(
                list(d_outputs), list(outputs)
            )
            d_h_seq = _time_major(d_out)
            dzs = tf.TensorArray(dtype, size=steps, element_shape=[h0.shape[0], 4 * units])

            def back(t, dh_carry, dc_carry, dzs):
                # Final/captured gradients join the carries at their step; the rest is the
                # step's rows: a few element-wise ops and one matmul per step.
                at_end, at_capture = t == steps - 1, t == capture_at - 1
                dh = d_h_seq[t] + dh_carry
                dh += tf.where(at_end, d_h_final, tf.zeros_like(d_h_final))
                dh += tf.where(at_capture, d_h_captured, tf.zeros_like(d_h_captured))
                dc = dc_carry + tf.where(at_end, d_c_final, tf.zeros_like(d_c_final))
                dc += tf.where(at_capture, d_c_captured, tf.zeros_like(d_c_captured))
                slopes = slope_seq[t]
                to_c, f = tf.split(cell_seq[t], 2, axis=-1)
                dc += dh * to_c
                dz = tf.concat([dc, dc, dc, dh], -1) * slopes
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
            # dU, dW and db as one matrix product: [h_(t-1), x_t, 1]^T dz over all t.
            h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
            inputs = tf.concat([h_prev, xs, tf.ones_like(xs[..., :1])], -1)
            d_weights = tf.einsum("tbk,tbg->kg", inputs, dz)
            d_recurrent, d_kernel, d_bias = tf.split(d_weights, [units, features, 1], axis=0)
            d_x = _time_major(tf.einsum("tbg,fg->tbf", dz, kernel))
            return d_x, d_h0, d_c0, d_kernel, d_recurrent, d_bias[0]

        return outputs, grad

    return run(x, h0, c0, kernel, recurrent, bias)


# ---- full BPTT with recomputation -------------------------------------------------------
#
# The layer's outputs h_t are kept anyway (the next layer or the head needs them, and so does
# its gradient), so the recurrence's other quantities can be rebuilt from them: for a segment
# [s, s + K) the pre-activations are one matrix product, Z = X W + b + H_prev U, with H_prev =
# (h_(s-1), ..., h_(s+K-2)) read from the outputs; only the LSTM's cell state must be rerun,
# an element-wise recurrence c_t = f_t c_(t-1) + i_t g_t started from the c stored at the
# segment's boundary. So the forward pass keeps the outputs plus one state per segment, and
# the backward pass walks the segments in reverse, one at a time (a `while_loop` with
# `parallel_iterations=1`, so that TensorFlow cannot run ahead into the next segment's
# recomputation), each time rebuilding that segment's gates, running the BPTT recurrence
# over it and adding its share of dW, dU, db (one matrix product each per segment).


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
        states: the layer's initial states (`[h]` or `[h, c]`).
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
    else:
        act = _ACTIVATIONS[cell.activation.__name__]
        step = functools.partial(_simple_step, act=act)
        back = functools.partial(_simple_segment_back, relu=act is tf.nn.relu)
    head_weights = []
    if head is not None:
        head_weights = [tf.convert_to_tensor(head.kernel)]
        if head.bias is not None:
            head_weights.append(tf.convert_to_tensor(head.bias))
    xs = x if time_major else _time_major(x)
    out, finals = _segmented(xs, list(states), _read(cell), head_weights, int(segment), step, back)
    return (out if time_major else _time_major(out)), finals


def _simple_step(xw_t, states, recurrent, *, act):
    return [act(xw_t + tf.matmul(states[0], recurrent))]


def _simple_segment_back(xw, recurrent, h_prev, h_seg, states_in, d_seg, carry, *, relu):
    """dL/da over one SimpleRNN segment; f'(a_t) comes from the stored h_t (nothing to redo)."""
    del xw, h_prev, states_in
    size = h_seg.shape[0]
    slope = tf.cast(h_seg > 0, h_seg.dtype) if relu else 1.0 - tf.square(h_seg)
    das = tf.TensorArray(h_seg.dtype, size=size, element_shape=carry[0].shape)

    def body(t, dh, das):
        da = (d_seg[t] + dh) * slope[t]
        return t - 1, tf.matmul(da, recurrent, transpose_b=True), das.write(t, da)

    _, dh, das = tf.while_loop(
        lambda t, *_: t >= 0, body, (size - 1, carry[0], das), maximum_iterations=size
    )
    return [dh], das.stack()


def _lstm_step(xw_t, states, recurrent):
    h, c = states
    zi, zf, zg, zo = tf.split(xw_t + tf.matmul(h, recurrent), 4, axis=-1)
    c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
    return [tf.sigmoid(zo) * tf.tanh(c), c]


def _lstm_segment_back(xw, recurrent, h_prev, h_seg, states_in, d_seg, carry):
    """dL/dz over one LSTM segment: gates rebuilt from the stored h, c rerun from its boundary."""
    del h_seg
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

    def back(t, dh, dc, dzs):
        dh = d_seg[t] + dh
        dc = dc + dh * to_c[t]
        dz = tf.concat([dc, dc, dc, dh], axis=-1) * scale[t]
        return t - 1, tf.matmul(dz, recurrent, transpose_b=True), dc * f[t], dzs.write(t, dz)

    _, dh, dc, dzs = tf.while_loop(
        lambda t, *_: t >= 0, back, (size - 1, *carry, dzs), maximum_iterations=size
    )
    return [dh, dc], dzs.stack()


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
    `step(xw_t, states, recurrent)` is one forward step, and
    `back(xw, recurrent, h_prev, h_seg, states_in, d_seg, carry)` one segment's backward
    pass: `xw()` gives the segment's `x W + b` (computed only if called), `h_prev` and
    `h_seg` the stored outputs entering and leaving each step, `states_in` the boundary
    state, `d_seg` dL/dh from the outputs, `carry` the states' gradients after the segment.
    It returns the states' gradients before the segment and the pre-activation gradients
    `(L, B, G)`, from which this function adds the weight gradients and dL/dx.
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

        def xw_of(begin, size):  # x W + b per segment: no (T, B, 4u) tensor lives on
            return tf.einsum("lbf,fg->lbg", window(x, begin, size), kernel) + bias

        bounds = [tf.TensorArray(dtype, size=count, element_shape=s.shape) for s in states]
        # Each h_t goes straight into its row of the output: no per-step buffers and no
        # stacked copy beside them (at T = 4000 either would cost as much as the outputs).
        out = _empty(steps, states[0], xla)

        def forward_segment(index, begin, size, states, bounds, out):
            bounds = [b.write(index, s) for b, s in zip(bounds, states, strict=True)]
            xw = xw_of(begin, size)

            def body(t, states, out):
                states = step(xw[t], states, recurrent)
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
            d_result, *carry = _zeros_for_none([d_result, *d_finals], [result, *finals])

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
                carry, dz = back(
                    lambda: xw_of(begin, size),
                    recurrent,
                    h_prev,
                    h_seg,
                    states_in,
                    d_seg,
                    carry,
                )
                x_seg = window(x, begin, size)
                sums = [
                    sums[0] + tf.einsum("lbf,lbg->fg", x_seg, dz),
                    sums[1] + tf.einsum("lbu,lbg->ug", h_prev, dz),
                    sums[2] + tf.reduce_sum(dz, axis=[0, 1]),
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
