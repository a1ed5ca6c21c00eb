"""Token (character) language models under the engine: Embedding input, dropout on the
non-recurrent connections, cross-entropy on logits, sampling, and the loss's units."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import bptt_keras as bk
from bptt_keras.generation import sample_logits

LOSS = "sparse_categorical_crossentropy"


def _lm(cell="lstm", units=8, vocab=7, **kwargs):
    kwargs.setdefault("seed", 0)
    return bk.build_model(cell, units, vocab_size=vocab, embedding_dim=5, num_layers=2, **kwargs)


def _ids(batch=3, time=12, vocab=7, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch, time + 1)).astype(np.int32)
    return ids[:, :-1], ids[:, 1:]


def _keras_loss_and_grads(model, x, y, chunks):
    """Keras' own model under a plain GradientTape: the model is run chunk by chunk with
    its state passed explicitly and cut (stop_gradient) between chunks; the loss is the mean
    cross-entropy over all steps. One gradient per chunk (each chunk's loss / its share)."""
    twin = bk.with_explicit_state(model)
    twin.set_weights(model.get_weights())
    states = bk.zero_states(twin, x.shape[0])
    states = [tf.constant(s) for s in states]
    grads_per_chunk, total = [], 0.0
    for begin, end in chunks:
        with tf.GradientTape() as tape:
            out = twin([tf.constant(x[:, begin:end]), *states], training=False)
            logits, finals = out[0], out[1:]
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y[:, begin:end], logits, from_logits=True
                )
            )
        grads_per_chunk.append(tape.gradient(loss, twin.trainable_variables))
        total += float(loss)
        states = [tf.stop_gradient(s) for s in finals]
    return total, grads_per_chunk


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("fast", [True, False])
def test_full_bptt_gradients_equal_keras(cell, fast):
    model = _lm(cell)
    x, y = _ids()
    loss, ours = bk.bptt_gradients(model, x, y, loss=LOSS, fast=fast)
    theirs_loss, (theirs,) = _keras_loss_and_grads(model, x, y, [(0, x.shape[1])])
    assert loss == pytest.approx(theirs_loss, rel=1e-5)
    assert len(ours) == len(theirs) == len(model.trainable_variables)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), tf.convert_to_tensor(b), rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_updates_equal_keras_chunks(cell):
    """TBPTT(k) with SGD(lr): each update equals one chunk's gradient of Keras' own model
    from the state the previous chunks left, applied in turn."""
    k, lr = 4, 0.5
    model = _lm(cell)
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    x, y = _ids(time=12)
    bk.fit(
        model, x, y, batch_size=3, k1=k, epochs=1, loss=LOSS, shuffle=False, verbose=0,
        optimizer=keras.optimizers.SGD(lr),
    )  # fmt: skip
    twin = bk.with_explicit_state(reference)
    states = [tf.constant(s) for s in bk.zero_states(twin, 3)]
    for begin in range(0, 12, k):
        with tf.GradientTape() as tape:
            out = twin([tf.constant(x[:, begin : begin + k]), *states])
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y[:, begin : begin + k], out[0], from_logits=True
                )
            )
        grads = tape.gradient(loss, twin.trainable_variables)
        for v, g in zip(twin.trainable_variables, grads, strict=True):
            v.assign_sub(lr * tf.convert_to_tensor(g))
        states = [tf.stop_gradient(s) for s in out[1:]]
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_logits_shape_and_integer_input():
    model = _lm(vocab=11)
    assert model.inputs[0].shape == (None, None)
    assert model(np.zeros((2, 9), np.int32)).shape == (2, 9, 11)
    layers = [type(layer).__name__ for layer in model.layers[1:]]
    assert layers == ["Embedding", "LSTM", "LSTM", "Dense"]
    with_dropout = [type(layer).__name__ for layer in _lm(dropout=0.3).layers[1:]]
    assert with_dropout == ["Embedding", "Dropout", "LSTM", "Dropout", "LSTM", "Dropout", "Dense"]


