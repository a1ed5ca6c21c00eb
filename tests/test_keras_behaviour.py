"""`bptt_keras.fit` behaves as a Keras user expects (issue 11, part 2): the compiled optimizer
and loss, regularisers, Keras losses and metrics, clipping, Keras' fit options, SIGTERM and
checkpoints restored by name."""

import os
import signal
import stat

import keras
import numpy as np
import pytest
from conftest import SignalAt, small_data

import bptt_keras as bk
from bptt_keras.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from bptt_keras.tasks import noisy_sines


def _model(cell="simple_rnn", units=3, head=None, regularizer=None, output_dim=1, name_cls=None):
    """A build_model-style stack, built by hand so that it can carry regularisers."""
    keras.utils.set_random_seed(0)
    rnn = name_cls or {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}[cell]
    return keras.Sequential(
        [
            keras.Input((None, 2)),
            rnn(units, return_sequences=True, kernel_regularizer=regularizer),
            keras.layers.Dense(output_dim, activation=head),
        ]
    )


def _same_start(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def _sgd_steps(model, x, y, **kwargs):
    return bk.fit(model, x, y, batch_size=len(x), shuffle=False, verbose=0, **kwargs)


# ---- 1. the compiled optimizer and loss ------------------------------------------------------


def test_the_compiled_optimizer_and_loss_are_used():
    x, y = small_data(4, 6)
    model = _model()
    reference = _same_start(model)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mae")
    _sgd_steps(model, x, y, epochs=2)
    assert int(model.optimizer.iterations.numpy()) == 2  # the compiled object trained
    _sgd_steps(reference, x, y, epochs=2, optimizer=keras.optimizers.Adam(0.05), loss="mae")
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_explicit_optimizer_wins_and_a_conflicting_loss_is_refused():
    x, y = small_data(4, 6)
    model = _model()
    reference = _same_start(model)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    _sgd_steps(model, x, y, optimizer=keras.optimizers.SGD(0.1))
    assert int(model.optimizer.iterations.numpy()) == 1
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    _sgd_steps(reference, x, y, optimizer=keras.optimizers.SGD(0.1))
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="`loss`.*conflicts.*compiled"):
        bk.fit(model, x, y, loss="mae", verbose=0)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- 2. regularisers -------------------------------------------------------------------------


def test_an_l2_regulariser_adds_exactly_2_lambda_w_to_the_gradient_and_its_penalty_to_the_loss():
    lam = 0.3
    x, y = small_data(3, 8)
    model = _model(regularizer=keras.regularizers.L2(lam))
    plain = _model()
    plain.set_weights(model.get_weights())
    for k1 in (None, 3):  # the penalty enters once, also when the gradient is truncated
        loss, grads = bk.bptt_gradients(model, x, y, k1=k1)
        plain_loss, plain_grads = bk.bptt_gradients(plain, x, y, k1=k1)
        kernel = model.layers[0].cell.kernel.numpy()
        np.testing.assert_allclose(grads[0] - plain_grads[0], 2 * lam * kernel, atol=1e-6)
        for a, b in zip(grads[1:], plain_grads[1:], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-7)
        assert loss - plain_loss == pytest.approx(lam * np.sum(kernel**2), rel=1e-5)
    # fit: the reported loss of a full-BPTT epoch of one batch is the loss before its update
    penalty = lam * np.sum(model.layers[0].cell.kernel.numpy() ** 2)
    history = _sgd_steps(model, x, y, optimizer=keras.optimizers.SGD(0.0))
    assert history.history["loss"][0] == pytest.approx(plain_loss + penalty, rel=1e-5)
    assert bk.evaluate(model, x, y) == pytest.approx(plain_loss + penalty, rel=1e-5)


def test_an_activity_regulariser_is_refused_rather_than_dropped():
    model = keras.Sequential(
        [
            keras.Input((None, 2)),
            keras.layers.SimpleRNN(3, return_sequences=True),
            keras.layers.Dense(1, activity_regularizer=keras.regularizers.L2(0.1)),
        ]
    )
    x, y = small_data(3, 5)
    with pytest.raises(ValueError, match="activity_regularizer"):
        bk.fit(model, x, y, verbose=0)


# ---- 3. Keras losses and metrics --------------------------------------------------------------


