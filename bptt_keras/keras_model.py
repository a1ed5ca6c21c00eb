"""Truncated BPTT inside Keras' own `model.fit`: a `keras.Model` whose `train_step` runs the
block plan of each batch.

Keras' guide "Customizing what happens in `fit()`" overrides `train_step`; `BPTTModel` does
that around the engine's block step (`Engine.block_gradients`, the same code `bptt_keras.fit`
runs): each batch of full sequences is cut into the blocks of `plan_blocks(T, k1, k2)`, one
optimizer update per block, the state handed on from block to block with the gradient cut at
the block's start. Everything else is Keras': `compile`, `fit` with arrays or a `tf.data`
pipeline, `validation_split`, callbacks, `evaluate`, `predict`, `save` / `load_model`.

    model = bk.BPTTModel(bk.build_model("lstm", 64), k1=20, k2=40)  # the one-line switch
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=32, epochs=10, validation_split=0.1, callbacks=[...])
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from bptt_keras._validation import describe
from bptt_keras.engine.arguments import check_recompute
from bptt_keras.engine.keras_options import resolve_loss
from bptt_keras.engine.step import BlockSpec, Engine
from bptt_keras.losses import Normaliser
from bptt_keras.truncation import check_truncation, plan_blocks
from bptt_keras.unroll import Parts


def _check_k(value, name: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise (TypeError if not isinstance(value, numbers.Integral) else ValueError)(
            f"`{name}` must be a positive integer or None. Received: {describe(value)}"
        )
    return int(value)


@keras.saving.register_keras_serializable(package="bptt_keras")
class BPTTModel(keras.Model):
    """A Keras model whose `fit` trains by (truncated) BPTT: one update per block.

    Wraps a recurrent sequence model (a `build_model` model: per-step outputs, stateless)
    and uses its layers and weights, not copies. `call`, `predict` and `evaluate` are the
    wrapped model's forward pass over whole sequences (the state carried through every
    step); `train_step` plans the blocks of TBPTT(k1, k2) over each batch's `T` steps
    (`bptt_keras.truncation`) and makes one optimizer update per block, exactly as
    `bptt_keras.fit` does with the same settings (same gradients, loss denominators and
    order), so weights after N batches agree with it.

    The training loss of a block is the compiled loss's per-element sum over the block's
    scored steps divided by their weighted count (`bptt_keras.fit`'s default "mean"
    reduction; with per-step `sample_weight` that is the weighted mean, where Keras' own
    "sum_over_batch_size" divides by the element count), plus the model's regularisation
    penalties. The logged `loss` is the epoch's loss sum over its scored elements; compiled
    metrics see every block's scored outputs. An update whose loss or gradient is not finite
    is skipped (weights and optimizer state stay those of the last finite update) and the
    NaN shows in the logged loss, so `keras.callbacks.TerminateOnNaN` stops the run.
    Optimizer options (`clipnorm`, `global_clipnorm`, schedules) act as in Keras.

    Args:
        model: the recurrent sequence model: `(batch, time, input_dim)` (or token ids
            `(batch, time)`) to `(batch, time, output_dim)`, not stateful (carried streams
            are `bptt_keras.fit`'s `stateful` mode).
        k1: steps per block, one update per block; None for full BPTT (one update per batch,
            as Keras' own `fit`).
        k2: steps back-propagated per block (`k1 <= k2 <= T`); None for `k1`.
        fast: the hand-derived backward pass where one exists (`bptt_keras.fast`); compiled
            with XLA unless `compile(jit_compile=False)`.
        recompute: as in `bptt_keras.fit` ("auto": full BPTT over T >= 1000 steps
            recomputes in segments of round(sqrt(T))).
        **kwargs: `keras.Model` arguments (`name`).

    Example:

    >>> model = BPTTModel(build_model("lstm", 32), k1=20)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> model.fit(x, y, batch_size=16, epochs=5, validation_split=0.2)  # x: (n, T, 1)
    >>> model.save("model.keras")  # keras.models.load_model after `import bptt_keras`
    """

    def __init__(self, model, k1=None, k2=None, *, fast=True, recompute="auto", **kwargs):
        if isinstance(model, dict):  # from a saved config
            model = keras.saving.deserialize_keras_object(model)
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must be a keras.Model. Received: {describe(model)}")
        if any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers) and (
            k1 is not None
        ):
            raise ValueError(
                "Truncated BPTT over a Bidirectional layer is ill-defined: its backward "
                "direction reads the whole sequence from the end, so no block of k1 steps has "
                f"a state to carry forward. Use full BPTT (k1=None). Received: k1={k1}"
            )
        parts = Parts(model)  # a clear ValueError for an architecture it cannot unroll
        if parts.stateful:
            raise ValueError(
                f"`model` {model.name!r} is stateful; BPTTModel trains independent sequences "
                "(the state starts at zero in every batch and is carried between its blocks). "
                "For one long stream carried across batches use `bptt_keras.fit` on a "
                "stateful model."
            )
        k1, k2 = _check_k(k1, "k1"), _check_k(k2, "k2")
        if k2 is not None and k1 is None:
            raise ValueError(f"`k2` needs `k1` (the block length). Received: k1=None, k2={k2}")
        if k1 is not None and k2 is not None and k1 > k2:
            raise ValueError(f"TBPTT(k1, k2) needs k1 <= k2. Received: k1={k1}, k2={k2}")
        if not isinstance(fast, bool):
            raise TypeError(f"`fast` must be True or False. Received: {describe(fast)}")
        check_recompute(recompute, 1, 1, 1, parts=parts, fast=fast)  # its type and value
        kwargs.setdefault("name", f"bptt_{model.name}")
        super().__init__(**kwargs)
        self.inner = model
        self._parts = parts
        self.k1, self.k2, self.fast, self.recompute = k1, k2, fast, recompute
        self._engines: dict = {}
        self.built = True  # the wrapped model is built; its weights are this model's

    # ---- Keras model API ----------------------------------------------------------------
    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)

    def compile(self, *args, jit_compile="auto", **kwargs):
        """`keras.Model.compile`; `jit_compile="auto"` compiles with XLA on the fast path
        (what `bptt_keras.fit` does: XLA fuses each time step's small ops), where Keras'
        own "auto" turns XLA off on CPU-only machines."""
        if jit_compile == "auto":
            jit_compile = self.fast
        super().compile(*args, jit_compile=jit_compile, **kwargs)

    def compile_from_config(self, config):
        # Defined beside the overridden `compile`, so that `load_model` restores the compiled
        # optimizer, loss and metrics (Keras skips that for a custom `compile` otherwise).
        # (Keras' own version returns early when `compile` is overridden.) As Keras does:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # so its saved variables load

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.inner),
            "k1": self.k1,
            "k2": self.k2,
            "fast": self.fast,
            "recompute": self.recompute,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after checking that the data's sequence length suits `k1`,
        `k2` (before anything is traced)."""
        self._check_data(x)
        if self.distribute_strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "BPTTModel trains on one replica; for several devices use "
                "`bptt_keras.fit(..., strategy=...)`. Received a strategy with "
                f"{self.distribute_strategy.num_replicas_in_sync} replicas."
            )
        return super().fit(x, y, *args, **kwargs)

    # ---- training -----------------------------------------------------------------------
    def _check_data(self, x) -> None:
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, tuple) else spec
            shape = getattr(spec, "shape", None)
            if shape is None or len(shape) < 2 or shape[1] is None:
                raise ValueError(
                    "`x` is a tf.data.Dataset whose inputs have no static sequence length; "
                    "the block plan needs T: pad the sequences to one length (e.g. "
                    "`padded_batch(..., padded_shapes=...)` with a fixed T). Received element "
                    f"spec: {x.element_spec}"
                )
            steps = int(shape[1])
        elif x is not None and hasattr(x, "shape") and len(x.shape) >= 2:
            steps = int(x.shape[1])
        else:
            return
        try:
            check_truncation(self.k1, self.k2, steps)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{error} (the sequences of `x` have T={steps} steps)") from None

    def _engine(self, steps: int) -> Engine:
        recompute = check_recompute(
            self.recompute, *check_truncation(self.k1, self.k2, steps), steps,
            parts=self._parts, fast=self.fast,
        )  # fmt: skip
        loss = resolve_loss(self, None)
        key = (loss.key, recompute)
        if key not in self._engines:
            self._engines[key] = Engine(self.inner, loss=loss, fast=self.fast, recompute=recompute)
        return self._engines[key]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        steps = x.shape[1]
        if steps is None:
            raise ValueError(
                f"BPTTModel needs a static sequence length. Received inputs of shape {x.shape}"
            )
        engine = self._engine(steps)
        parts = self._parts
        batch = tf.shape(x)[0]
        if sample_weight is None:
            w = tf.ones((batch, steps), parts.dtype)
        else:
            w = tf.cast(sample_weight, parts.dtype)
            if w.shape.rank == 1:  # one weight per sequence
                w = tf.broadcast_to(w[:, None], (batch, steps))
        mask = parts.step_mask(x)
        if mask is not None:  # padded steps are not scored, as Keras' losses skip them
            w = w * tf.cast(mask, w.dtype)
        per_step = Normaliser(engine.loss, "mean", parts.output_dim, steps).per_step
        y = tf.cast(y, tf.int32 if engine.loss.sparse else parts.dtype)
        if engine.loss.sparse and y.shape.rank == 3:
            y = y[..., 0]
        loss_tracker = next(m for m in self.metrics if m.name == "loss")
        states = parts.zero_states(batch)
        outputs = []
        for block in plan_blocks(steps, *check_truncation(self.k1, self.k2, steps)):
            scored_w = w[:, block.loss_start : block.end]
            count = tf.reduce_sum(scored_w) * per_step
            spec = BlockSpec(
                block.start, block.loss_start, block.next_start - block.start,
                tf.where(count > 0, count, tf.ones_like(count)),
                block.end - block.start, block.end - block.loss_start,
            )  # fmt: skip
            total, penalty, _, grads, _, states, scored = engine.block_gradients(
                x, y, w, states, spec
            )
            grad_norm = tf.linalg.global_norm(grads)
            finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(total)

            def apply(grads=grads):
                self.optimizer.apply(grads, self.trainable_variables)
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
            value = total / spec.denominator + penalty
            loss_tracker.update_state(value, sample_weight=count)
            outputs.append(scored)
        # The blocks' scored ranges tile [0, T) in order: the batch's outputs, each step
        # predicted by the weights of its own block's update. Keras' metrics see them once
        # per batch, as in its own `train_step` (`metrics` unweighted, `weighted_metrics`
        # with the sample weights).
        y_pred = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=1)
        if mask is not None:
            # Keras' metrics skip the steps of the mask their predictions carry, as after
            # its own forward pass (no public setter: Keras' own helper).
            from keras.src.backend.common.masking import set_keras_mask

            set_keras_mask(y_pred, mask)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
