"""Encoder-decoders: codec, tasks, step-by-step decoding, beam search, gradient path, errors."""

import datetime
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from bptt_keras.diagnostics import source_gradient_norms
from bptt_keras.engine.step import value_and_grad
from bptt_keras.pairs import load_pairs
from bptt_keras.seq2seq import (
    END,
    PAD,
    START,
    PairCodec,
    beam_search,
    build_seq2seq,
    decode_step,
    encode,
    exact_match,
    fit_seq2seq,
    greedy_decode,
    sequence_log_prob,
)
from bptt_keras.tasks import DATE_FORMATS, addition_pairs, date_pairs

PAIRS = [("12+345 ", "357 "), ("9+9    ", "18  "), ("0+1    ", "1   ")]


def tiny(codec, cell="lstm", units=8, seed=0, num_layers=1):
    return build_seq2seq(
        cell,
        units,
        source_vocab=codec.source_size,
        target_vocab=codec.target_size,
        embedding_dim=5,
        num_layers=num_layers,
        seed=seed,
    )


# --- codec and tasks ---------------------------------------------------------------------


def test_codec_reverses_the_padded_query_as_keras_example():
    codec = PairCodec.from_pairs(PAIRS, reverse=True)
    src = codec.encode_sources(["12+345 "])
    chars = codec.source_vocab.decode(src[0] - 3)
    assert chars == " 543+21"  # Keras: '12+345  ' becomes '  543+21'
    plain = PairCodec.from_pairs(PAIRS)
    assert plain.source_vocab.decode(plain.encode_sources(["12+345 "])[0] - 3) == "12+345 "


def test_codec_left_pads_sources_and_frames_targets():
    codec = PairCodec.from_pairs([("abc", "xy"), ("a", "xyz")])
    assert (codec.source_length, codec.target_length) == (3, 4)
    src, tin, tout, w = codec.encode([("a", "xy")])
    assert src[0, :2].tolist() == [PAD, PAD] and src[0, 2] >= 3
    x, y = (codec.target_vocab.encode(c)[0] + 3 for c in "xy")
    assert tin[0].tolist() == [START, x, y, PAD]
    assert tout[0].tolist() == [x, y, END, PAD]
    assert w[0].tolist() == [1, 1, 1, 0]
    assert codec.decode_target(tout[0]) == "xy"
    assert PairCodec.from_json(codec.to_json()) == codec


def test_codec_rejects_too_long_and_unknown():
    codec = PairCodec.from_pairs([("ab", "xy")])
    with pytest.raises(ValueError, match="source_length=2"):
        codec.encode_sources(["abc"])
    with pytest.raises(ValueError, match="Target 0 'xz' has the character 'z' at position 1"):
        codec.encode_targets(["xz"])
    with pytest.raises(ValueError, match="Source 1 'aq' has the character 'q' at position 1"):
        PairCodec.from_pairs([("ab", "x")], reverse=True).encode_sources(["a", "aq"])


def test_addition_pairs_are_keras_examples_data():
    pairs = addition_pairs(3, 500, seed=1)
    assert len(pairs) == 500
    seen = set()
    for query, answer in pairs:
        assert len(query) == 7 and len(answer) == 4
        a, b = map(int, query.strip().split("+"))
        assert int(answer) == a + b and 0 <= a < 1000 and 0 <= b < 1000
        key = (min(a, b), max(a, b))
        assert key not in seen  # no a+b after b+a
        seen.add(key)
    assert addition_pairs(3, 50, seed=1) == pairs[:50]  # seeded
    assert len(addition_pairs(1, 55, seed=0)) == 55  # every unordered pair of 0..9
    with pytest.raises(ValueError, match="at most 55"):
        addition_pairs(1, 56)


def test_date_pairs_hold_out_unseen_days_and_are_correct():
    train, test = date_pairs(400, 100, seed=3)
    assert len(train) == 400 and len(test) == 100
    assert not {t for _, t in train} & {t for _, t in test}
    renderings = {}
    for source, target in train + test:
        day = datetime.date.fromisoformat(target)
        renderings.setdefault(source, set()).add(day)
        assert source in {f(day) for f in DATE_FORMATS.values()}
    assert all(len(days) == 1 for days in renderings.values())  # no ambiguous source
    assert len({s for s, _ in train}) > 300


# --- model, decoding ---------------------------------------------------------------------