def _keras_loss_and_grads(model, loss_fn, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss_fn(y, model(x))
    return float(value), [g.numpy() for g in tape.gradient(value, model.trainable_variables)]


@pytest.mark.parametrize(
    "loss, keras_loss, head, kind",
    [
        ("mae", keras.losses.MeanAbsoluteError(), None, "real"),
        ("huber", keras.losses.Huber(), None, "real"),
        (keras.losses.Huber(delta=0.3), keras.losses.Huber(delta=0.3), None, "real"),
        # a string cross-entropy on a softmax head takes probabilities: not softmaxed twice
        (
            "sparse_categorical_crossentropy",
            keras.losses.SparseCategoricalCrossentropy(),
            "softmax",
            "sparse",
        ),  # fmt: skip
        (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            None,
            "sparse",
        ),  # fmt: skip
        ("categorical_crossentropy", keras.losses.CategoricalCrossentropy(), "softmax", "onehot"),
        (
            keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            None,
            "onehot",
        ),  # fmt: skip
        ("binary_crossentropy", keras.losses.BinaryCrossentropy(), "sigmoid", "binary"),
        (
            keras.losses.BinaryCrossentropy(from_logits=True),
            keras.losses.BinaryCrossentropy(from_logits=True),
            None,
            "binary",
        ),  # fmt: skip
    ],
)
def test_keras_losses_match_keras_own_loss_and_gradient(loss, keras_loss, head, kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    classes = rng.integers(0, 4, size=(3, 6))
    y = {
        "real": rng.normal(size=(3, 6, 4)),
        "sparse": classes,
        "onehot": np.eye(4)[classes],
        "binary": rng.integers(0, 2, size=(3, 6, 4)).astype(float),
    }[kind].astype("float32")
    model = _model(head=head, output_dim=4)
    expected, expected_grads = _keras_loss_and_grads(model, keras_loss, x, y)
    got, grads = bk.bptt_gradients(model, x, y, loss=loss)
    assert got == pytest.approx(expected, rel=1e-5)
    for a, b in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_metrics_are_reported_for_train_and_validation_as_keras_names_them():
    rng = np.random.default_rng(2)
    x, y = small_data(6, 7)
    xv, yv = small_data(4, 7, seed=5)
    model = _model()
    history = bk.fit(
        model, x, y, batch_size=6, optimizer=keras.optimizers.SGD(0.0), verbose=0,
        metrics=["mae", keras.metrics.MeanSquaredError()], validation_data=(xv, yv),
    )  # fmt: skip
    logs = {k: v[0] for k, v in history.history.items()}
    predict = model.predict(x, verbose=0)
    predict_val = model.predict(xv, verbose=0)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(predict - y)), rel=1e-5)
    assert logs["mean_squared_error"] == pytest.approx(np.mean((predict - y) ** 2), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["mean_squared_error"], rel=1e-6)
    assert logs["val_mae"] == pytest.approx(np.mean(np.abs(predict_val - yv)), rel=1e-5)
    # classes: "accuracy" follows the loss, as in Keras' compile
    classes = rng.integers(0, 3, size=(6, 7))
    clf = _model(head="softmax", output_dim=3)
    weights = rng.integers(0, 2, size=(6, 7)).astype("float32")
    weights[:, 0] = 1.0
    history = bk.fit(
        clf, x, classes, batch_size=3, loss="sparse_categorical_crossentropy",
        optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"], verbose=0,
        sample_weight=weights,
    )  # fmt: skip
    hits = np.argmax(clf.predict(x, verbose=0), axis=-1) == classes
    expected = np.sum(hits * weights) / np.sum(weights)
    assert history.history["accuracy"][0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="`metrics`.*'accuracy'"):
        bk.fit(_model(), x, y, metrics=["accuracy"], verbose=0)


# ---- 4. clipping ---------------------------------------------------------------------------


def test_clipnorm_clips_each_variable_and_global_clipnorm_the_whole_gradient():
    x, y = small_data(3, 6)
    model = _model()
    _, grads = bk.bptt_gradients(model, x, y)
    before = model.get_weights()
    _sgd_steps(model, x, y, optimizer=keras.optimizers.SGD(1.0), clipnorm=0.05)
    for w0, w1, g in zip(before, model.get_weights(), grads, strict=True):
        expected = g * min(1.0, 0.05 / np.linalg.norm(g))
        np.testing.assert_allclose(w0 - w1, expected, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="at most one of `clipnorm`"):
        bk.fit(model, x, y, clipnorm=1.0, global_clipnorm=1.0, verbose=0)


def test_an_optimizer_that_clips_is_not_clipped_twice():
    x, y = small_data(3, 6)
    model = _model()
    reference = _same_start(model)
    with pytest.warns(UserWarning, match="clips already"):
        _sgd_steps(
            model, x, y, optimizer=keras.optimizers.SGD(1.0, global_clipnorm=0.5),
            global_clipnorm=1e-3,
        )  # fmt: skip
    _sgd_steps(reference, x, y, optimizer=keras.optimizers.SGD(1.0, global_clipnorm=0.5))
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---- 5. Keras' fit options ---------------------------------------------------------------------


def test_validation_split_holds_out_the_last_rows_as_keras_does():
    x, y = bk.next_step_pairs(noisy_sines(16, 9, seed=0))
    runs = []
    for kwargs in ({"validation_split": 0.25}, {"validation_data": (x[12:], y[12:])}):
        model = bk.build_model("simple_rnn", 3, seed=0)
        runs.append(
            bk.fit(
                model,
                x[:12] if "validation_data" in kwargs else x,
                y[:12] if "validation_data" in kwargs else y,
                epochs=2,
                batch_size=4,
                seed=1,
                optimizer=keras.optimizers.Adam(0.01),
                verbose=0,
                **kwargs,
            ).history  # fmt: skip
        )
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="`validation_split`"):
        bk.fit(bk.build_model("simple_rnn", 3), x, y, validation_split=1.5, verbose=0)


