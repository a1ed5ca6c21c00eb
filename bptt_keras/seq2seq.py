"""Encoder-decoder (sequence-to-sequence) models trained by full BPTT, and their decoders.

    source ids (batch, S) -> Embedding -> encoder RNN x L --final states--+
                                                                         v
    target_in ids (batch, T) -> Embedding -> decoder RNN x L (initial state: the encoder's)
                                                            -> Dense -> logits (batch, T, V)

Training uses teacher forcing: `target_in` is `<s>` followed by the target, `target_out` the
target followed by `</s>`, so step t of the decoder is scored on predicting character t from
characters `< t`. The loss reaches the first source character only through the whole encoder
and the decoder's steps up to the scored one: the gradient path that reversing the source
shortens (Sutskever, Vinyals & Le 2014; `bptt_keras.diagnostics.source_gradient_norms`).

The model is a plain Keras functional model, so `model.fit` trains it by full BPTT (Keras
differentiates the unrolled graph; truncation has no use for sequences this short);
`fit_seq2seq` is that call with the loss, padding weights and exact-match scoring set up.
Inference runs the same layers one step at a time with the state carried (`encode`,
`decode_step`): `greedy_decode` and `beam_search`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import check_choice, check_int, describe
from bptt_keras.choices import INITS
from bptt_keras.models import CELLS, _initializers
from bptt_keras.pairs import check_pairs
from bptt_keras.text import Vocabulary

PAD, START, END = 0, 1, 2
SPECIALS = 3  # ids below SPECIALS are PAD, START, END; character i of a vocabulary is i + 3


@dataclass(frozen=True)
class PairCodec:
    """Turns (source, target) string pairs into the id arrays an encoder-decoder trains on.

    Ids 0, 1, 2 are `<pad>`, `<s>` and `</s>`; character i of a vocabulary is id i + 3.
    Sources are left-padded to `source_length` (the encoder's final state then follows the
    last real character), after an optional reversal of the whole source string (as Keras'
    addition example reverses its padded query). Targets become `<s> t` (decoder input) and
    `t </s>` (decoder output), right-padded, with weights 1 on the real steps and `</s>`.

    Attributes:
        source_vocab, target_vocab: character vocabularies (`bptt_keras.text.Vocabulary`).
        source_length: encoder steps S (the longest source).
        target_length: decoder steps T (the longest target + 1 for `</s>`).
        reverse: reverse each source string before encoding.
    """

    source_vocab: Vocabulary
    target_vocab: Vocabulary
    source_length: int
    target_length: int
    reverse: bool = False

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]], *, reverse: bool = False) -> PairCodec:
        """Vocabularies and lengths from every pair (pass train and test pairs together).

        Args:
            pairs: `(source, target)` strings, neither empty.
            reverse: reverse each source before encoding.

        Returns:
            A `PairCodec`.
        """
        pairs = check_pairs(pairs)
        if not isinstance(reverse, bool):
            raise TypeError(f"`reverse` must be a bool. Received: {describe(reverse)}")
        sources, targets = zip(*pairs, strict=True)
        return cls(
            Vocabulary.from_text("".join(sources)),
            Vocabulary.from_text("".join(targets)),
            max(map(len, sources)),
            max(map(len, targets)) + 1,
            reverse,
        )

    @property
    def source_size(self) -> int:
        """The encoder's number of input classes (characters + 3 special ids)."""
        return self.source_vocab.size + SPECIALS

    @property
    def target_size(self) -> int:
        """The decoder's number of classes (characters + 3 special ids)."""
        return self.target_vocab.size + SPECIALS

    def encode_sources(self, sources: Sequence[str]) -> np.ndarray:
        """int32 `(n, source_length)` ids, left-padded with 0 (after the optional reversal)."""
        out = np.full((len(sources), self.source_length), PAD, np.int32)
        for i, text in enumerate(sources):
            if len(text) > self.source_length:
                raise ValueError(
                    f"Source {i} has {len(text)} characters; this codec takes at most "
                    f"source_length={self.source_length}. Received {text!r}"
                )
            if text:
                _check_known(text, self.source_vocab, f"Source {i}", "source")
                ids = self.source_vocab.encode(text[::-1] if self.reverse else text)
                out[i, self.source_length - len(ids) :] = ids + SPECIALS
        return out

    def encode_targets(self, targets: Sequence[str]):
        """`(target_in, target_out, weights)`, each `(n, target_length)`.

        `target_in` is int32 `<s> t <pad>...`, `target_out` int32 `t </s> <pad>...`, `weights`
        float32 1 where `target_out` is a character or `</s>`, else 0.
        """
        n, length = len(targets), self.target_length
        target_in = np.full((n, length), PAD, np.int32)
        target_out = np.full((n, length), PAD, np.int32)
        weights = np.zeros((n, length), np.float32)
        target_in[:, 0] = START
        for i, text in enumerate(targets):
            if len(text) >= length:
                raise ValueError(
                    f"Target {i} has {len(text)} characters; this codec takes at most "
                    f"{length - 1}. Received {text!r}"
                )
            _check_known(text, self.target_vocab, f"Target {i}", "target")
            ids = self.target_vocab.encode(text) + SPECIALS
            target_in[i, 1 : len(ids) + 1] = ids
            target_out[i, : len(ids)] = ids
            target_out[i, len(ids)] = END
            weights[i, : len(ids) + 1] = 1.0
        return target_in, target_out, weights

    def encode(self, pairs: Sequence[tuple[str, str]]):
        """`(source, target_in, target_out, weights)` for `pairs` (see the two methods above)."""
        pairs = check_pairs(pairs)
        sources, targets = zip(*pairs, strict=True)
        return (self.encode_sources(sources), *self.encode_targets(targets))

    def decode_target(self, ids) -> str:
        """The characters of `ids` up to the first `</s>` (`<pad>` and `<s>` skipped)."""
        ids = [int(i) for i in np.ravel(ids)]
        if END in ids:
            ids = ids[: ids.index(END)]
        return self.target_vocab.decode(np.array([i - SPECIALS for i in ids if i >= SPECIALS]))

    def to_json(self) -> str:
        return json.dumps(
            {
                "source_chars": "".join(self.source_vocab.chars),
                "target_chars": "".join(self.target_vocab.chars),
                "source_length": self.source_length,
                "target_length": self.target_length,
                "reverse": self.reverse,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PairCodec:
        d = json.loads(text)
        return cls(
            Vocabulary(tuple(d["source_chars"])),
            Vocabulary(tuple(d["target_chars"])),
            int(d["source_length"]),
            int(d["target_length"]),
            bool(d["reverse"]),
        )


def build_seq2seq(
    cell: str = "lstm",
    units: int = 128,
    *,
    source_vocab: int,
    target_vocab: int,
    embedding_dim: int | None = None,
    num_layers: int = 1,
    init: str = "default",
    seed: int | None = None,
) -> keras.Model:
    """An encoder-decoder: the encoder's final states initialise the decoder, layer by layer.

    Args:
        cell: `"lstm"`, `"gru"` or `"simple_rnn"` (both encoder and decoder).
        units: hidden units per recurrent layer.
        source_vocab: encoder input classes (`PairCodec.source_size`).
        target_vocab: decoder classes (`PairCodec.target_size`): the head's logits.
        embedding_dim: width of both embeddings (default `units`).
        num_layers: recurrent layers in the encoder and in the decoder.
        init: recurrent initialisation, as `build_model`'s.
        seed: seeds every initialiser (same seed -> same weights).

    Returns:
        A `keras.Model` with inputs `[source (batch, S) int, target_in (batch, T) int]` and
        output logits `(batch, T, target_vocab)`. Layers are named `source_embedding`,
        `encoder_i`, `target_embedding`, `decoder_i`, `head`.

    Example:

    >>> model = build_seq2seq("lstm", 128, source_vocab=15, target_vocab=15)
    >>> model([np.zeros((2, 7), "int32"), np.zeros((2, 5), "int32")]).shape
    TensorShape([2, 5, 15])
    """
    check_choice(cell, name="cell", choices=CELLS)
    units = check_int(units, name="units")
    source_vocab = check_int(source_vocab, name="source_vocab", minimum=SPECIALS + 1)
    target_vocab = check_int(target_vocab, name="target_vocab", minimum=SPECIALS + 1)
    if embedding_dim is not None:
        embedding_dim = check_int(embedding_dim, name="embedding_dim")
    embedding_dim = embedding_dim or units
    num_layers = check_int(num_layers, name="num_layers")
    check_choice(init, name="init", choices=INITS)
    if seed is not None:
        seed = check_int(seed, name="seed", minimum=0)

    def seeded(offset):
        return None if seed is None else seed + offset

    def embedding(vocab, name, offset):
        return keras.layers.Embedding(
            vocab,
            embedding_dim,
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seeded(offset)),
            name=name,
        )

    def recurrent(name, offset):
        kwargs = _initializers(init, seeded(offset), units)
        if init == "irnn":
            kwargs["activation"] = "relu"
        return CELLS[cell](units, return_sequences=True, return_state=True, name=name, **kwargs)

    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    h = embedding(source_vocab, "source_embedding", 0)(source)
    states = []
    for i in range(num_layers):
        h, *layer_states = recurrent(f"encoder_{i}", 10 + 2 * i)(h)
        states.append(layer_states)
    d = embedding(target_vocab, "target_embedding", 1)(target_in)
    for i in range(num_layers):
        d, *_ = recurrent(f"decoder_{i}", 100 + 2 * i)(d, initial_state=states[i])
    head = keras.layers.Dense(
        target_vocab, kernel_initializer=keras.initializers.GlorotUniform(seeded(2)), name="head"
    )
    return keras.Model([source, target_in], head(d), name="seq2seq")


def _layers(model: keras.Model, prefix: str) -> list[keras.layers.Layer]:
    found = [layer for layer in model.layers if layer.name.startswith(prefix)]
    return sorted(found, key=lambda layer: int(layer.name.rsplit("_", 1)[1]))


def _check_known(text: str, vocab: Vocabulary, what: str, side: str) -> None:
    known = set(vocab.chars)
    for position, char in enumerate(text):
        if char not in known:
            raise ValueError(
                f"{what} {text!r} has the character {char!r} at position {position}, which is "
                f"not in the model's {side} vocabulary of {vocab.size} characters "
                f"({''.join(vocab.chars)!r})."
            )


def check_seq2seq(model) -> None:
    """Raises a clear error unless `model` is laid out as `build_seq2seq` builds it."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {describe(model)}")
    names = {layer.name for layer in model.layers}
    missing = {"source_embedding", "target_embedding", "head"} - names
    if missing or not _layers(model, "encoder_") or not _layers(model, "decoder_"):
        raise ValueError(
            "`model` must be an encoder-decoder built by `build_seq2seq` (layers "
            "source_embedding, encoder_i, target_embedding, decoder_i, head). Received layers: "
            f"{sorted(names)}"
        )


def encode_embedded(model: keras.Model, embedded):
    """The encoder's final states from embedded sources `(batch, S, E)`: one list per layer."""
    h, states = embedded, []
    for layer in _layers(model, "encoder_"):
        h, *layer_states = layer(h)
        states.append(layer_states)
    return states


def encode(model: keras.Model, source):
    """The encoder's final states for int ids `(batch, S)`: one list of tensors per layer."""
    return encode_embedded(model, model.get_layer("source_embedding")(source))


def decode_steps(model: keras.Model, target_in, states, *, training=False):
    """Runs the decoder over `target_in` `(batch, T)` from `states`.

    Returns:
        `(logits (batch, T, V), final states)`.
    """
    d = model.get_layer("target_embedding")(target_in)
    finals = []
    for layer, layer_states in zip(_layers(model, "decoder_"), states, strict=True):
        d, *final = layer(d, initial_state=layer_states, training=training)
        finals.append(final)
    return model.get_layer("head")(d), finals


def decode_step(model: keras.Model, tokens, states):
    """One decoder step: int ids `(batch,)` -> `(logits (batch, V), next states)`."""
    logits, states = decode_steps(model, tokens[:, None], states)
    return logits[:, 0], states


def _compiled(model: keras.Model):
    """`encode` and `decode_step` compiled once per model (cached on the model)."""
    cache = model.__dict__.setdefault("_bptt_keras_seq2seq", {})
    if not cache:
        cache["encode"] = tf.function(lambda source: encode(model, source), reduce_retracing=True)
        cache["step"] = tf.function(
            lambda tokens, states: decode_step(model, tokens, states), reduce_retracing=True
        )
    return cache["encode"], cache["step"]


def _check_source(source, name="source") -> np.ndarray:
    array = np.asarray(source)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`{name}` must be int ids of shape (batch, source_length) (`PairCodec."
            f"encode_sources`). Received: {describe(array)}"
        )
    return array.astype(np.int32)


