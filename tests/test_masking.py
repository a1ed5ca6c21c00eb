"""Masking and variable-length sequences: padded steps neither score nor advance the state.

References: Keras' own masked layers under a plain `GradientTape` (full BPTT), and each
sequence trained alone without its padding (truncated BPTT, where Keras has no reference).
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import bptt_keras as bk

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}
LENGTHS = [9, 4, 6, 1, 9]  # one batch, sequences of different lengths


def masked_model(kind: str, cell: str, seed: int = 0, mask: bool = True) -> keras.Model:
    """Masking(0) on float inputs, or Embedding(mask_zero=True) on ids; two layers and a
    Dense head. `mask=False` builds the same model (same weights) without the mask."""
    keras.utils.set_random_seed(seed)
    if kind == "masking":
        inputs = keras.Input((None, 2))
        h = keras.layers.Masking(0.0)(inputs) if mask else inputs
    else:
        inputs = keras.Input((None,), dtype="int32")
        h = keras.layers.Embedding(7, 3, mask_zero=mask)(inputs)
    h = CELLS[cell](4, return_sequences=True)(h)
    h = CELLS[cell](3, return_sequences=True)(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def padded(kind: str, lengths=LENGTHS, steps=9, seed=0, left=False):
    """A batch of sequences of `lengths`, padded with 0 (at the end, or at the start)."""
    rng = np.random.default_rng(seed)
    if kind == "masking":
        x = rng.normal(size=(len(lengths), steps, 2))
    else:
        x = rng.integers(1, 7, size=(len(lengths), steps))
    for i, length in enumerate(lengths):
        if left:
            x[i, : steps - length] = 0
        else:
            x[i, length:] = 0
    return x, rng.normal(size=(len(lengths), steps, 1))


def keras_gradients(model, x, y):
    """Keras' own: the masked model's forward pass and its masked mean squared error."""
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), [np.asarray(tf.convert_to_tensor(g)) for g in grads]


def quiet_gradients(model, x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fast path's declining
        loss, grads = bk.bptt_gradients(model, x, y, **kwargs)
    return loss, [np.asarray(g) for g in grads]


@pytest.mark.parametrize("left", [False, True], ids=["post", "pre"])
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("kind", ["masking", "tokens"])
def test_full_bptt_gradients_equal_keras_own_masked_layers(float64, kind, cell, left):
    model = masked_model(kind, cell)
    x, y = padded(kind, left=left)
    keras_loss, keras_grads = keras_gradients(model, x, y)
    for fast in (True, False):
        loss, grads = quiet_gradients(model, x, y, fast=fast)
        np.testing.assert_allclose(loss, keras_loss, rtol=1e-10)
        for a, b in zip(grads, keras_grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-12)
    # The mask matters: the same weights without it give another gradient.
    _, unmasked = keras_gradients(masked_model(kind, cell, mask=False), x, y)
    assert max(np.abs(a - b).max() for a, b in zip(unmasked, keras_grads, strict=True)) > 1e-3


@pytest.mark.parametrize("k1, k2", [(3, 3), (2, 5)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_bptt_of_a_padded_batch_is_each_sequence_trained_alone(float64, cell, k1, k2):
    """Right padding: each row's blocks are those of its unpadded sequence, so the batch's
    gradient (a mean over scored steps) is the count-weighted sum of the rows' own. (Every
    row is at least k2 long, so that its own plan is TBPTT(k1, k2) too.)"""
    model = masked_model("masking", cell)
    lengths = [9, 5, 6, 7]
    x, y = padded("masking", lengths=lengths)
    _, batch_grads = quiet_gradients(model, x, y, k1=k1, k2=k2)
    total = [np.zeros_like(g) for g in batch_grads]
    for i, length in enumerate(lengths):
        _, grads = quiet_gradients(
            model, x[i : i + 1, :length], y[i : i + 1, :length], k1=k1, k2=k2
        )
        for t, g in zip(total, grads, strict=True):
            t += g * length / sum(lengths)
    for a, b in zip(batch_grads, total, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_the_state_is_carried_unchanged_through_masked_steps(float64):
    from bptt_keras.unroll import Parts, forward

    model = masked_model("masking", "lstm")
    x, _ = padded("masking", left=True)
    parts = Parts(model)
    _, finals, _ = forward(parts, tf.constant(x), parts.zero_states(len(x)))
    for i, length in enumerate(LENGTHS):
        alone = x[i : i + 1, len(x[i]) - length :]  # the sequence without its padding
        _, row_finals, _ = forward(parts, tf.constant(alone), parts.zero_states(1))
        for layer, row_layer in zip(finals, row_finals, strict=True):
            for state, row_state in zip(layer, row_layer, strict=True):
                np.testing.assert_allclose(state[i : i + 1], row_state, rtol=1e-12)


def test_fit_and_bpttmodel_train_a_masked_model_as_keras_fit():
    x, y = padded("tokens", lengths=[9, 4, 6, 1, 9, 7, 2, 5], seed=1)
    x, y = x.astype("int32"), y.astype("float32")

    def trained(how):
        model = masked_model("tokens", "gru", seed=3)
        optimizer = keras.optimizers.SGD(0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if how == "bk":
                bk.fit(model, x, y, batch_size=4, epochs=2, shuffle=False, optimizer=optimizer,
                       verbose=0)  # fmt: skip
            elif how == "bptt_model":
                wrapped = bk.BPTTModel(model)
                wrapped.compile(optimizer=optimizer, loss="mse")
                wrapped.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
            else:
                model.compile(optimizer=optimizer, loss="mse")
                model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    reference = trained("keras")
    for how in ("bk", "bptt_model"):
        for a, b in zip(trained(how), reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_truncated_training_over_a_masked_dataset_skips_the_padding():
    """bk.fit over `padded_batch` batches of variable-length id sequences, TBPTT(3): equal to
    the arrays padded once, and the reported loss counts only real steps."""
    rng = np.random.default_rng(0)
    lengths = [9, 4, 6, 1, 9, 7, 2, 5]
    rows = [rng.integers(1, 7, size=n + 1) for n in lengths]  # next-token pairs per row

    def generator():
        for row in rows:
            yield row[:-1].astype("int32"), row[1:, None].astype("float32")

    spec = (tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None, 1), tf.float32))
    dataset = tf.data.Dataset.from_generator(generator, output_signature=spec).padded_batch(
        4, padded_shapes=((9,), (9, 1))
    )
    x = np.zeros((8, 9), "int32")
    y = np.zeros((8, 9, 1), "float32")
    for i, row in enumerate(rows):
        x[i, : len(row) - 1], y[i, : len(row) - 1, 0] = row[:-1], row[1:]

    def run(data, **kwargs):
        model = masked_model("tokens", "lstm", seed=2)
        with pytest.warns(UserWarning, match="does not implement masks"):
            history = bk.fit(
                model, *data, k1=3, epochs=1, optimizer=keras.optimizers.SGD(0.1), verbose=0,
                **kwargs,
            )  # fmt: skip
        return model, history

    streamed, history = run((dataset,))
    arrays, expected = run((x, y), batch_size=4, shuffle=False)
    for a, b in zip(streamed.get_weights(), arrays.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history.history == expected.history
    # The loss is a mean over the 43 real steps: padding changes nothing.
    longer = np.concatenate([x, np.zeros((8, 3), "int32")], axis=1)
    longer_y = np.concatenate([y, np.full((8, 3, 1), 5.0, "float32")], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(
            bk.evaluate(arrays, longer, longer_y), bk.evaluate(arrays, x, y), rtol=1e-6
        )


def test_masking_misuse_is_refused_with_the_reason():
    inputs = keras.Input((None, 2))
    h = keras.layers.LSTM(3, return_sequences=True)(inputs)
    h = keras.layers.Masking(0.0)(h)
    late = keras.Model(
        inputs, keras.layers.Dense(1)(keras.layers.LSTM(2, return_sequences=True)(h))
    )
    x, y = padded("masking")
    with pytest.raises(ValueError, match="must be the model's first layer"):
        bk.fit(late, x, y, verbose=0)

    class Doubling(keras.layers.Layer):  # per step, but without mask support
        def call(self, x):
            return 2.0 * x

    inputs = keras.Input((None, 2))
    h = keras.layers.LSTM(3, return_sequences=True)(keras.layers.Masking(0.0)(inputs))
    with pytest.warns(UserWarning, match="does not support masking"):  # Keras says so too
        dropping = keras.Model(inputs, keras.layers.Dense(1)(Doubling(name="doubling")(h)))
    with pytest.raises(ValueError, match=r"\['doubling'\] do not\s+support masking"):
        bk.fit(dropping, x, y, verbose=0)
    with pytest.raises(ValueError, match="`recompute` is not implemented for masked models"):
        bk.fit(masked_model("masking", "lstm"), x, y, recompute=3, verbose=0)
