"""The training loop: one update per block, clipping, seeds, stateful streams, callbacks,
faults, bad settings."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SignalAt, fit_run, small_data

import bptt_keras as bk
from bptt_keras.checkpoint import latest_checkpoint, load_checkpoint
from bptt_keras.tasks import noisy_sines


def test_one_full_bptt_step_is_one_sgd_update_with_the_bptt_gradient():
    model = bk.build_model("gru", 4, input_dim=2, seed=0)
    x, y = small_data(batch=4)
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
    x, y = small_data(batch=4)
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
        global_clipnorm=1.0,
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


def test_fit_rejects_bad_settings():
    model = bk.build_model("simple_rnn", 3)
    x, y = bk.next_step_pairs(noisy_sines(8, 11, seed=0))
    stateful = bk.build_model("simple_rnn", 3, stateful=True, batch_size=4)
    cases = [
        (lambda: bk.fit(stateful, x, y, batch_size=8, shuffle=False), "must equal the stateful"),
        (lambda: bk.fit(stateful, x, y, batch_size=4), "shuffle=True"),
        (lambda: bk.fit(stateful, x[:6], y[:6], batch_size=4, shuffle=False), "multiple of"),
        (lambda: bk.fit(model, x, y, global_clipnorm=0.0), "`global_clipnorm`"),
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


def test_ctrl_c_inside_a_call_checkpoints_at_its_end_and_resume_is_exact(tmp_path):
    # Uninterrupted: calls of up to 4 batches, [0-3] and [4, 5] in every epoch.
    full, _, full_history = fit_run("gru", 4, epochs=3)
    # With checkpoint_every=3 the calls are cut at every third batch: [0-2], [3-5]. Ctrl-C
    # during epoch 2's batch 1 takes effect at the end of its call, after batch 2.
    kwargs = {"epochs": 3, "checkpoint_every": 3, "checkpoint_dir": tmp_path}
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 3"):
        fit_run("gru", 4, callbacks=[SignalAt(1, 1)], **kwargs)
    meta = load_checkpoint(latest_checkpoint(tmp_path))["meta"]
    assert (meta["epoch"], meta["step"], meta["batches_done"]) == (1, 3, 9)
    resumed, _, resumed_history = fit_run("gru", 4, resume=True, **kwargs)
    # Other call boundaries than the uninterrupted run's, the same updates bit for bit.
    assert resumed_history.history == full_history.history
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_written_by_the_previous_engine_still_resumes(tmp_path):
    """tests/fixtures/checkpoint_7e4bb2b was written by the engine as of commit 7e4bb2b
    (before the engine package): SimpleRNN(3), TBPTT(4) over 16 sequences of 12 steps in
    batches of 8, Adam(0.01), seed 3, interrupted after epoch 2's first batch."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "checkpoint_7e4bb2b"
    shutil.copytree(fixture, tmp_path / "ckpt")
    x, y = bk.next_step_pairs(noisy_sines(16, 13, seed=0))

    def run(**kwargs):
        model = bk.build_model("simple_rnn", 3, seed=0)
        history = bk.fit(
            model, x, y, batch_size=8, k1=4, epochs=3, seed=3, verbose=0,
            optimizer=keras.optimizers.Adam(0.01), **kwargs,
        )  # fmt: skip
        return model, history

    meta = load_checkpoint(latest_checkpoint(tmp_path / "ckpt"))["meta"]
    assert (meta["epoch"], meta["step"], meta["batches_done"]) == (1, 1, 3)
    resumed, resumed_history = run(checkpoint_dir=tmp_path / "ckpt", resume=True)
    assert resumed_history.history["loss"][0] == meta["history"]["loss"][0]  # kept as written
    assert len(resumed_history.history["loss"]) == 3
    # The old engine compiled each block on its own, this one runs blocks inside a loop:
    # the same arithmetic, summed in another order by XLA, so equal to float32 rounding
    # (bit for bit resumption within one version is tested elsewhere).
    full, full_history = run()
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(
            resumed_history.history[key], full_history.history[key], rtol=1e-6
        )
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_model_built_in_a_strategy_scope_trains_under_that_strategy():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = bk.build_model("simple_rnn", 3, seed=0)
    x, y = bk.next_step_pairs(noisy_sines(8, 9, seed=0))
    # Under a strategy a call trains one update; without one, 2 batches share a call.
    history = bk.fit(model, x, y, batch_size=4, k1=4, verbose=0, seed=0)
    assert history.compiled_calls == 2 * 2  # 2 batches x 2 blocks, one update per call
    with pytest.raises(ValueError, match="`steps_per_execution`=2 is not supported with"):
        bk.fit(model, x, y, batch_size=4, verbose=0, steps_per_execution=2)
    plain = bk.build_model("simple_rnn", 3, seed=0)
    assert bk.fit(plain, x, y, batch_size=4, k1=4, verbose=0, seed=0).compiled_calls == 1


@pytest.mark.parametrize("backend, where", [("numpy", "env"), ("jax", "env"), ("torch", "json")])
def test_importing_the_package_under_another_keras_backend_is_one_clear_error(
    backend, where, tmp_path
):
    """One clear error, whether or not the other backend's own packages are installed (a
    fresh venv has neither jax, torch nor scipy), set by KERAS_BACKEND or by keras.json."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    if where == "env":
        env["KERAS_BACKEND"] = backend
    else:
        (tmp_path / "keras.json").write_text(json.dumps({"backend": backend}))
        env["KERAS_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import bptt_keras"], capture_output=True, text=True, env=env
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: bptt_keras needs Keras' TensorFlow backend"), last
    assert f"{backend!r}" in last and "KERAS_BACKEND=tensorflow" in last