@pytest.mark.slow  # a training run: the slow group (`pytest -m slow`, run by .ci/run)
def test_tiny_model_learns_a_repeated_string():
    text = "to be or not to be, "
    vocab = bk.Vocabulary.from_text(text)
    ids = vocab.encode(text * 30)
    x, y = bk.token_rows(ids, batch_size=2)
    model = bk.build_model("lstm", 32, vocab_size=vocab.size, embedding_dim=8, seed=0)
    history = bk.fit(
        model, x, y, batch_size=2, k1=20, epochs=25, loss=LOSS, shuffle=False, verbose=0,
        optimizer=keras.optimizers.Adam(1e-2), global_clipnorm=5.0, seed=0,
    )  # fmt: skip
    assert history.history["loss"][0] > 1.5
    assert history.history["loss"][-1] < 0.05
    # and the model now continues the string greedily
    assert bk.generate(model, vocab, prompt="to be or ", length=11, temperature=0) == (
        "not to be, "
    )


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_dropout_is_active_in_training_only_and_seeded():
    x, _ = _ids()
    model = _lm(dropout=0.5)
    train_a = model(x, training=True).numpy()
    train_b = model(x, training=True).numpy()
    assert not np.allclose(train_a, train_b)  # a new mask per call
    np.testing.assert_array_equal(model(x).numpy(), model(x, training=False).numpy())
    no_drop = _lm(dropout=0.0)
    np.testing.assert_allclose(model(x).numpy(), no_drop(x).numpy(), rtol=1e-6)

    def train(dropout):
        m = _lm(dropout=dropout)
        xs, ys = _ids(time=24)
        h = bk.fit(m, xs, ys, batch_size=3, k1=6, epochs=2, loss=LOSS, verbose=0, seed=0)
        return h.history["loss"], m.get_weights()

    (loss_a, w_a), (loss_b, w_b), (loss_c, _) = train(0.5), train(0.5), train(0.0)
    assert loss_a == loss_b  # same seed: the same masks, bit for bit
    for a, b in zip(w_a, w_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loss_a != loss_c  # and the masks did change training


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_engine_refuses_cell_dropout():
    # (Masks are applied, not refused: tests/test_masking.py.)
    x, y = _ids(vocab=5)
    cell_dropout = keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(5, 3),
         keras.layers.LSTM(4, return_sequences=True, dropout=0.2), keras.layers.Dense(5)]
    )  # fmt: skip
    with pytest.raises(ValueError, match="Dropout"):
        bk.bptt_gradients(cell_dropout, x, y, loss=LOSS)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((3, 12, 1), np.float32), "token ids"),
        (np.full((3, 12), 7), r"\[0, 7\)"),
        (np.full((3, 12), 0.5), "whole-number"),
        ("abc", "array of token ids"),
    ],
)
def test_bad_token_input_is_a_clear_error(x, message):
    model = _lm()
    _, y = _ids()
    with pytest.raises((ValueError, TypeError), match=message):
        bk.fit(model, x, y, batch_size=3, loss=LOSS, verbose=0)


def test_build_model_token_arguments_are_checked():
    with pytest.raises(ValueError, match="embedding_dim"):
        bk.build_model("lstm", 4, embedding_dim=3)
    with pytest.raises(ValueError, match="dropout"):
        bk.build_model("lstm", 4, vocab_size=5, dropout=1.0)
    with pytest.raises(ValueError, match="vocab_size"):
        bk.build_model("lstm", 4, vocab_size=1)


def test_units_against_hand_computation():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    targets = np.array([0, 2])
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nats = -np.mean(log_p[np.arange(2), targets])
    assert bk.perplexity(nats) == pytest.approx(np.exp(nats))
    assert bk.perplexity(nats) == pytest.approx(1 / np.sqrt(np.exp(log_p[0, 0] + log_p[1, 2])))
    assert bk.bits_per_token(nats) == pytest.approx(
        -np.mean(np.log2(np.exp(log_p)[[0, 1], [0, 2]]))
    )
    assert bk.perplexity(math.log(65)) == pytest.approx(65)  # a uniform guess over 65
    with pytest.raises(ValueError, match="nats"):
        bk.perplexity(-1.0)


