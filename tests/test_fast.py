"""The fast path (hand-derived backward pass) gives the plain path's gradients and training."""

import keras
import numpy as np
import pytest

import bptt_keras as bk
from bptt_keras import fast


@pytest.mark.parametrize(
    "cell, kwargs",
    [
        ("simple_rnn", {}),
        ("simple_rnn", {"init": "irnn"}),
        ("lstm", {}),
        ("lstm", {"num_layers": 2}),
    ],
)
@pytest.mark.parametrize("k1, k2", [(None, None), (3, 3), (2, 6), (5, 11)])
def test_fast_gradients_equal_plain_gradients(cell, kwargs, k1, k2):
    model = bk.build_model(cell, 7, input_dim=3, output_dim=2, seed=0, **kwargs)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 13, 3)), rng.normal(size=(5, 13, 2))
    loss_fast, fast_grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=True)
    loss_plain, plain_grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=False)
    assert loss_fast == pytest.approx(loss_plain, rel=1e-6)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_fast_path_applies_to_simple_rnn_and_lstm_only():
    layers = {
        c: bk.recurrent_layers(bk.build_model(c, 3))[0] for c in ("simple_rnn", "lstm", "gru")
    }
    assert fast.supports(layers["simple_rnn"]) and fast.supports(layers["lstm"])
    assert not fast.supports(layers["gru"])  # GRU trains on the plain path


def test_fast_and_plain_training_give_the_same_weights():
    x, y = bk.next_step_pairs(bk.tasks.noisy_sines(32, 21, seed=0))
    weights = {}
    for flag in (True, False):
        model = bk.build_model("lstm", 8, seed=0)
        history = bk.fit(
            model,
            x,
            y,
            epochs=2,
            batch_size=8,
            k1=7,
            k2=10,
            clipnorm=1.0,
            optimizer=keras.optimizers.Adam(0.01),
            seed=0,
            verbose=0,
            fast=flag,
        )
        weights[flag] = (model.get_weights(), history.history["loss"])
    np.testing.assert_allclose(weights[True][1], weights[False][1], rtol=1e-5)
    for a, b in zip(weights[True][0], weights[False][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_recompute_gives_full_bptt_gradients(cell):
    model = bk.build_model(cell, 6, num_layers=2, seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 23, 1)), rng.normal(size=(3, 23, 1))
    loss, full = bk.bptt_gradients(model, x, y, fast=False)
    loss_r, recomputed = bk.bptt_gradients(model, x, y, recompute=5)  # 5 segments, last short
    assert loss_r == pytest.approx(loss, rel=1e-6)
    for a, b in zip(recomputed, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_recompute_trains_like_full_bptt_and_rejects_truncation():
    x, y = bk.next_step_pairs(bk.tasks.noisy_sines(16, 21, seed=0))
    losses = []
    for recompute in (None, 6):
        model = bk.build_model("lstm", 4, seed=0)
        history = bk.fit(
            model,
            x,
            y,
            epochs=2,
            batch_size=8,
            seed=0,
            verbose=0,
            recompute=recompute,
            optimizer=keras.optimizers.Adam(0.01),
        )
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    with pytest.raises(ValueError, match="full BPTT"):
        bk.fit(bk.build_model(), x, y, k1=5, recompute=4)
