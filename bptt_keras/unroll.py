"""The loop over time: a model's recurrent layers unrolled with explicit state.

The time-step math stays in Keras' own cells (`layer.cell`, with the model's weights); this
module owns only the loop, so that the engine can start a chunk from any state, hand on the
state at any step, and (for diagnostics) watch the state of every step on the tape.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from bptt_keras import fast as fast_path
from bptt_keras.models import layer_chain, state_sizes


class Parts:
    """A `build_model`-style model as the engine unrolls it: a chain of per-step layers and
    recurrent layers (see `bptt_keras.models.layer_chain`).

        x -> pre (Embedding, Dropout) -> recurrent[0] -> after[0] (Dropout) -> recurrent[1]
          -> ... -> recurrent[-1] -> after[-1] = per_step (Dropout, Dense head) -> y

    Args:
        model: the model; its layers (and so its weights) are used, not copied.

    Raises:
        ValueError: an architecture the engine cannot unroll (see `layer_chain`), or
            recurrent layers with dropout or `go_backwards`.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        chain = layer_chain(model)
        self.recurrent = [layer for layer in chain if isinstance(layer, keras.layers.RNN)]
        for layer in self.recurrent:
            if getattr(layer.cell, "dropout", 0) or getattr(layer.cell, "recurrent_dropout", 0):
                raise ValueError(
                    f"Layer {layer.name!r} uses the cell's own (recurrent) dropout, which the "
                    "BPTT engine does not implement. Put `keras.layers.Dropout` layers between "
                    "the recurrent layers instead (`build_model(..., dropout=p)`): dropout on "
                    "the non-recurrent connections, as Zaremba et al. (2014)."
                )
            if layer.go_backwards:
                raise ValueError(f"Layer {layer.name!r} has go_backwards=True; not supported.")
        # pre: layers before the first recurrent layer; after[i]: those after recurrent[i].
        self.pre: list[keras.layers.Layer] = []
        self.after: list[list[keras.layers.Layer]] = []
        for layer in chain:
            if isinstance(layer, keras.layers.RNN):
                self.after.append([])
            else:
                (self.after[-1] if self.after else self.pre).append(layer)
        # Bidirectional layers run whole, as Keras calls them, inside `pre` / `after`: only
        # valid when a chunk is the whole sequence (full BPTT; `check_run` refuses the rest).
        self.whole_sequence = [
            layer for layer in chain if isinstance(layer, keras.layers.Bidirectional)
        ]
        stateful = [layer.name for layer in self.whole_sequence if layer.forward_layer.stateful]
        if self.whole_sequence and (stateful or any(r.stateful for r in self.recurrent)):
            raise ValueError(
                "A model with Bidirectional layers cannot be stateful: their backward "
                "direction reads each sequence from its end, so no state can be carried into "
                f"the next batch. Received stateful layers: "
                f"{stateful + [r.name for r in self.recurrent if r.stateful]}"
            )
        self.per_step = self.after[-1] if self.after else []
        self.mask_layer = _mask_layer(chain)
        self.sizes = [state_sizes(layer) for layer in self.recurrent]
        spec = model.inputs[0]
        # Token models take integer ids (batch, time); the others (batch, time, input_dim).
        self.tokens = len(spec.shape) == 2
        self.vocab_size = int(self.pre[0].input_dim) if self.tokens else None
        self.input_dim = None if self.tokens else int(spec.shape[-1])
        self.output_dim = int(model.outputs[0].shape[-1])
        self.dtype = (self.recurrent or self.whole_sequence)[0].compute_dtype

    @property
    def stateful(self) -> bool:
        """Whether the recurrent layers carry their state from batch to batch."""
        return any(layer.stateful for layer in self.recurrent)

    def step_mask(self, x):
        """`(batch, time)` bool: the steps the model's mask keeps (Keras' `Masking`:
        some feature differs from `mask_value`; `Embedding(mask_zero=True)`: id not 0),
        computed from the raw inputs; None without a masking layer."""
        layer = self.mask_layer
        if layer is None:
            return None
        if isinstance(layer, keras.layers.Masking):
            return tf.reduce_any(tf.not_equal(x, tf.cast(layer.mask_value, x.dtype)), axis=-1)
        return tf.not_equal(x, tf.cast(0, x.dtype))

    def host_mask(self, x) -> np.ndarray | None:
        """`step_mask` on the host, for NumPy inputs (the loss weights' share of it)."""
        layer = self.mask_layer
        if layer is None:
            return None
        if isinstance(layer, keras.layers.Masking):
            return np.any(x != np.asarray(layer.mask_value, x.dtype), axis=-1)
        return x != 0

    def mask_weights(self, x, w: np.ndarray) -> np.ndarray:
        """Per-step loss weights `w (batch, time)` times the model's mask: padded steps
        are not scored, as Keras' losses skip masked steps. Unchanged without a mask."""
        mask = self.host_mask(x)
        return w if mask is None else w * mask.astype(w.dtype)

    def cast_input(self, x):
        """`x` in the dtype the first layer takes: int32 ids or the recurrent dtype."""
        return tf.cast(x, tf.int32 if self.tokens else self.dtype)

    def zero_states(self, batch) -> list[list[tf.Tensor]]:
        """Zero states, one list per recurrent layer of `(batch, size)` tensors."""
        return [[tf.zeros((batch, size), self.dtype) for size in sizes] for sizes in self.sizes]


