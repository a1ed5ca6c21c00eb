"""The BPTT engine: exact gradients and training loops over unrolled sequences.

`bptt_gradients` returns the gradient of the loss with the weights as they are, for full BPTT,
truncated BPTT(k) or TBPTT(k1, k2) (see `bptt_keras.truncation`). `fit` trains with one
optimizer update per block of `k1` steps, carrying the state from block to block. Both run the
same compiled block step (`_Engine`), under a `tf.distribute` strategy when one is given;
`fit` runs many updates (blocks, of one or several batches) per compiled call
(`_Engine._train_updates`, grouped by `bptt_keras.schedule`), because a small model's update
takes microseconds to milliseconds and a call and host round trip per update would cost as
much again or more. A compiled step is reused by later `fit` calls on the same model,
optimizer and settings.

The loss is a per-step loss reduced over the sequence, as in the source document
(`loss = sum_t loss_t`), divided by a constant:

    reduction="mean":           L = 1/(B*T*F) * sum_{b,t,f} l(yhat[b,t,f], y[b,t,f])   (Keras' mse)
    reduction="sum_over_time":  L = 1/(B*F)   * sum_{b,t,f} l(...)                      (= T * mean)

With per-step weights `w[b, t]` (`sample_weight`: a mask of the steps that are scored, as in
the adding problem, whose only target is at the last step) each term is multiplied by
`w[b, t]`, and "mean" divides by `F * sum(w)` instead of `B*T*F`: the weighted mean over the
scored steps. Without weights, `w = 1` and both definitions agree.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import warnings
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import as_float_array, check_choice, check_float, check_int, describe
from bptt_keras.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bptt_keras.schedule import block_shape, next_call
from bptt_keras.truncation import check_truncation, cut_state, plan_blocks
from bptt_keras.unroll import Parts, forward

LOSSES = ("mse", "sparse_categorical_crossentropy")
"""Per-step losses: squared error, or cross-entropy of integer targets against logits."""

REDUCTIONS = ("mean", "sum_over_time")


def value_and_grad(fn, sources):
    """Evaluates `fn() -> (value, aux)` and the gradient of `value` w.r.t. `sources`.

    This is the package's only `tf.GradientTape`: the engine, the diagnostics and the tests
    all differentiate through it.

    Args:
        fn: a function of no arguments returning `(scalar value, auxiliary outputs)`.
        sources: variables and/or tensors (tensors are watched explicitly).

    Returns:
        `(value, aux, grads)`, `grads` aligned with `sources` (zeros where unconnected).
    """
    with tf.GradientTape() as tape:
        tape.watch([s for s in sources if isinstance(s, tf.Tensor)])
        value, aux = fn()
    grads = tape.gradient(value, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, aux, grads


def _elements(loss: str, y, yhat):
    """Per-element losses `(batch, time, F')`: F' = features for mse, 1 for cross-entropy."""
    if loss == "mse":
        return tf.square(yhat - tf.cast(y, yhat.dtype))
    labels = tf.cast(y, tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=yhat)[..., None]


def _check_xy(parts: Parts, x, y, loss: str, *, x_name="x", y_name="y"):
    """Validates `x`, `y` against the model and returns them as arrays (before any tracing)."""
    x = as_float_array(x, name=x_name, ranks=(3,), dtype=parts.dtype)
    if x.shape[-1] != parts.input_dim:
        raise ValueError(
            f"`{x_name}` has {x.shape[-1]} feature(s) per step but the model expects "
            f"input_dim={parts.input_dim}. Received shape {x.shape}"
        )
    if loss == "mse":
        y = as_float_array(y, name=y_name, ranks=(3,), dtype=parts.dtype)
        expected = (*x.shape[:2], parts.output_dim)
        if y.shape != expected:
            raise ValueError(
                f"`{y_name}` must be aligned with `{x_name}` step by step and match the model's "
                f"output_dim: expected shape {expected}. Received shape {y.shape}"
            )
        return x, y
    y = as_float_array(y, name=y_name, ranks=(2, 3))
    if y.ndim == 3:
        if y.shape[-1] != 1:
            raise ValueError(
                f"`{y_name}` for sparse categorical cross-entropy holds one class index per "
                f"step: shape (batch, time) or (batch, time, 1). Received shape {y.shape}"
            )
        y = y[..., 0]
    if y.shape != x.shape[:2]:
        raise ValueError(
            f"`{y_name}` must be aligned with `{x_name}`: expected shape {x.shape[:2]}. "
            f"Received shape {y.shape}"
        )
    if np.any(y != np.round(y)) or y.min() < 0 or y.max() >= parts.output_dim:
        raise ValueError(
            f"`{y_name}` must hold integer class indices in [0, {parts.output_dim}) "
            f"(the model's output_dim). Received values in [{y.min()}, {y.max()}]"
        )
    return x, y.astype(np.int32)


def _check_weights(weights, shape: tuple[int, int], *, name: str = "sample_weight") -> np.ndarray:
    """Per-step weights `(batch, time)` (None: all ones), non-negative, not all zero."""
    if weights is None:
        return np.ones(shape, np.float32)
    weights = as_float_array(weights, name=name, ranks=(2,))
    if weights.shape != tuple(shape):
        raise ValueError(
            f"`{name}` holds one weight per sequence and step: expected shape {tuple(shape)} "
            f"(batch, time). Received shape {weights.shape}"
        )
    if weights.min() < 0 or not weights.any():
        raise ValueError(
            f"`{name}` must be non-negative with at least one positive entry. Received values "
            f"in [{weights.min()}, {weights.max()}]"
        )
    return weights


