"""The NumPy BPTT oracle: finite differences, hand derivations, truncation semantics, errors."""

import math
import re

import numpy as np
import pytest

from bptt_keras.oracle import finite_difference_gradients, numpy_bptt, rnn_forward


@pytest.fixture(autouse=True)
def _seed_everything():
    """Overrides conftest's Keras seeding/clear_session: this module never touches Keras, and
    clear_session's garbage collection costs ~0.2 s per test."""
    yield


def _problem(seed, *, batch=2, time=5, n_in=3, units=4, out=2, radius=None, h0=True):
    """Random float64 params `[W, U, b, V, c]`, x, y and h0; U rescaled to `radius` if given."""
    rng = np.random.default_rng(seed)
    U = rng.normal(scale=0.5, size=(units, units))
    if radius is not None:
        U *= radius / np.max(np.abs(np.linalg.eigvals(U)))
    params = [
        rng.normal(scale=0.5, size=(n_in, units)),
        U,
        rng.normal(scale=0.1, size=units),
        rng.normal(size=(units, out)),
        rng.normal(scale=0.1, size=out),
    ]
    x = rng.normal(size=(batch, time, n_in))
    y = rng.normal(size=(batch, time, out))
    return params, x, y, (rng.normal(scale=0.5, size=(batch, units)) if h0 else None)


def _relative_error(got, expected):
    return np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-300)


def _assert_grads_close(got, expected, rtol=1e-12):
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum_over_time"])
@pytest.mark.parametrize("activation, seed", [("tanh", 0), ("relu", 3)])
def test_full_bptt_matches_finite_differences(activation, seed, reduction):
    params, x, y, h0 = _problem(seed)
    if activation == "relu":
        # Central differences are only valid away from relu's kink; the seed was chosen so.
        assert np.min(np.abs(rnn_forward(params, x, activation="relu", h0=h0)["a"])) > 1e-4
    kwargs = {"activation": activation, "reduction": reduction, "h0": h0}
    _, grads, _ = numpy_bptt(params, x, y, **kwargs)
    fd = finite_difference_gradients(params, x, y, **kwargs)
    for name, g, f in zip("WUbVc", grads, fd, strict=True):
        assert np.linalg.norm(f) > 0, name  # a zero gradient would make the check vacuous
        assert _relative_error(g, f) <= 1e-6, name


def test_sum_over_time_is_time_times_mean():
    params, x, y, h0 = _problem(1, time=6)
    loss_mean, grads_mean, dh_mean = numpy_bptt(params, x, y, h0=h0, k1=2, k2=3)
    loss_sum, grads_sum, dh_sum = numpy_bptt(
        params, x, y, h0=h0, k1=2, k2=3, reduction="sum_over_time"
    )
    assert loss_sum == pytest.approx(6 * loss_mean, rel=1e-12)
    _assert_grads_close(grads_sum, [6 * g for g in grads_mean])
    np.testing.assert_allclose(dh_sum, 6 * dh_mean, rtol=1e-12)


@pytest.mark.parametrize("k1, k2", [(5, 5), (8, 8), (5, 9)])
def test_window_covering_the_sequence_is_full_bptt(k1, k2):
    params, x, y, h0 = _problem(2, time=5)
    loss, grads, dh = numpy_bptt(params, x, y, h0=h0)
    loss_k, grads_k, dh_k = numpy_bptt(params, x, y, h0=h0, k1=k1, k2=k2)
    assert loss_k == loss
    _assert_grads_close(grads_k, grads)
    np.testing.assert_allclose(dh_k, dh, rtol=1e-12)


@pytest.mark.parametrize("k1", [1, 2, 3, 4, 5, 6, 7])
def test_lookback_reaching_step_zero_from_every_block_is_full_bptt(k1):
    time = 7
    # The last block starts at s <= time - 1 and back-propagates to max(0, s - (k2 - k1)), so
    # k2 - k1 >= time - 1 sends every block back to step 0. (k2 >= time alone is not enough:
    # time=5, k1=2, k2=5 leaves the block starting at 4 stopping at step 1.)
    k2 = k1 + time - 1
    assert all(max(0, s - (k2 - k1)) == 0 for s in range(0, time, k1))
    params, x, y, h0 = _problem(4, time=time)
    _, grads, dh = numpy_bptt(params, x, y, h0=h0)
    _, grads_k, dh_k = numpy_bptt(params, x, y, h0=h0, k1=k1, k2=k2)
    _assert_grads_close(grads_k, grads)
    np.testing.assert_allclose(dh_k, dh, rtol=1e-12)


