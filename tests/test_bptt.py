"""The BPTT engine's gradients against independent references, and its training loop."""

import itertools
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import bptt_keras as bk
from bptt_keras.checkpoint import latest_checkpoint, load_checkpoint
from bptt_keras.oracle import finite_difference_gradients, numpy_bptt
from bptt_keras.tasks import noisy_sines


def _data(batch=3, steps=12, seed=0, in_dim=2, out_dim=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, steps, in_dim)), rng.normal(size=(batch, steps, out_dim)))


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def _rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


TRUNCATIONS = [(None, None), (12, 12), (4, 4), (1, 1), (3, 5), (4, 9), (5, 12), (2, 7)]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("k1, k2", TRUNCATIONS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_match_numpy_oracle_float64(float64, k1, k2, activation, fast):
    model = bk.build_model("simple_rnn", 4, input_dim=2, activation=activation, seed=1)
    x, y = _data()
    loss, grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, fast=fast)
    ref_loss, ref_grads, _ = numpy_bptt(
        model.get_weights(), x, y, k1=k1, k2=k2, activation=activation
    )
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for got, ref in zip(grads, ref_grads, strict=True):
        assert _rel_err(got, ref) <= 1e-5


@pytest.mark.parametrize("k1, k2", [(None, None), (4, 4), (3, 8)])
def test_gradients_match_numpy_oracle_float32(k1, k2):
    model = bk.build_model("simple_rnn", 5, input_dim=2, seed=2)
    x, y = _data(steps=10)
    _, grads = bk.bptt_gradients(model, x, y, k1=k1, k2=k2)
    _, ref_grads, _ = numpy_bptt(model.get_weights(), x, y, k1=k1, k2=k2)
    for got, ref in zip(grads, ref_grads, strict=True):
        assert _rel_err(got, ref) <= 1e-4


def test_full_bptt_matches_finite_differences(float64):
    model = bk.build_model("simple_rnn", 3, input_dim=2, seed=3)
    x, y = _data(batch=2, steps=8)
    _, grads = bk.bptt_gradients(model, x, y)
    numeric = finite_difference_gradients(model.get_weights(), x, y)
    for got, ref in zip(grads, numeric, strict=True):
        assert _rel_err(got, ref) <= 1e-5


def test_sum_over_time_reduction_is_T_times_mean(float64):
    model = bk.build_model("simple_rnn", 3, input_dim=2, seed=4)
    x, y = _data(steps=7)
    loss_mean, g_mean = bk.bptt_gradients(model, x, y)
    loss_sum, g_sum = bk.bptt_gradients(model, x, y, reduction="sum_over_time")
    ref_loss, ref_grads, _ = numpy_bptt(model.get_weights(), x, y, reduction="sum_over_time")
    assert loss_sum == pytest.approx(7 * loss_mean) and loss_sum == pytest.approx(ref_loss)
    for a, b, r in zip(g_sum, g_mean, ref_grads, strict=True):
        np.testing.assert_allclose(a, 7 * b, rtol=1e-10, atol=1e-14)
        assert _rel_err(a, r) <= 1e-8


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_full_bptt_equals_keras_tape_and_k_equal_T_equals_full(cell, fast):
    model = bk.build_model(cell, 6, input_dim=2, num_layers=2, seed=5)
    x, y = _data(batch=4, steps=15)
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
    x, y = _data(batch=4, steps=15)
    _, full = bk.bptt_gradients(model, x, y)
    _, cut = bk.bptt_gradients(model, x, y, k1=k1, k2=k2)
    input_kernel = 0
    assert _rel_err(cut[input_kernel], full[input_kernel]) > 1e-3


def test_truncated_loss_value_is_the_full_loss():
    model = bk.build_model("gru", 4, input_dim=2, seed=0)
    x, y = _data()
    assert bk.bptt_gradients(model, x, y, k1=3)[0] == pytest.approx(
        bk.bptt_gradients(model, x, y)[0], rel=1e-6
    )


def test_cross_entropy_loss_matches_keras():
    model = bk.build_model("lstm", 5, input_dim=3, output_dim=4, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    labels = rng.integers(0, 4, size=(2, 6))
    loss, grads = bk.bptt_gradients(model, x, labels, loss="sparse_categorical_crossentropy")
    with tf.GradientTape() as tape:
        ref = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, model(x))
    ref_grads = tape.gradient(ref, model.trainable_variables)
    assert loss == pytest.approx(float(ref), rel=1e-5)
    for got, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, r.numpy(), rtol=1e-4, atol=1e-6)