def test_teacher_forced_logits_equal_step_by_step():
    codec = PairCodec.from_pairs(PAIRS, reverse=True)
    for cell, layers in (("lstm", 2), ("gru", 1), ("simple_rnn", 1)):
        model = tiny(codec, cell, num_layers=layers)
        src, tin, _, _ = codec.encode(PAIRS)
        full = model([src, tin]).numpy()
        states = encode(model, src)
        for t in range(tin.shape[1]):
            logits, states = decode_step(model, tf.constant(tin[:, t]), states)
            np.testing.assert_allclose(logits.numpy(), full[:, t], rtol=1e-5, atol=1e-6)


def test_gradients_through_the_step_path_equal_keras_tape():
    """BPTT through decoder and encoder: the step-by-step unroll (our decoding path) and
    Keras' own model call under a plain GradientTape give the same weight gradients."""
    codec = PairCodec.from_pairs(PAIRS, reverse=True)
    model = tiny(codec, num_layers=2, units=6)
    src, tin, tout, w = codec.encode(PAIRS)
    ce = keras.losses.sparse_categorical_crossentropy

    with tf.GradientTape() as tape:
        per_step = ce(tout, model([src, tin]), from_logits=True)
        keras_loss = tf.reduce_sum(per_step * w) / w.sum()
    expected = tape.gradient(keras_loss, model.trainable_variables)

    def fn():
        states, total = encode(model, src), 0.0
        for t in range(tin.shape[1]):
            logits, states = decode_step(model, tf.constant(tin[:, t]), states)
            total += tf.reduce_sum(ce(tout[:, t], logits, from_logits=True) * w[:, t])
        return total / w.sum(), ()

    loss, _, grads = value_and_grad(fn, model.trainable_variables)
    np.testing.assert_allclose(float(loss), float(keras_loss), rtol=1e-6)
    for v, g, e in zip(model.trainable_variables, grads, expected, strict=True):
        np.testing.assert_allclose(
            np.asarray(g), tf.convert_to_tensor(e).numpy(), rtol=1e-4, atol=1e-7, err_msg=v.path
        )


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def test_gradient_path_equals_finite_differences(float64):
    """`source_gradient_norms` against central differences of the loss in each coordinate of
    the first and the last source step's embeddings (float64)."""
    from bptt_keras.seq2seq import decode_steps, encode_embedded

    codec = PairCodec.from_pairs(PAIRS)
    model = tiny(codec)
    src, tin, tout, w = codec.encode(PAIRS)
    norms = source_gradient_norms(model, src, tin, tout, w)
    e0 = model.get_layer("source_embedding")(src).numpy()
    assert e0.dtype == np.float64

    def loss_of(embedded):
        logits, _ = decode_steps(model, tin, encode_embedded(model, tf.constant(embedded)))
        per = keras.losses.sparse_categorical_crossentropy(tout, logits, from_logits=True)
        return float(tf.reduce_sum(per * w) / w.sum())

    eps = 1e-6
    for t in (0, src.shape[1] - 1):
        grad = np.zeros(e0.shape[::2])  # (batch, E)
        for b in range(e0.shape[0]):
            for k in range(e0.shape[2]):
                plus, minus = e0.copy(), e0.copy()
                plus[b, t, k] += eps
                minus[b, t, k] -= eps
                grad[b, k] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        np.testing.assert_allclose(norms[t], np.linalg.norm(grad), rtol=1e-6)


def test_reversal_shortens_the_gradient_path():
    """Untrained, same weights: reading the question reversed puts its first character next
    to the decoder, so the gradient reaching it is larger (and the last one's smaller)."""
    pairs = addition_pairs(2, 64, seed=0)
    result = {}
    for reverse in (False, True):
        codec = PairCodec.from_pairs(pairs, reverse=reverse)
        norms = source_gradient_norms(tiny(codec, units=16), *codec.encode(pairs))
        result[reverse] = norms[::-1] if reverse else norms  # by position as written
    assert result[True][0] > 1.5 * result[False][0]
    assert result[True][-1] < result[False][-1]
    # As written, the gradient fades with the distance to the decoder.
    assert np.all(np.diff(result[False]) > 0)