def _mask_layer(chain):
    """The layer whose mask the model applies (`Masking`, or an `Embedding` with
    `mask_zero=True`), which must be the model's first layer, so that the mask is a function
    of the raw inputs, on the host and in the graph alike; None if there is none."""
    masking = [
        layer
        for layer in chain
        if isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False)
    ]
    if not masking:
        return None
    if len(masking) > 1 or masking[0] is not chain[0]:
        raise ValueError(
            "The BPTT engine applies a mask made from the model's inputs: a `Masking` layer "
            "or an `Embedding(mask_zero=True)` must be the model's first layer (and the only "
            f"masking layer). Received masking layers {[layer.name for layer in masking]} in "
            f"the chain {[layer.name for layer in chain]}"
        )
    # Keras drops the mask at a layer that does not support masking (later layers and the
    # loss would see every step), while the engine applies it everywhere: refuse rather than
    # train something other than Keras' model.
    dropping = [layer.name for layer in chain[1:] if not getattr(layer, "supports_masking", True)]
    if dropping:
        raise ValueError(
            f"The model masks its inputs ({masking[0].name!r}) but layers {dropping} do not "
            "support masking (Keras would drop the mask there). Use layers that pass the "
            "mask on (Dense, Dropout, Activation, SimpleRNN/LSTM/GRU, Bidirectional) or "
            "remove the mask."
        )
    return masking[0]


def run_layer(
    layer, x, states, *, capture_at=None, probe=None, training=False, mask=None
):  # fmt: skip
    """Runs one recurrent layer over a chunk, step by step, from the given state.

    Args:
        layer: a built Keras RNN layer (its `cell` computes one step).
        x: `(batch, time, features)` inputs; `time` may be 0.
        states: list of `(batch, size)` initial states.
        capture_at: int32 scalar `c` in `[0, time]`: also return the state after `c` steps
            (the state entering step `c`); default `time` (the final state).
        probe: optional `(time, batch, units)` tensor added to the hidden state of every step.
            It is zero in value; the gradient with respect to it is the total derivative
            dL/dh_t through all later steps, which the layer's outputs alone do not give.
        training: passed to the cell.
        mask: optional `(batch, time)` bool, Keras' semantics: at a masked step the state
            is carried unchanged and the output repeats the previous step's (zeros with
            the layer's `zero_output_for_mask`).

    Returns:
        `(outputs, final_states, captured_states)`: outputs `(batch, time, units)`.
    """
    xs = tf.transpose(x, [1, 0, 2])  # (time, batch, features): the loop walks the first axis
    steps = tf.shape(xs)[0]
    capture_at = steps if capture_at is None else tf.cast(capture_at, tf.int32)
    outputs = tf.TensorArray(
        x.dtype, size=steps, element_shape=tf.TensorShape([None, layer.cell.units])
    )
    keep = None if mask is None else tf.transpose(mask)[..., None]  # (time, batch, 1)
    zero_output = getattr(layer, "zero_output_for_mask", False)

    def body(t, states, captured, outputs, previous):
        out, new = layer.cell(xs[t], states, training=training)
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        if keep is not None:
            new = [tf.where(keep[t], n, s) for n, s in zip(new, states, strict=True)]
            out = tf.where(keep[t], out, tf.zeros_like(out) if zero_output else previous)
        if probe is not None:
            out = new[0] + probe[t]  # h_t is both the output and the first state
            new = [out, *new[1:]]
        captured = [tf.where(t + 1 == capture_at, n, c) for n, c in zip(new, captured, strict=True)]
        return t + 1, new, captured, outputs.write(t, out), out

    states = list(states)
    previous = tf.zeros_like(states[0][:, : layer.cell.units])
    # maximum_iterations bounds the loop's gradient accumulators, which XLA requires.
    _, final, captured, outputs, _ = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), states, states, outputs, previous),
        maximum_iterations=steps,
    )
    return tf.transpose(outputs.stack(), [1, 0, 2]), final, captured


