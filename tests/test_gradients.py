"""`bptt_gradients` against independent references: the NumPy BPTT oracle, finite
differences, Keras' own layers; truncation; gradient norms through time; bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TRUNCATIONS, rel_err, small_data

import bptt_keras as bk
from bptt_keras.oracle import finite_difference_gradients, numpy_bptt


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("k1, k2", TRUNCATIONS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_match_numpy_oracle_float64(float64, k1, k2, activation, fast):
    model = bk.build_model("simple_rnn", 4, input_dim=2, activation=activation, seed=1)
    x, y = small_data()
    loss, grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=fast)
    ref_loss, ref_grads, _ = numpy_bptt(
        model.get_weights(), x, y, k1=k1, k2=k2, activation=activation
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for got, ref in zip(grads, ref_grads, strict=True):
        assert rel_err(got, ref) <= 1e-5


@pytest.mark.parametrize("k1, k2", [(None, None), (4, 4), (3, 8)])
def test_gradients_match_numpy_oracle_float32(k1, k2):
    model = bk.build_model("simple_rnn", 5, input_dim=2, seed=2)
    x, y = small_data(steps=10)
    _, grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2)
    _, ref_grads, _ = numpy_bptt(model.get_weights(), x, y, k1=k1, k2=k2)
    for got, ref in zip(grads, ref_grads, strict=True):
        assert rel_err(got, ref) <= 1e-4


def test_full_bptt_matches_finite_differences(float64):
    model = bk.build_model("simple_rnn", 3, input_dim=2, seed=3)
    x, y = small_data(batch=2, steps=8)
    _, grads = bk.bptt_gradients(model, x, y)
    numeric = finite_difference_gradients(model.get_weights(), x, y)
    for got, ref in zip(grads, numeric, strict=True):
        assert rel_err(got, ref) <= 1e-5


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_full_bptt_equals_keras_tape_and_k_equal_T_equals_full(cell, fast):
    model = bk.build_model(cell, 6, input_dim=2, num_layers=2, seed=5)
    x, y = small_data(batch=4, steps=15)
    loss, grads = bk.bptt_gradients(model, x, y, fast=fast)
    with tf.GradientTape() as tape:  # Keras' own RNN loop, an independent implementation
        reference = keras.losses.MeanSquaredError()(y, model(x))
    ref_grads = tape.gradient(reference, model.trainable_variables)
    assert loss == pytest.approx(float(reference), rel=1e-6)
    for got, ref in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-7)
    _, same = bk.bptt_gradients(model, x, y, k1=15, k2=15, fast=fast)
    for a, b in zip(same, grads, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("k1, k2", [(1, 1), (5, 5), (4, 10), (14, 14)])
def test_every_truncation_differs_from_full_bptt(cell, k1, k2):
    # The loss sits on the last step only, so everything the gradient learns about early
    # inputs travels along long paths: the ones truncation removes.
    model = bk.build_model(cell, 6, input_dim=2, init="orthogonal", seed=6)
    x, y = small_data(batch=4, steps=15)
    _, full = bk.bptt_gradients(model, x, y)
    _, cut = bk.bptt_gradients(model, x, y, k1=k1, k2=k2)
    input_kernel = 0
    assert rel_err(cut[input_kernel], full[input_kernel]) > 1e-3


def test_truncated_loss_value_is_the_full_loss():
    model = bk.build_model("gru", 4, input_dim=2, seed=0)
    x, y = small_data()
    assert bk.bptt_gradients(model, x, y, k1=3)[0] == pytest.approx(
        bk.bptt_gradients(model, x, y)[0], rel=1e-6
    )


def test_gradient_norms_through_time_match_the_oracle(float64):
    model = bk.build_model("simple_rnn", 4, input_dim=2, seed=7)
    x, y = small_data(steps=20)
    norms = bk.gradient_norms_through_time(model, x, y)
    _, _, dl_dh = numpy_bptt(model.get_weights(), x, y)
    expected = np.linalg.norm(dl_dh.transpose(1, 0, 2).reshape(20, -1), axis=1)
    np.testing.assert_allclose(norms, expected, rtol=1e-8)


def test_gradient_norms_vanish_and_explode_with_the_recurrent_scale():
    x = np.random.default_rng(0).normal(size=(8, 40, 1)).astype("float32")
    small = bk.build_model("simple_rnn", 16, init="orthogonal", seed=0)
    bk.scale_recurrent(small, 0.5)
    # Targets equal to the predictions except at the last step: only the last step has a
    # loss (and a gradient), so the norms measure how far it travels back.
    y = small(x).numpy()
    y[:, -1] += 1.0
    norms = bk.gradient_norms_through_time(small, x, y)
    bound = 0.5 ** np.arange(39, -1, -1) * norms[-1]  # ||dh_T/dh_t|| <= (sigma * 1)^(T-t)
    assert np.all(norms <= bound * (1 + 1e-4))
    assert norms[0] < 1e-9 * norms[-1]  # vanished
    assert bk.recurrent_spectrum(small)["max_singular_value"] == pytest.approx(0.5, rel=1e-5)
    irnn = bk.build_model("simple_rnn", 16, init="irnn", seed=0)
    assert bk.recurrent_spectrum(irnn)["spectral_radius"] == pytest.approx(1.0)


def test_layer_argument_of_diagnostics():
    model = bk.build_model("lstm", 3, num_layers=2, seed=0)
    x, y = small_data(in_dim=1, steps=5)
    a = bk.gradient_norms_through_time(model, x, y, layer=1)
    b = bk.gradient_norms_through_time(model, x, y, layer="lstm_1")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="`layer`"):
        bk.gradient_norms_through_time(model, x, y, layer=5)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"k1": 0}, ValueError, ["`k1`", "between 1", "k1=0"]),
        ({"k1": 13}, ValueError, ["`k1`", "T=12"]),
        ({"k1": 5, "k2": 3}, ValueError, ["k1 <= k2", "k1=5, k2=3"]),
        ({"k1": 2.5}, TypeError, ["`k1`", "2.5"]),
        ({"k1": True}, TypeError, ["`k1`", "True"]),
        ({"k2": 4}, ValueError, ["`k2` needs `k1`"]),
        ({"loss": "hinge"}, ValueError, ["`loss`", "'hinge'"]),
        ({"reduction": "sum"}, ValueError, ["`reduction`", "'sum'"]),
    ],
)
def test_bptt_gradients_rejects_bad_truncation_and_loss(kwargs, error, words):
    model = bk.build_model("simple_rnn", 3, input_dim=2)
    x, y = small_data()
    with pytest.raises(error) as info:
        bk.bptt_gradients(model, x, y, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_shape_errors_name_the_shapes():
    model = bk.build_model("simple_rnn", 3, input_dim=2)
    x, y = small_data()
    with pytest.raises(ValueError, match=r"input_dim=2.*\(3, 12, 3\)"):
        bk.fit(model, np.zeros((3, 12, 3)), y)
    with pytest.raises(ValueError, match=r"aligned.*\(3, 12, 1\).*\(3, 11, 1\)"):
        bk.fit(model, x, y[:, :-1])
    with pytest.raises(ValueError, match="3 dimensions"):
        bk.fit(model, x[0], y)
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\)"):
        bk.bptt_gradients(model, x, np.full((3, 12), 2), loss="sparse_categorical_crossentropy")
