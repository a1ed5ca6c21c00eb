"""build_model and the state helpers, checked against NumPy references of each cell."""

import numpy as np
import pytest

from bptt_keras import (
    build_model,
    get_states,
    recurrent_layers,
    reset_states,
    run_with_state,
    set_states,
    to_stateful,
    with_explicit_state,
    zero_states,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_forward(model, x):
    """Independent forward pass of a build_model model: (batch, time, f) -> (batch, time, out).

    Cell equations as documented by Keras 3 (gate order i, f, c, o for LSTM; z, r, h and
    reset_after=True for GRU).
    """
    h_seq = x.astype(np.float64)
    for layer in recurrent_layers(model):
        w = [v.astype(np.float64) for v in layer.get_weights()]
        kernel, recurrent, bias = w
        units = recurrent.shape[0]
        act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0)}[layer.cell.activation.__name__]
        batch, steps = h_seq.shape[:2]
        h = np.zeros((batch, units))
        c = np.zeros((batch, units))
        outs = []
        for t in range(steps):
            xt = h_seq[:, t]
            name = type(layer).__name__
            if name == "SimpleRNN":
                h = act(xt @ kernel + h @ recurrent + bias)
            elif name == "LSTM":
                z = xt @ kernel + h @ recurrent + bias
                i, f, g, o = np.split(z, 4, axis=-1)
                c = _sigmoid(f) * c + _sigmoid(i) * act(g)
                h = _sigmoid(o) * act(c)
            else:  # GRU, reset_after=True: bias is (2, 3 * units)
                mx = xt @ kernel + bias[0]
                mh = h @ recurrent + bias[1]
                xz, xr, xh = np.split(mx, 3, axis=-1)
                hz, hr, hh = np.split(mh, 3, axis=-1)
                z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
                h = z * h + (1 - z) * act(xh + r * hh)
            outs.append(h)
        h_seq = np.stack(outs, axis=1)
    head_w, head_b = model.get_layer("head").get_weights()
    return h_seq @ head_w + head_b


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_matches_numpy_reference(cell, num_layers):
    model = build_model(cell, 5, input_dim=3, output_dim=2, num_layers=num_layers, seed=0)
    _randomise(model)
    x = np.random.default_rng(1).normal(size=(4, 7, 3)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), numpy_forward(model, x), rtol=1e-4, atol=1e-5)


def test_exact_values_with_constant_weights():
    # h_t = tanh(0.5 x_t + 0.25 h_{t-1}), y_t = 2 h_t + 1, for x = 1, 1, 1: worked by hand.
    model = build_model("simple_rnn", 1)
    model.set_weights(
        [np.array([[0.5]]), np.array([[0.25]]), np.zeros(1), np.array([[2.0]]), np.ones(1)]
    )
    h1 = np.tanh(0.5)
    h2 = np.tanh(0.5 + 0.25 * h1)
    h3 = np.tanh(0.5 + 0.25 * h2)
    y = model(np.ones((1, 3, 1), "float32")).numpy()[0, :, 0]
    np.testing.assert_allclose(y, 2 * np.array([h1, h2, h3]) + 1, rtol=1e-6)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("init", ["default", "orthogonal", "glorot"])
@pytest.mark.parametrize("stateful", [False, True])
def test_shapes_every_cell_init_and_statefulness(cell, init, stateful):
    model = build_model(
        cell,
        6,
        input_dim=2,
        output_dim=3,
        num_layers=2,
        init=init,
        stateful=stateful,
        batch_size=4 if stateful else None,
    )
    for steps in (1, 9):  # time is free: the same model serves any length
        assert model(np.zeros((4, steps, 2), "float32")).shape == (4, steps, 3)
    assert len(recurrent_layers(model)) == 2
    assert all(layer.return_sequences for layer in recurrent_layers(model))


def test_irnn_is_identity_relu_zero_bias():
    model = build_model("simple_rnn", 8, init="irnn", seed=3)
    layer = recurrent_layers(model)[0]
    kernel, recurrent, bias = layer.get_weights()
    np.testing.assert_array_equal(recurrent, np.eye(8))
    np.testing.assert_array_equal(bias, 0)
    assert layer.cell.activation.__name__ == "relu"
    assert np.std(kernel) < 0.01  # N(0, 0.001), Le et al. 2015


def test_orthogonal_init_gives_orthogonal_kernels():
    layer = recurrent_layers(build_model("simple_rnn", 6, input_dim=6, init="orthogonal", seed=0))[
        0
    ]
    for matrix in layer.get_weights()[:2]:
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(6), atol=1e-5)


def test_glorot_init_is_not_orthogonal():
    recurrent = recurrent_layers(build_model("simple_rnn", 32, init="glorot", seed=0))[0]
    singular = np.linalg.svd(recurrent.get_weights()[1], compute_uv=False)
    assert singular.max() > 1.2 and singular.min() < 0.5