def greedy_decode(model: keras.Model, source, *, max_length: int) -> np.ndarray:
    """Greedy decoding: at each step the most likely token, fed back as the next input.

    Args:
        model: a `build_seq2seq` model.
        source: int ids `(batch, S)`.
        max_length: decoder steps to run.

    Returns:
        int32 `(batch, max_length)` token ids; after a row's `</s>` it holds `<pad>`
        (`PairCodec.decode_target` reads up to `</s>`).
    """
    check_seq2seq(model)
    source = _check_source(source)
    max_length = check_int(max_length, name="max_length")
    run_encoder, step = _compiled(model)
    states = run_encoder(tf.constant(source))
    tokens = np.full(source.shape[0], START, np.int32)
    out = np.full((source.shape[0], max_length), PAD, np.int32)
    done = np.zeros(source.shape[0], bool)
    for t in range(max_length):
        logits, states = step(tf.constant(tokens), states)
        tokens = np.argmax(logits.numpy(), axis=-1).astype(np.int32)
        out[:, t] = np.where(done, PAD, tokens)
        done |= tokens == END
        if done.all():
            break
    return out


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def beam_search(
    model: keras.Model, source, *, width: int, max_length: int
) -> list[tuple[np.ndarray, float]]:
    """Beam search for one source sequence, the state carried one step at a time.

    Keeps the `width` most likely prefixes; a prefix that emits `</s>` is finished. Stops
    when `width` prefixes have finished or after `max_length` steps. Scores are the total
    log-probability of the tokens (including `</s>`), not length-normalised: with
    `width=1` this is greedy decoding.

    Args:
        model: a `build_seq2seq` model.
        source: int ids `(S,)` or `(1, S)`: one sequence.
        width: beams kept per step, `>= 1`.
        max_length: decoder steps at most.

    Returns:
        Up to `width` `(ids, log_prob)`, best first: `ids` int32 without `<s>`, ending in
        `</s>` when finished (unfinished prefixes are returned only if none finished).
    """
    check_seq2seq(model)
    source = np.asarray(source)
    source = _check_source(source[None] if source.ndim == 1 else source)
    if source.shape[0] != 1:
        raise ValueError(f"`source` must be one sequence. Received shape {source.shape}")
    width = check_int(width, name="width")
    max_length = check_int(max_length, name="max_length")
    run_encoder, step = _compiled(model)
    states = run_encoder(tf.constant(source))
    prefixes, scores = [[]], np.zeros(1)
    finished: list[tuple[np.ndarray, float]] = []
    for _ in range(max_length):
        tokens = np.array([p[-1] if p else START for p in prefixes], np.int32)
        logits, next_states = step(tf.constant(tokens), states)
        total = scores[:, None] + _log_softmax(logits.numpy())  # (beams, V)
        # Best first; a stable sort keeps the lowest id among ties, as argmax does.
        order = np.argsort(-total, axis=None, kind="stable")[: width - len(finished)]
        beams, ids = np.unravel_index(order, total.shape)
        keep = []
        for b, i in zip(beams, ids, strict=True):
            prefix = [*prefixes[b], int(i)]
            if i == END:
                finished.append((np.array(prefix, np.int32), float(total[b, i])))
            else:
                keep.append((b, prefix, total[b, i]))
        if len(finished) >= width or not keep:
            break
        rows = tf.constant([b for b, _, _ in keep], tf.int32)
        states = tf.nest.map_structure(lambda s, rows=rows: tf.gather(s, rows), next_states)
        prefixes = [p for _, p, _ in keep]
        scores = np.array([s for _, _, s in keep])
    else:
        keep = [(None, p, s) for p, s in zip(prefixes, scores, strict=True)]
    if not finished:
        finished = [(np.array(p, np.int32), float(s)) for _, p, s in keep]
    return sorted(finished, key=lambda r: -r[1])[:width]