def test_k2_defaults_to_k1():
    params, x, y, h0 = _problem(11, time=7, radius=0.9)
    _, default, _ = numpy_bptt(params, x, y, h0=h0, k1=2)
    _, same, _ = numpy_bptt(params, x, y, h0=h0, k1=2, k2=2)
    _, longer, _ = numpy_bptt(params, x, y, h0=h0, k1=2, k2=3)
    _assert_grads_close(default, same)
    assert _relative_error(default[1], longer[1]) > 1e-3  # so the default is not vacuous


def test_truncation_drops_long_dependencies():
    # Spectral radius 0.9 and small inputs keep tanh near-linear, so a step's error still
    # reaches ~10 steps back and cutting every 3 steps must change the recurrent gradients.
    params, x, y, h0 = _problem(5, time=12, radius=0.9)
    _, full, _ = numpy_bptt(params, 0.1 * x, y, h0=h0)
    _, cut, _ = numpy_bptt(params, 0.1 * x, y, h0=h0, k1=3)
    for name, g, c in zip("WUb", full[:3], cut[:3], strict=True):
        assert _relative_error(c, g) > 1e-3, name


def test_truncation_leaves_loss_and_head_gradients_unchanged():
    params, x, y, h0 = _problem(6, time=8, radius=0.9)
    loss, full, _ = numpy_bptt(params, x, y, h0=h0)
    loss_k, cut, _ = numpy_bptt(params, x, y, h0=h0, k1=2, k2=3)
    assert loss_k == loss
    _assert_grads_close(cut[3:], full[3:])  # dL/dV, dL/dc: no path between time steps


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_k1_equals_k2_equals_1_keeps_only_the_direct_path(activation):
    params, x, y, h0 = _problem(7, time=4)
    W, U, b, V, c = params
    fwd = rnn_forward(params, x, activation=activation, h0=h0)
    a, h, yhat = fwd["a"], fwd["h"], fwd["yhat"]
    dact = 1 - h**2 if activation == "tanh" else (a > 0).astype(float)
    delta = (2 / y.size) * (yhat - y) @ V.T * dact  # no term from step t + 1
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    expected_dU = sum(h_prev[:, t].T @ delta[:, t] for t in range(4))
    expected_dW = sum(x[:, t].T @ delta[:, t] for t in range(4))
    _, grads, dh = numpy_bptt(params, x, y, h0=h0, k1=1, k2=1, activation=activation)
    np.testing.assert_allclose(grads[1], expected_dU, rtol=1e-12)
    np.testing.assert_allclose(grads[0], expected_dW, rtol=1e-12)
    np.testing.assert_allclose(grads[2], delta.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(dh, (2 / y.size) * (yhat - y) @ V.T, rtol=1e-12)


def test_hand_derivation_two_steps_one_unit():
    w, u, bias, v, c = 0.7, -0.4, 0.1, 1.5, -0.2
    x1, x2, y1, y2, h0 = 0.5, -1.0, 0.3, 0.8, 0.5
    a1 = x1 * w + h0 * u + bias
    h1 = math.tanh(a1)
    a2 = x2 * w + h1 * u + bias
    h2 = math.tanh(a2)
    r1, r2 = v * h1 + c - y1, v * h2 + c - y2
    loss = (r1**2 + r2**2) / 2  # mean over N = 2 terms, so dL/dyhat_t = r_t
    # h2 depends on u directly and through h1 = tanh(x1 w + h0 u + b):
    dU_full = r1 * v * (1 - h1**2) * h0 + r2 * v * (1 - h2**2) * (h1 + u * (1 - h1**2) * h0)
    dU_cut = r1 * v * (1 - h1**2) * h0 + r2 * v * (1 - h2**2) * h1  # h1 held constant
    dW_full = r1 * v * (1 - h1**2) * x1 + r2 * v * (1 - h2**2) * (x2 + u * (1 - h1**2) * x1)
    dW_cut = r1 * v * (1 - h1**2) * x1 + r2 * v * (1 - h2**2) * x2

    params = [np.array([[w]]), np.array([[u]]), np.array([bias]), np.array([[v]]), np.array([c])]
    x = np.array([x1, x2]).reshape(1, 2, 1)
    y = np.array([y1, y2]).reshape(1, 2, 1)
    kwargs = {"h0": np.array([[h0]])}
    got_loss, full, _ = numpy_bptt(params, x, y, **kwargs)
    _, cut, _ = numpy_bptt(params, x, y, k1=1, k2=1, **kwargs)
    assert got_loss == pytest.approx(loss, rel=1e-14)
    assert full[1].item() == pytest.approx(dU_full, rel=1e-12)
    assert cut[1].item() == pytest.approx(dU_cut, rel=1e-12)
    assert full[0].item() == pytest.approx(dW_full, rel=1e-12)
    assert cut[0].item() == pytest.approx(dW_cut, rel=1e-12)
    assert abs(dU_full - dU_cut) > 1e-3  # the example really has a path through h1


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_dL_dh_is_the_total_derivative_recursion(activation):
    params, x, y, h0 = _problem(8, time=6)
    W, U, b, V, c = params
    fwd = rnn_forward(params, x, activation=activation, h0=h0)
    a, h, yhat = fwd["a"], fwd["h"], fwd["yhat"]
    dact = 1 - h**2 if activation == "tanh" else (a > 0).astype(float)
    direct = (2 / y.size) * (yhat - y) @ V.T
    _, _, dh = numpy_bptt(params, x, y, h0=h0, activation=activation)
    assert dh.shape == h.shape
    np.testing.assert_allclose(dh[:, -1], direct[:, -1], rtol=1e-12)
    for t in range(5):
        np.testing.assert_allclose(
            dh[:, t], direct[:, t] + (dh[:, t + 1] * dact[:, t + 1]) @ U.T, rtol=1e-12
        )


@pytest.mark.parametrize("k1, k2", [(1, 1), (2, 2), (3, 3), (2, 3), (3, 5), (2, 7)])
def test_truncated_gradient_is_the_sum_of_block_gradients_with_the_state_frozen(k1, k2):
    # Independent of the oracle's backward loop: rerun each block's forward from its start
    # with the entering state fixed, and differentiate the block's loss terms numerically.
    time, eps = 7, 1e-6
    params, x, y, h0 = _problem(9, time=time)
    h = rnn_forward(params, x, h0=h0)["h"]
    kappa = 1 / y.size

    def block_loss(p, s, end, start):
        state = h0 if start == 0 else h[:, start - 1]  # computed once, from unperturbed params
        yhat = rnn_forward(p, x[:, start:end], h0=state)["yhat"]
        return kappa * np.sum((yhat[:, s - start :] - y[:, s:end]) ** 2)

    expected = [np.zeros_like(p) for p in params]
    for s in range(0, time, k1):
        end, start = min(s + k1, time), max(0, s - (k2 - k1))
        for p, grad in zip(params, expected, strict=True):
            for i in np.ndindex(p.shape):
                original = p[i]
                p[i] = original + eps
                plus = block_loss(params, s, end, start)
                p[i] = original - eps
                minus = block_loss(params, s, end, start)
                p[i] = original
                grad[i] += (plus - minus) / (2 * eps)
    _, grads, _ = numpy_bptt(params, x, y, h0=h0, k1=k1, k2=k2)
    for name, g, e in zip("WUbVc", grads, expected, strict=True):
        assert _relative_error(g, e) <= 1e-6, name


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"k1": 0}, "k1"),
        ({"k1": 3, "k2": 2}, "k1"),
        ({"k1": True}, "k1"),
        ({"k1": 2.5}, "k1"),
        ({"k1": 2, "k2": 0}, "k2"),
        ({"k2": 2}, "k2"),
        ({"activation": "sigmoid"}, "activation"),
        ({"reduction": "sum"}, "reduction"),
        ({"h0": np.zeros((2, 3))}, "h0"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    params, x, y, _ = _problem(10)
    with pytest.raises(ValueError, match=re.escape(f"`{name}`")) as info:
        numpy_bptt(params, x, y, **kwargs)
    assert "Received" in str(info.value)


def test_unknown_activation_lists_the_choices():
    params, x, y, _ = _problem(10)
    with pytest.raises(ValueError, match="'tanh', 'relu'"):
        numpy_bptt(params, x, y, activation="sigmoid")


def test_mismatched_shapes_raise_with_the_shapes_received():
    params, x, y, _ = _problem(10, batch=2, time=5, out=2)
    with pytest.raises(ValueError, match=r"`y`.*\(2, 4, 2\)"):
        numpy_bptt(params, x, y[:, :4], k1=2)
    with pytest.raises(ValueError, match=r"`x`.*\(2, 5, 2\)"):
        rnn_forward(params, x[..., :2])
    with pytest.raises(ValueError, match="`params`"):
        numpy_bptt(params[:4], x, y)
    with pytest.raises(ValueError, match="`eps`"):
        finite_difference_gradients(params, x, y, eps=0.0)
