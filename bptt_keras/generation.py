"""Text generation with a trained token model: one token at a time, the state carried.

    prompt "ROMEO:" -> ids -> one call over the prompt (primes the state) -> logits of the
    last step -> sample a token -> feed it back as a (1, 1) input -> logits -> sample -> ...

The model is run through a stateful copy of batch size 1 (`to_stateful`), so each call
continues from the state the previous call left, exactly as training carried the state
from block to block; dropout is off (`training=False`).
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import check_float, check_int, describe
from bptt_keras.models import reset_states, to_stateful
from bptt_keras.text import Vocabulary

# model -> (stateful batch-1 copy, its compiled call); the weights are refreshed per call.
_STREAMERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sample_logits(
    logits,
    rng: np.random.Generator,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> int:
    """Draws one token id from a step's logits.

    Args:
        logits: `(vocab,)` unnormalised log-probabilities.
        rng: the NumPy generator to draw with (seeded for reproducible samples).
        temperature: divides the logits before the softmax: < 1 sharpens, > 1 flattens;
            0 means greedy (the most likely token, no draw).
        top_k: if given, only the `top_k` most likely tokens can be drawn (Fan et al. 2018);
            ties at the threshold are kept.

    Returns:
        The drawn token id.

    Example:

    >>> sample_logits(np.array([0.0, 5.0, 1.0]), np.random.default_rng(0), temperature=0)
    1
    """
    z = np.asarray(logits, np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if top_k is not None and top_k < z.size:
        threshold = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= threshold, z, -np.inf)
    p = np.exp(z - z.max())
    return int(rng.choice(z.size, p=p / p.sum()))


def _streamer(model: keras.Model):
    if model not in _STREAMERS:
        twin = to_stateful(model, batch_size=1)
        call = tf.function(lambda ids: twin(ids, training=False), reduce_retracing=True)
        _STREAMERS[model] = (twin, call)
    twin, call = _STREAMERS[model]
    twin.set_weights(model.get_weights())
    return twin, call


def generate(
    model: keras.Model,
    vocab: Vocabulary,
    *,
    prompt: str = "\n",
    length: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> str:
    """Samples `length` tokens after `prompt`, one at a time, carrying the state.

    Args:
        model: a token model from `build_model(..., vocab_size=V)` (stateful or not; it is
            not changed).
        vocab: the `Vocabulary` the model was trained with (`vocab.size == V`).
        prompt: text that primes the state (at least one token, all in `vocab`).
        length: tokens to generate.
        temperature: see `sample_logits`; 0 is greedy decoding.
        top_k: see `sample_logits`.
        seed: seeds the draws: the same seed gives the same text.

    Returns:
        The generated text (without the prompt).

    Raises:
        ValueError / TypeError: a model that is not a token model, a vocabulary of another
            size, an empty prompt or one with characters outside `vocab`, bad sampling
            settings.

    Example:

    >>> text = generate(model, vocab, prompt="ROMEO:", length=100, temperature=0.8, seed=0)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {describe(model)}")
    if len(model.inputs[0].shape) != 2:
        raise ValueError(
            f"`model` must take token ids (batch, time), as `build_model(..., vocab_size=V)` "
            f"builds. Received a model with input shape {tuple(model.inputs[0].shape)}"
        )
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"`vocab` must be a bptt_keras.Vocabulary. Received: {describe(vocab)}")
    classes = int(model.outputs[0].shape[-1])
    if vocab.size != classes:
        raise ValueError(
            f"`vocab` has {vocab.size} tokens but the model has {classes} outputs: not the "
            "vocabulary it was trained with."
        )
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(
            f"`prompt` must be a non-empty string (it primes the state). Received: "
            f"{describe(prompt)}"
        )
    ids = vocab.encode(prompt)  # names any character outside the vocabulary
    length = check_int(length, name="length", minimum=0)
    temperature = check_float(temperature, name="temperature", low=0.0)
    if top_k is not None:
        top_k = check_int(top_k, name="top_k")
    if seed is not None:
        seed = check_int(seed, name="seed", minimum=0)

    twin, call = _streamer(model)
    reset_states(twin)
    rng = np.random.default_rng(seed)
    logits = call(tf.constant(ids[None, :], tf.int32))[0, -1].numpy()
    out = []
    for _ in range(length):
        token = sample_logits(logits, rng, temperature=temperature, top_k=top_k)
        out.append(token)
        logits = call(tf.constant([[token]], tf.int32))[0, -1].numpy()
    return vocab.decode(np.array(out, np.int32))
