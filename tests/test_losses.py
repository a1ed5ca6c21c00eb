"""Losses and their denominator: reductions, cross-entropy, per-step weights (masks)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import rel_err, small_data

import bptt_keras as bk
from bptt_keras.oracle import numpy_bptt
from bptt_keras.tasks import noisy_sines


def test_sum_over_time_reduction_is_T_times_mean(float64):
    model = bk.build_model("simple_rnn", 3, input_dim=2, seed=4)
    x, y = small_data(steps=7)
    loss_mean, g_mean = bk.bptt_gradients(model, x, y)
    loss_sum, g_sum = bk.bptt_gradients(model, x, y, reduction="sum_over_time")
    ref_loss, ref_grads, _ = numpy_bptt(model.get_weights(), x, y, reduction="sum_over_time")
    assert loss_sum == pytest.approx(7 * loss_mean) and loss_sum == pytest.approx(ref_loss)
    for a, b, r in zip(g_sum, g_mean, ref_grads, strict=True):
        np.testing.assert_allclose(a, 7 * b, rtol=1e-10, atol=1e-14)
        assert rel_err(a, r) <= 1e-8


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


def _last_step_mask(batch, steps):
    mask = np.zeros((batch, steps), np.float32)
    mask[:, -1] = 1.0
    return mask


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_last_step_mask_equals_keras_tape_on_the_last_step(cell, fast):
    model = bk.build_model(cell, 5, input_dim=2, seed=4)
    x, y = small_data(batch=4, steps=11)
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
    x, y = small_data(batch=3, steps=12)
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
    x, y = small_data(batch=2, steps=12, in_dim=1)
    mask = _last_step_mask(2, 12)
    _, full = bk.bptt_gradients(model, x, y, sample_weight=mask)
    _, cut = bk.bptt_gradients(model, x, y, k1=4, k2=4, sample_weight=mask)
    _, last_block = bk.bptt_gradients(model, x, y, k1=4, k2=4, sample_weight=mask, fast=False)
    assert rel_err(cut[1], full[1]) > 1e-3  # the recurrent kernel's gradient differs
    for a, b in zip(cut, last_block, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_fit_with_a_mask_is_sgd_on_the_masked_gradient_and_reports_the_masked_loss():
    model = bk.build_model("lstm", 4, input_dim=2, seed=8)
    x, y = small_data(batch=4, steps=9)
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
    x, y = small_data(batch=3, steps=12)
    for call in (bk.bptt_gradients, bk.fit):
        with pytest.raises((ValueError, TypeError)) as err:
            call(model, x, y, sample_weight=weights)
        for word in words:
            assert word in str(err.value)


# ---- the one owner of the denominator ------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum_over_time"])
@pytest.mark.parametrize("weighted", [False, True])
def test_per_update_denominators_equal_a_direct_count_of_each_blocks_scored_steps(
    reduction, weighted
):
    from bptt_keras.losses import Normaliser

    rows, time, batch, features = 11, 13, 4, 2  # 3 batches, the last with 3 real rows
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 2, size=(rows, time)) * (rng.random((rows, time)) > 0.3)
    weights[:, 8:12] = 0.0  # a block with no scored step: N = 1 under "mean"
    order = rng.permutation(rows)
    padded = np.concatenate([order, [order[-1]]])  # padded to 12 positions
    blocks = bk.plan_blocks(time, 4, 6)
    normaliser = Normaliser("mse", reduction, features, time)
    denominators, counts = normaliser.per_update(
        padded, rows, weights if weighted else None, blocks, batch
    )
    expected_n, expected_c = [], []
    for b in range(3):
        positions = np.arange(b * batch, (b + 1) * batch)
        real = padded[positions[positions < rows]]  # the padding row does not count
        for block in blocks:
            w = weights[real] if weighted else np.ones((len(real), time))
            scored = w[:, block.loss_start : block.end]
            expected_c.append(scored.sum() * features)
            if reduction == "mean":
                expected_n.append(scored.sum() * features if scored.any() else 1.0)
            else:
                expected_n.append(len(real) * features)
    np.testing.assert_allclose(counts, expected_c, rtol=1e-12)
    np.testing.assert_allclose(denominators, expected_n, rtol=1e-12)
    assert normaliser.report(6.0, 3.0) == (2.0 if reduction == "mean" else 2.0 * time)


def test_evaluate_is_the_weighted_mean_of_keras_predictions():
    x, y = bk.next_step_pairs(noisy_sines(10, 9, seed=1))
    weights = np.random.default_rng(2).integers(0, 2, size=x.shape[:2]).astype("float32")
    weights[:, -1] = 1.0
    model = bk.build_model("lstm", 3, seed=0)
    errors = (model.predict(x, verbose=0).astype(np.float64) - y) ** 2  # (10, 8, 1)
    expected = (errors[..., 0] * weights).sum() / weights.sum()
    got = bk.evaluate(model, x, y, sample_weight=weights, batch_size=4)
    assert got == pytest.approx(expected, rel=1e-5)
    summed = bk.evaluate(model, x, y, reduction="sum_over_time", batch_size=4)
    assert summed == pytest.approx(8 * errors.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="`batch_size`"):
        bk.evaluate(model, x, y, batch_size=0)
