"""The compiled block step: one block's loss, its BPTT gradient, and one optimizer update.

`Engine` holds, for one model, optimizer, strategy and loss, the compiled functions that
`fit`, `evaluate` and `bptt_gradients` call: `grad_fn` (a block's loss sum and gradient),
`train_fn` (the same plus clipping and the update), `eval_fn` (a forward pass's loss sum)
and `train_updates_fn` (many updates in one call, `bptt_keras.engine.multi_step`). A block
is described by a `BlockSpec`; positions are tensors, so one trace serves every block of a
shape, and lengths are Python ints, static as XLA needs them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from bptt_keras.engine import multi_step
from bptt_keras.losses import elements, get_loss
from bptt_keras.metrics import metric_sums
from bptt_keras.truncation import Block, cut_state
from bptt_keras.unroll import Parts, forward


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
    # An Embedding's gradient arrives as IndexedSlices (rows of the looked-up ids); clipping,
    # the replicas' all-reduce and the multi-update loop want dense tensors. For a character
    # vocabulary the dense (V, E) gradient is tiny; for a large word vocabulary it costs one
    # (V, E) scatter per update.
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    return value, aux, grads


class BlockSpec(NamedTuple):
    """One block as the compiled step sees it (see `bptt_keras.truncation.Block`).

    Attributes:
        start: int32 scalar, first step of the forward pass (where the state is cut).
        loss_start: int32 scalar, first scored step.
        capture: int32 scalar, steps into the block whose state is handed on to the next.
        denominator: float32 scalar, the `N` that divides this block's loss sum
            (`bptt_keras.losses.Normaliser`).
        length: forward steps (a Python int: a static shape).
        loss_length: scored steps (a Python int).
    """

    start: tf.Tensor
    loss_start: tf.Tensor
    capture: tf.Tensor
    denominator: tf.Tensor
    length: int
    loss_length: int


def block_spec(block: Block, denominator: float) -> BlockSpec:
    """The `BlockSpec` of a planned block and its loss denominator."""
    return BlockSpec(
        *(
            tf.constant(v, tf.int32)
            for v in (block.start, block.loss_start, block.next_start - block.start)
        ),
        tf.constant(denominator, tf.float32),
        block.end - block.start,
        block.end - block.loss_start,
    )


def window(tensor, begin, size: int):
    """`tensor[:, begin : begin + size]` with a static `size` (XLA needs static shapes).

    A gather, not a slice: under XLA a slice's start is a compile-time constant, so a start
    passed in as an argument would compile the step once per block position.
    """
    if isinstance(begin, int) and begin == 0 and tensor.shape[1] == size:
        return tensor
    return tf.gather(tensor, begin + tf.range(size), axis=1)


# Columns of a training update's stats: loss sum, gradient norm (before clipping), finite,
# regularisation penalty, then each metric's (sum, count).
LOSS_SUM, GRAD_NORM, FINITE, PENALTY, FIRST_METRIC = range(5)


class Engine:
    """Compiled block steps for one model (and optimizer, strategy, loss) — see `fit`.

    Args:
        model: a `build_model`-style model.
        loss: a `bptt_keras.losses.StepLoss` (or a name).
        strategy: a `tf.distribute.Strategy` or None.
        optimizer: the optimizer `train_fn` applies (None: gradients only).
        global_clipnorm: clip the global gradient norm to this, or None.
        clipnorm: clip each variable's gradient norm to this (Keras' `clipnorm`), or None.
        fast: the hand-derived backward pass where it exists, and XLA for training.
        recompute: segment length of full BPTT with recomputation, or None.
        metrics: `bptt_keras.metrics.StepMetric`s computed beside the loss.
    """

    def __init__(
        self, model, *, loss, strategy=None, optimizer=None, global_clipnorm=None,
        clipnorm=None, fast=True, recompute=None, metrics=(),
    ):  # fmt: skip
        self.parts = Parts(model)
        self.model = model
        self.stateful = self.parts.stateful
        self.fast, self.recompute, self.loss = fast, recompute, get_loss(loss, model)
        self.metrics = tuple(metrics)
        self.stats_size = FIRST_METRIC + 2 * len(self.metrics)
        self.distributed = strategy is not None
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.variables = model.trainable_variables
        self.optimizer = optimizer
        self.global_clipnorm, self.clipnorm = global_clipnorm, clipnorm
        # Regularisers (`kernel_regularizer`, ...) add their penalties to the training loss,
        # as in Keras; checked once, so that an unregularised model's step has no extra ops.
        self.regularised = bool(model.losses)
        # The fast training step is also compiled with XLA, which fuses each time step's few
        # ops and removes their dispatch cost; a compilation costs a second or two, repaid
        # over an epoch's updates but not by a single gradient evaluation, so `grad_fn` and
        # `eval_fn` stay uncompiled. XLA compiles once per static shape: block lengths are
        # static (a plan has a handful), positions are tensors used only by gathers.
        # `autograph=False`: the steps' control flow is Python over static lengths, plus explicit
        # `tf.cond` / `tf.while_loop` where a tensor decides, so AutoGraph's source rewriting
        # only cost time: tracing a block step took about twice as long with it.
        jit = bool(fast) and not self.distributed
        self.grad_fn = tf.function(self._grad_step, reduce_retracing=True, autograph=False)
        self.train_fn = tf.function(
            self.train_step, reduce_retracing=True, autograph=False, jit_compile=jit
        )
        self.train_updates_fn = tf.function(
            self._train_updates, reduce_retracing=True, autograph=False, jit_compile=jit
        )
        self.eval_fn = tf.function(self._eval_step, reduce_retracing=True, autograph=False)
        # TensorFlow counts traces per source function, across instances: an experiment that
        # trains one model after another (each with its own Engine, traced once per shape, as
        # it must be) otherwise gets "triggered tf.function retracing" warnings that point at
        # nothing wrong. Retracing within one Engine is measured by `trace_count` instead.
        for fn in (self.grad_fn, self.train_fn, self.train_updates_fn, self.eval_fn):
            if hasattr(fn, "_omit_frequent_tracing_warning"):  # private; absent: keep warnings
                fn._omit_frequent_tracing_warning = True

    def trace_count(self) -> int:
        """How often the training functions have been traced (for tests and diagnosis)."""
        return (
            self.train_fn.experimental_get_tracing_count()
            + self.train_updates_fn.experimental_get_tracing_count()
        )

    def penalty(self):
        """The regularisation penalty `sum(model.losses)` at the current weights (0 without
        regularisers): what Keras adds to the training loss."""
        if not self.regularised:
            return tf.constant(0.0, self.parts.dtype)
        return tf.cast(tf.add_n(self.model.losses), self.parts.dtype)

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
        """Zero states for a global batch, split over the replicas under a strategy."""
        if not self.distributed:
            return self.parts.zero_states(batch)
        share = batch // self.replicas
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: self.parts.zero_states(share)
        )

    def _first(self, value):
        return self.strategy.experimental_local_results(value)[0]

    def _scores(self, y, yhat, weights):
        """`(loss sum, [metric sum, metric count, ...])` of outputs against targets."""
        total = tf.reduce_sum(
            elements(self.loss, y, yhat) * tf.cast(weights, yhat.dtype)[..., None]
        )
        sums = []
        for metric in self.metrics:
            sums.extend(metric_sums(metric, y, yhat, weights))
        return total, sums

    # -- compiled steps ---------------------------------------------------------------
    def block_gradients(self, x, y, w, states, spec: BlockSpec, penalty_weight=1.0):
        """One block on one replica: `(loss sum, penalty, metric sums, gradients, final
        states, captured states, scored outputs (batch, loss_length, output_dim))`, the sums
        and gradients summed over replicas; the penalty enters the gradient
        `penalty_weight` times. `fit`'s step and `BPTTModel.train_step` both run it."""
        dtype = self.parts.dtype

        def loss_fn():
            yhat, finals, captured = forward(
                self.parts,
                self.parts.cast_input(window(x, spec.start, spec.length)),
                cut_state(states),
                capture_at=spec.capture,
                training=True,
                fast=self.fast,
                recompute=self.recompute,
            )
            scored = window(yhat, spec.loss_start - spec.start, spec.loss_length)
            total, sums = self._scores(
                window(y, spec.loss_start, spec.loss_length),
                scored,
                window(w, spec.loss_start, spec.loss_length),
            )
            penalty = self.penalty()
            # Every replica adds the penalty; gradients are summed over replicas, so each
            # hands in its 1/replicas share.
            share = tf.cast(penalty_weight, dtype) / self.replicas
            value = total / tf.cast(spec.denominator, dtype) + share * penalty
            return value, (total, penalty, sums, finals, captured, scored)

        _, (total, penalty, sums, finals, captured, scored), grads = value_and_grad(
            loss_fn, self.variables
        )
        context = tf.distribute.get_replica_context()
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, total)
        if sums:
            sums = context.all_reduce(tf.distribute.ReduceOp.SUM, sums)
        return total, penalty, sums, grads, finals, captured, scored

    def _grad_step(self, x, y, w, states, spec: BlockSpec, penalty_weight):
        total, penalty, _, grads, _, captured, _ = self.strategy.run(
            self.block_gradients, args=(x, y, w, states, spec, penalty_weight)
        )
        return (
            self._first(total),
            self._first(penalty),
            [self._first(g) for g in grads],
            captured,
        )

    def _clip(self, grads, grad_norm):
        if self.global_clipnorm is not None:
            # Pascanu, Mikolov & Bengio 2013: rescale the whole gradient when its global
            # norm exceeds the threshold, keeping its direction.
            grads, _ = tf.clip_by_global_norm(grads, self.global_clipnorm, use_norm=grad_norm)
        if self.clipnorm is not None:  # Keras' `clipnorm`: each variable's gradient alone
            grads = [tf.clip_by_norm(g, self.clipnorm) for g in grads]
        return grads

    def train_step(self, x, y, w, states, spec: BlockSpec):
        """One block's update; returns `(stats, final states, captured states)`, the stats
        a float64 vector `[loss sum, grad norm, finite, penalty, metric sum, count, ...]`."""

        def replica(x, y, w, states):
            total, penalty, sums, grads, finals, captured, _ = self.block_gradients(
                x, y, w, states, spec
            )
            grad_norm = tf.linalg.global_norm(grads)
            finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(total)
            grads = self._clip(grads, grad_norm)
            # The optimizer sums gradients over replicas once more; these are already the
            # global sum, so each replica hands in its 1/replicas share.
            grads = [g / self.replicas for g in grads]
            stats = [total, grad_norm, finite, penalty, *sums]
            return [tf.cast(v, tf.float64) for v in stats], grads, finals, captured

        stats, grads, finals, captured = self.strategy.run(replica, args=(x, y, w, states))
        stats = [self._first(v) for v in stats]
        finite = stats[FINITE] > 0

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
        return tf.stack(stats), finals, captured

    def _train_updates(self, *args, **kwargs):
        # A named method (not a partial), so that traces and XLA dumps say what they are.
        return multi_step.train_updates(self, *args, **kwargs)

    def _eval_step(self, x, y, w, states):
        """A forward pass's `[loss sum, metric sum, count, ...]` (float64) and final states."""

        def replica(x, y, w, states):
            yhat, finals, _ = forward(self.parts, self.parts.cast_input(x), states, fast=self.fast)
            total, sums = self._scores(y, yhat, w)
            context = tf.distribute.get_replica_context()
            scores = [tf.cast(v, tf.float64) for v in (total, *sums)]
            return context.all_reduce(tf.distribute.ReduceOp.SUM, scores), finals

        scores, finals = self.strategy.run(replica, args=(x, y, w, states))
        return tf.stack([self._first(v) for v in scores]), finals