def test_gradient_norms_through_time_match_the_oracle(float64):
    model = bk.build_model("simple_rnn", 4, input_dim=2, seed=7)
    x, y = _data(steps=20)
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
    x, y = _data(in_dim=1, steps=5)
    a = bk.gradient_norms_through_time(model, x, y, layer=1)
    b = bk.gradient_norms_through_time(model, x, y, layer="lstm_1")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="`layer`"):
        bk.gradient_norms_through_time(model, x, y, layer=5)


# --- training ------------------------------------------------------------------------


def test_one_full_bptt_step_is_one_sgd_update_with_the_bptt_gradient():
    model = bk.build_model("gru", 4, input_dim=2, seed=0)
    x, y = _data(batch=4)
    before = model.get_weights()
    _, grads = bk.bptt_gradients(model, x, y)
    bk.fit(model, x, y, batch_size=4, optimizer=keras.optimizers.SGD(0.1), shuffle=False, verbose=0)
    for w0, g, w1 in zip(before, grads, model.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w0 - 0.1 * g, rtol=1e-5, atol=1e-7)


def test_tbptt_makes_one_update_per_block_and_does_not_retrace():
    x, y = bk.next_step_pairs(noisy_sines(40, 31, seed=0))  # T = 30
    model = bk.build_model("simple_rnn", 4, seed=0)
    optimizer = keras.optimizers.Adam(0.01)
    history = bk.fit(
        model, x, y, epochs=3, batch_size=8, k1=7, k2=11, optimizer=optimizer, verbose=0, seed=0
    )
    blocks = len(bk.plan_blocks(30, 7, 11))  # 5 blocks, edge blocks shorter
    assert int(optimizer.iterations.numpy()) == 3 * 5 * blocks
    assert history.trace_count <= 3  # not one trace per batch or per block


def test_clipnorm_bounds_every_update():
    model = bk.build_model("simple_rnn", 4, input_dim=2, seed=0)
    x, y = _data(batch=4)
    y = y * 100  # large loss, large gradient
    _, grads = bk.bptt_gradients(model, x, y)
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    assert norm > 1.0
    before = model.get_weights()
    bk.fit(
        model,
        x,
        y,
        batch_size=4,
        clipnorm=1.0,
        optimizer=keras.optimizers.SGD(1.0),
        shuffle=False,
        verbose=0,
    )
    step = [w0 - w1 for w0, w1 in zip(before, model.get_weights(), strict=True)]
    assert np.sqrt(sum(np.sum(s**2) for s in step)) == pytest.approx(1.0, rel=1e-4)
    for s, g in zip(step, grads, strict=True):  # same direction as the gradient
        np.testing.assert_allclose(s, g / norm, rtol=1e-3, atol=1e-6)


def test_same_seed_same_losses_and_history_contents():
    x, y = bk.next_step_pairs(noisy_sines(64, 21, seed=0))

    def run():
        model = bk.build_model("lstm", 6, seed=0)
        return bk.fit(
            model,
            x,
            y,
            epochs=3,
            batch_size=16,
            k1=5,
            validation_data=(x, y),
            optimizer=keras.optimizers.Adam(0.01),
            seed=3,
            verbose=0,
        )

    a, b = run(), run()
    assert a.history == b.history
    assert set(a.history) == {"loss", "grad_norm", "val_loss"}
    assert a.history["loss"][-1] < a.history["loss"][0]