def sequence_log_prob(model: keras.Model, source, target_out) -> np.ndarray:
    """Teacher-forced total log-probability of each `target_out` row up to its `</s>`.

    Args:
        source: int ids `(batch, S)`.
        target_out: int ids `(batch, L)` as decoded (`t ... </s>`, `<pad>` after).

    Returns:
        float64 `(batch,)`.
    """
    source = _check_source(source)
    target_out = _check_source(target_out, "target_out")
    target_in = np.concatenate(
        [np.full((target_out.shape[0], 1), START, np.int32), target_out[:, :-1]], axis=1
    )
    logits = model([source, target_in]).numpy()
    logp = np.take_along_axis(_log_softmax(logits), target_out[..., None], -1)[..., 0]
    ends = np.cumsum(target_out == END, axis=1)
    upto = (ends == 0) | ((ends == 1) & (target_out == END))
    return (logp * upto).sum(axis=1)


def exact_match(model: keras.Model, codec: PairCodec, pairs) -> dict:
    """Greedy-decodes every pair's source and scores it against the target.

    Returns:
        `{"exact": fraction of targets decoded exactly, "chars": fraction of target
        positions (plus `</s>`) right, position by position, "predictions": strings}`.
    """
    pairs = check_pairs(pairs)
    source, _, target_out, weights = codec.encode(pairs)
    decoded = greedy_decode(model, source, max_length=codec.target_length)
    predictions = [codec.decode_target(row) for row in decoded]
    exact = np.mean([p == t for p, (_, t) in zip(predictions, pairs, strict=True)])
    chars = float(((decoded == target_out) * weights).sum() / weights.sum())
    return {"exact": float(exact), "chars": chars, "predictions": predictions}


