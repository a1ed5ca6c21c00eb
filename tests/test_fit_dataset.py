"""`fit` and `evaluate` over a tf.data.Dataset: streamed, and equal to the same rows as arrays."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SignalAt

import bptt_keras as bk
from bptt_keras.tasks import noisy_sines


def _data(n=44, steps=13, seed=3):
    return bk.next_step_pairs(noisy_sines(n, steps, seed=seed))  # (n, 12, 1) each


def _model(cell="lstm", **kwargs):
    return bk.build_model(cell, 5, seed=0, **kwargs)


def _fit(model, x, y=None, **kwargs):
    kwargs.setdefault("optimizer", keras.optimizers.Adam(0.02))
    return bk.fit(model, x, y, verbose=0, **kwargs)


def _same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("k1, k2", [(None, None), (4, 4), (3, 6)])
def test_a_dataset_trains_exactly_as_the_same_rows_as_arrays(k1, k2):
    # 44 rows in batches of 8: a last batch of 4, padded with rows of weight 0.
    x, y = _data()
    weights = np.random.default_rng(1).integers(0, 2, size=x.shape[:2]).astype("float32")
    weights[:, -1] = 1.0
    arrays = _model()
    expected = _fit(
        arrays, x, y, sample_weight=weights, batch_size=8, shuffle=False, k1=k1, k2=k2,
        epochs=2, metrics=["mae"],
    )  # fmt: skip
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    streamed = _model()
    history = _fit(streamed, dataset, k1=k1, k2=k2, epochs=2, metrics=["mae"])
    _same_weights(streamed, arrays)
    assert history.history == expected.history
    assert history.update_grad_norms == expected.update_grad_norms


def test_token_ids_with_sparse_targets_train_as_arrays():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(20, 9))
    x, y = ids[:, :-1], ids[:, 1:]

    def model():
        return bk.build_model("gru", 6, vocab_size=7, embedding_dim=4, seed=0)

    arrays = model()
    kwargs = {"loss": "sparse_categorical_crossentropy", "k1": 4, "epochs": 2}
    _fit(arrays, x, y, batch_size=6, shuffle=False, **kwargs)
    streamed = model()
    _fit(streamed, tf.data.Dataset.from_tensor_slices((x, y)).batch(6), **kwargs)
    _same_weights(streamed, arrays)


class _Counting:
    """An endless generator of batches made on the fly (batch i from seed i), counting how
    many were made: nothing but the batches trained (and a few read ahead) may be."""

    def __init__(self, batch=4, steps=12):
        self.made, self.batch, self.steps = 0, batch, steps

    def batch_at(self, i):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(self.batch, self.steps, 1)).astype("float32")
        return x, np.cumsum(x, axis=1) / self.steps

    def __call__(self):
        for i in itertools.count():
            self.made += 1
            yield self.batch_at(i)

    def dataset(self):
        spec = tf.TensorSpec((self.batch, self.steps, 1), tf.float32)
        return tf.data.Dataset.from_generator(self, output_signature=(spec, spec))


def test_an_endless_generated_dataset_is_streamed_not_held():
    source = _Counting()
    # Nominally endless: holding it would never finish; an epoch is 5 of its batches.
    model = _model()
    history = _fit(model, source.dataset(), k1=4, epochs=3, steps_per_epoch=5)
    assert len(history.history["loss"]) == 3
    # The 15 batches trained, and the few tf.data's iterators read ahead (4 here).
    assert 15 <= source.made <= 15 + 8
    # The same 15 batches as arrays (consecutive epochs read consecutive batches, as Keras).
    x, y = (np.concatenate(a) for a in zip(*(source.batch_at(i) for i in range(15)), strict=True))
    arrays = _model()
    expected = _fit(arrays, x[:20], y[:20], batch_size=4, shuffle=False, k1=4, epochs=1)
    first_epoch = _model()
    _fit(first_epoch, _Counting().dataset(), k1=4, epochs=1, steps_per_epoch=5)
    _same_weights(first_epoch, arrays)
    assert expected.history["loss"] == history.history["loss"][:1]


def test_a_finite_dataset_that_runs_out_before_steps_per_epoch_stops_with_a_warning():
    x, y = _data(n=40)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 5 batches
    # Epochs of 2 batches read on through one pass: the third epoch finds only one.
    with pytest.warns(RuntimeWarning, match="ran out of data at epoch 3, batch 2"):
        history = _fit(_model(), dataset, epochs=4, steps_per_epoch=2)
    assert len(history.history["loss"]) == 3
    assert len(history.update_grad_norms) == 5


@pytest.mark.parametrize("steps_per_epoch", [None, 3])
def test_ctrl_c_mid_epoch_then_resume_continues_exactly(tmp_path, steps_per_epoch):
    x, y = _data(n=40)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 5 batches a pass
    if steps_per_epoch:
        dataset = dataset.repeat()

    def run(**kwargs):
        model = _model("gru")
        history = _fit(
            model, dataset, k1=4, epochs=3, steps_per_epoch=steps_per_epoch, **kwargs
        )  # fmt: skip
        return model, history

    full, full_history = run()
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 2"):
        run(checkpoint_dir=tmp_path, callbacks=[SignalAt(1, 1)])
    resumed, resumed_history = run(checkpoint_dir=tmp_path, resume=True)
    assert resumed_history.history == full_history.history
    _same_weights(resumed, full)


def test_a_stateful_model_reads_a_dataset_of_its_batch_size_as_arrays():
    series = np.sin(np.arange(161) / 4.0) + 0.1 * np.random.default_rng(2).normal(size=161)
    xs, ys = bk.stream_batches(series, batch_size=4, seq_len=10)  # 4 batches of 4

    def model():
        return bk.build_model("gru", 3, stateful=True, batch_size=4, seed=0)

    arrays = model()
    expected = _fit(arrays, xs, ys, batch_size=4, shuffle=False, k1=5, epochs=2)
    streamed = model()
    dataset = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4, drop_remainder=True)
    history = _fit(streamed, dataset, k1=5, epochs=2, validation_data=dataset)
    _same_weights(streamed, arrays)
    assert history.history["loss"] == expected.history["loss"]
    # Validation carries the state from batch to batch, as `evaluate` on the arrays does.
    np.testing.assert_allclose(
        history.history["val_loss"][-1], bk.evaluate(streamed, xs, ys, batch_size=4), rtol=1e-6
    )
    # A batch size the element spec leaves open cannot promise the stateful layout.
    with pytest.raises(ValueError, match=r"batch size is\s+unknown.*drop_remainder=True"):
        _fit(model(), tf.data.Dataset.from_tensor_slices((xs, ys)).batch(4), epochs=1)


def test_validation_and_evaluate_on_a_dataset_equal_the_arrays():
    x, y = _data()
    model = _model()
    _fit(model, x[:24], y[:24], batch_size=8, epochs=1)
    val = tf.data.Dataset.from_tensor_slices((x[24:], y[24:])).batch(7)  # 20 rows: 7, 7, 6
    expected = bk.evaluate(model, x[24:], y[24:], metrics=["mae"], return_dict=True)
    got = bk.evaluate(model, val, metrics=["mae"], return_dict=True)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    history = _fit(model, x[:24], y[:24], batch_size=8, epochs=1, validation_data=val)
    np.testing.assert_allclose(
        history.history["val_loss"][0], bk.evaluate(model, x[24:], y[24:]), rtol=1e-6
    )


def _bad_dataset_cases(model, x, y):
    one = tf.data.Dataset.from_tensor_slices((x, y))
    batched = one.batch(8)
    wide = tf.data.Dataset.from_tensor_slices((np.concatenate([x, x], -1), y)).batch(8)
    return [
        (lambda: bk.fit(model, batched, y), "`y` must be None"),
        (lambda: bk.fit(model, batched, batch_size=8), "`batch_size` must be None"),
        (lambda: bk.fit(model, batched, sample_weight=y[..., 0]), "`sample_weight` must be None"),
        (lambda: bk.fit(model, batched, validation_split=0.2), "`validation_split` needs arrays"),
        (lambda: bk.fit(model, one), "batch the dataset"),
        (lambda: bk.fit(model, wide), "2 feature(s) per step but the model expects input_dim=1"),
        (lambda: bk.fit(model, batched.map(lambda a, b: {"x": a, "y": b})), "tuples (x, y)"),
        (lambda: bk.fit(model, batched.map(lambda a, b: (a, b[..., 0]))), "(batch, time, output"),
        (lambda: bk.fit(model, batched.repeat()), "pass `steps_per_epoch`"),
        (lambda: bk.fit(model, x, y, steps_per_epoch=2), "applies to a tf.data.Dataset"),
        (lambda: bk.fit(model, batched, steps_per_epoch=0), "steps_per_epoch"),
        (lambda: bk.fit(model, batched.take(0)), "no batch"),
        (lambda: bk.fit(model, batched, validation_data=one), "batch the dataset"),
        (lambda: bk.evaluate(model, batched, y), "`y` must be None"),
        (lambda: bk.evaluate(model, one), "batch the dataset"),
    ]


def test_bad_datasets_are_refused_before_training_with_the_element_spec():
    x, y = _data(n=16)
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    for call, words in _bad_dataset_cases(model, x, y):
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert words in str(info.value), (words, str(info.value))
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_batch_that_breaks_the_layout_is_named():
    x, y = _data(n=16)
    ragged = tf.data.Dataset.from_generator(
        lambda: iter([(x[:8], y[:8]), (x[:8, :6], y[:8, :6])]),
        output_signature=(tf.TensorSpec((None, None, 1)),) * 2,
    )
    with pytest.raises(ValueError, match=r"batch 1 has shape \(8, 6, 1\).*of 12 steps"):
        _fit(_model(), ragged)
    bad_ids = tf.data.Dataset.from_tensor_slices((x, np.full(y.shape, np.nan))).batch(8)
    with pytest.raises(ValueError, match="y of x's batch 0"):
        _fit(_model(), bad_ids)


def test_bidirectional_with_k1_over_a_dataset_is_refused():
    inputs = keras.Input((None, 1))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x, y = _data(n=8)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="Truncated BPTT over a Bidirectional layer"):
        bk.fit(model, dataset, k1=4, verbose=0)