def test_stateful_streams_training_equals_tbptt_over_the_long_rows():
    """Streams layout + stateful model == TBPTT(k) over each row as one long sequence."""
    series = np.sin(np.arange(241) / 4.0) + 0.1 * np.random.default_rng(0).normal(size=241)
    batch, chunk = 4, 10
    xs, ys = bk.stream_batches(series, batch_size=batch, seq_len=chunk)  # 6 batches of 4
    stateful = bk.build_model("gru", 5, stateful=True, batch_size=batch, seed=0)
    bk.fit(
        stateful,
        xs,
        ys,
        batch_size=batch,
        k1=chunk,
        shuffle=False,
        verbose=0,
        optimizer=keras.optimizers.SGD(0.05),
    )
    # The same data as 4 long rows of 60 steps, truncated every 10 steps.
    rows_x = xs.reshape(-1, batch, chunk, 1).transpose(1, 0, 2, 3).reshape(batch, -1, 1)
    rows_y = ys.reshape(-1, batch, chunk, 1).transpose(1, 0, 2, 3).reshape(batch, -1, 1)
    np.testing.assert_allclose(rows_x[0, :, 0], series[:60], rtol=1e-6)  # row 0: one stretch
    plain = bk.build_model("gru", 5, seed=0)
    bk.fit(
        plain,
        rows_x,
        rows_y,
        batch_size=batch,
        k1=chunk,
        shuffle=False,
        verbose=0,
        optimizer=keras.optimizers.SGD(0.05),
    )
    for a, b in zip(stateful.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_engine_fit_matches_or_beats_keras_fit_on_the_documents_fixed_example():
    x, y = bk.next_step_pairs(noisy_sines(128, 41, seed=0))
    keras.utils.set_random_seed(0)
    reference = bk.build_model("simple_rnn", 16, seed=0)
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    ref_loss = reference.fit(x, y, epochs=4, batch_size=32, verbose=0).history["loss"][-1]
    ours = bk.build_model("simple_rnn", 16, seed=0)
    history = bk.fit(
        ours,
        x,
        y,
        epochs=4,
        batch_size=32,
        seed=0,
        verbose=0,
        optimizer=keras.optimizers.Adam(0.01),
    )
    assert history.history["loss"][-1] <= 1.1 * ref_loss


def test_keras_callbacks_receive_logs(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(32, 11, seed=0))
    model = bk.build_model("simple_rnn", 4, seed=0)
    csv = tmp_path / "log.csv"
    stopper = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    history = bk.fit(
        model,
        x,
        y,
        epochs=10,
        batch_size=16,
        verbose=0,
        seed=0,
        callbacks=[
            keras.callbacks.CSVLogger(str(csv)),
            keras.callbacks.TerminateOnNaN(),
            stopper,
            bk.RecurrentSpectrum(),
            keras.callbacks.ModelCheckpoint(str(tmp_path / "m.weights.h5"), save_weights_only=True),
            keras.callbacks.TensorBoard(str(tmp_path / "tb")),
        ],
    )
    assert len(history.history["loss"]) == 2  # stopped by EarlyStopping after patience 1
    lines = csv.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["epoch", "grad_norm"] and len(lines) == 3
    assert "spectral_radius" in history.history
    assert (tmp_path / "m.weights.h5").is_file()
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_verbose_zero_is_silent_and_verbose_one_shows_progress(capsys):
    x, y = bk.next_step_pairs(noisy_sines(16, 11, seed=0))
    bk.fit(bk.build_model(units=3, seed=0), x, y, batch_size=8, verbose=0)
    assert capsys.readouterr().out == ""
    bk.fit(bk.build_model(units=3, seed=0), x, y, batch_size=8, verbose=1)
    assert "2/2" in capsys.readouterr().out


def test_non_finite_loss_stops_and_keeps_the_last_finite_weights():
    x, y = bk.next_step_pairs(noisy_sines(24, 11, seed=0))
    y_bad = y.copy()
    y_bad[16:] = 3e38  # the third batch of 8 overflows the squared error to inf

    model = bk.build_model("simple_rnn", 4, seed=0)
    with pytest.warns(RuntimeWarning, match="epoch 1, step 3"):
        history = bk.fit(
            model,
            x,
            y_bad,
            epochs=2,
            batch_size=8,
            shuffle=False,
            verbose=0,
            optimizer=keras.optimizers.SGD(0.1),
        )
    assert history.nonfinite == {"epoch": 1, "step": 3}
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    reference = bk.build_model("simple_rnn", 4, seed=0)  # the same two good batches only
    bk.fit(
        reference,
        x[:16],
        y[:16],
        batch_size=8,
        shuffle=False,
        verbose=0,
        optimizer=keras.optimizers.SGD(0.1),
    )
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"k1": 0}, ValueError, ["`k1`", "between 1", "k1=0"]),
        ({"k1": 13}, ValueError, ["`k1`", "T=12"]),
        ({"k1": 5, "k2": 3}, ValueError, ["k1 <= k2", "k1=5, k2=3"]),
        ({"k1": 2.5}, TypeError, ["`k1`", "2.5"]),
        ({"k1": True}, TypeError, ["`k1`", "True"]),
        ({"k2": 4}, ValueError, ["`k2` needs `k1`"]),
        ({"loss": "mae"}, ValueError, ["`loss`", "'mae'"]),
        ({"reduction": "sum"}, ValueError, ["`reduction`", "'sum'"]),
    ],
)
def test_bptt_gradients_rejects_bad_truncation_and_loss(kwargs, error, words):
    model = bk.build_model("simple_rnn", 3, input_dim=2)
    x, y = _data()
    with pytest.raises(error) as info:
        bk.bptt_gradients(model, x, y, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_shape_errors_name_the_shapes():
    model = bk.build_model("simple_rnn", 3, input_dim=2)
    x, y = _data()
    with pytest.raises(ValueError, match=r"input_dim=2.*\(3, 12, 3\)"):
        bk.fit(model, np.zeros((3, 12, 3)), y)
    with pytest.raises(ValueError, match=r"aligned.*\(3, 12, 1\).*\(3, 11, 1\)"):
        bk.fit(model, x, y[:, :-1])
    with pytest.raises(ValueError, match="3 dimensions"):
        bk.fit(model, x[0], y)
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\)"):
        bk.bptt_gradients(model, x, np.full((3, 12), 2), loss="sparse_categorical_crossentropy")


