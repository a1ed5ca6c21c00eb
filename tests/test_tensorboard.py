"""Gradient norms through time in TensorBoard: the event files, read back with TensorFlow's
own reader, hold what `gradient_norms_through_time` measures, under `bptt_keras.fit` and under
Keras' own `fit`."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_data

import bptt_keras as bk
from bptt_keras.tensorboard import SUBDIR, per_step_factor


def read_events(log_dir) -> dict[str, list[tuple[int, np.ndarray]]]:
    """{tag: [(step, value), ...]} of every summary under `log_dir/gradients`, as TensorBoard
    reads them (TF2 summaries are tensor protos; scalars are 0-d tensors)."""
    events: dict[str, list] = {}
    files = sorted(Path(log_dir, SUBDIR).glob("events.out.tfevents.*"))
    assert files, f"no event file under {Path(log_dir, SUBDIR)}"
    for file in files:
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                events.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return events


class NormsAtEpochEnd(keras.callbacks.Callback):
    """An independent record: `gradient_norms_through_time` on the same probe, after the
    TensorBoard callback, at every epoch end."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.norms = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        self.norms.append(bk.gradient_norms_through_time(self.model, self.x, self.y))


def test_per_step_factor_is_the_geometric_rate_going_back():
    distance = np.arange(9)[::-1]  # step t is T - 1 - t steps from the last one
    np.testing.assert_allclose(per_step_factor(0.5**distance), 0.5, rtol=1e-12)
    np.testing.assert_allclose(per_step_factor(3.0 * 1.2**distance), 1.2, rtol=1e-12)
    assert np.isnan(per_step_factor(np.array([0.0, 0.0, 1.0])))  # one positive norm: no slope


def test_bptt_fit_logs_the_norms_through_time_and_every_update_grad_norm(tmp_path):
    x, y = small_data(batch=8)  # (8, T, 2) -> (8, T, 1)
    model = bk.build_model("lstm", 4, input_dim=x.shape[-1], seed=0)
    probe = bk.GradientNormsThroughTime(x[:4], y[:4], tmp_path, loss="mse")
    check = NormsAtEpochEnd(x[:4], y[:4])
    optimizer = keras.optimizers.Adam(0.01)
    history = bk.fit(
        model, x, y, epochs=2, batch_size=4, k1=3, optimizer=optimizer,
        callbacks=[probe, check], verbose=0, seed=0,
    )  # fmt: skip
    events = read_events(tmp_path)
    steps = x.shape[1]

    assert [step for step, _ in events["norms"]] == [0, 1]
    measured = zip(events["norms"], check.norms, probe.history, strict=True)
    for (_, logged), expected, kept in measured:
        np.testing.assert_allclose(logged, expected, rtol=1e-6)
        np.testing.assert_array_equal(logged, kept)
        assert logged.shape == (steps,) and np.all(logged > 0)
    for (_, ratio), (_, factor), norms in zip(
        events["first_over_last"], events["per_step_factor"], check.norms, strict=True
    ):
        np.testing.assert_allclose(ratio, norms[0] / norms[-1], rtol=1e-5)
        np.testing.assert_allclose(factor, per_step_factor(norms), rtol=1e-5)
    for (_, buckets), norms in zip(events["log10_norms"], check.norms, strict=True):
        # Histogram buckets are rows (left edge, right edge, count): every step is counted,
        # and the edges span log10 of the norms.
        assert buckets.shape[1] == 3 and buckets[:, 2].sum() == steps
        np.testing.assert_allclose(buckets[0, 0], np.log10(norms.min()), rtol=1e-5)
        np.testing.assert_allclose(buckets[-1, 1], np.log10(norms.max()), rtol=1e-5)
    ((_, image),) = events["norms_through_time"][:1]
    width, height = int(image[0]), int(image[1])  # image summaries: [width, height, png...]
    decoded = tf.io.decode_png(image[2]).numpy()
    assert decoded.shape == (height, width, 4) and decoded.std() > 0  # a drawn plot

    updates = int(optimizer.iterations.numpy())
    logged = events["grad_norm"]
    assert [step for step, _ in logged] == list(range(updates))
    values = np.array([float(v) for _, v in logged])
    np.testing.assert_allclose(values, history.update_grad_norms, rtol=1e-6)
    per_epoch = np.split(values, 2)  # equal updates per epoch: the epoch log is their mean
    np.testing.assert_allclose(
        [v.mean() for v in per_epoch], history.history["grad_norm"], rtol=1e-5
    )


def test_keras_fit_logs_the_norms_at_every_and_at_the_last_epoch(tmp_path):
    x, y = small_data(batch=8)
    model = bk.build_model("gru", 4, input_dim=x.shape[-1], seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    probe = bk.GradientNormsThroughTime(x[:2], y[:2], tmp_path, every=2)
    check = NormsAtEpochEnd(x[:2], y[:2])
    model.fit(x, y, epochs=3, batch_size=4, callbacks=[probe, check], verbose=0)
    events = read_events(tmp_path)
    # every=2: the second epoch (step 1), and the third because it is the last.
    assert [step for step, _ in events["norms"]] == [1, 2]
    for (_, logged), expected in zip(events["norms"], check.norms[1:], strict=True):
        np.testing.assert_allclose(logged, expected, rtol=1e-6)
    assert "grad_norm" not in events  # Keras' fit records no per-update norms


def test_a_second_bptt_fit_continues_the_grad_norm_curve(tmp_path):
    x, y = small_data(batch=4)
    model = bk.build_model("simple_rnn", 3, input_dim=x.shape[-1], seed=0)
    optimizer = keras.optimizers.SGD(0.01)
    for _ in range(2):
        probe = bk.GradientNormsThroughTime(x, y, tmp_path, loss="mse")
        bk.fit(model, x, y, batch_size=2, optimizer=optimizer, callbacks=[probe], verbose=0)
    steps = [step for step, _ in read_events(tmp_path)["grad_norm"]]
    assert steps == list(range(int(optimizer.iterations.numpy()))) == [0, 1, 2, 3]


def test_bad_arguments_are_named_before_training(tmp_path):
    x, y = small_data(batch=4)
    model = bk.build_model("simple_rnn", 3, input_dim=x.shape[-1], seed=0)
    with pytest.raises(TypeError, match="`log_dir`"):
        bk.GradientNormsThroughTime(x, y, 5)
    with pytest.raises(ValueError, match="`every`"):
        bk.GradientNormsThroughTime(x, y, tmp_path, every=0)
    before = model.get_weights()
    bad = [
        (bk.GradientNormsThroughTime(x[..., :1], y, tmp_path), "`x_probe`.*feature"),
        (bk.GradientNormsThroughTime(x, y[:, :-1], tmp_path), "`y_probe`"),
        (bk.GradientNormsThroughTime(x, y, tmp_path, layer=3), "`layer`"),
        (bk.GradientNormsThroughTime(x, y, tmp_path, sample_weight=np.ones(4)), "sample_weight"),
    ]
    for callback, message in bad:
        with pytest.raises(ValueError, match=message):
            bk.fit(model, x, y, batch_size=2, callbacks=[callback], verbose=0)
    for w0, w1 in zip(before, model.get_weights(), strict=True):  # no update was applied
        np.testing.assert_array_equal(w0, w1)