@pytest.mark.slow
def test_greedy_and_beam_search_decode_a_trained_copy_model():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcd"), size=rng.integers(2, 5))) for _ in range(600)]
    pairs = [(w, w) for w in words]
    codec = PairCodec.from_pairs(pairs)
    model = tiny(codec, units=32)
    history = fit_seq2seq(model, codec, pairs, epochs=12, batch_size=32, learning_rate=1e-2, seed=0)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    test = ["abcd", "dcb", "ca", "bbad"]
    source = codec.encode_sources(test)
    decoded = greedy_decode(model, source, max_length=codec.target_length)
    assert [codec.decode_target(row) for row in decoded] == test  # it copies
    for i, word in enumerate(test):
        beams = beam_search(model, source[i], width=3, max_length=codec.target_length)
        assert codec.decode_target(beams[0][0]) == word
        scores = [score for _, score in beams]
        assert scores == sorted(scores, reverse=True) and len(beams) == 3
        # Each beam's score is the model's teacher-forced log-probability of that sequence.
        padded = np.full((len(beams), codec.target_length), PAD, np.int32)
        for j, (ids, _) in enumerate(beams):
            assert ids[-1] == END
            padded[j, : len(ids)] = ids
        lp = sequence_log_prob(model, np.repeat(source[i : i + 1], len(beams), 0), padded)
        np.testing.assert_allclose(lp, scores, rtol=1e-4, atol=1e-5)
    assert exact_match(model, codec, [(w, w) for w in test])["exact"] == 1.0


def test_beam_width_one_is_greedy():
    codec = PairCodec.from_pairs(PAIRS, reverse=True)
    for seed in range(4):
        model = tiny(codec, seed=seed)
        source = codec.encode_sources([q for q, _ in PAIRS])
        greedy = greedy_decode(model, source, max_length=codec.target_length)
        for i in range(len(PAIRS)):
            ((ids, _),) = beam_search(model, source[i], width=1, max_length=codec.target_length)
            row = greedy[i, : len(ids)]
            assert row.tolist() == ids.tolist()


@pytest.mark.slow
def test_fit_is_seeded_and_model_saves(tmp_path):
    pairs = addition_pairs(2, 200, seed=0)
    codec = PairCodec.from_pairs(pairs, reverse=True)
    weights = []
    for _ in range(2):
        model = tiny(codec, seed=1)
        history = fit_seq2seq(model, codec, pairs, epochs=2, validation_pairs=pairs[:20])
        weights.append([v.numpy() for v in model.weights])
        assert len(history["val_exact"]) == 2 and 0 <= history["val_chars"][-1] <= 1
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    source = codec.encode_sources([q for q, _ in pairs[:5]])
    np.testing.assert_array_equal(
        greedy_decode(loaded, source, max_length=codec.target_length),
        greedy_decode(model, source, max_length=codec.target_length),
    )


# --- bad input ---------------------------------------------------------------------------


def test_load_pairs_reads_tab_separated_lines(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("dog\tchien\n\ncat\tchat\n", encoding="utf-8")
    assert load_pairs(path) == [("dog", "chien"), ("cat", "chat")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"dog\tchien\ncat chat\n", r"line 2 must be `source<TAB>target`.*1 field"),
        (b"a\tb\tc\n", r"line 1 .*3 field"),
        (b"a\t\n", r"line 1 .*both sides non-empty"),
        (b"\n\n", r"no `source<TAB>target` line"),
        (b"ok\tfine\n\xff\xfe\tx\n", r"line 2 is not UTF-8"),
    ],
)
def test_load_pairs_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_pairs(path)


def test_bad_arguments_are_named():
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        load_pairs("nope.tsv")
    with pytest.raises(ValueError, match=re.escape("`pairs[1]`")):
        PairCodec.from_pairs([("a", "b"), ("c", "")])
    with pytest.raises(TypeError, match="`pairs`"):
        PairCodec.from_pairs("ab")
    with pytest.raises(ValueError, match="`cell`"):
        build_seq2seq("transformer", 8, source_vocab=10, target_vocab=10)
    with pytest.raises(ValueError, match="`source_vocab`"):
        build_seq2seq("lstm", 8, source_vocab=2, target_vocab=10)
    codec = PairCodec.from_pairs(PAIRS)
    model = tiny(codec)
    with pytest.raises(ValueError, match=r"`source` must be int ids of shape \(batch"):
        greedy_decode(model, np.zeros(7), max_length=3)
    with pytest.raises(ValueError, match="one sequence"):
        beam_search(model, np.zeros((2, 7), int), width=2, max_length=3)
    with pytest.raises(ValueError, match="`model` must be an encoder-decoder"):
        greedy_decode(keras.Sequential([keras.layers.Dense(2)]), np.zeros((1, 3), int),
                      max_length=2)  # fmt: skip
    other = PairCodec.from_pairs([("a", "xyzw")])
    with pytest.raises(ValueError, match="target_size"):
        fit_seq2seq(model, other, [("a", "xyzw")])
