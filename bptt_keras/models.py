"""Model factories and recurrent-state helpers.

`build_model` returns a plain `keras.Model` mapping `(batch, time, input_dim)` to
`(batch, time, output_dim)`: one or more recurrent layers with `return_sequences=True` and a
per-step `Dense` head. Returning the whole sequence is the fix for the source document's
`SimpleRNN(50)`, which returns only the last step, `(batch, 50)`, and cannot be compared with a
`(batch, 100, 1)` target.

Keras 3 models have no `reset_states()`; the helpers here reset, read and write the states of
stateful layers, rebuild a trained model as a stateful one with another batch size (for
streaming prediction), or as a model whose initial and final states are explicit inputs and
outputs (for carrying state between chunks without stateful layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from bptt_keras._validation import (
    as_float_array,
    check_choice,
    check_float,
    check_int,
    describe,
)
from bptt_keras.choices import CELL_NAMES, INITS

CELLS: dict[str, type[keras.layers.RNN]] = dict(
    zip(CELL_NAMES, (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU), strict=True)
)
"""Recurrent layer classes by the names `build_model(cell=...)` accepts."""


def _initializers(init: str, seed: int | None, units: int) -> dict:
    """Keras initialiser arguments for one recurrent layer.

    - "default": Keras' own (Glorot-uniform input kernel, orthogonal recurrent kernel).
    - "orthogonal": orthogonal input and recurrent kernels (Saxe et al. 2014), so that the
      recurrent Jacobian starts with all singular values equal to one.
    - "glorot": Glorot-uniform recurrent kernel, i.e. *not* orthogonal: its largest singular
      value is above one and most are below, the classic setting for vanishing gradients.
    - "irnn": identity recurrent kernel, small Gaussian input kernel (std 0.001), zero bias and
      ReLU (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of
      Rectified Linear Units"), so that at initialisation the state is copied unchanged and
      gradients neither vanish nor explode along the recurrence.
    """
    seeds = (None, None) if seed is None else (seed, seed + 1)
    if init == "default":
        return {
            "kernel_initializer": keras.initializers.GlorotUniform(seed=seeds[0]),
            "recurrent_initializer": keras.initializers.Orthogonal(seed=seeds[1]),
        }
    if init == "orthogonal":
        return {
            "kernel_initializer": keras.initializers.Orthogonal(seed=seeds[0]),
            "recurrent_initializer": keras.initializers.Orthogonal(seed=seeds[1]),
        }
    if init == "glorot":
        return {
            "kernel_initializer": keras.initializers.GlorotUniform(seed=seeds[0]),
            "recurrent_initializer": keras.initializers.GlorotUniform(seed=seeds[1]),
        }
    return {  # irnn
        "kernel_initializer": keras.initializers.RandomNormal(stddev=0.001, seed=seeds[0]),
        "recurrent_initializer": keras.initializers.Identity(gain=1.0),
        "bias_initializer": "zeros",
    }


def build_model(
    cell: str = "simple_rnn",
    units: int = 50,
    *,
    input_dim: int = 1,
    output_dim: int | None = None,
    num_layers: int = 1,
    vocab_size: int | None = None,
    embedding_dim: int | None = None,
    dropout: float = 0.0,
    tie_weights: bool = False,
    stateful: bool = False,
    batch_size: int | None = None,
    init: str = "default",
    activation: str | None = None,
    output_activation: str | None = None,
    return_state: bool = False,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Builds a sequence-to-sequence recurrent model with a per-step `Dense` head.

    With `vocab_size`, the model is a token (e.g. character) language model in the layout of
    PyTorch's `word_language_model` and Zaremba, Sutskever & Vinyals (2014):

        ids (batch, time) int -> Embedding -> Dropout -> [RNN -> Dropout] x num_layers -> Dense
                                                                   -> logits (batch, time, V)

    Dropout acts on the non-recurrent connections only (the embedding's output, between
    layers, before the head), as in both references: the recurrent connections stay exact,
    so the engine's fast path still applies to every cell. It is active in training
    (`training=True`, as `fit` calls the model) and off in evaluation and sampling.

    Args:
        cell: one of `"simple_rnn"`, `"lstm"`, `"gru"`.
        units: hidden units per recurrent layer.
        input_dim: features per time step of the input.
        output_dim: features per time step of the output (the `Dense` head's units);
            default 1, or `vocab_size` for a token model (one logit per token).
        num_layers: number of stacked recurrent layers.
        vocab_size: if given, the model takes integer token ids `(batch, time)` in
            `[0, vocab_size)` through an `Embedding` (then `input_dim` is not used) and its
            head returns unnormalised logits: train it with
            `loss="sparse_categorical_crossentropy"` (from logits).
        embedding_dim: the embedding's width (token models only; default `units`).
        dropout: rate of the dropout on the non-recurrent connections (see above), in
            `[0, 1)`; 0 adds no layer. Seeded from `seed` when given.
        tie_weights: token models only: the head's weight matrix *is* the embedding's,
            transposed (logits = h E^T, no bias), as PyTorch word_language_model's `--tied`
            (Press & Wolf 2017; Inan et al. 2017): `vocab_size * units` fewer parameters.
            Needs `embedding_dim == units` (the last layer's output is scored against the
            embedding rows) and `output_dim == vocab_size`. Built from Keras'
            `ReversibleEmbedding`, called twice, so it saves and loads as one variable.
        stateful: if True, the recurrent layers keep their final state as the initial state
            of the next batch (row `i` continues row `i`); requires `batch_size`.
        batch_size: fixed batch size, required when `stateful=True`; optional otherwise.
        init: `"default"` (Keras' own: Glorot input kernel, orthogonal recurrent kernel),
            `"orthogonal"` (both kernels orthogonal), `"glorot"` (non-orthogonal recurrent
            kernel) or `"irnn"` (identity recurrent kernel with ReLU, `simple_rnn` only).
        activation: recurrent activation override; default `tanh`, `relu` for `"irnn"`.
        output_activation: activation of the `Dense` head (default linear).
        return_state: if True, the model takes the initial states as extra inputs and returns
            the final states as extra outputs: `model([x, *states0]) -> [y, *states_T]`, one
            state per SimpleRNN/GRU layer and two (h, c) per LSTM layer, each
            `(batch, units)`. Use this to carry state explicitly between chunks.
        seed: if given, every initialiser is seeded, so two calls build identical weights.
        name: model name; defaults to e.g. `"lstm_50x2"`.

    Returns:
        A `keras.Model` mapping `(batch, time, input_dim)` (or integer ids `(batch, time)`
        with `vocab_size`) to `(batch, time, output_dim)`. Time may vary from call to call.

    Raises:
        ValueError: unknown `cell` or `init`, `"irnn"` with a gated cell, non-positive sizes,
            or `stateful=True` without `batch_size`.

    Example:

    >>> model = build_model("lstm", 16, num_layers=2, seed=0)
    >>> model(np.zeros((4, 30, 1), "float32")).shape
    TensorShape([4, 30, 1])
    >>> lm = build_model("lstm", 32, vocab_size=65, embedding_dim=16, dropout=0.2, seed=0)
    >>> lm(np.zeros((4, 30), "int32")).shape
    TensorShape([4, 30, 65])
    """
    check_choice(cell, name="cell", choices=CELLS)
    check_choice(init, name="init", choices=INITS)
    units = check_int(units, name="units")
    input_dim = check_int(input_dim, name="input_dim")
    if vocab_size is not None:
        vocab_size = check_int(vocab_size, name="vocab_size", minimum=2)
        embedding_dim = check_int(embedding_dim or units, name="embedding_dim")
    elif embedding_dim is not None:
        raise ValueError(
            f"`embedding_dim` needs `vocab_size` (an Embedding of token ids). Received: "
            f"embedding_dim={embedding_dim}, vocab_size=None"
        )
    if output_dim is None:
        output_dim = vocab_size or 1
    output_dim = check_int(output_dim, name="output_dim")
    if not isinstance(tie_weights, bool):
        raise TypeError(f"`tie_weights` must be True or False. Received: {tie_weights!r}")
    if tie_weights:
        if vocab_size is None:
            raise ValueError(
                "`tie_weights=True` ties the head to a token embedding: it needs `vocab_size`."
            )
        if embedding_dim != units or output_dim != vocab_size:
            raise ValueError(
                "`tie_weights=True` scores the last layer's output (units) against the embedding "
                "rows (embedding_dim), one logit per token: it needs embedding_dim == units and "
                f"output_dim == vocab_size. Received: embedding_dim={embedding_dim}, "
                f"units={units}, output_dim={output_dim}, vocab_size={vocab_size}"
            )
    num_layers = check_int(num_layers, name="num_layers")
    dropout = check_float(dropout, name="dropout", low=0.0, high=1.0, high_inclusive=False)
    if batch_size is not None:
        batch_size = check_int(batch_size, name="batch_size")
    if seed is not None:
        seed = check_int(seed, name="seed", minimum=0)
    if stateful and batch_size is None:
        raise ValueError(
            "`stateful=True` requires a fixed `batch_size` (Keras 3 builds stateful layers with "
            "`keras.Input(batch_shape=(batch_size, time, features))`). Received: batch_size=None"
        )
    if init == "irnn" and cell != "simple_rnn":
        raise ValueError(
            f"`init='irnn'` (identity recurrent matrix with ReLU) applies to `cell='simple_rnn'` "
            f"only. Received: cell={cell!r}"
        )
    if activation is None:
        activation = "relu" if init == "irnn" else "tanh"

    def drop(i: int) -> list[keras.layers.Layer]:
        if not dropout:
            return []
        drop_seed = None if seed is None else seed + 5000 + i
        return [keras.layers.Dropout(dropout, seed=drop_seed, name=f"dropout_{i}")]

    layers: list[keras.layers.Layer] = []
    if vocab_size is not None:
        embed_init = keras.initializers.RandomUniform(
            -0.1, 0.1, seed=None if seed is None else seed + 7777
        )  # PyTorch word_language_model's init_weights
        if tie_weights:
            embedding = keras.layers.ReversibleEmbedding(
                vocab_size, embedding_dim, embeddings_initializer=embed_init, name="embedding"
            )
        else:
            embedding = keras.layers.Embedding(
                vocab_size, embedding_dim, embeddings_initializer=embed_init, name="embedding"
            )
        layers.append(embedding)
        layers += drop(0)
    for i in range(num_layers):
        layer_seed = None if seed is None else seed + 10 * i
        layers.append(
            CELLS[cell](
                units,
                activation=activation,
                return_sequences=True,
                return_state=return_state,
                stateful=stateful,
                name=f"{cell}_{i}",
                **_initializers(init, layer_seed, units),
            )
        )
        layers += drop(i + 1)
    head_init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + 9999)
    if tie_weights:
        if output_activation is not None:
            raise ValueError(
                "`tie_weights=True` returns logits (h E^T): it takes no `output_activation`. "
                f"Received: output_activation={output_activation!r}"
            )
        head = TiedHead(embedding)
    else:
        head = keras.layers.Dense(
            output_dim, activation=output_activation, kernel_initializer=head_init, name="head"
        )
    return _assemble(
        [*layers, head],
        input_shape=(None,) if vocab_size is not None else (None, input_dim),
        input_dtype="int32" if vocab_size is not None else None,
        batch_size=batch_size,
        return_state=return_state,
        name=name or f"{cell}_{units}x{num_layers}",
    )


