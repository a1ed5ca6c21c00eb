"""The fast path (hand-derived backward pass) gives the plain path's gradients and training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import bptt_keras as bk
from bptt_keras import fast
from bptt_keras.models import state_sizes
from bptt_keras.unroll import run_layer


def _assert_fast_equals_plain(model, x, y, k1, k2, *, loss_rel, rtol, atol):
    """The fast path's loss and (truncated) BPTT gradients equal the plain path's."""
    loss_fast, fast_grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=True)
    loss_plain, plain_grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=False)
    assert loss_fast == pytest.approx(loss_plain, rel=loss_rel)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "cell, kwargs",
    [
        ("simple_rnn", {}),
        ("simple_rnn", {"init": "irnn"}),
        ("lstm", {}),
        ("lstm", {"num_layers": 2}),
        pytest.param("gru", {"num_layers": 2}, marks=pytest.mark.slow),  # float64 below
    ],
)
@pytest.mark.parametrize("k1, k2", [(None, None), (3, 3), (2, 6), (5, 11)])
def test_fast_gradients_equal_plain_gradients(cell, kwargs, k1, k2):
    model = bk.build_model(cell, 7, input_dim=3, output_dim=2, seed=0, **kwargs)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 13, 3)), rng.normal(size=(5, 13, 2))
    _assert_fast_equals_plain(model, x, y, k1, k2, loss_rel=1e-6, rtol=2e-5, atol=1e-7)


def test_fast_path_applies_to_every_cell_with_keras_activations():
    layers = {
        c: bk.recurrent_layers(bk.build_model(c, 3))[0] for c in ("simple_rnn", "lstm", "gru")
    }
    assert all(fast.supports(layer) for layer in layers.values())
    assert all(fast.supports_recompute(layer) for layer in layers.values())
    odd = keras.layers.GRU(3, recurrent_activation="hard_sigmoid")
    odd.build((None, None, 2))
    assert not fast.supports(odd)  # other gate functions train on the plain path


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
            global_clipnorm=1.0,
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


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


# ---- the LSTM's stored-activation fast path (fast.lstm_layer) in float64 -----------------


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("k1, k2", [(None, None), (4, 4), (3, 7), (5, 11), (13, 13)])
def test_fast_lstm_gradients_equal_plain_float64(float64, layers, k1, k2):
    """Exact to rounding: sigmoid gates as s tanh(s z) + k, slopes stored in the forward
    pass and one matrix product for dU, dW, db change the arithmetic, not the result
    (k1 < k2: the captured state's gradient; k2 = T: a block with all of it)."""
    model = bk.build_model("lstm", 6, input_dim=3, output_dim=2, num_layers=layers, seed=1)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(4, 13, 3)), rng.normal(size=(4, 13, 2))
    _assert_fast_equals_plain(model, x, y, k1, k2, loss_rel=1e-12, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("capture_at", [0, 1, 6, 11])
@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_fast_lstm_layer_gradients_of_outputs_finals_and_captured_states(float64, capture_at, mode):
    """The layer on its own against the plain loop: the outputs, final and captured h and
    c, and the gradients for x, h0, c0 and the weights with all of them in the loss
    (capture at the start, after one step, midway and at the end); in a graph and compiled
    with XLA, as `fit`'s step is."""
    model = bk.build_model("lstm", 5, input_dim=2, seed=3)
    layer = bk.recurrent_layers(model)[0]
    rng = np.random.default_rng(capture_at)
    x = tf.constant(rng.normal(size=(3, 11, 2)))
    states = [tf.constant(rng.normal(size=(3, 5))) for _ in range(2)]
    weights = [rng.normal(size=(3, 11, 5))] + [rng.normal(size=(3, 5)) for _ in range(4)]
    at = tf.constant(capture_at)

    def gradients(run):
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            out, finals, captured = run()
            values = [out, *finals, *captured]
            loss = sum(tf.reduce_sum(v * w) for v, w in zip(values, weights, strict=True))
        return values + tape.gradient(loss, [x, *states, *layer.trainable_variables])

    def reference():
        return run_layer(layer, x, states, capture_at=at)

    def fast_layer():
        return fast.lstm_layer(layer, x, *states, at)

    compiled = tf.function(lambda: gradients(fast_layer), jit_compile=mode == "xla")
    for a, b in zip(compiled(), gradients(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- the GRU's stored-activation fast path (fast.gru_layer) in float64 -------------------


def _gru_model(layers: int, reset_after: bool, seed: int = 2) -> keras.Model:
    """Input(3) -> GRU(6) x layers -> Dense(2); `build_model`'s GRU has reset_after=True."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 3))
    h = inputs
    for _ in range(layers):
        h = keras.layers.GRU(
            6, return_sequences=True, reset_after=reset_after, bias_initializer="random_normal"
        )(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


# Every combination in the slow group; one of each kind in the README's command.
GRU_FAST_CASES = [(True, 1, None, None)]
GRU_CASES = [
    pytest.param(*case, marks=[] if case in GRU_FAST_CASES else [pytest.mark.slow])
    for case in [
        (reset_after, layers, k1, k2)
        for reset_after in (True, False)
        for layers in (1, 2)
        for k1, k2 in ((None, None), (4, 4), (3, 7), (13, 13))
    ]
]


@pytest.mark.parametrize("reset_after, layers, k1, k2", GRU_CASES)
def test_fast_gru_gradients_equal_plain_float64(float64, reset_after, layers, k1, k2):
    model = _gru_model(layers, reset_after)
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(4, 13, 3)), rng.normal(size=(4, 13, 2))
    _assert_fast_equals_plain(model, x, y, k1, k2, loss_rel=1e-12, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "reset_after, capture_at, mode",
    [
        pytest.param(
            reset_after,
            capture_at,
            mode,
            marks=[] if (capture_at, mode) == (1, "xla") else [pytest.mark.slow],
        )
        for reset_after in (True, False)
        for capture_at in (0, 1, 11)
        for mode in ("graph", "xla")
    ],
)
def test_fast_gru_layer_gradients_of_outputs_finals_and_captured(float64, reset_after, capture_at,
                                                                 mode):  # fmt: skip
    """The GRU layer alone against the plain loop: outputs, final and captured h, and the
    gradients for x, h0 and the weights with all of them in the loss."""
    layer = bk.recurrent_layers(_gru_model(1, reset_after))[0]
    rng = np.random.default_rng(capture_at + 10 * reset_after)
    x = tf.constant(rng.normal(size=(3, 11, 3)))
    h0 = tf.constant(rng.normal(size=(3, 6)))
    weights = [rng.normal(size=(3, 11, 6)), rng.normal(size=(3, 6)), rng.normal(size=(3, 6))]
    at = tf.constant(capture_at)

    def gradients(run):
        with tf.GradientTape() as tape:
            tape.watch([x, h0])
            out, final, captured = run()
            values = [out, final, captured]
            loss = sum(tf.reduce_sum(v * w) for v, w in zip(values, weights, strict=True))
        return values + tape.gradient(loss, [x, h0, *layer.trainable_variables])

    def reference():
        out, (final,), (captured,) = run_layer(layer, x, [h0], capture_at=at)
        return out, final, captured

    compiled = tf.function(
        lambda: gradients(lambda: fast.gru_layer(layer, x, h0, at)), jit_compile=mode == "xla"
    )
    for a, b in zip(compiled(), gradients(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- full BPTT with recomputation inside the custom gradient (fast.recomputed_layer) ----


RECOMPUTE_MODELS = {
    "simple_tanh": ("simple_rnn", {}),
    "simple_relu": ("simple_rnn", {"init": "irnn"}),
    "lstm": ("lstm", {"output_dim": 1}),  # a (..., 1) head's gradient has unknown dims
    "lstm_x2": ("lstm", {"num_layers": 2}),
    "simple_x2": ("simple_rnn", {"num_layers": 2, "output_activation": "tanh"}),
    "gru": ("gru", {}),
    "gru_x2": ("gru", {"num_layers": 2}),
}


@pytest.mark.parametrize(
    "name",
    [n if not n.startswith("gru") else pytest.param(n, marks=pytest.mark.slow)
     for n in RECOMPUTE_MODELS],
)  # fmt: skip
@pytest.mark.parametrize("segment", [1, 4, 13, 20])  # K = 1, K not dividing T, K = T, K > T
def test_recomputed_gradients_equal_full_bptt_float64(float64, name, segment):
    cell, kwargs = RECOMPUTE_MODELS[name]
    kwargs = {"output_dim": 2, **kwargs}
    model = bk.build_model(cell, 5, input_dim=3, seed=0, **kwargs)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 13, 3)), rng.normal(size=(4, 13, kwargs["output_dim"]))
    assert all(fast.supports(layer) for layer in bk.recurrent_layers(model))
    loss, full = bk.bptt_gradients(model, x, y, fast=False)
    loss_r, recomputed = bk.bptt_gradients(model, x, y, recompute=segment)
    assert loss_r == pytest.approx(loss, rel=1e-12)
    for a, b in zip(recomputed, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# GRU in the README's command: reset_after False at K = 4 (True in the slow group above).
@pytest.mark.parametrize(
    "segment",
    [pytest.param(1, marks=pytest.mark.slow), 4, pytest.param(13, marks=pytest.mark.slow)],
)
def test_recomputed_gru_without_reset_after_equals_full_bptt_float64(float64, segment):
    model = _gru_model(2, reset_after=False)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(4, 13, 3)), rng.normal(size=(4, 13, 2))
    loss, full = bk.bptt_gradients(model, x, y, fast=False)
    loss_r, recomputed = bk.bptt_gradients(model, x, y, recompute=segment)
    assert loss_r == pytest.approx(loss, rel=1e-12)
    for a, b in zip(recomputed, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "cell", ["simple_rnn", "lstm", pytest.param("gru", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("fused_head", [False, True])
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_recomputed_layer_gradients_reach_inputs_and_both_end_states(
    float64, cell, fused_head, mode
):
    """The layer on its own: outputs, final states and the gradients for x, the initial
    states, the weights (the head's too when fused), with the final states in the loss;
    eagerly and compiled with XLA (which takes the functional row updates)."""
    model = bk.build_model(cell, 4, input_dim=2, output_dim=3, seed=2)
    layer, head = bk.recurrent_layers(model)[0], model.layers[-1]
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(3, 11, 2)))
    states = [tf.constant(rng.normal(size=(3, 4))) for _ in state_sizes(layer)]
    out_weights = rng.normal(size=(3, 11, 3 if fused_head else 4))
    final_weights = [rng.normal(size=(3, 4)) for _ in states]

    def loss_of(outputs, finals):
        total = tf.reduce_sum(outputs * out_weights)
        for final, weight in zip(finals, final_weights, strict=True):
            total += tf.reduce_sum(tf.square(final) * weight)
        return total

    def gradients(run):
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            outputs, finals = run()
            loss = loss_of(outputs, finals)
        variables = layer.trainable_variables + (head.trainable_variables if fused_head else [])
        return [outputs, *finals, *tape.gradient(loss, [x, *states, *variables])]

    def reference():
        outputs, finals, _ = run_layer(layer, x, states)
        return (head(outputs) if fused_head else outputs), finals

    def recomputed():
        return fast.recomputed_layer(layer, x, states, 4, head=head if fused_head else None)

    if mode == "xla":
        got = tf.function(lambda: gradients(recomputed), jit_compile=True)()
    else:
        got = gradients(recomputed)
    for a, b in zip(got, gradients(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_recompute_without_fast_path_uses_recompute_grad():
    model = bk.build_model("lstm", 4, num_layers=2, seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 10, 1)), rng.normal(size=(3, 10, 1))
    _, full = bk.bptt_gradients(model, x, y, fast=False)
    _, recomputed = bk.bptt_gradients(model, x, y, fast=False, recompute=4)
    for a, b in zip(recomputed, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def test_recompute_keeps_per_step_layers_after_the_head():
    """A head that is not a single Dense (here two, the first with an activation) runs
    after the fused Dense, time-major."""
    inputs = keras.Input((None, 2))
    h = keras.layers.LSTM(5, return_sequences=True, seed=0)(inputs)
    h = keras.layers.Dense(4, activation="tanh")(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 9, 2)), rng.normal(size=(3, 9, 1))
    _, full = bk.bptt_gradients(model, x, y, fast=False)
    _, recomputed = bk.bptt_gradients(model, x, y, recompute=4)
    for a, b in zip(recomputed, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm"])
def test_one_compiled_fit_step_with_recompute_equals_one_without(cell):
    """`fit` compiles its step with XLA on the fast path; recomputation must not change it."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(4, 17, 1)), rng.normal(size=(4, 17, 1))
    weights = []
    for recompute in (None, 5):
        model = bk.build_model(cell, 6, num_layers=2, seed=0)
        bk.fit(model, x, y, epochs=1, batch_size=4, verbose=0, seed=0, recompute=recompute)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- recompute="auto", the default ---------------------------------------------------------


def test_auto_recompute_picks_sqrt_t_for_long_full_bptt_on_the_fast_path_only():
    from bptt_keras.engine.arguments import AUTO_RECOMPUTE_FROM, auto_recompute
    from bptt_keras.unroll import Parts

    parts = Parts(bk.build_model("gru", 3, num_layers=2))
    long, short = 4000, AUTO_RECOMPUTE_FROM - 1
    assert auto_recompute(parts, long, long, long, True) == 63  # round(sqrt(4000))
    assert auto_recompute(parts, AUTO_RECOMPUTE_FROM, 1000, 1000, True) == 32
    assert auto_recompute(parts, short, short, short, True) is None  # the stored path
    assert auto_recompute(parts, long, 100, 100, True) is None  # truncated: bounded by k2
    assert auto_recompute(parts, long, long, long, False) is None  # plain autodiff asked for
    inputs = keras.Input((None, 1))
    odd = keras.layers.GRU(3, return_sequences=True, recurrent_activation="hard_sigmoid")
    other = Parts(keras.Model(inputs, keras.layers.Dense(1)(odd(inputs))))
    assert auto_recompute(other, long, long, long, True) is None  # no fast path to recompute
    from bptt_keras.engine.arguments import check_run

    model = bk.build_model("lstm", 3)
    x = np.zeros((2, 1000, 1))
    assert check_run(model, x, x, None, "mean", None, None, "auto", fast=True)[-1] == 32
    assert check_run(model, x, x, None, "mean", 10, None, "auto", fast=True)[-1] is None
    with pytest.raises(ValueError, match='`recompute` must be "auto", None'):
        bk.bptt_gradients(bk.build_model(), np.zeros((1, 5, 1)), np.zeros((1, 5, 1)),
                          recompute="always")  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_default_recompute_gives_the_stored_paths_gradients_float64(float64, cell):
    """At T = 1000 the default recomputes (segments of 32): same gradients as the stored
    fast path (`recompute=None`) and as plain autodiff."""
    model = bk.build_model(cell, 3, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 1000, 1)), rng.normal(size=(2, 1000, 1))
    loss, auto = bk.bptt_gradients(model, x, y)
    loss_s, stored = bk.bptt_gradients(model, x, y, recompute=None)
    assert loss == pytest.approx(loss_s, rel=1e-12)
    for a, b in zip(auto, stored, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
