"""Bidirectional layers: full BPTT through them equals Keras' own gradients and training;
truncation, stateful use and step-by-step copies are refused with the reason."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_data

import bptt_keras as bk


def bidirectional_model(layout: str, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 2))
    if layout == "bi_lstm":
        h = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    elif layout == "bi_gru_then_lstm":
        h = keras.layers.Bidirectional(
            keras.layers.GRU(3, return_sequences=True), merge_mode="sum"
        )(inputs)
        h = keras.layers.LSTM(4, return_sequences=True)(h)
    else:  # "lstm_then_bi_rnn"
        h = keras.layers.LSTM(4, return_sequences=True)(inputs)
        h = keras.layers.Bidirectional(keras.layers.SimpleRNN(3, return_sequences=True))(h)
    outputs = keras.layers.Dense(1)(h)
    return keras.Model(inputs, outputs)


def keras_gradients(model, x, y):
    """The reference: Keras' own layers under a plain GradientTape, mean squared error."""
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
    return loss, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("layout", ["bi_lstm", "bi_gru_then_lstm", "lstm_then_bi_rnn"])
@pytest.mark.parametrize("fast", [True, False])
def test_full_bptt_gradients_equal_keras_own(float64, layout, fast):
    x, y = small_data(batch=3, steps=9)
    model = bidirectional_model(layout)
    loss, grads = bk.bptt_gradients(model, x, y, fast=fast)
    expected_loss, expected = keras_gradients(model, x, y)
    np.testing.assert_allclose(loss, expected_loss.numpy(), rtol=1e-10)
    assert len(grads) == len(expected) == len(model.trainable_variables)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-9, atol=1e-12)


def test_fit_and_bptt_model_train_as_keras_own_fit():
    x, y = small_data(batch=8, steps=10)
    reference, ours, wrapped_model = (bidirectional_model("bi_gru_then_lstm") for _ in range(3))
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    bk.fit(ours, x, y, batch_size=4, epochs=2, shuffle=False, loss="mse",
           optimizer=keras.optimizers.Adam(0.01), verbose=0)  # fmt: skip
    wrapped = bk.BPTTModel(wrapped_model)
    wrapped.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    wrapped.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for expected, a, b in zip(
        reference.get_weights(), ours.get_weights(), wrapped_model.get_weights(), strict=True
    ):
        np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-6)


def test_truncation_and_step_by_step_use_are_refused_with_the_reason():
    x, y = small_data(batch=4, steps=8)
    model = bidirectional_model("lstm_then_bi_rnn")
    before = model.get_weights()
    with pytest.raises(ValueError, match="Bidirectional layer is ill-defined.*k1=4"):
        bk.fit(model, x, y, k1=4, verbose=0)
    with pytest.raises(ValueError, match="Bidirectional layer is ill-defined"):
        bk.bptt_gradients(model, x, y, k1=2, k2=4)
    with pytest.raises(ValueError, match="Bidirectional.*ill-defined"):
        bk.BPTTModel(model, k1=4)
    for w0, w1 in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)
    with pytest.raises(ValueError, match="Bidirectional layers.*reads the whole sequence"):
        bk.to_stateful(model)
    with pytest.raises(ValueError, match="no \\(unidirectional\\) recurrent layer"):
        bk.gradient_norms_through_time(bidirectional_model("bi_lstm"), x, y)


def test_a_stateful_bidirectional_model_is_refused():
    inputs = keras.Input(batch_shape=(2, 5, 2))
    h = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True, stateful=True))(
        inputs
    )
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    x, y = small_data(batch=2, steps=5)
    with pytest.raises(ValueError, match="Bidirectional layers cannot be stateful"):
        bk.fit(model, x, y, batch_size=2, verbose=0)