def test_fit_rejects_bad_settings():
    model = bk.build_model("simple_rnn", 3)
    x, y = bk.next_step_pairs(noisy_sines(8, 11, seed=0))
    stateful = bk.build_model("simple_rnn", 3, stateful=True, batch_size=4)
    cases = [
        (lambda: bk.fit(stateful, x, y, batch_size=8, shuffle=False), "must equal the stateful"),
        (lambda: bk.fit(stateful, x, y, batch_size=4), "shuffle=True"),
        (lambda: bk.fit(stateful, x[:6], y[:6], batch_size=4, shuffle=False), "multiple of"),
        (lambda: bk.fit(model, x, y, clipnorm=0.0), "`clipnorm`"),
        (lambda: bk.fit(model, x, y, epochs=0), "`epochs`"),
        (lambda: bk.fit(model, x, y, resume=True), "checkpoint_dir"),
        (lambda: bk.fit(model, x, y, validation_data=x), "pair"),
        (lambda: bk.fit(model, x, y, optimizer="adam"), "Keras optimizer"),
        (lambda: bk.fit(model, x, y, strategy="mirrored"), "tf.distribute.Strategy"),
    ]
    for call, words in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert words in str(info.value), (words, str(info.value))


# ---- per-step loss weights (masks) -----------------------------------------------------


def _last_step_mask(batch, steps):
    mask = np.zeros((batch, steps), np.float32)
    mask[:, -1] = 1.0
    return mask


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_last_step_mask_equals_keras_tape_on_the_last_step(cell, fast):
    model = bk.build_model(cell, 5, input_dim=2, seed=4)
    x, y = _data(batch=4, steps=11)
    loss, grads = bk.bptt_gradients(model, x, y, sample_weight=_last_step_mask(4, 11), fast=fast)
    with tf.GradientTape() as tape:  # independent: Keras' loop, loss on the last step only
        reference = keras.losses.MeanSquaredError()(y[:, -1], model(x)[:, -1])
    ref_grads = tape.gradient(reference, model.trainable_variables)
    assert loss == pytest.approx(float(reference), rel=1e-5)
    for got, ref in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("k1, k2", [(None, None), (4, 4), (3, 7)])
def test_unit_weights_change_nothing_and_scaling_weights_keeps_the_weighted_mean(k1, k2):
    model = bk.build_model("simple_rnn", 4, input_dim=2, seed=6)
    x, y = _data(batch=3, steps=12)
    base_loss, base = bk.bptt_gradients(model, x, y, k1=k1, k2=k2)
    ones_loss, ones = bk.bptt_gradients(model, x, y, k1=k1, k2=k2, sample_weight=np.ones((3, 12)))
    twos_loss, twos = bk.bptt_gradients(
        model, x, y, k1=k1, k2=k2, sample_weight=np.full((3, 12), 2.0)
    )
    assert ones_loss == pytest.approx(base_loss, rel=1e-6)
    assert twos_loss == pytest.approx(base_loss, rel=1e-6)
    for a, b, c in zip(base, ones, twos, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-8)