def test_initial_epoch_continues_a_run_exactly_and_validation_freq_skips_epochs():
    x, y = bk.next_step_pairs(noisy_sines(12, 9, seed=0))

    def run(model, optimizer, **kwargs):
        return bk.fit(
            model, x, y, batch_size=4, seed=5, optimizer=optimizer, verbose="auto",
            validation_data=(x[:4], y[:4]), validation_freq=2, **kwargs,
        )  # fmt: skip

    whole = bk.build_model("simple_rnn", 3, seed=0)
    history = run(whole, keras.optimizers.Adam(0.01), epochs=4)
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    parts, optimizer = bk.build_model("simple_rnn", 3, seed=0), keras.optimizers.Adam(0.01)
    run(parts, optimizer, epochs=2)
    second = run(parts, optimizer, epochs=4, initial_epoch=2)
    assert second.epoch == [2, 3]
    assert second.history["loss"] == history.history["loss"][2:]
    for a, b in zip(parts.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="`verbose`"):
        bk.fit(parts, x, y, verbose=3)


def test_shuffle_false_trains_the_batches_in_order():
    x, y = small_data(6, 5)
    model = _model()
    reference = _same_start(model)
    bk.fit(model, x, y, batch_size=3, shuffle=False, optimizer=keras.optimizers.SGD(0.1),
           verbose=0)  # fmt: skip
    for rows in (slice(0, 3), slice(3, 6)):
        _, grads = bk.bptt_gradients(reference, x[rows], y[rows])
        for variable, g in zip(reference.trainable_variables, grads, strict=True):
            variable.assign(variable.numpy() - 0.1 * g)
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---- 7. fault tolerance --------------------------------------------------------------------


def test_sigterm_checkpoints_the_last_batch_and_exits_143_and_the_resume_is_exact(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(20, 9, seed=0))

    def run(**kwargs):
        model = bk.build_model("lstm", 3, seed=0)
        history = bk.fit(
            model, x, y, batch_size=4, epochs=2, seed=2, k1=4, verbose=0,
            optimizer=keras.optimizers.Adam(0.01), checkpoint_dir=tmp_path, **kwargs,
        )  # fmt: skip
        return model, history

    with pytest.raises(SystemExit) as info:
        run(callbacks=[SignalAt(0, 1, signal.SIGTERM)])
    assert info.value.code == 143
    meta = load_checkpoint(latest_checkpoint(tmp_path))["meta"]
    assert (meta["epoch"], meta["step"]) == (0, 2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    resumed, resumed_history = run(resume=True)
    full = bk.build_model("lstm", 3, seed=0)
    full_history = bk.fit(
        full, x, y, batch_size=4, epochs=2, seed=2, k1=4, verbose=0,
        optimizer=keras.optimizers.Adam(0.01),
    )  # fmt: skip
    assert resumed_history.history == full_history.history
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoints_restore_by_name_and_refuse_other_variables(tmp_path):
    x, y = small_data(4, 6)
    first = _model()
    bk.fit(first, x, y, batch_size=4, verbose=0, checkpoint_dir=tmp_path, seed=0)
    meta = load_checkpoint(latest_checkpoint(tmp_path))["meta"]
    assert meta["names"]["weights"][0] == "0.SimpleRNN/kernel"
    assert "0.SimpleRNN/kernel:momentum" in meta["names"]["optimizer"]
    # The same architecture built again (other Keras unique names) resumes; nothing left.
    again = _model()
    assert again.weights[0].path != first.weights[0].path
    bk.fit(again, x, y, batch_size=4, verbose=0, checkpoint_dir=tmp_path, resume=True, seed=0)
    for a, b in zip(again.get_weights(), first.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    class OtherRNN(keras.layers.SimpleRNN):  # same shapes, another layer
        pass

    other = _model(name_cls=OtherRNN)
    with pytest.raises(CheckpointError, match="'0.OtherRNN/kernel' is missing from the checkpoint"):
        bk.fit(other, x, y, batch_size=4, verbose=0, checkpoint_dir=tmp_path, resume=True)


def test_the_checkpoint_directory_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    x, y = small_data(4, 6)
    bk.fit(_model(), x, y, batch_size=4, verbose=0, checkpoint_dir=tmp_path)
    assert synced == [False, True]  # the file, then its directory


def test_backup_and_restore_is_refused_with_a_pointer_to_checkpoint_dir(tmp_path):
    x, y = small_data(4, 6)
    callback = keras.callbacks.BackupAndRestore(str(tmp_path))
    with pytest.raises(ValueError, match="BackupAndRestore.*checkpoint_dir"):
        bk.fit(_model(), x, y, callbacks=[callback], verbose=0)