def forward(
    parts: Parts,
    x,
    states,
    *,
    capture_at=None,
    probe_layer=None,
    probe=None,
    training=False,
    fast=False,
    recompute=None,
):
    """The model's forward pass over one chunk with explicit states.

    Args:
        parts: the model's `Parts`.
        x: `(batch, time, input_dim)`, or int32 ids `(batch, time)` for a token model.
        states: one list of `(batch, size)` tensors per recurrent layer.
        capture_at: step whose entering state is also returned (see `run_layer`).
        probe_layer: index of the recurrent layer that gets `probe`.
        probe: see `run_layer`.
        training: passed to the layers.
        fast: use the hand-derived backward pass (`bptt_keras.fast`) for the layers that
            have one; the others, and a probed layer, use the plain loop.
        recompute: segment length K for full BPTT with recomputation (Chen et al. 2016;
            Gruslys et al. 2016). With `fast`, SimpleRNN, LSTM and GRU layers recompute inside
            their own custom gradient (`fast.recomputed_layer`): the forward pass keeps
            only the layer's outputs (which the next layer needs anyway) and the state at
            every K-th step; the backward pass walks the segments in reverse, one at a
            time, rebuilding each segment's gates from the stored outputs and its boundary
            state. These layers run time-major, and a `Dense` right after the last of them
            is folded into its gradient, so that no `(T, B, units)` gradient or transposed
            copy is ever materialised (measured in benchmarks/RESULTS.md). Other layers
            (other activations, or `fast=False`) run each segment under `tf.recompute_grad`: same
            gradients, but TensorFlow's executor schedules those recomputations early, so
            memory does not drop. Needs a static sequence length; the captured state is the
            final one.

    Returns:
        `(y, final_states, captured_states)`, `y` of shape `(batch, time, output_dim)`.
    """
    mask = parts.step_mask(x)
    for layer in parts.pre:
        x = _call(layer, x, training, mask)
    if recompute:
        y, finals = _recomputed_forward(parts, x, states, recompute, fast, training)
        return y, finals, finals
    h, finals, captured = x, [], []
    for i, (layer, layer_states) in enumerate(zip(parts.recurrent, states, strict=True)):
        h, final, capt = _one_layer(
            layer,
            h,
            layer_states,
            capture_at=capture_at,
            probe=probe if i == probe_layer else None,
            fast=fast,
            training=training,
            mask=mask,
        )
        finals.append(final)
        captured.append(capt)
        for per_step in parts.after[i]:
            h = _call(per_step, h, training, mask)
    return h, finals, captured


def _call(layer, x, training, mask):
    """A per-step or whole-sequence layer; a Bidirectional one gets the model's mask."""
    if mask is not None and isinstance(layer, keras.layers.Bidirectional):
        return layer(x, training=training, mask=mask)
    return layer(x, training=training)