def test_truncated_gradient_of_a_masked_loss_agrees_across_paths_and_differs_from_full():
    # With the loss on the last step only, TBPTT(k) back-propagates through the last k steps
    # only, so its recurrent gradient differs from full BPTT's; fast and plain paths agree.
    model = bk.build_model("simple_rnn", 4, input_dim=1, seed=7)
    x, y = _data(batch=2, steps=12, in_dim=1)
    mask = _last_step_mask(2, 12)
    _, full = bk.bptt_gradients(model, x, y, sample_weight=mask)
    _, cut = bk.bptt_gradients(model, x, y, k1=4, k2=4, sample_weight=mask)
    _, last_block = bk.bptt_gradients(model, x, y, k1=4, k2=4, sample_weight=mask, fast=False)
    assert _rel_err(cut[1], full[1]) > 1e-3  # the recurrent kernel's gradient differs
    for a, b in zip(cut, last_block, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_fit_with_a_mask_is_sgd_on_the_masked_gradient_and_reports_the_masked_loss():
    model = bk.build_model("lstm", 4, input_dim=2, seed=8)
    x, y = _data(batch=4, steps=9)
    mask = _last_step_mask(4, 9)
    before = model.get_weights()
    loss, grads = bk.bptt_gradients(model, x, y, sample_weight=mask)
    history = bk.fit(
        model,
        x,
        y,
        batch_size=4,
        optimizer=keras.optimizers.SGD(0.1),
        shuffle=False,
        sample_weight=mask,
        validation_data=(x, y, mask),
        verbose=0,
    )
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-5)
    for w0, g, w1 in zip(before, grads, model.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w0 - 0.1 * g, rtol=1e-5, atol=1e-7)
    after = float(np.mean((model.predict(x, verbose=0)[:, -1] - y[:, -1]) ** 2))
    assert history.history["val_loss"][0] == pytest.approx(after, rel=1e-4)


@pytest.mark.parametrize(
    "weights, words",
    [
        (np.ones((3, 11)), ["sample_weight", "(3, 12)", "(3, 11)"]),
        (-np.ones((3, 12)), ["sample_weight", "non-negative"]),
        (np.zeros((3, 12)), ["sample_weight", "positive"]),
        ("mask", ["sample_weight", "'mask'"]),
    ],
)
def test_bad_sample_weight_is_refused_with_a_clear_error(weights, words):
    model = bk.build_model("simple_rnn", 3, input_dim=2, seed=0)
    x, y = _data(batch=3, steps=12)
    for call in (bk.bptt_gradients, bk.fit):
        with pytest.raises((ValueError, TypeError)) as err:
            call(model, x, y, sample_weight=weights)
        for word in words:
            assert word in str(err.value)


# --- several batches per compiled call (steps_per_execution) -------------------------------


def _fit_run(cell, per_call, *, n=44, weighted=False, epochs=2, callbacks=None, **kwargs):
    """A small full-BPTT run; 44 sequences in batches of 8 leave a partial batch of 4."""
    x, y = bk.next_step_pairs(noisy_sines(n, 13, seed=3))
    weights = None
    if weighted:
        weights = np.random.default_rng(0).integers(0, 2, size=x.shape[:2]).astype("float32")
        weights[:, -1] = 1.0  # every row scores at least one step
    model = bk.build_model(cell, 5, seed=0)
    optimizer = keras.optimizers.Adam(0.02)
    history = bk.fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=8,
        seed=4,
        verbose=0,
        optimizer=optimizer,
        sample_weight=weights,
        steps_per_execution=per_call,
        callbacks=callbacks,
        **kwargs,
    )
    return model, optimizer, history