class _Engine:
    """Compiled block steps for one model (and optimizer, strategy, loss) — see `fit`."""

    def __init__(
        self,
        model,
        *,
        loss,
        reduction,
        strategy=None,
        optimizer=None,
        clipnorm=None,
        fast=True,
        recompute=None,
    ):
        self.parts = Parts(model)
        self.stateful = any(layer.stateful for layer in self.parts.recurrent)
        self.fast, self.recompute = fast, recompute
        self.loss, self.reduction = loss, reduction
        self.distributed = strategy is not None
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.variables = model.trainable_variables
        self.optimizer, self.clipnorm = optimizer, clipnorm
        # The fast training step is also compiled with XLA, which fuses each time step's few
        # ops and removes their dispatch cost (about 2x on CPU); a compilation costs a second
        # or two, repaid over an epoch's updates but not by a single gradient evaluation, so
        # `grad_fn` and `eval_fn` stay uncompiled. Block lengths are static arguments: XLA
        # needs static shapes, and a sequence has at most a handful of distinct block
        # lengths, so the step is traced a handful of times, never once per batch or block.
        jit = bool(fast) and not self.distributed
        self.grad_fn = tf.function(self._grad_step, reduce_retracing=True)
        self.train_fn = tf.function(self._train_step, reduce_retracing=True, jit_compile=jit)
        self.train_updates_fn = tf.function(
            self._train_updates, reduce_retracing=True, jit_compile=jit
        )
        self.eval_fn = tf.function(self._eval_step, reduce_retracing=True)

    # -- data placement ---------------------------------------------------------------
    def distribute(self, array: np.ndarray):
        """Splits a global batch along rows, one equal share per replica."""
        if not self.distributed:
            return tf.convert_to_tensor(array)
        share = array.shape[0] // self.replicas

        def part(context):
            i = context.replica_id_in_sync_group
            return tf.convert_to_tensor(array[i * share : (i + 1) * share])

        return self.strategy.experimental_distribute_values_from_function(part)

    def zero_states(self, batch: int):
        if not self.distributed:
            return self.parts.zero_states(batch)
        share = batch // self.replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: self.parts.zero_states(share)
        )

    def _first(self, value):
        return self.strategy.experimental_local_results(value)[0]

    # -- compiled steps ---------------------------------------------------------------
    def _replica_block(self, x, y, w, states, start, loss_start, capture, norm, length, loss_len):
        """Loss sum and gradients of one block on one replica, summed over replicas."""
        dtype = self.parts.dtype

        def loss_fn():
            yhat, finals, captured = forward(
                self.parts,
                tf.cast(_window(x, start, length), dtype),
                cut_state(states),
                capture_at=capture,
                training=True,
                fast=self.fast,
                recompute=self.recompute,
            )
            elements = _elements(
                self.loss,
                _window(y, loss_start, loss_len),
                _window(yhat, loss_start - start, loss_len),
            )
            weights = tf.cast(_window(w, loss_start, loss_len), dtype)[..., None]
            total = tf.reduce_sum(elements * weights)
            return total / tf.cast(norm, dtype), (total, finals, captured)

        _, (total, finals, captured), grads = value_and_grad(loss_fn, self.variables)
        context = tf.distribute.get_replica_context()
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, total)
        return total, grads, finals, captured

    def _grad_step(self, x, y, w, states, start, loss_start, capture, norm, length, loss_len):
        total, grads, _, captured = self.strategy.run(
            self._replica_block,
            args=(x, y, w, states, start, loss_start, capture, norm, length, loss_len),
        )
        return self._first(total), [self._first(g) for g in grads], captured

    def _train_step(self, x, y, w, states, start, loss_start, capture, norm, length, loss_len):
        def replica(x, y, w, states):
            total, grads, finals, captured = self._replica_block(
                x, y, w, states, start, loss_start, capture, norm, length, loss_len
            )
            grad_norm = tf.linalg.global_norm(grads)
            finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(total)
            if self.clipnorm is not None:
                # Pascanu, Mikolov & Bengio 2013: rescale the whole gradient when its global
                # norm exceeds the threshold, keeping its direction.
                grads, _ = tf.clip_by_global_norm(grads, self.clipnorm, use_norm=grad_norm)
            # The optimizer sums gradients over replicas once more; these are already the
            # global sum, so each replica hands in its 1/replicas share.
            grads = [g / self.replicas for g in grads]
            return total, grad_norm, finite, grads, finals, captured

        total, grad_norm, finite, grads, finals, captured = self.strategy.run(
            replica, args=(x, y, w, states)
        )
        finite = self._first(finite)

        def apply():
            self.strategy.run(
                lambda g: self.optimizer.apply_gradients(zip(g, self.variables, strict=True)),
                args=(grads,),
            )
            return tf.constant(True)

        # The update is skipped, not undone, when the loss or gradient is not finite: the
        # weights and optimizer state stay those of the last finite step. The cond sits in
        # cross-replica context because apply_gradients merges across replicas.
        tf.cond(finite, apply, lambda: tf.constant(False))
        total, grad_norm = self._first(total), self._first(grad_norm)
        stats = tf.stack(
            [
                tf.cast(total, tf.float64),
                tf.cast(grad_norm, tf.float64),
                tf.cast(finite, tf.float64),
            ]
        )
        return stats, finals, captured

    def _train_updates(
        self, x, y, w, order, table, norms, states, first, count, *, batch, limit, rows, shape
    ):
        """Updates `first ... first + count - 1` of the epoch in one call (`schedule`).

        Update `u` trains block `u % blocks` of batch `u // blocks`; the batch is the rows
        `order[b * batch :][:batch]` of the whole data `x`, `y`, `w`, and `table[i]` holds
        block `i`'s `(start, loss_start, capture)`. Each block's window is gathered from the
        data by index inside the loop: XLA compiles a function once per static shape, and
        positions given as arguments to slices would be compile-time constants (one
        compilation per block position, per call).

        Runs `count` (<= `limit`) updates, or stops after the first whose loss or gradient is
        not finite (that update is skipped, so the weights stay those of the last finite
        one). `order` is padded to whole batches: positions from `rows` (the number of
        sequences) on repeat a row of the last batch with weight 0, so that a last partial
        batch has the same static shape and its update is that of its real rows (its
        normaliser, `norms[u]`, counts only those). `states` is the state the first update
        starts from; within a batch each block starts from the state its predecessor handed
        on, and a new batch starts from zero states, or a stateful model's final states of
        the batch before.

        Returns `(stats (limit, 3), updates run, captured states, final states)` of the last
        update run.
        """
        length, loss_len = shape
        blocks = table.shape[0]
        stats = tf.TensorArray(tf.float64, size=limit, element_shape=(3,))
        zeros = self.parts.zero_states(batch)
        stateful = self.stateful

        def body(i, finite, captured, finals, stats):
            update = first + i
            number, index = update // blocks, update % blocks
            start, loss_start, capture = tf.unstack(tf.gather(table, index))
            # A new batch (after the call's first update, whose state the host passes in).
            fresh = (index == 0) & (i > 0)
            reset = finals if stateful else zeros
            begin = tf.nest.map_structure(lambda r, c: tf.where(fresh, r, c), reset, captured)
            positions = number * batch + tf.range(batch)
            index_rows = tf.gather(order, positions)
            # (batch, length, 2) indices of the window [start, start + length) of each row.
            steps = start + tf.range(length)
            where = tf.stack(
                [
                    tf.broadcast_to(index_rows[:, None], (batch, length)),
                    tf.broadcast_to(steps[None, :], (batch, length)),
                ],
                axis=-1,
            )
            real = tf.cast(positions < rows, w.dtype)[:, None]
            row_stats, new_finals, new_captured = self._train_step(
                tf.gather_nd(x, where),
                tf.gather_nd(y, where),
                tf.gather_nd(w, where) * real,
                begin,
                0,
                loss_start - start,
                capture,
                tf.gather(norms, update),
                length,
                loss_len,
            )
            return i + 1, row_stats[2] > 0, new_captured, new_finals, stats.write(i, row_stats)

        done, _, captured, finals, stats = tf.while_loop(
            lambda i, finite, *_: (i < count) & finite,
            body,
            (tf.constant(0), tf.constant(True), states, states, stats),
            maximum_iterations=limit,
        )
        return stats.stack(), done, captured, finals

    def _eval_step(self, x, y, w, states):
        def replica(x, y, w, states):
            yhat, finals, _ = forward(
                self.parts, tf.cast(x, self.parts.dtype), states, fast=self.fast
            )
            weights = tf.cast(w, yhat.dtype)[..., None]
            total = tf.reduce_sum(_elements(self.loss, y, yhat) * weights)
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, total), finals

        total, finals = self.strategy.run(replica, args=(x, y, w, states))
        return self._first(total), finals