def _one_layer(
    layer, x, states, *, capture_at=None, probe=None, fast=False, training=False, mask=None
):  # fmt: skip
    """One recurrent layer over a chunk: the fast path where it applies (never for a probed
    layer, whose states must stay on the tape, nor under a mask, which the hand-derived
    backward pass does not implement), else the plain loop.

    Returns:
        `(outputs, final states, captured states)`, as `run_layer`.
    """
    if fast and probe is None and mask is None and fast_path.supports(layer):
        at = tf.shape(x)[1] if capture_at is None else capture_at
        if isinstance(layer, keras.layers.LSTM):
            return fast_path.lstm_layer(layer, x, *states, at)
        run = fast_path.gru_layer if isinstance(layer, keras.layers.GRU) else None
        run = run or fast_path.simple_rnn_layer
        out, final, captured = run(layer, x, states[0], at)
        return out, [final], [captured]
    return run_layer(
        layer, x, states, capture_at=capture_at, probe=probe, training=training, mask=mask
    )


# Per-step layers that act on the last axis (or each element) alone, so that they may run on
# time-major inputs. Dropout's mask is drawn per element: the same distribution either way.
_TIME_MAJOR_SAFE = (keras.layers.Dense, keras.layers.Activation, keras.layers.Dropout)


def _time_major_safe(layer) -> bool:
    if isinstance(layer, keras.layers.Dropout) and layer.noise_shape is not None:
        return False
    return isinstance(layer, _TIME_MAJOR_SAFE)


def _recomputed_forward(parts, x, states, segment, fast, training):
    """Full BPTT with recomputation: `(y, final states)`.

    Layers with a fast path recompute inside their own gradient (`fast.recomputed_layer`)
    and run time-major, so that neither their outputs nor the gradients arriving for them
    are ever transposed as a whole: at long T those `(T, B, units)` copies would cost more
    than everything else the recomputation keeps. The other layers use `tf.recompute_grad`
    per segment, batch-major.
    """
    steps = x.shape[1]
    if steps is None:
        raise ValueError("`recompute` needs a static sequence length.")
    h, time_major, finals = x, False, []
    last = len(parts.recurrent) - 1
    for i, (layer, layer_states) in enumerate(zip(parts.recurrent, states, strict=True)):
        after = list(parts.after[i])
        if fast and fast_path.supports_recompute(layer):
            if not time_major:
                h, time_major = tf.transpose(h, [1, 0, 2]), True
            # A Dense head right after the last layer is folded into its gradient, so the
            # (T, B, units) gradient of the layer's outputs is never materialised.
            head = None
            if i == last and after and fast_path.fusable_head(after[0]):
                head = after.pop(0)
            h, final = fast_path.recomputed_layer(
                layer, h, layer_states, segment, time_major=True, head=head
            )
            if head is not None and head.activation is not None:
                h = head.activation(h)
        else:
            if time_major:
                h, time_major = tf.transpose(h, [1, 0, 2]), False
            h, final = _recomputed_layer(layer, h, layer_states, segment, training)
        finals.append(final)
        if time_major and not all(_time_major_safe(layer) for layer in after):
            h, time_major = tf.transpose(h, [1, 0, 2]), False
        for per_step in after:
            h = per_step(h, training=training)
    return (tf.transpose(h, [1, 0, 2]) if time_major else h), finals


def _recomputed_layer(layer, x, states, segment, training):
    """A layer over a sequence in segments, each under `tf.recompute_grad` (the fallback for
    layers without a fast path; measured: TF's executor runs the recomputations early, so
    this gives the same gradients but not the memory saving)."""
    steps = x.shape[1]

    def segment_fn(chunk, *chunk_states):
        out, final, _ = _one_layer(layer, chunk, list(chunk_states), training=training)
        return (out, *final)

    run_segment = tf.recompute_grad(segment_fn)
    outputs, states = [], list(states)
    for begin in range(0, steps, segment):
        out, *states = run_segment(x[:, begin : begin + segment], *states)
        outputs.append(out)
    # recompute_grad forgets static shapes; the next layer needs the length again.
    return tf.ensure_shape(tf.concat(outputs, axis=1), [None, steps, None]), states
