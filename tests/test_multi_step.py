"""Several full-BPTT batches per compiled call (`steps_per_execution`): the same updates as
one call per batch, batch hooks, faults inside a call."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import fit_run

import bptt_keras as bk
from bptt_keras.tasks import noisy_sines


@pytest.mark.parametrize("cell, weighted", [("simple_rnn", False), ("lstm", True), ("gru", False)])
def test_several_batches_per_call_train_exactly_like_one_call_per_batch(cell, weighted):
    one, opt_one, hist_one = fit_run(cell, 1, weighted=weighted)
    many, opt_many, hist_many = fit_run(cell, None, weighted=weighted)  # automatic: 16
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
    runs = [fit_run("lstm", per_call, n=48, epochs=2) for per_call in (1, 5)]
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
    _, _, history = fit_run("simple_rnn", None, epochs=1, callbacks=[exact])
    assert history.compiled_calls == 6  # a callback with batch hooks: one call per batch
    assert len(exact.kernels) == 6
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(exact.kernels))

    late = _KernelAtBatchEnd()
    fit_run("simple_rnn", 3, epochs=1, callbacks=[late])
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
    _, _, history = fit_run("simple_rnn", None, epochs=1, callbacks=[hook])
    assert history.compiled_calls == 6 and len(seen) == 6
    epoch_only = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    _, _, history = fit_run("simple_rnn", None, epochs=1, callbacks=[epoch_only])
    assert history.compiled_calls == 1


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