def fit_seq2seq(
    model: keras.Model,
    codec: PairCodec,
    pairs,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    clipnorm: float | None = None,
    validation_pairs=None,
    stop_at: float | None = None,
    seed: int | None = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_execution: int = 16,
    verbose: int = 0,
) -> dict:
    """Trains an encoder-decoder by full BPTT with Keras' own `fit` (teacher forcing).

    Each epoch shuffles the pairs (seeded), takes one Adam update per batch of Keras'
    sample-weighted cross-entropy (padding steps weighted 0: they neither score nor pull the
    gradient; Keras divides by all the batch's steps), and, with
    `validation_pairs`, records greedy exact-match and per-character accuracy on them.

    Compiles `model` (a fresh Adam each call), then trains it.

    Args:
        model: a `build_seq2seq` model.
        codec: the `PairCodec` the model's vocabularies come from.
        pairs: training `(source, target)` strings.
        epochs, batch_size, learning_rate: as for Keras' `fit` / `Adam`.
        clipnorm: optional global gradient-norm clipping.
        validation_pairs: pairs scored after every epoch (greedy decoding).
        stop_at: with `validation_pairs`, stop after the first epoch whose validation exact
            match reaches this fraction.
        seed: seeds the shuffling (and Keras' global generators).
        callbacks: more Keras callbacks.
        steps_per_execution: batches per compiled call (Keras' `compile` argument; the
            updates are the same, the per-call overhead is paid once per this many).
        verbose: Keras' `fit` verbosity.

    Returns:
        History dict of lists per epoch: `loss`, and with validation pairs `val_exact`,
        `val_chars` (plus `val_exact`/`val_chars` of the untrained model as `initial_*`).
    """
    check_seq2seq(model)
    epochs = check_int(epochs, name="epochs")
    batch_size = check_int(batch_size, name="batch_size")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    source, target_in, target_out, weights = codec.encode(pairs)
    if model.get_layer("head").units != codec.target_size:
        raise ValueError(
            f"`model`'s head has {model.get_layer('head').units} classes but `codec` has "
            f"target_size={codec.target_size}: build the model from this codec."
        )
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=clipnorm)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=check_int(steps_per_execution, name="steps_per_execution"),
    )
    history: dict[str, list] = {"loss": []}
    if validation_pairs is not None:
        first = exact_match(model, codec, validation_pairs)
        history.update(initial_exact=first["exact"], initial_chars=first["chars"])
        history.update(val_exact=[], val_chars=[])
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(source))
        h = model.fit(
            [source[order], target_in[order]],
            target_out[order],
            sample_weight=weights[order],
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=verbose,
            callbacks=list(callbacks),
        )
        history["loss"].append(float(h.history["loss"][-1]))
        if validation_pairs is not None:
            scores = exact_match(model, codec, validation_pairs)
            history["val_exact"].append(scores["exact"])
            history["val_chars"].append(scores["chars"])
            if stop_at is not None and scores["exact"] >= stop_at:
                break
    return history
