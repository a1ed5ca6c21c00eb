"""Truncated BPTT inside Keras' own `model.fit` (`BPTTModel`): the same updates as
`bptt_keras.fit` and, for full BPTT, as Keras' own `fit`; tf.data input, Keras callbacks,
evaluate / predict, save and load; bad settings named before anything is traced."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_data

import bptt_keras as bk


def twins(cell="lstm", seed=0, **kwargs):
    """Two models with equal initial weights."""
    return (bk.build_model(cell, 4, seed=seed, **kwargs) for _ in range(2))


@pytest.mark.parametrize(
    ("cell", "k1", "k2"),
    [("lstm", None, None), ("lstm", 4, None), ("gru", 3, 5), ("simple_rnn", 5, 8)],
)
def test_keras_fit_makes_the_updates_of_bptt_fit(cell, k1, k2):
    x, y = small_data(batch=8, steps=12)
    ours, native = twins(cell, input_dim=2)
    history = bk.fit(
        ours, x, y, batch_size=4, epochs=2, k1=k1, k2=k2, shuffle=False, loss="mse",
        optimizer=keras.optimizers.Adam(0.01), metrics=["mae"], verbose=0,
    )  # fmt: skip
    model = bk.BPTTModel(native, k1=k1, k2=k2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    logs = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    blocks = len(bk.plan_blocks(12, k1 or 12, k2 or k1 or 12))
    assert int(model.optimizer.iterations.numpy()) == 2 * 2 * blocks  # one update per block
    for a, b in zip(ours.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # Keras' compiled metric sees every block's scored outputs, each predicted with the
    # weights of its own update: the epoch mean bk.fit's own per-step metric reports.
    for key in ("loss", "mae"):
        np.testing.assert_allclose(logs.history[key], history.history[key], rtol=1e-5)


def test_full_bptt_equals_keras_own_fit():
    x, y = small_data(batch=8, steps=10)
    plain, native = twins("gru", input_dim=2)
    plain.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    expected = plain.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    model = bk.BPTTModel(native)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    logs = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(logs.history[key], expected.history[key], rtol=1e-5)


def test_dataset_callbacks_validation_evaluate_and_predict(tmp_path):
    x, y = small_data(batch=12, steps=10)
    ours, native = twins("lstm", input_dim=2)
    model = bk.BPTTModel(native, k1=5)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=1, factor=0.5),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        keras.callbacks.TensorBoard(str(tmp_path / "logs")),
        bk.GradientNormsThroughTime(x[:2], y[:2], tmp_path / "logs"),
    ]
    history = model.fit(
        data, epochs=2, validation_data=(x[:4], y[:4]), callbacks=callbacks, shuffle=False,
        verbose=0,
    )  # fmt: skip
    assert set(history.history) >= {"loss", "mae", "val_loss", "val_mae", "learning_rate"}
    assert int(model.optimizer.iterations.numpy()) == 2 * 3 * 2  # epochs x batches x blocks
    # The same data as arrays through bk.fit: the same weights.
    bk.fit(ours, x, y, batch_size=4, epochs=2, k1=5, shuffle=False, loss="mse",
           optimizer=keras.optimizers.Adam(0.01), verbose=0)  # fmt: skip
    for a, b in zip(ours.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # evaluate and predict are the wrapped model's whole-sequence forward pass.
    prediction = model.predict(x, verbose=0)
    np.testing.assert_allclose(prediction, native.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    loss, mae = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, np.mean((prediction - y) ** 2), rtol=1e-4)
    np.testing.assert_allclose(mae, np.mean(np.abs(prediction - y)), rtol=1e-4)
    assert list((tmp_path / "logs").glob("train/events.out.tfevents.*"))
    assert list((tmp_path / "logs").glob("gradients/events.out.tfevents.*"))


def test_validation_split_holds_out_the_last_sequences():
    x, y = small_data(batch=10, steps=6)
    ours, native = twins("simple_rnn", input_dim=2)
    model = bk.BPTTModel(native, k1=3)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=1, validation_split=0.2, shuffle=False,
                        verbose=0)  # fmt: skip
    bk.fit(ours, x[:8], y[:8], batch_size=4, k1=3, shuffle=False, loss="mse",
           optimizer=keras.optimizers.SGD(0.05), verbose=0)  # fmt: skip
    for a, b in zip(ours.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    expected = np.mean((native.predict(x[8:], verbose=0) - y[8:]) ** 2)
    np.testing.assert_allclose(history.history["val_loss"][0], expected, rtol=1e-4)


def test_a_token_language_model_trains_with_sparse_cross_entropy():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(6, 13))
    x, y = ids[:, :-1], ids[:, 1:]
    ours, native = twins("lstm", vocab_size=7, embedding_dim=3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = bk.BPTTModel(native, k1=4)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, metrics=["accuracy"])
    model.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
    bk.fit(ours, x, y, batch_size=3, epochs=2, k1=4, shuffle=False, loss=loss,
           optimizer=keras.optimizers.Adam(0.01), verbose=0)  # fmt: skip
    for a, b in zip(ours.get_weights(), native.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip_without_custom_objects(tmp_path):
    x, y = small_data(batch=4, steps=8)
    model = bk.BPTTModel(bk.build_model("gru", 4, input_dim=2, seed=0), k1=4, k2=6)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, bk.BPTTModel) and (loaded.k1, loaded.k2) == (4, 6)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.compiled and loaded.optimizer.iterations.numpy() == 4  # 2 batches x 2 blocks
    # Training goes on identically from the saved optimizer state.
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_bad_settings_are_named_before_tracing():
    x, y = small_data(batch=4, steps=8)
    with pytest.raises(TypeError, match="`model`"):
        bk.BPTTModel("lstm")
    with pytest.raises(TypeError, match="`k1`"):
        bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2), k1=2.5)
    with pytest.raises(ValueError, match="`k2` needs `k1`"):
        bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2), k2=4)
    with pytest.raises(ValueError, match="k1 <= k2"):
        bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2), k1=5, k2=4)
    with pytest.raises(ValueError, match="stateful"):
        bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2, stateful=True, batch_size=4))
    inputs = keras.Input((8, 2))
    outputs = keras.layers.Dense(1)(
        keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))(inputs)
    )
    with pytest.raises(ValueError, match="Bidirectional.*ill-defined"):
        bk.BPTTModel(keras.Model(inputs, outputs), k1=4)
    model = bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2), k1=12)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="`k1`.*T=8"):
        model.fit(x, y, verbose=0)
    ragged = tf.data.Dataset.from_generator(
        lambda: iter([(x[0], y[0])]),
        output_signature=(tf.TensorSpec((None, 2)), tf.TensorSpec((None, 1))),
    ).batch(1)
    with pytest.raises(ValueError, match="no static sequence length"):
        model.fit(ragged, verbose=0)
    assert model.optimizer.iterations.numpy() == 0


LOAD = """
import sys
{imports}
model = keras.models.load_model(sys.argv[1])
print("LOADED", type(model).__module__, type(model).__name__, model.k1)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "imports",
    [
        "import bptt_keras\nimport keras",
        "import keras\nimport bptt_keras",
        "import bptt_keras\nimport tensorflow\nimport keras",
    ],
)
def test_a_fresh_process_loads_a_saved_model_after_import_bptt_keras(tmp_path, imports):
    """Registered with Keras without custom_objects, whatever the import order, while
    `import bptt_keras` alone still imports no TensorFlow (tests/test_startup.py)."""
    import subprocess
    import sys

    model = bk.BPTTModel(bk.build_model("lstm", 3, input_dim=2, seed=0), k1=4)
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "m.keras")
    done = subprocess.run(
        [sys.executable, "-c", LOAD.format(imports=imports), str(tmp_path / "m.keras")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED bptt_keras.keras_model BPTTModel 4" in done.stdout
    assert "could not register" not in done.stderr