@pytest.mark.parametrize("cell, weighted", [("simple_rnn", False), ("lstm", True), ("gru", False)])
def test_several_batches_per_call_train_exactly_like_one_call_per_batch(cell, weighted):
    one, opt_one, hist_one = _fit_run(cell, 1, weighted=weighted)
    many, opt_many, hist_many = _fit_run(cell, None, weighted=weighted)  # automatic: 16
    # 6 batches per epoch (the last one partial, padded in the graph with weight-0 rows).
    assert int(opt_one.iterations.numpy()) == int(opt_many.iterations.numpy()) == 2 * 6
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(hist_many.history[key], hist_one.history[key], rtol=1e-5)
    for a, b in zip(many.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # One compiled shape serves every batch, the partial one included (padded with
    # weight-0 rows), whatever the number of batches per call.
    assert hist_many.trace_count == 1 and hist_one.trace_count == 1
    assert hist_many.compiled_calls == 2 and hist_one.compiled_calls == 12  # 1 vs 6 an epoch


def test_whole_batches_are_bit_for_bit_the_same_in_calls_of_several():
    runs = [_fit_run("lstm", per_call, n=48, epochs=2) for per_call in (1, 5)]
    (one, _, hist_one), (many, _, hist_many) = runs
    assert (hist_one.compiled_calls, hist_many.compiled_calls) == (12, 4)  # calls of 5 + 1
    assert hist_many.history == hist_one.history
    for a, b in zip(many.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_several_batches_per_call_equal_sgd_with_each_batchs_bptt_gradient():
    x, y = bk.next_step_pairs(noisy_sines(20, 9, seed=5))  # batches of 8, 8 and 4
    model = bk.build_model("simple_rnn", 3, seed=2)
    reference = bk.build_model("simple_rnn", 3, seed=2)
    history = bk.fit(
        model, x, y, batch_size=8, shuffle=False, verbose=0,
        optimizer=keras.optimizers.SGD(0.1), steps_per_execution=3,
    )  # fmt: skip
    for rows in (slice(0, 8), slice(8, 16), slice(16, 20)):
        _, grads = bk.bptt_gradients(reference, x[rows], y[rows])
        reference.set_weights(
            [w - 0.1 * g for w, g in zip(reference.get_weights(), grads, strict=True)]
        )
    assert history.compiled_calls == 1  # all three batches in one call
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_stateful_streams_carry_the_state_across_batches_within_a_call():
    """Several stateful batches per call == TBPTT(k) over each row as one long sequence
    (which runs one call per block)."""
    series = np.sin(np.arange(241) / 4.0) + 0.1 * np.random.default_rng(1).normal(size=241)
    batch, chunk = 4, 10
    xs, ys = bk.stream_batches(series, batch_size=batch, seq_len=chunk)  # 6 batches of 4
    stateful = bk.build_model("lstm", 5, stateful=True, batch_size=batch, seed=0)
    optimizer = keras.optimizers.SGD(0.05)
    history = bk.fit(
        stateful, xs, ys, batch_size=batch, shuffle=False, verbose=0, optimizer=optimizer,
        steps_per_execution=4,
    )  # fmt: skip
    assert history.compiled_calls == 2  # batches 1-4 and 5-6
    rows_x = xs.reshape(-1, batch, chunk, 1).transpose(1, 0, 2, 3).reshape(batch, -1, 1)
    rows_y = ys.reshape(-1, batch, chunk, 1).transpose(1, 0, 2, 3).reshape(batch, -1, 1)
    plain = bk.build_model("lstm", 5, seed=0)
    bk.fit(
        plain, rows_x, rows_y, batch_size=batch, k1=chunk, shuffle=False, verbose=0,
        optimizer=keras.optimizers.SGD(0.05),
    )  # fmt: skip
    assert int(optimizer.iterations.numpy()) == 6
    for a, b in zip(stateful.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _KernelAtBatchEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kernels, self.losses = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(self.model.trainable_variables[0].numpy().copy())
        self.losses.append(logs["loss"])


def test_batch_hooks_see_every_update_unless_several_batches_per_call_are_asked_for():
    exact = _KernelAtBatchEnd()
    _, _, history = _fit_run("simple_rnn", None, epochs=1, callbacks=[exact])
    assert history.compiled_calls == 6  # a callback with batch hooks: one call per batch
    assert len(exact.kernels) == 6
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(exact.kernels))

    late = _KernelAtBatchEnd()
    _fit_run("simple_rnn", 3, epochs=1, callbacks=[late])
    assert len(late.kernels) == 6  # still one hook call per batch, in order...
    for call in (late.kernels[:3], late.kernels[3:]):  # ...after the call's three updates
        assert all(np.array_equal(call[0], k) for k in call)
    np.testing.assert_allclose(late.kernels[2], exact.kernels[2], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(late.losses, exact.losses, rtol=1e-5)  # each batch's logs


def test_non_finite_batch_inside_a_call_stops_with_the_last_finite_weights():
    x, y = bk.next_step_pairs(noisy_sines(48, 11, seed=0))
    y_bad = y.copy()
    y_bad[24:32] = 3e38  # the fourth batch of 8 overflows
    model = bk.build_model("simple_rnn", 4, seed=0)
    optimizer = keras.optimizers.SGD(0.1)
    with pytest.warns(RuntimeWarning, match="epoch 1, step 4"):
        history = bk.fit(
            model, x, y_bad, batch_size=8, shuffle=False, verbose=0, optimizer=optimizer,
            steps_per_execution=6,
        )  # fmt: skip
    assert history.nonfinite == {"epoch": 1, "step": 4}
    assert history.compiled_calls == 1
    assert int(optimizer.iterations.numpy()) == 3  # batches 5 and 6 of the call never ran
    reference = bk.build_model("simple_rnn", 4, seed=0)
    bk.fit(
        reference, x[:24], y[:24], batch_size=8, shuffle=False, verbose=0,
        optimizer=keras.optimizers.SGD(0.1), steps_per_execution=1,
    )  # fmt: skip
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_hooks_set_on_the_instance_also_keep_one_call_per_batch():
    seen = []
    hook = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(1))
    _, _, history = _fit_run("simple_rnn", None, epochs=1, callbacks=[hook])
    assert history.compiled_calls == 6 and len(seen) == 6
    epoch_only = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    _, _, history = _fit_run("simple_rnn", None, epochs=1, callbacks=[epoch_only])
    assert history.compiled_calls == 1


def test_stateful_run_resumed_at_an_epoch_end_starts_the_epoch_from_zero_states(tmp_path):
    series = np.sin(np.arange(161) / 4.0) + 0.1 * np.random.default_rng(2).normal(size=161)
    xs, ys = bk.stream_batches(series, batch_size=4, seq_len=10)  # 4 batches of 4

    def run(epochs, **kwargs):
        model = bk.build_model("gru", 3, stateful=True, batch_size=4, seed=0)
        history = bk.fit(
            model, xs, ys, epochs=epochs, batch_size=4, shuffle=False, verbose=0,
            optimizer=keras.optimizers.Adam(0.01), **kwargs,
        )  # fmt: skip
        return model, history

    full, full_history = run(3)
    run(1, checkpoint_dir=tmp_path)
    resumed, resumed_history = run(3, checkpoint_dir=tmp_path, resume=True)
    assert resumed_history.history == full_history.history
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class _InterruptAt(keras.callbacks.Callback):
    """Sends this process SIGINT (as Ctrl-C does) after a given batch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_inside_a_call_checkpoints_at_its_end_and_resume_is_exact(tmp_path):
    # Uninterrupted: calls of up to 4 batches, [0-3] and [4, 5] in every epoch.
    full, _, full_history = _fit_run("gru", 4, epochs=3)
    # With checkpoint_every=3 the calls are cut at every third batch: [0-2], [3-5]. Ctrl-C
    # during epoch 2's batch 1 takes effect at the end of its call, after batch 2.
    kwargs = {"epochs": 3, "checkpoint_every": 3, "checkpoint_dir": tmp_path}
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 3"):
        _fit_run("gru", 4, callbacks=[_InterruptAt(1, 1)], **kwargs)
    meta = load_checkpoint(latest_checkpoint(tmp_path))["meta"]
    assert (meta["epoch"], meta["step"], meta["batches_done"]) == (1, 3, 9)
    resumed, _, resumed_history = _fit_run("gru", 4, resume=True, **kwargs)
    # Other call boundaries than the uninterrupted run's, the same updates bit for bit.
    assert resumed_history.history == full_history.history
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "value, kwargs, error, words",
    [
        (0, {}, ValueError, "`steps_per_execution` must be an integer >= 1. Received: 0"),
        ("4", {}, TypeError, "`steps_per_execution` must be an integer"),
        (True, {}, TypeError, "`steps_per_execution` must be an integer"),
    ],
)
def test_bad_steps_per_execution_is_refused_before_training(value, kwargs, error, words):
    x, y = bk.next_step_pairs(noisy_sines(8, 13, seed=0))
    model = bk.build_model("simple_rnn", 3, seed=0)
    before = model.get_weights()
    with pytest.raises(error, match=words.replace("(", r"\(")):
        bk.fit(model, x, y, batch_size=4, verbose=0, steps_per_execution=value, **kwargs)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_several_batches_per_call_are_refused_under_a_strategy():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = bk.build_model("simple_rnn", 3, seed=0)
    x, y = bk.next_step_pairs(noisy_sines(8, 13, seed=0))
    with pytest.raises(ValueError, match="`steps_per_execution`=2 is not supported with"):
        bk.fit(model, x, y, batch_size=4, strategy=strategy, steps_per_execution=2, verbose=0)