_GRAD_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _window(tensor, begin, size: int):
    """`tensor[:, begin : begin + size]` with a static `size` (XLA needs static shapes).

    A gather, not a slice: under XLA a slice's start is a compile-time constant, so a start
    passed in as an argument would compile the step once per block position.
    """
    if isinstance(begin, int) and begin == 0 and tensor.shape[1] == size:
        return tensor
    return tf.gather(tensor, begin + tf.range(size), axis=1)


def _scalars(block):
    """A block's arguments to the compiled step: positions as tensors (one trace serves
    every block), lengths as Python ints (static shapes)."""
    positions = [
        tf.constant(v, tf.int32)
        for v in (block.start, block.loss_start, block.next_start - block.start)
    ]
    return positions, (block.end - block.start, block.end - block.loss_start)


def bptt_gradients(
    model: keras.Model,
    x,
    y,
    *,
    k1: int | None = None,
    k2: int | None = None,
    loss: str = "mse",
    reduction: str = "mean",
    strategy: tf.distribute.Strategy | None = None,
    fast: bool = True,
    recompute: int | None = None,
    sample_weight=None,
) -> tuple[float, list[np.ndarray]]:
    """The loss and its (truncated) BPTT gradient at the model's current weights.

    Args:
        model: a `build_model` model (recurrent stack + per-step head).
        x: `(batch, time, input_dim)` inputs.
        y: `(batch, time, output_dim)` targets for `loss="mse"`; `(batch, time)` integer
            classes for `"sparse_categorical_crossentropy"` (the head's outputs are logits).
        k1: None for full BPTT; else the block length of truncated BPTT.
        k2: steps each block back-propagates through (default `k1`); `k1 <= k2 <= time`.
        loss: `"mse"` or `"sparse_categorical_crossentropy"`.
        reduction: `"mean"` (over batch, time and features: Keras' `mse`) or
            `"sum_over_time"` (the document's sum over steps, averaged over batch/features).
        strategy: optional `tf.distribute.Strategy` whose scope the model was built in.
        fast: use the hand-derived backward pass for SimpleRNN and LSTM layers
            (`bptt_keras.fast`; same gradients, about 3x less time at RNN sizes where step
            overhead dominates, ~45% more peak memory at T = 4000: use `recompute` for long
            sequences); False runs plain autodiff through the loop over time, for teaching
            and debugging.
        recompute: full BPTT with recomputation over segments of this many steps (Chen et
            al. 2016; Gruslys et al. 2016). With `fast`, SimpleRNN and LSTM layers keep only
            their outputs and the state at every `recompute`-th step, and rebuild each
            segment's gates inside their custom gradient, one segment at a time; a Dense
            head right after the last of them is folded into its gradient. Same gradients
            (to float rounding); at T = 4000 (LSTM(128), batch 32) the peak grows by about a
            sixth of plain autodiff's, at about plain's step time (benchmarks/RESULTS.md).
            `recompute` about sqrt(T) balances the stored boundary states against one
            segment's working memory. Other layers (GRU, or `fast=False`) fall back to
            `tf.recompute_grad` per segment: same gradients, but TensorFlow schedules those
            recomputations early, so memory does not drop. Full BPTT only.
        sample_weight: optional `(batch, time)` non-negative weight of each step's loss, e.g.
            a 0/1 mask of the scored steps; "mean" then divides by the sum of the weights
            (times the features) — see the module docstring.

    Returns:
        `(loss, grads)`: the loss `L` (a float; truncation changes gradients, not the loss)
        and a list of arrays aligned with `model.trainable_variables`. With `k1 = k2 = k`,
        the gradient of each chunk `[0, k), [k, 2k), ...` stops at the chunk start; with
        `k1 < k2`, each block's loss reaches back `k2 - k1` steps before the block (see
        `bptt_keras.truncation`). The sum over blocks is normalised like `L`.

    Raises:
        ValueError / TypeError: bad shapes, `y` not aligned with `x`, bad `k1`/`k2`, before
            any TensorFlow tracing.

    Example:

    >>> loss, grads = bptt_gradients(model, x, y)            # full BPTT
    >>> loss, tbptt = bptt_gradients(model, x, y, k1=5, k2=20)
    """
    parts, x, y, k1, k2, recompute = _check_run(model, x, y, loss, reduction, k1, k2, recompute)
    batch, steps = x.shape[:2]
    w = _check_weights(sample_weight, (batch, steps))
    _check_strategy(strategy, model, batch, name="x.shape[0]")
    key = (loss, reduction, id(strategy), bool(fast), recompute)
    engines = _GRAD_ENGINES.setdefault(model, {})
    if key not in engines:
        engines[key] = _Engine(
            model,
            loss=loss,
            reduction=reduction,
            strategy=strategy,
            fast=bool(fast),
            recompute=recompute,
        )
    engine = engines[key]
    features = y.shape[-1] if loss == "mse" else 1
    norm = tf.constant(_weighted_normaliser(loss, reduction, w, features), tf.float32)
    xs, ys, states = engine.distribute(x), engine.distribute(y), engine.zero_states(batch)
    ws = engine.distribute(w)
    total, grads = 0.0, None
    for block in plan_blocks(steps, k1, k2):
        positions, lengths = _scalars(block)
        block_total, block_grads, states = engine.grad_fn(
            xs, ys, ws, states, *positions, norm, *lengths
        )
        total += float(block_total)
        block_grads = [g.numpy() for g in block_grads]
        grads = (
            block_grads
            if grads is None
            else [a + b for a, b in zip(grads, block_grads, strict=True)]
        )
    return total / float(norm), grads