def test_engine_loss_is_mean_nats_per_token():
    model = _lm()
    x, y = _ids()
    logits = model(x).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(log_p, y[..., None], axis=-1))
    assert bk.evaluate(model, x, y, loss=LOSS, batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_sample_logits_respects_top_k_and_temperature():
    logits = np.array([3.0, 2.9, 2.8, -5.0, 1.0])
    rng = np.random.default_rng(0)
    draws = {sample_logits(logits, rng, top_k=2) for _ in range(300)}
    assert draws == {0, 1}
    assert sample_logits(logits, rng, temperature=0) == 0
    # a high temperature reaches the unlikely token; top_k=None allows every token
    hot = {sample_logits(logits, rng, temperature=50.0) for _ in range(400)}
    assert hot == {0, 1, 2, 3, 4}


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_generate_is_reproducible_and_checks_its_input():
    vocab = bk.Vocabulary.from_text("abcdefg")
    model = _lm()
    a = bk.generate(model, vocab, prompt="abc", length=40, seed=3)
    b = bk.generate(model, vocab, prompt="abc", length=40, seed=3)
    c = bk.generate(model, vocab, prompt="abc", length=40, seed=4)
    assert a == b and len(a) == 40 and set(a) <= set("abcdefg")
    assert a != c
    with pytest.raises(ValueError, match="'z'"):
        bk.generate(model, vocab, prompt="z")
    with pytest.raises(ValueError, match="outputs"):
        bk.generate(model, bk.Vocabulary.from_text("ab"), prompt="a")
    with pytest.raises(ValueError, match="prompt"):
        bk.generate(model, vocab, prompt="")


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_generation_carries_the_state():
    """Sampling one token at a time from a stateful copy gives the logits of one call over
    the whole sequence (greedy: the decoded text is the argmax chain)."""
    vocab = bk.Vocabulary.from_text("abcdefg")
    model = _lm()
    text = bk.generate(model, vocab, prompt="ab", length=6, temperature=0)
    ids = vocab.encode("ab" + text)
    logits = model(ids[None, :-1]).numpy()[0]
    np.testing.assert_array_equal(np.argmax(logits[1:], axis=-1), ids[2:])


@pytest.mark.slow  # a training run: the slow group (`pytest -m slow`, run by .ci/run)
def test_resume_with_dropout_continues_exactly(tmp_path):
    xs, ys = _ids(time=24)
    kwargs = dict(
        batch_size=3, k1=6, loss=LOSS, verbose=0, seed=0, shuffle=False,
        checkpoint_dir=tmp_path / "ck",
    )  # fmt: skip
    straight = _lm(dropout=0.5)
    bk.fit(straight, xs, ys, epochs=3, **{**kwargs, "checkpoint_dir": tmp_path / "other"})
    first = _lm(dropout=0.5)
    bk.fit(first, xs, ys, epochs=2, **kwargs)
    resumed = _lm(dropout=0.5)
    resumed.layers[2].seed_generator.state.assign([99, 99])  # not what the run had
    bk.fit(resumed, xs, ys, epochs=3, resume=True, **kwargs)
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- tied weights (word_language_model's --tied; Press & Wolf 2017) ----------------------


def _tied(cell="lstm", units=6, vocab=7, **kwargs):
    kwargs.setdefault("seed", 0)
    return bk.build_model(cell, units, vocab_size=vocab, num_layers=2, tie_weights=True, **kwargs)


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_tied_head_is_the_embedding_transposed_and_saves_as_one_variable(tmp_path):
    model = _tied(dropout=0.1)
    untied = bk.build_model("lstm", 6, vocab_size=7, num_layers=2, seed=0)
    # one V x units matrix and no head kernel/bias: V * units + V fewer parameters
    assert model.count_params() == untied.count_params() - 7 * 6 - 7
    x, _ = _ids(batch=2, time=5)
    logits = np.asarray(model(x))
    hidden = keras.Model(model.inputs[0], model.get_layer("lstm_1").output)(x)
    embeddings = np.asarray(model.get_layer("embedding").embeddings)
    np.testing.assert_allclose(logits, np.asarray(hidden) @ embeddings.T, rtol=1e-5, atol=1e-6)
    path = tmp_path / "tied.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), logits, rtol=1e-6)
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    # still tied after loading: changing the embedding changes the logits' weights
    emb = loaded.get_layer("embedding").embeddings
    emb.assign(np.asarray(emb) * 2.0)
    hidden = keras.Model(loaded.inputs[0], loaded.get_layer("lstm_1").output)(x)
    np.testing.assert_allclose(
        np.asarray(loaded(x)), np.asarray(hidden) @ np.asarray(emb).T, rtol=1e-5, atol=1e-5
    )


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
@pytest.mark.parametrize("fast", [True, False])
def test_tied_gradients_equal_keras_full_and_truncated(fast):
    """The shared matrix gets both gradients (lookup rows and head), summed, as Keras' own
    model under a plain tape: full BPTT and TBPTT(k) from the carried state."""
    model = _tied()
    x, y = _ids(time=8)
    loss, ours = bk.bptt_gradients(model, x, y, loss=LOSS, fast=fast)
    theirs_loss, (theirs,) = _keras_loss_and_grads(model, x, y, [(0, 8)])
    assert loss == pytest.approx(theirs_loss, rel=1e-5)
    assert len(ours) == len(theirs) == len(model.trainable_variables)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), tf.convert_to_tensor(b), rtol=1e-4, atol=1e-6)
    # TBPTT(4) with SGD: each update is one chunk's gradient from the carried state
    lr, reference = 0.5, _tied()
    bk.fit(model, x, y, batch_size=3, k1=4, epochs=1, loss=LOSS, shuffle=False, verbose=0,
           optimizer=keras.optimizers.SGD(lr), fast=fast)  # fmt: skip
    twin = bk.with_explicit_state(reference)
    states = [tf.constant(s) for s in bk.zero_states(twin, 3)]
    for begin in (0, 4):
        with tf.GradientTape() as tape:
            out = twin([tf.constant(x[:, begin : begin + 4]), *states])
            chunk_loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y[:, begin : begin + 4], out[0], from_logits=True
                )
            )
        grads = tape.gradient(chunk_loss, twin.trainable_variables)
        for v, g in zip(twin.trainable_variables, grads, strict=True):
            v.assign_sub(lr * tf.convert_to_tensor(g))
        states = [tf.stop_gradient(s) for s in out[1:]]
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # training runs / many traces: the slow group, run by .ci/run
def test_tied_generation_runs_from_the_shared_matrix():
    model = _tied(vocab=5)
    vocab = bk.Vocabulary(tuple("abcde"))
    text = bk.generate(model, vocab, prompt="ab", length=6, temperature=0.0, seed=0)
    assert len(text) == 6 and set(text) <= set("abcde")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"vocab_size": None}, ["tie_weights", "vocab_size"]),
        ({"embedding_dim": 4}, ["embedding_dim=4", "units=6", "embedding_dim == units"]),
        ({"output_dim": 3}, ["output_dim=3", "vocab_size=7"]),
        ({"output_activation": "softmax"}, ["output_activation", "logits"]),
    ],
)
def test_tie_weights_arguments_are_checked(kwargs, words):
    args = {"vocab_size": 7, "tie_weights": True, **kwargs}
    with pytest.raises(ValueError) as error:
        bk.build_model("lstm", 6, **args)
    assert all(w in str(error.value) for w in words)
    with pytest.raises(TypeError, match="tie_weights"):
        bk.build_model("lstm", 6, vocab_size=7, tie_weights="yes")