def test_seed_makes_weights_reproducible_and_distinct_per_seed():
    a, b, c = (build_model("lstm", 4, num_layers=2, seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights(), strict=True))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_stateful_carries_state_across_calls_and_reset_restores_it():
    model = build_model("gru", 4, num_layers=2, stateful=True, batch_size=2, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 10, 1)).astype("float32")
    stateless = build_model("gru", 4, num_layers=2, seed=0)
    whole = stateless(x).numpy()
    # Two halves through the stateful model equal the whole sequence at once.
    first, second = model(x[:, :5]).numpy(), model(x[:, 5:]).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, atol=1e-6)
    assert any(np.abs(s).max() > 0 for layer in get_states(model) for s in layer)
    reset_states(model)
    assert all(np.abs(s).max() == 0 for layer in get_states(model) for s in layer)
    np.testing.assert_allclose(model(x[:, :5]).numpy(), first, atol=1e-6)


def test_get_and_set_states_round_trip():
    model = build_model("lstm", 3, stateful=True, batch_size=2, seed=0)
    x = np.ones((2, 4, 1), "float32")
    model(x)
    saved = get_states(model)
    assert [s.shape for s in saved[0]] == [(2, 3), (2, 3)]
    after = model(x).numpy()
    set_states(model, saved)
    np.testing.assert_allclose(model(x).numpy(), after, atol=1e-6)


def test_to_stateful_copies_weights_and_streams_one_step_at_a_time():
    model = build_model("lstm", 5, num_layers=2, seed=0)
    x = np.random.default_rng(0).normal(size=(1, 12, 1)).astype("float32")
    streamer = to_stateful(model, batch_size=1)
    steps = [streamer(x[:, t : t + 1]).numpy() for t in range(12)]
    np.testing.assert_allclose(np.concatenate(steps, 1), model(x).numpy(), atol=1e-5)
    assert streamer.inputs[0].shape[0] == 1
    # A copy: changing the original's weights leaves the copy alone.
    before = streamer.get_weights()[0].copy()
    model.set_weights([w + 1 for w in model.get_weights()])
    np.testing.assert_array_equal(streamer.get_weights()[0], before)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_explicit_state_chunks_equal_the_whole_sequence(cell):
    model = build_model(cell, 4, num_layers=2, seed=0)
    twin = with_explicit_state(model)
    assert len(twin.inputs) == 1 + len(zero_states(twin, 1))
    x = np.random.default_rng(0).normal(size=(3, 10, 1)).astype("float32")
    states = None
    outs = []
    for chunk in (x[:, :4], x[:, 4:7], x[:, 7:]):
        y, states = run_with_state(twin, chunk, states)
        outs.append(y.numpy())
    np.testing.assert_allclose(np.concatenate(outs, 1), model(x).numpy(), atol=1e-5)


def test_return_state_model_outputs_final_states():
    model = build_model("lstm", 3, num_layers=2, return_state=True, seed=0)
    y, states = run_with_state(model, np.ones((2, 5, 1), "float32"))
    assert tuple(y.shape) == (2, 5, 1)
    assert [tuple(s.shape) for s in states] == [(2, 3)] * 4
    assert len(zero_states(model, 2)) == 4
    with pytest.raises(ValueError, match="no state inputs"):
        run_with_state(build_model(), np.ones((2, 5, 1)))


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"cell": "transformer"}, ValueError, ["`cell`", "'transformer'", "'lstm'"]),
        ({"init": "he"}, ValueError, ["`init`", "'he'", "'irnn'"]),
        ({"cell": "lstm", "init": "irnn"}, ValueError, ["irnn", "simple_rnn", "'lstm'"]),
        ({"stateful": True}, ValueError, ["stateful", "batch_size", "None"]),
        ({"units": 0}, ValueError, ["`units`", ">= 1", "0"]),
        ({"units": 2.5}, TypeError, ["`units`", "integer", "2.5"]),
        ({"num_layers": -1}, ValueError, ["`num_layers`", "-1"]),
        ({"input_dim": "3"}, TypeError, ["`input_dim`", "'3'"]),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        build_model(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_state_helpers_reject_models_without_state_and_bad_shapes():
    with pytest.raises(ValueError, match="no stateful recurrent layer"):
        get_states(build_model())
    model = build_model("gru", 3, stateful=True, batch_size=2)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        set_states(model, [[np.zeros((5, 3))]])
    with pytest.raises(ValueError, match="one entry per stateful"):
        set_states(model, [])
    with pytest.raises(TypeError, match="keras.Model"):
        reset_states("model")
    with pytest.raises(ValueError, match=">= 1"):
        to_stateful(model, batch_size=0)