def _weighted_normaliser(loss: str, reduction: str, weights: np.ndarray, features: int) -> float:
    """`N` of `L = sum(w * elements) / N` over the steps whose weights are given `(rows, steps)`.

    Without weights (all ones) this is `batch * F * steps` ("mean"); a block whose weights
    are all zero has no loss, and `N = 1` keeps its (zero) gradient finite.
    """
    per_step = features if loss == "mse" else 1
    if reduction == "mean":
        return float(weights.sum()) * per_step if weights.any() else 1.0
    return float(weights.shape[0] * per_step)


def _check_run(model, x, y, loss, reduction, k1, k2, recompute):
    """The checks `bptt_gradients` and `fit` share: model, data, loss, truncation."""
    check_choice(loss, name="loss", choices=LOSSES)
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    parts = Parts(model)
    x, y = _check_xy(parts, x, y, loss)
    k1, k2 = check_truncation(k1, k2, x.shape[1])
    return parts, x, y, k1, k2, _check_recompute(recompute, k1, k2, x.shape[1])


def _check_recompute(recompute, k1: int, k2: int, steps: int) -> int | None:
    if recompute is None:
        return None
    recompute = check_int(recompute, name="recompute")
    if k1 != steps or k2 != steps:
        raise ValueError(
            "`recompute` applies to full BPTT (k1=k2=None); truncated BPTT already bounds "
            f"memory by k2. Received: recompute={recompute}, k1={k1}, k2={k2}"
        )
    return recompute


def _check_strategy(strategy, model, batch: int, *, name: str) -> None:
    if strategy is None:
        return
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"`strategy` must be a tf.distribute.Strategy or None. Received: {describe(strategy)}"
        )
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
        raise ValueError(
            f"The global batch ({name}={batch}) must split evenly over the strategy's "
            f"{replicas} replicas. Use a multiple of {replicas}."
        )
    outside = [
        v.path
        for v in model.variables
        if not strategy.extended.variable_created_in_scope(getattr(v, "value", v))
    ]
    if outside:
        raise ValueError(
            "The model's variables must be created under the strategy: build the model inside "
            f"`with strategy.scope():`. Variables created outside: {outside[:3]}"
        )