class TiedHead:
    """The output end of a tied embedding: `head(h) = embedding(h, reverse=True) = h E^T`.

    Not a layer of its own: the model's last node is a second call of the same
    `ReversibleEmbedding` (so the weights are one variable, saved once), and this object is
    how `layer_chain` lists that call among the per-step layers the engine unrolls.

    Args:
        embedding: the model's `keras.layers.ReversibleEmbedding`.
    """

    def __init__(self, embedding: keras.layers.Layer):
        self.embedding = embedding
        self.name = f"{embedding.name}_reverse"

    def __call__(self, h, training=None):
        return self.embedding(h, reverse=True)

    def __repr__(self) -> str:
        return f"TiedHead({self.embedding.name!r})"


def _tied_head(model: keras.Model, layers: list) -> TiedHead | None:
    """A `TiedHead` if the model's output is the reverse call of its first layer."""
    first = layers[0] if layers else None
    if not isinstance(first, keras.layers.ReversibleEmbedding):
        return None
    history = getattr(model.outputs[0], "_keras_history", None)
    return TiedHead(first) if history is not None and history[0] is first else None


def state_sizes(layer: keras.layers.RNN) -> list[int]:
    """Sizes of a recurrent layer's states: `[units]`, or `[units, units]` (h, c) for LSTM."""
    size = layer.cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _assemble(
    layers: Sequence[keras.layers.Layer],
    *,
    input_shape: tuple,
    input_dtype: str | None,
    batch_size: int | None,
    return_state: bool,
    name: str,
) -> keras.Model:
    """Wires a chain of layers into a functional model (recurrent layers get explicit state
    inputs and outputs when `return_state`)."""
    x = keras.Input(batch_shape=(batch_size, *input_shape), dtype=input_dtype, name="x")
    inputs, finals, h = [x], [], x
    for layer in layers:
        if return_state and isinstance(layer, keras.layers.RNN):
            initial = [
                keras.Input(batch_shape=(batch_size, size), name=f"{layer.name}_state{k}")
                for k, size in enumerate(state_sizes(layer))
            ]
            inputs += initial
            out = layer(h, initial_state=initial if len(initial) > 1 else initial[0])
            h, states = out[0], list(out[1:])
            finals += states
        else:
            h = layer(h)
    if return_state:
        return keras.Model(inputs, [h, *finals], name=name)
    return keras.Model(x, h, name=name)


def recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    """The recurrent layers of `model`, in order from input to output.

    Args:
        model: a Keras model.

    Returns:
        A list of `keras.layers.RNN` instances (SimpleRNN, LSTM, GRU, ...).

    Raises:
        TypeError: if `model` is not a `keras.Model`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {describe(model)}")
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def _stateful_layers(model: keras.Model) -> list[keras.layers.RNN]:
    layers = [layer for layer in recurrent_layers(model) if layer.stateful]
    if not layers:
        raise ValueError(
            f"`model` {model.name!r} has no stateful recurrent layer, so it keeps no state "
            "between calls. Build it with `build_model(..., stateful=True, batch_size=B)` or "
            "convert it with `to_stateful(model, batch_size=B)`."
        )
    return layers


def reset_states(model: keras.Model) -> None:
    """Resets the state of every stateful recurrent layer of `model` to zeros.

    Keras 3 has `layer.reset_state()` but no `model.reset_states()`; call this between
    independent sequences (e.g. at the start of each epoch of a streams layout). Layers that
    are not stateful hold no state and are left alone.

    Args:
        model: a Keras model.

    Example:

    >>> model = build_model(stateful=True, batch_size=2)
    >>> reset_states(model)
    """
    for layer in recurrent_layers(model):
        if layer.stateful:
            layer.reset_state()


def get_states(model: keras.Model) -> list[list[np.ndarray]]:
    """Reads the current states of a stateful model.

    Args:
        model: a model with stateful recurrent layers.

    Returns:
        One list per stateful recurrent layer of `(batch, units)` float arrays: `[h]` for
        SimpleRNN/GRU, `[h, c]` for LSTM.

    Raises:
        ValueError: if the model has no stateful recurrent layer.
    """
    # Stateful layers get their state variables (zeros) when the model is built.
    return [[np.array(s.numpy()) for s in layer.states] for layer in _stateful_layers(model)]


def set_states(model: keras.Model, states: Sequence[Sequence[np.ndarray]]) -> None:
    """Writes the states of a stateful model (the inverse of `get_states`).

    Args:
        model: a model with stateful recurrent layers.
        states: one sequence per stateful recurrent layer of `(batch, units)` arrays, as
            returned by `get_states`.

    Raises:
        ValueError: wrong number of layers or states, or a shape that does not match.
    """
    layers = _stateful_layers(model)
    if not isinstance(states, (list, tuple)) or len(states) != len(layers):
        raise ValueError(
            f"`states` must be a list with one entry per stateful recurrent layer "
            f"({len(layers)}). Received: {describe(states)}"
        )
    batch = model.inputs[0].shape[0]
    for layer, layer_states in zip(layers, states, strict=True):
        sizes = state_sizes(layer)
        if not isinstance(layer_states, (list, tuple)) or len(layer_states) != len(sizes):
            raise ValueError(
                f"`states` for layer {layer.name!r} must be a list of {len(sizes)} array(s). "
                f"Received: {describe(layer_states)}"
            )
        arrays = []
        for k, (value, size) in enumerate(zip(layer_states, sizes, strict=True)):
            array = as_float_array(value, name=f"states[{layer.name}][{k}]", ranks=(2,))
            if array.shape != (batch, size):
                raise ValueError(
                    f"`states` for layer {layer.name!r}, state {k}, must have shape "
                    f"{(batch, size)}. Received: {describe(array)}"
                )
            arrays.append(array)
        for variable, array in zip(layer.states, arrays, strict=True):
            variable.assign(array)


def bidirectional_layers(model: keras.Model) -> list[keras.layers.Bidirectional]:
    """The `keras.layers.Bidirectional` layers of `model`, in order.

    The engine runs them whole (Keras' own call over the full sequence, from zero states):
    their backward direction reads the sequence from its end, so they take part in full BPTT
    only, not in truncated BPTT or in step-by-step (stateful) use.
    """
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]


def layer_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of a `build_model`-style model, in order from input to output.

    The engine unrolls a chain: optional per-step layers (e.g. `Embedding`, `Dropout`), then
    recurrent layers, each optionally followed by per-step layers (`Dropout` between layers,
    the `Dense` head after the last). "Per-step" means the layer acts on every time step
    alone, as `Embedding`, `Dropout`, `Dense` and `Activation` do; a `Bidirectional`
    recurrent layer sits in the chain as one layer over the whole sequence (full BPTT only).
    A tied head (the model's output is a second, reverse call of its `ReversibleEmbedding`)
    ends the chain as a `TiedHead`.

    Args:
        model: a Keras model.

    Returns:
        The model's layers without its `InputLayer`s, in order.

    Raises:
        TypeError: `model` is not a keras.Model.
        ValueError: no recurrent layer, or a recurrent layer without
            `return_sequences=True`.
    """
    recurrent = recurrent_layers(model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    both_ways = bidirectional_layers(model)
    if not recurrent and not both_ways:
        raise ValueError(
            f"`model` must contain recurrent layers (SimpleRNN, LSTM, GRU, or Bidirectional "
            f"ones), as `build_model` builds. Received layers: "
            f"{[type(layer).__name__ for layer in layers]}"
        )
    recurrent = recurrent + [layer.forward_layer for layer in both_ways]
    if not all(layer.return_sequences for layer in recurrent):
        raise ValueError(
            "`model`'s recurrent layers must all have `return_sequences=True` (one output per "
            "time step), as `build_model` builds them."
        )
    tied = _tied_head(model, layers)
    return [*layers, tied] if tied is not None else layers


def _rebuild(
    model: keras.Model, *, batch_size: int | None, stateful: bool, return_state: bool
) -> keras.Model:
    """A copy of a chain model with new statefulness/state I/O and copied weights."""
    both_ways = bidirectional_layers(model)
    if both_ways:
        raise ValueError(
            f"`model` has Bidirectional layers ({[layer.name for layer in both_ways]}), whose "
            "backward direction reads the whole sequence from its end: a stateful or "
            "state-returning copy that runs chunk by chunk (streaming, forecasting) would "
            "compute something else. Predict with the model itself over whole sequences."
        )
    layers = []
    for layer in layer_chain(model):
        if isinstance(layer, TiedHead):  # the reverse call of the rebuilt embedding
            layers.append(TiedHead(layers[0]))
            continue
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN):
            config = {**config, "stateful": stateful, "return_state": return_state}
        layers.append(type(layer).from_config(config))
    spec = model.inputs[0]
    clone = _assemble(
        layers,
        input_shape=tuple(spec.shape[1:]),
        input_dtype=spec.dtype,
        batch_size=batch_size,
        return_state=return_state,
        name=model.name,
    )
    clone.set_weights(model.get_weights())
    return clone


def to_stateful(model: keras.Model, batch_size: int = 1) -> keras.Model:
    """A stateful copy of `model` with a fixed batch size and a copy of its weights.

    Train with any batch size, then stream predictions one step (or chunk) at a time with a
    stateful copy of batch size 1: each call continues from the state the previous call left.
    The weights are copied, not shared: later training of `model` does not change the copy.

    Args:
        model: a model from `build_model` (stateful or not).
        batch_size: the fixed batch size of the copy.

    Returns:
        A new `keras.Model` with the same layers and weights and `stateful=True`.

    Example:

    >>> streamer = to_stateful(model, batch_size=1)
    >>> for x_t in series:  # (1, 1, features) each
    ...     y_t = streamer(x_t)
    """
    batch_size = check_int(batch_size, name="batch_size")
    return _rebuild(model, batch_size=batch_size, stateful=True, return_state=False)


def with_explicit_state(model: keras.Model) -> keras.Model:
    """A copy of `model` whose initial and final states are explicit inputs and outputs.

    The copy maps `[x, *states0]` to `[y, *states_T]` (see `build_model(return_state=True)`),
    so that state can be carried from one chunk of a sequence to the next without stateful
    layers, e.g. for closed-loop forecasting or truncated BPTT. The weights are copied.

    Args:
        model: a model from `build_model`.

    Returns:
        A new, non-stateful `keras.Model` with the same weights and explicit state I/O.
    """
    return _rebuild(model, batch_size=None, stateful=False, return_state=True)


def zero_states(model: keras.Model, batch_size: int) -> list[np.ndarray]:
    """Zero initial states for a model with explicit state I/O.

    Args:
        model: a model built with `return_state=True` or by `with_explicit_state`.
        batch_size: the batch size of the states.

    Returns:
        A flat list of `(batch_size, units)` float32 zero arrays, in the order of the
        model's state inputs.
    """
    batch_size = check_int(batch_size, name="batch_size")
    return [
        np.zeros((batch_size, size), np.float32)
        for layer in recurrent_layers(model)
        for size in state_sizes(layer)
    ]


def run_with_state(model: keras.Model, x, states=None):
    """Runs an explicit-state model on one chunk and returns its output and final states.

    A convenience over `model([x, *states])` that converts everything to tensors (Keras
    refuses a list mixing NumPy arrays and tensors) and starts from zeros when `states` is None.

    Args:
        model: a model built with `return_state=True` or by `with_explicit_state`.
        x: `(batch, time, input_dim)` chunk.
        states: the flat list of states returned by the previous call, or None for zeros.

    Returns:
        `(y, states)`: `y` of shape `(batch, time, output_dim)` and the list of final states,
        to pass to the next call.

    Example:

    >>> twin = with_explicit_state(model)
    >>> y1, states = run_with_state(twin, x[:, :50])
    >>> y2, states = run_with_state(twin, x[:, 50:], states)  # continues the sequence
    """
    x = as_float_array(x, name="x", ranks=(3,))
    if states is None:
        states = zero_states(model, x.shape[0])
    expected = len(model.inputs) - 1
    if expected == 0:
        raise ValueError(
            f"`model` {model.name!r} has no state inputs; build it with `return_state=True` or "
            "convert it with `with_explicit_state(model)`."
        )
    if len(states) != expected:
        raise ValueError(
            f"`states` must hold {expected} arrays (one per state input of the model). "
            f"Received {len(states)}"
        )
    outputs = model([keras.ops.convert_to_tensor(v) for v in (x, *states)])
    return outputs[0], list(outputs[1:])
