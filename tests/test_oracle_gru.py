"""The NumPy GRU oracle against finite differences, and the engine (plain and fast) against it."""

import keras
import numpy as np
import pytest

import bptt_keras as bk
from bptt_keras.oracle_gru import gru_bptt


def _params(reset_after: bool, seed: int = 0, units: int = 4, inputs: int = 2, out: int = 2):
    rng = np.random.default_rng(seed)
    bias = (2, 3 * units) if reset_after else (3 * units,)
    shapes = [(inputs, 3 * units), (units, 3 * units), bias, (units, out), (out,)]
    return [rng.normal(scale=0.7, size=s) for s in shapes]


def _finite_differences(params, x, y, reset_after, k1=None, k2=None, eps=1e-6):
    grads = []
    for i, p in enumerate(params):
        g = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            values = []
            for sign in (1, -1):
                moved = [q.copy() for q in params]
                moved[i][index] += sign * eps
                values.append(gru_bptt(moved, x, y, reset_after=reset_after, k1=k1, k2=k2)[0])
            g[index] = (values[0] - values[1]) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("reset_after", [True, False])
def test_full_bptt_matches_finite_differences(reset_after):
    params = _params(reset_after)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 6, 2)), rng.normal(size=(3, 6, 2))
    _, grads = gru_bptt(params, x, y, reset_after=reset_after)
    for g, fd in zip(grads, _finite_differences(params, x, y, reset_after), strict=True):
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_truncation_changes_only_the_recurrent_paths():
    params = _params(True, seed=2)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 9, 2)), rng.normal(size=(2, 9, 2))
    loss, full = gru_bptt(params, x, y)
    loss_t, cut = gru_bptt(params, x, y, k1=2, k2=3)
    assert loss_t == loss
    np.testing.assert_array_equal(cut[3], full[3])  # head gradients: no path through time
    np.testing.assert_array_equal(cut[4], full[4])
    assert not np.allclose(cut[1], full[1])
    _, covering = gru_bptt(params, x, y, k1=9, k2=9)
    for a, b in zip(covering, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


# One case of each kind in the README's command; every combination in the slow group.
ORACLE_FAST = {(True, 2, 5, True), (False, None, None, False)}


@pytest.mark.parametrize(
    "reset_after, k1, k2, fast",
    [
        pytest.param(*case, marks=[] if case in ORACLE_FAST else [pytest.mark.slow])
        for case in [
            (reset_after, k1, k2, fast)
            for reset_after in (True, False)
            for k1, k2 in ((None, None), (3, 3), (2, 5))
            for fast in (True, False)
        ]
    ],
)
def test_engine_gru_gradients_equal_the_oracle(float64, reset_after, k1, k2, fast):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((None, 2))
    h = keras.layers.GRU(
        4, return_sequences=True, reset_after=reset_after, bias_initializer="random_normal"
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 11, 2)), rng.normal(size=(3, 11, 2))
    loss, grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=fast)
    ref_loss, ref = gru_bptt(model.get_weights(), x, y, reset_after=reset_after, k1=k1, k2=k2)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for g, r in zip(grads, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_bad_bias_shape_is_named():
    params = _params(True)
    with pytest.raises(ValueError, match=r"bias must have shape \(12,\) for reset_after=False"):
        gru_bptt(params, np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), reset_after=False)