class _Interrupt:
    """Turns SIGINT (Ctrl-C) into a flag checked between batches, so a checkpoint can be
    written at a clean batch boundary before training stops."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def fit(
    model: keras.Model,
    x,
    y,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    k1: int | None = None,
    k2: int | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    clipnorm: float | None = None,
    loss: str = "mse",
    reduction: str = "mean",
    validation_data: tuple | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    fast: bool = True,
    recompute: int | None = None,
    sample_weight=None,
    steps_per_execution: int | None = None,
    verbose: int = 1,
) -> keras.callbacks.History:
    """Trains `model` with full or truncated BPTT in a custom `GradientTape` loop.

    Each batch of independent sequences starts from a zero state. Full BPTT makes one update
    per batch; TBPTT(k1, k2) makes one update per block of `k1` steps, carrying the state from
    block to block (see `bptt_keras.truncation`). A *stateful* model (built with
    `stateful=True, batch_size=B`) instead carries the state from batch to batch, as for the
    streams layout of `stream_batches` (then `shuffle` must be False and `batch_size` must be
    the model's `B`); the state is reset at every epoch start.

    Args:
        model: a `build_model` model (built inside `strategy.scope()` if `strategy`).
        x: `(n, time, input_dim)` inputs.
        y: targets aligned with `x` (see `bptt_gradients`).
        epochs: passes over the data.
        batch_size: global batch size (split over replicas under a strategy).
        k1, k2: truncation; None for full BPTT. `1 <= k1 <= k2 <= time`.
        optimizer: a Keras optimizer; default `Adam(learning_rate=1e-3)`, freshly
            initialised for every call.
        clipnorm: clip the global gradient norm to this value (Pascanu et al. 2013).
        loss, reduction: see `bptt_gradients`.
        validation_data: optional `(x_val, y_val)` or `(x_val, y_val, w_val)`, scored with
            full forward passes (weighted by `w_val` like `sample_weight`).
        callbacks: Keras callbacks (`EarlyStopping`, `CSVLogger`, `TerminateOnNaN`,
            `ModelCheckpoint`, `TensorBoard`, ...); their hooks receive `logs`.
        shuffle: reshuffle sequences every epoch (order from `seed` and the epoch number, so
            a resumed run sees the same order).
        seed: seed of the shuffling; drawn at random (and checkpointed) if None.
        checkpoint_dir: directory for crash-safe checkpoints (weights, optimizer state,
            position, history, seed); written at every epoch end and every
            `checkpoint_every` batches.
        checkpoint_every: batches between checkpoints (None: epoch ends only).
        resume: continue from the newest checkpoint in `checkpoint_dir` if there is one.
        strategy: a `tf.distribute.Strategy` (e.g. `MirroredStrategy`).
        fast: hand-derived backward pass where available (see `bptt_gradients`).
        recompute: memory-efficient full BPTT with this segment length (see
            `bptt_gradients`).
        sample_weight: optional `(n, time)` per-step loss weights (see `bptt_gradients`):
            e.g. a mask that scores only the last step. Reported losses are weighted means.
        steps_per_execution: optimizer updates per compiled call (as Keras' `compile`
            option; an update is one block of the truncation plan, so for full BPTT one
            batch): the updates of one call are gathered from the data, trained and
            reported inside the graph, with one host synchronisation per call instead of
            per update. A TBPTT epoch over long rows is thousands of tiny updates whose
            cost would otherwise be dispatch (benchmarks/RESULTS.md). A call runs updates
            of one block shape (XLA needs static shapes): the first blocks of TBPTT(k1, k2)
            and a last shorter block start calls of their own. None (default): 16 batches'
            updates per call, at most 1024 (no `strategy`), or one batch per call when a
            callback implements batch hooks, which then run after every batch as usual;
            1 for one call per update. With more, batch hooks run after the call, in
            order, each with its batch's logs. Checkpoints (`checkpoint_every`), Ctrl-C
            and a callback's stop request act at batch boundaries: calls are cut where a
            checkpoint is due, and after a request a call stops at the end of its batch.
            The updates are those of one call per update: bit for bit for whole batches,
            to float rounding for a last partial batch (padded in the graph with weight-0
            rows, so that every batch shares one compiled function). The data are held as
            one tensor for the run (a copy of `x`, `y`).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns:
        A `keras.callbacks.History`: `history.history["loss"]`, `["grad_norm"]` (mean global
        gradient norm before clipping), `["val_loss"]`. If a loss or gradient turns NaN/inf,
        training stops with a warning naming the epoch and step, the weights stay those of
        the last finite update, and `history.nonfinite` holds `{"epoch", "step"}`.
        `history.trace_count` is how often this run traced the training step (0 when `fit`
        runs again on the same model with the same optimizer, settings and shapes: the
        compiled step is reused), and `history.compiled_calls` how many compiled training
        calls were made.

    Raises:
        ValueError / TypeError: bad arguments, before any TensorFlow tracing.
        KeyboardInterrupt: after Ctrl-C, once a checkpoint of the last complete batch is
            written (when `checkpoint_dir` is set).
        CheckpointError: `resume=True` with a corrupt checkpoint or one from another setup.

    Example:

    >>> history = fit(model, x, y, epochs=10, k1=20, k2=40, clipnorm=1.0)
    >>> bptt_keras.plot_loss_curves(history)
    """
    # ---- validation: everything is checked before anything is traced -------------------
    parts, x, y, k1, k2, recompute = _check_run(model, x, y, loss, reduction, k1, k2, recompute)
    n, steps = x.shape[:2]
    weighted = sample_weight is not None
    w = _check_weights(sample_weight, (n, steps))
    epochs = check_int(epochs, name="epochs")
    batch_size = check_int(batch_size, name="batch_size")
    if clipnorm is not None:
        clipnorm = check_float(clipnorm, name="clipnorm", low=0.0, low_inclusive=False)
    if checkpoint_every is not None:
        checkpoint_every = check_int(checkpoint_every, name="checkpoint_every")
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir` (where to find checkpoints).")
    if seed is not None:
        seed = check_int(seed, name="seed", minimum=0)
    callbacks = list(callbacks or [])  # read twice: for batch hooks, then by CallbackList
    blocks = plan_blocks(steps, k1, k2)
    limit, split_batches = _check_steps_per_execution(
        steps_per_execution, blocks=len(blocks), strategy=strategy, callbacks=callbacks
    )
    if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"`optimizer` must be a Keras optimizer. Received: {describe(optimizer)}")
    stateful = any(layer.stateful for layer in parts.recurrent)
    if stateful:
        model_batch = model.inputs[0].shape[0]
        if batch_size != model_batch:
            raise ValueError(
                f"`batch_size`={batch_size} must equal the stateful model's fixed batch size "
                f"{model_batch}: row i of each batch continues row i of the previous one."
            )
        if n % batch_size:
            raise ValueError(
                f"A stateful model needs whole batches: x.shape[0]={n} is not a multiple of "
                f"batch_size={batch_size} (use `stream_batches` to lay out a series)."
            )
        if shuffle:
            raise ValueError(
                "`shuffle=True` would break the row continuity a stateful model relies on; "
                "pass `shuffle=False`."
            )
        if strategy is not None:
            raise ValueError("Stateful models are not supported with `strategy=` yet.")
    _check_strategy(strategy, model, batch_size, name="batch_size")
    if n < batch_size and strategy is not None:
        raise ValueError(
            f"x has {n} sequences, fewer than one global batch of {batch_size}: under a "
            "strategy a partial batch cannot be split over replicas."
        )
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError(
                "`validation_data` must be a pair (x_val, y_val) or a triple (x_val, y_val, "
                f"w_val). Received: {describe(validation_data)}"
            )
        x_val, y_val = _check_xy(
            parts,
            *validation_data[:2],
            loss,
            x_name="validation_data[0]",
            y_name="validation_data[1]",
        )
        w_val = _check_weights(
            validation_data[2] if len(validation_data) == 3 else None,
            x_val.shape[:2],
            name="validation_data[2]",
        )

    # ---- set-up --------------------------------------------------------------------------
    if optimizer is None:
        optimizer = _default_optimizer(model, strategy)
    else:
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
    # Callbacks (TensorBoard, ReduceLROnPlateau, ...) find the optimizer where Keras' own
    # fit puts it.
    model.optimizer = optimizer
    engine = _fit_engine(
        model,
        loss=loss,
        reduction=reduction,
        strategy=strategy,
        optimizer=optimizer,
        clipnorm=clipnorm,
        fast=bool(fast),
        recompute=recompute,
    )
    traces_before = _trace_count(engine)
    per_batch = len(blocks)
    features = y.shape[-1] if loss == "mse" else 1
    # Reported losses are L as defined by `reduction`: the per-element mean, times T for
    # "sum_over_time".
    scale = float(steps) if reduction == "sum_over_time" else 1.0
    # Under a strategy a last partial batch could not be split evenly: it is dropped.
    steps_per_epoch = n // batch_size if strategy is not None else math.ceil(n / batch_size)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    fingerprint = {
        "n": int(n),
        "time": int(steps),
        "batch_size": batch_size,
        "k1": k1,
        "k2": k2,
        "loss": loss,
        "reduction": reduction,
        "weights": [list(v.shape) for v in model.get_weights()],
        "sample_weight_sum": float(w.sum()),
    }

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    start_epoch, start_step, batches_done = 0, 0, 0
    accum = {"loss_sum": 0.0, "count": 0, "grad_norm_sum": 0.0, "updates": 0}
    carried = None
    restored_history: dict = {}
    if resume:
        path = latest_checkpoint(checkpoint_dir)
        if path is not None:
            ckpt = load_checkpoint(path)
            meta = ckpt["meta"]
            if meta.get("fingerprint") != fingerprint:
                raise CheckpointError(
                    f"Checkpoint {str(path)!r} was written by a run with other data or settings "
                    f"({meta.get('fingerprint')}); this run has {fingerprint}."
                )
            model.set_weights(ckpt["weights"])
            if len(ckpt["optimizer_variables"]) != len(optimizer.variables):
                raise CheckpointError(
                    f"Checkpoint {str(path)!r} holds {len(ckpt['optimizer_variables'])} "
                    f"optimizer variables; this optimizer has {len(optimizer.variables)}."
                )
            for variable, value in zip(
                optimizer.variables, ckpt["optimizer_variables"], strict=True
            ):
                variable.assign(value)
            start_epoch, start_step = meta["epoch"], meta["step"]
            batches_done, seed = meta["batches_done"], meta["seed"]
            accum, restored_history = meta["accum"], meta["history"]
            if ckpt["states"]:
                it = iter(ckpt["states"])
                carried = [[tf.constant(next(it)) for _ in sizes] for sizes in parts.sizes]

    def checkpoint(epoch, step, states):
        flat = [s.numpy() for layer in (states or []) for s in layer] if stateful else []
        meta = {
            "epoch": epoch,
            "step": step,
            "batches_done": batches_done,
            "seed": seed,
            "accum": accum,
            "history": history.history,
            "fingerprint": fingerprint,
        }
        save_checkpoint(
            checkpoint_dir,
            index=batches_done,
            weights=model.get_weights(),
            optimizer_variables=[np.asarray(v.numpy()) for v in optimizer.variables],
            states=flat,
            meta=meta,
        )

    # ---- the loop -------------------------------------------------------------------------
    model.stop_training = False
    history.nonfinite = None
    history.compiled_calls = 0
    callback_list.on_train_begin()
    history.history = {k: list(v) for k, v in restored_history.items()}
    history.epoch = list(range(start_epoch))
    logs: dict = {}
    zeros = engine.zero_states(batch_size)
    if strategy is None:
        # The whole data as tensors, once per run: every call gathers its blocks' windows
        # from them by index (`_Engine._train_updates`).
        data = (
            tf.convert_to_tensor(x),
            tf.convert_to_tensor(y),
            tf.convert_to_tensor(w if weighted else np.ones((n, steps), np.float32)),
        )
        table = tf.constant(
            [[b.start, b.loss_start, b.next_start - b.start] for b in blocks], tf.int32
        )
    distributed_batch = {}  # under a strategy: the current batch, split over the replicas

    def train_call(first: int, count: int, states, order, epoch_order, epoch_norms):
        """Trains updates `first ... first + count - 1` of the epoch in one compiled call;
        returns their stats `(total, grad_norm, finite)` (up to the first non-finite one)
        and the captured and final states of the last update run."""
        history.compiled_calls += 1
        if strategy is None:
            stats, done, captured, finals = engine.train_updates_fn(
                *data,
                epoch_order,
                table,
                epoch_norms,
                states,
                tf.constant(first, tf.int32),
                tf.constant(count, tf.int32),
                batch=batch_size,
                limit=limit,
                rows=n,
                shape=block_shape(blocks[first % per_batch]),
            )
            return stats.numpy()[: int(done)], captured, finals  # the one host sync per call
        # Under a strategy: one update per call, the batch split over the replicas.
        number, index = divmod(first, per_batch)
        if distributed_batch.get("number") != number:
            rows = order[number * batch_size : (number + 1) * batch_size]
            distributed_batch.update(
                number=number,
                tensors=[engine.distribute(a[rows]) for a in (x, y, w)],
            )
        positions, lengths = _scalars(blocks[index])
        stats, finals, captured = engine.train_fn(
            *distributed_batch["tensors"],
            states,
            *positions,
            tf.constant(float(epoch_norms[first]), tf.float32),
            *lengths,
        )
        return stats.numpy()[None], captured, finals

    with _Interrupt() as interrupt:
        for epoch in range(start_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
            first_batch = start_step if epoch == start_epoch else 0
            if first_batch == 0:  # a fresh epoch (a resumed mid-epoch run keeps its sums)
                accum = {"loss_sum": 0.0, "count": 0, "grad_norm_sum": 0.0, "updates": 0}
            # A stateful model starts every epoch from zero states, except when resuming
            # mid-epoch, where it continues from the checkpointed ones.
            if first_batch == 0 or not (stateful and epoch == start_epoch and carried is not None):
                carried = zeros if stateful else None
            # A last partial batch is padded with a row of its own (weight 0 in the graph):
            # one compiled shape for every batch.
            padded = np.resize(order[-1:], steps_per_epoch * batch_size)
            padded[: min(n, len(padded))] = order[: len(padded)]
            norms, counts = _epoch_normalisers(
                padded, n, w if weighted else None, blocks, batch_size, features, reduction
            )
            epoch_order = tf.constant(padded, tf.int32) if strategy is None else None
            epoch_norms = tf.constant(norms, tf.float32) if strategy is None else norms
            update, end = first_batch * per_batch, steps_per_epoch * per_batch
            states = carried if stateful else zeros
            distributed_batch.clear()
            while update < end:
                number = update // per_batch
                if update % per_batch == 0:
                    callback_list.on_train_batch_begin(number)

                def cut_before(batch, done=batches_done, current=number):
                    # Batch boundaries where the host must act: after every batch for batch
                    # hooks or once Ctrl-C or a stop request arrived mid-batch, and where a
                    # checkpoint is due.
                    if split_batches or interrupt.requested or model.stop_training:
                        return True
                    due = done + batch - current
                    return bool(checkpoint_dir is not None and checkpoint_every) and (
                        due % checkpoint_every == 0
                    )

                count = next_call(
                    update, blocks=blocks, end=end, limit=limit, cut_before=cut_before
                )
                stats, captured, finals = train_call(
                    update, count, states, order, epoch_order, epoch_norms
                )
                for offset, (total, grad_norm, finite) in enumerate(stats.tolist()):
                    number, index = divmod(update + offset, per_batch)
                    if index == 0 and offset:
                        callback_list.on_train_batch_begin(number)
                    if not finite:
                        block = blocks[index]
                        history.nonfinite = {"epoch": epoch + 1, "step": number + 1}
                        warnings.warn(
                            f"Non-finite loss or gradient at epoch {epoch + 1}, step "
                            f"{number + 1} (block {block.loss_start}-{block.end}): training "
                            "stopped; the model keeps the weights of the last finite update.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                        return _finish(callback_list, logs, history, engine, traces_before)
                    accum["loss_sum"] += total
                    accum["count"] += float(counts[update + offset])
                    accum["grad_norm_sum"] += grad_norm
                    accum["updates"] += 1
                    if index == per_batch - 1:
                        batches_done += 1
                        logs = {"loss": scale * accum["loss_sum"] / accum["count"]}
                        callback_list.on_train_batch_end(number, logs)
                update += len(stats)
                if update % per_batch:
                    states = captured  # mid-batch: the next call continues this batch
                    continue
                # A batch boundary: the next batch starts from zero states, or a stateful
                # model's final ones; checkpoints, Ctrl-C and stop requests act here.
                if stateful:
                    carried = finals
                states = finals if stateful else zeros
                step = update // per_batch
                if step < steps_per_epoch:  # the epoch's end writes its own checkpoint
                    if checkpoint_dir is not None and (
                        interrupt.requested
                        or (checkpoint_every and batches_done % checkpoint_every == 0)
                    ):
                        checkpoint(epoch, step, carried)
                    if interrupt.requested:
                        _stop_interrupted(callback_list, logs, epoch, step - 1, checkpoint_dir)
                if model.stop_training:
                    break
            logs = {
                "loss": scale * accum["loss_sum"] / max(accum["count"], 1),
                "grad_norm": accum["grad_norm_sum"] / max(accum["updates"], 1),
            }
            if validation_data is not None:
                logs["val_loss"] = scale * _evaluate(
                    engine, x_val, y_val, w_val, batch_size, loss, stateful
                )
            callback_list.on_epoch_end(epoch, logs)
            if checkpoint_dir is not None:
                checkpoint(epoch + 1, 0, carried)
            if interrupt.requested:
                _stop_interrupted(callback_list, logs, epoch, steps_per_epoch - 1, checkpoint_dir)
            if model.stop_training:
                break
    return _finish(callback_list, logs, history, engine, traces_before)


def _epoch_normalisers(
    order: np.ndarray,
    rows: int,
    weights: np.ndarray | None,
    blocks,
    batch: int,
    features: int,
    reduction: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per update of an epoch: the loss normaliser `N` and the count of scored elements.

    Args:
        order: the epoch's row order, padded to whole batches (positions from `rows` on are
            padding with weight 0).
        rows: the number of real sequences.
        weights: `(rows, time)` per-step weights, or None (all ones).
        blocks: the truncation plan of one batch.
        batch, features: batch size and loss elements per step (`F`, or 1 for
            cross-entropy).
        reduction: "mean" or "sum_over_time".

    Returns:
        `(norms, counts)`, float64 arrays `(batches * blocks,)` in update order: `counts` is
        `F * sum(w)` over the block's scored steps and real rows (the denominator of the
        reported mean), `norms` the `N` of the block's update (see `_weighted_normaliser`).
    """
    batches = len(order) // batch
    real = (np.arange(batches * batch) < rows).reshape(batches, batch)
    real_rows = real.sum(axis=1).astype(np.float64)  # (batches,)
    if weights is None:
        lengths = np.array([b.end - b.loss_start for b in blocks], np.float64)
        scored = real_rows[:, None] * lengths[None, :]  # (batches, blocks)
    else:
        per_row = weights[order].reshape(batches, batch, -1) * real[..., None]
        per_step = per_row.sum(axis=1, dtype=np.float64)  # (batches, time)
        # Loss ranges tile [0, T) in order, so each block's sum is one `reduceat` segment.
        scored = np.add.reduceat(per_step, [b.loss_start for b in blocks], axis=1)
    counts = scored * features
    if reduction == "mean":
        norms = np.where(counts > 0, counts, 1.0)  # an all-zero block has no loss
    else:
        norms = np.broadcast_to(real_rows[:, None] * features, counts.shape)
    return norms.reshape(-1), counts.reshape(-1)


_FIT_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DEFAULT_OPTIMIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES_KEPT = 4  # per model: enough for a few optimizers or settings, bounded


def _fit_engine(model, *, optimizer, strategy, **settings) -> _Engine:
    """The compiled engine for `fit`, reused across `fit` calls on the same model.

    A compiled step holds the model's and the optimizer's variables and the loss settings,
    so it is keyed on exactly those: another `fit` on the same model with the same optimizer
    object and settings traces and compiles nothing again. (The engine keeps its optimizer
    and strategy alive, so their `id`s cannot be reused while it is cached.)
    """
    key = (id(optimizer), id(strategy), *sorted(settings.items()))
    engines = _FIT_ENGINES.setdefault(model, {})
    if key not in engines:
        engines[key] = _Engine(model, optimizer=optimizer, strategy=strategy, **settings)
        while len(engines) > _ENGINES_KEPT:
            engines.pop(next(iter(engines)))
    return engines[key]


def _default_optimizer(model, strategy):
    """`Adam(learning_rate=1e-3)` in its initial state, the same object for every `fit` call
    on this model (and strategy), so that its compiled step is reused: its variables are
    reset to their freshly built values instead of building a new optimizer."""
    kept = _DEFAULT_OPTIMIZERS.get(model)
    if kept is not None and kept[0] is strategy:
        _, optimizer, initial = kept
        for variable, value in zip(optimizer.variables, initial, strict=True):
            variable.assign(value)
        return optimizer
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        optimizer.build(model.trainable_variables)
    initial = [np.array(v.numpy()) for v in optimizer.variables]
    _DEFAULT_OPTIMIZERS[model] = (strategy, optimizer, initial)
    return optimizer


def _trace_count(engine) -> int:
    return (
        engine.train_fn.experimental_get_tracing_count()
        + engine.train_updates_fn.experimental_get_tracing_count()
    )


def _finish(callback_list, logs, history, engine, traces_before):
    # How many times this run traced the training step: a small constant, whatever the
    # number of batches and blocks, and 0 for a repeated `fit` on the same model, optimizer
    # and shapes (exposed for tests and for users chasing slow first epochs).
    history.trace_count = _trace_count(engine) - traces_before
    callback_list.on_train_end(logs)
    return history


def _stop_interrupted(callback_list, logs, epoch, step, checkpoint_dir):
    callback_list.on_train_end(logs)
    where = f" Checkpoint written to {str(checkpoint_dir)!r}." if checkpoint_dir else ""
    raise KeyboardInterrupt(f"Training interrupted at epoch {epoch + 1}, step {step + 1}.{where}")


_AUTO_STEPS_PER_EXECUTION = 16
_MAX_AUTO_UPDATES = 1024
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _has_batch_hooks(callback) -> bool:
    # The base class's methods are no-ops; anything else is a hook: an override in a
    # subclass, or a function set on the instance (as `LambdaCallback` does).
    base = keras.callbacks.Callback
    return any(
        getattr(getattr(callback, hook), "__func__", None) is not getattr(base, hook)
        for hook in _BATCH_HOOKS
    )


def _check_steps_per_execution(value, *, blocks: int, strategy, callbacks) -> tuple[int, bool]:
    """Updates per compiled call of `fit`, and whether calls must end at every batch.

    Returns `(limit, split_batches)`: `value`, or the automatic choice for None: 16 batches'
    updates, at most `_MAX_AUTO_UPDATES` (calls of about a second at most, so that Ctrl-C
    and stop requests are prompt); one batch per call when a callback has batch hooks, so
    that they run after every batch, before the next one.
    """
    if value is None:
        if strategy is not None:
            return 1, True
        if any(_has_batch_hooks(callback) for callback in callbacks):
            return blocks, True
        auto = _AUTO_STEPS_PER_EXECUTION * blocks
        return max(_AUTO_STEPS_PER_EXECUTION, min(auto, _MAX_AUTO_UPDATES)), False
    value = check_int(value, name="steps_per_execution")
    if value > 1 and strategy is not None:
        raise ValueError(
            f"`steps_per_execution`={value} is not supported with `strategy=`; pass 1 (or None)."
        )
    return value, False


def _evaluate(engine, x, y, w, batch_size, loss, stateful) -> float:
    """Weighted mean per-element validation loss with full forward passes."""
    parts, n = engine.parts, x.shape[0]
    features = y.shape[-1] if loss == "mse" else 1
    total, count = 0.0, 0
    states = parts.zero_states(batch_size) if stateful else None
    step = batch_size
    if engine.replicas > 1:
        n -= n % engine.replicas
        step -= step % engine.replicas
    for i in range(0, n, step):
        rows = slice(i, min(i + step, n))
        size = rows.stop - rows.start
        if engine.replicas > 1 and size % engine.replicas:
            break
        if stateful and size != batch_size:
            break
        start = states if stateful else engine.zero_states(size)
        batch_total, finals = engine.eval_fn(
            engine.distribute(x[rows]),
            engine.distribute(y[rows]),
            engine.distribute(w[rows]),
            start,
        )
        states = finals if stateful else None
        total += float(batch_total)
        count += float(w[rows].sum()) * features
    return total / max(count, 1)
