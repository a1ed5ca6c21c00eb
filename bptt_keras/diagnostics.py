"""What BPTT does to gradients, measured: norms through time and recurrent spectra.

The gradient that reaches step `t` from a loss at step `T` is a product of `T - t` step
Jacobians `dh_{k}/dh_{k-1} = diag(f'(a_k)) U^T`; its norm is bounded by
`(sigma_max(U) * gamma)^(T - t)` with `gamma = max |f'|` (1 for tanh), so it shrinks
geometrically when `sigma_max(U) * gamma < 1` and can grow when the spectral radius exceeds 1
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import check_choice, describe
from bptt_keras.engine.arguments import check_xy, step_weights
from bptt_keras.engine.keras_options import resolve_loss
from bptt_keras.engine.step import value_and_grad
from bptt_keras.losses import REDUCTIONS, Normaliser, elements
from bptt_keras.unroll import Parts, forward


def _layer_index(parts: Parts, layer) -> int:
    if not parts.recurrent:
        raise ValueError(
            "The model has no (unidirectional) recurrent layer whose state could be probed; "
            f"Bidirectional layers run whole. Received layers: "
            f"{[layer.name for layer in parts.whole_sequence]}"
        )
    if layer is None:
        return 0
    if isinstance(layer, int) and not isinstance(layer, bool):
        if not 0 <= layer < len(parts.recurrent):
            raise ValueError(
                f"`layer` index must be in [0, {len(parts.recurrent)}). Received: {layer}"
            )
        return layer
    names = [r.name for r in parts.recurrent]
    if isinstance(layer, str) and layer in names:
        return names.index(layer)
    raise ValueError(f"`layer` must be an index or one of {names}. Received: {describe(layer)}")


def gradient_norms_through_time(
    model: keras.Model,
    x,
    y,
    *,
    layer: int | str | None = None,
    loss=None,
    reduction: str = "mean",
    sample_weight=None,
) -> np.ndarray:
    """The norm of the total derivative dL/dh_t for every step t of one recurrent layer.

    dL/dh_t includes every path from h_t to the loss: through the head at step t and
    through all later steps of the recurrence. (The gradient w.r.t. a `return_sequences`
    output only sees the direct path, so the state of every step is put on the tape here
    with a zero "probe" added to it, and differentiated against.)

    Args:
        model: a `build_model` model.
        x: `(batch, time, input_dim)`.
        y: targets aligned with `x`.
        layer: recurrent layer index or name (default: the first).
        loss, reduction, sample_weight: as in `bptt_gradients` (a weight only on the last
            step makes `dL/dh_t` the gradient that travels `time - 1 - t` steps back).

    Returns:
        float64 array `(time,)`: the Frobenius norm over batch and units of dL/dh_t.

    Example:

    >>> norms = gradient_norms_through_time(model, x, y)
    >>> plot_gradient_norms({"tanh RNN": norms})
    """
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    parts = Parts(model)
    loss = resolve_loss(model, loss)
    x, y = check_xy(parts, x, y, loss)
    index = _layer_index(parts, layer)
    batch, steps = x.shape[:2]
    w = step_weights(parts, x, sample_weight)
    denominator = Normaliser(loss, reduction, parts.output_dim, steps).of_weights(w)
    units = parts.recurrent[index].cell.units

    @tf.function
    def probe_gradient(x, y, w):
        probe = tf.zeros((steps, batch, units), parts.dtype)

        def fn():
            yhat, _, _ = forward(
                parts,
                parts.cast_input(x),
                parts.zero_states(batch),
                probe_layer=index,
                probe=probe,
            )
            per_element = elements(loss, y, yhat) * tf.cast(w, yhat.dtype)[..., None]
            return tf.reduce_sum(per_element) / denominator, ()

        _, _, (grad,) = value_and_grad(fn, [probe])
        return grad  # (time, batch, units)

    grad = probe_gradient(tf.constant(x), tf.constant(y), tf.constant(w)).numpy()
    grad = grad.astype(np.float64)
    return np.linalg.norm(grad.reshape(steps, -1), axis=1)


def recurrent_matrix(layer: keras.layers.RNN) -> np.ndarray:
    """The square `(units, units)` recurrent matrix that carries the state of `layer`.

    SimpleRNN: its recurrent kernel `U`. LSTM and GRU: the block of the recurrent kernel
    that feeds the candidate state (Keras gate order i, f, c, o and z, r, h: block 2).
    """
    kernel = np.asarray(layer.cell.recurrent_kernel.numpy())
    units = kernel.shape[0]
    return kernel if kernel.shape[1] == units else kernel[:, 2 * units : 3 * units]


def recurrent_spectrum(model: keras.Model, *, layer: int | str | None = None) -> dict:
    """Spectral radius and largest singular value of a layer's recurrent matrix.

    Returns:
        `{"spectral_radius": float, "max_singular_value": float}` (see `recurrent_matrix`).
    """
    parts = Parts(model)
    matrix = recurrent_matrix(parts.recurrent[_layer_index(parts, layer)])
    return {
        "spectral_radius": float(np.max(np.abs(np.linalg.eigvals(matrix)))),
        "max_singular_value": float(np.linalg.norm(matrix, 2)),
    }


def scale_recurrent(model: keras.Model, target: float, *, layer: int | str | None = None) -> None:
    """Rescales a SimpleRNN layer's recurrent matrix to a largest singular value `target`.

    Used to put a network on either side of the vanishing/exploding boundary.
    """
    parts = Parts(model)
    rnn = parts.recurrent[_layer_index(parts, layer)]
    if not isinstance(rnn, keras.layers.SimpleRNN):
        raise ValueError(f"`scale_recurrent` applies to SimpleRNN layers. Received: {rnn.name}")
    kernel = np.asarray(rnn.cell.recurrent_kernel.numpy())
    rnn.cell.recurrent_kernel.assign(kernel * (target / np.linalg.norm(kernel, 2)))


class RecurrentSpectrum(keras.callbacks.Callback):
    """Adds `spectral_radius` and `max_singular_value` of a layer to every epoch's logs.

    Args:
        layer: recurrent layer index or name (default: the first).

    Example:

    >>> history = fit(model, x, y, epochs=5, callbacks=[RecurrentSpectrum()])
    >>> history.history["spectral_radius"]
    """

    def __init__(self, layer: int | str | None = None):
        super().__init__()
        self.layer = layer

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(recurrent_spectrum(self.model, layer=self.layer))


def source_gradient_norms(model: keras.Model, source, target_in, target_out, weights=None):
    """‖dL/de_t‖ for each source position t of an encoder-decoder (`build_seq2seq`).

    e_t is the source embedding of step t; L the decoder's teacher-forced cross-entropy
    (mean over the weighted target steps). The gradient reaches e_t only through the encoder
    steps after t and then the decoder, so its norm shows how much credit the early source
    characters get: the path that reversing the source shortens (Sutskever et al. 2014).

    Args:
        model: a `build_seq2seq` model.
        source: int ids `(batch, S)`; target_in, target_out: int ids `(batch, T)`.
        weights: `(batch, T)` step weights (default all 1), e.g. `PairCodec.encode`'s.

    Returns:
        float64 `(S,)`: the norm over batch and embedding units of dL/de_t, per encoder step
        (in the order the encoder reads them: with a reversing codec, step S - 1 holds the
        source's first character).

    Example:

    >>> src, tin, tout, w = codec.encode(pairs)
    >>> norms = source_gradient_norms(model, src, tin, tout, w)
    """
    from bptt_keras import seq2seq

    seq2seq.check_seq2seq(model)
    source = seq2seq._check_source(source)
    target_in = seq2seq._check_source(target_in, "target_in")
    target_out = seq2seq._check_source(target_out, "target_out")
    if target_in.shape != target_out.shape or target_in.shape[0] != source.shape[0]:
        raise ValueError(
            "`target_in` and `target_out` must have the same shape (batch, T), batch as "
            f"`source`'s. Received {target_in.shape}, {target_out.shape}, source {source.shape}"
        )
    w = np.ones(target_out.shape, np.float32) if weights is None else np.asarray(weights)
    if w.shape != target_out.shape:
        raise ValueError(f"`weights` must have shape {target_out.shape}. Received {w.shape}")
    embedded = model.get_layer("source_embedding")(tf.constant(source))

    def fn():
        states = seq2seq.encode_embedded(model, embedded)
        logits, _ = seq2seq.decode_steps(model, target_in, states)
        per_step = keras.losses.sparse_categorical_crossentropy(
            target_out, logits, from_logits=True
        )
        w_t = tf.cast(w, per_step.dtype)
        return tf.reduce_sum(per_step * w_t) / tf.reduce_sum(w_t), ()

    _, _, (grad,) = value_and_grad(fn, [embedded])
    grad = np.asarray(grad, np.float64)  # (batch, S, E)
    return np.sqrt((grad**2).sum(axis=(0, 2)))
