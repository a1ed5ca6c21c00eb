"""`fit`: the training loop, read top to bottom.

`fit` only orchestrates (as Keras' `fit` does): the arguments are checked into a `FitArgs`
(`arguments`), each epoch is planned (`epochs`), its updates run many per compiled call
(`multi_step` around `step`), callbacks see batches and epochs, and `resume` saves and
restores the run. Separation of concerns:

- `arguments`: every check, before anything is traced.
- `epochs`: the order of rows and updates, and which updates share a call.
- `step` / `multi_step`: the compiled block step, and many of them in one call.
- `resume`: training position, checkpoints, Ctrl-C.
- `keras_options`: what `compile()` and Keras' `fit` options become.
- `evaluate`: validation and `evaluate`, with the same loss definition.
- here: the loop over epochs and calls, callbacks, the reported losses.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
import weakref
from array import array
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bptt_keras.engine.arguments import FitArgs, Validation, check_fit, checked_batches
from bptt_keras.engine.epochs import (
    EpochPlan,
    block_shape,
    next_call,
    pad_to_batches,
    plan_epoch,
)
from bptt_keras.engine.evaluate import score, score_dataset
from bptt_keras.engine.resume import (
    Checkpointer,
    Interrupt,
    Progress,
    TrainingState,
    fingerprint,
)
from bptt_keras.engine.step import Engine, block_spec
from bptt_keras.engine.streaming import stack_group


def fit(
    model: keras.Model,
    x,
    y=None,
    *,
    epochs: int = 1,
    batch_size: int | None = None,
    k1: int | None = None,
    k2: int | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    global_clipnorm: float | None = None,
    clipnorm: float | None = None,
    loss=None,
    metrics: list | None = None,
    reduction: str = "mean",
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    validation_freq: int = 1,
    initial_epoch: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    fast: bool = True,
    recompute: int | str | None = "auto",
    sample_weight=None,
    steps_per_execution: int | None = None,
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Trains `model` with full or truncated BPTT in a custom `GradientTape` loop.

    Each batch of independent sequences starts from a zero state. Full BPTT makes one update
    per batch; TBPTT(k1, k2) makes one update per block of `k1` steps, carrying the state from
    block to block (see `bptt_keras.truncation`). A *stateful* model (built with
    `stateful=True, batch_size=B`) instead carries the state from batch to batch, as for the
    streams layout of `stream_batches` (then `shuffle` must be False and `batch_size` must be
    the model's `B`); the state is reset at every epoch start.

    Args:
        model: a `build_model` model (built inside `strategy.scope()` if `strategy`), or
            any chain of the layers it uses; a `Masking` / `Embedding(mask_zero=True)` first
            layer masks padded steps (unscored, state carried through them, as Keras).
        x: `(n, time, input_dim)` inputs (`(n, time)` token ids for an `Embedding` input),
            or a `tf.data.Dataset` of batches `(x, y)` or `(x, y, sample_weight)`, read as
            a stream (see "Datasets" below).
        y: targets aligned with `x` (see `bptt_gradients`); None with a dataset.
        epochs: passes over the data.
        batch_size: global batch size (split over replicas under a strategy); default 32.
            None with a dataset, whose batches set it.
        k1, k2: truncation; None for full BPTT. `1 <= k1 <= k2 <= time`.
        epochs: train epochs `initial_epoch ... epochs - 1` (as Keras: the index of the
            last epoch plus one).
        optimizer: a Keras optimizer; default: the one given to `model.compile`, else
            `Adam(learning_rate=1e-3)`, freshly initialised for every call.
        global_clipnorm: clip the global gradient norm to this value (Pascanu et al. 2013),
            as Keras optimizers' `global_clipnorm`.
        clipnorm: clip each variable's gradient norm to this value (Keras' `clipnorm`). At
            most one of the two; an optimizer that clips already is not clipped again (a
            warning says so).
        loss: see `bptt_gradients`; default: the loss given to `model.compile`, else "mse".
            A `loss` that differs from the compiled one is an error. The model's
            regularisation penalties (`model.losses`) are added to the training loss and to
            the reported losses, as in Keras.
        metrics: names or Keras metric objects (see `bptt_keras.metrics`: "mae", "mse",
            "accuracy", "sparse_categorical_accuracy", ...), reported per batch and epoch as
            Keras names them, and with `val_` for validation; default: those given to
            `model.compile`.
        reduction: see `bptt_gradients`.
        validation_data: optional `(x_val, y_val)` or `(x_val, y_val, w_val)`, scored with
            full forward passes (weighted by `w_val` like `sample_weight`).
        validation_split: as Keras: this fraction of the rows, taken from the end before any
            shuffling, is held out as validation data (ignored with `validation_data`).
        validation_freq: validate after every `validation_freq`-th epoch.
        initial_epoch: the epoch to start at (as Keras; the shuffling order follows the
            epoch number, so a run continued this way sees the orders of an unbroken one).
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
        strategy: a `tf.distribute.Strategy` (e.g. `MirroredStrategy`); default: the
            strategy whose scope the model was built in (`model.distribute_strategy`), if
            any, as in Keras' `fit`.
        fast: hand-derived backward pass where available (see `bptt_gradients`).
        recompute: memory-efficient full BPTT with this segment length; `"auto"` (the
            default) recomputes full BPTT over `T >= 1000` steps on the fast path, None
            never (see `bptt_gradients`).
        sample_weight: optional `(n, time)` per-step loss weights (see `bptt_gradients`):
            e.g. a mask that scores only the last step. Reported losses are weighted means.
        steps_per_execution: optimizer updates per compiled call (as Keras' `compile`
            option; an update is one block of the truncation plan, so for full BPTT one
            batch): the updates of one call are gathered from the data, trained and
            reported inside the graph, with one host synchronisation per call instead of
            per update. A TBPTT epoch over long rows is thousands of tiny updates whose
            cost would otherwise be dispatch (benchmarks/RESULTS.md). A call runs updates
            of one block shape (XLA needs static shapes): the first blocks of TBPTT(k1, k2)
            and a last shorter block start calls of their own. None (default): about
            2^29 multiply-adds' worth of updates per call (from the layers' shapes, so the
            same on every machine), at least 16 batches' and at most 1024 updates (no
            `strategy`); one batch per call when a callback implements batch hooks,
            which then run after every batch as usual; 1 for one call per update. With
            more, batch hooks run after the call, in order, each with its batch's logs.
            Checkpoints (`checkpoint_every`), Ctrl-C and a callback's stop request act at
            batch boundaries: calls are cut where a checkpoint is due, and after a request
            a call stops at the end of its batch.
            The updates are those of one call per update: bit for bit for whole batches,
            to float rounding for a last partial batch (padded in the graph with weight-0
            rows, so that every batch shares one compiled function). The data are held as
            one tensor for the run (a copy of `x`, `y`).
        steps_per_epoch: with a dataset, the batches of one epoch: the run then reads one
            pass of the dataset, epoch after epoch (as Keras), and an endless dataset
            (`.repeat()`) needs it. None: an epoch is one pass over the dataset.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch, "auto": 1 in a terminal or
            notebook, 2 when output goes to a file or pipe (a bar there is one endless line).

    Datasets:
        A `tf.data.Dataset` is read batch by batch, never held whole: each compiled call
        fetches the few batches it trains (`bptt_keras.engine.streaming`), so a dataset
        larger than memory, or endless, trains in the memory of a few batches. Every batch
        must hold the same number of steps `T` (pad with `padded_batch` and fixed shapes)
        and at most as many rows as the first one (`B`); a shorter batch is padded to `B`
        rows of weight 0, so the update is that of its real rows. A dataset of `B`-row
        batches trains exactly as the same rows given as arrays with `shuffle=False` and
        `batch_size=B`. Arrays-only features: `shuffle` and `seed` (shuffle in the
        pipeline), `validation_split`, `sample_weight` (give weights as the elements' third
        tensor); `validation_data` may be arrays or a dataset. A stateful model needs
        batches of exactly its batch size, known from the element spec
        (`batch(B, drop_remainder=True)`). Resume: a checkpoint records the position
        (epoch and batch); a resumed run skips the batches already trained
        (`Dataset.skip`) and continues *exactly* when the dataset yields the same batches
        in the same order each time it is iterated (a generator or pipeline with fixed
        seeds, e.g. `shuffle(n, seed=s, reshuffle_each_iteration=False)`). A pipeline that
        reshuffles differently per iteration resumes at the right position with the
        weights, optimizer state and running sums of the interrupted run, but on the
        batches the dataset yields then.

    Returns:
        A `keras.callbacks.History`: `history.history["loss"]`, `["grad_norm"]` (mean global
        gradient norm before clipping), `["val_loss"]`. If a loss or gradient turns NaN/inf,
        training stops with a warning naming the epoch and step, the weights stay those of
        the last finite update, and `history.nonfinite` holds `{"epoch", "step"}`.
        `history.update_grad_norms` holds the global gradient norm (before clipping) of
        every update this run applied, in order; `model.history` is this object.
        `history.trace_count` is how often this run traced the training step (0 when `fit`
        runs again on the same model with the same optimizer, settings and shapes: the
        compiled step is reused), and `history.compiled_calls` how many compiled training
        calls were made.

    Raises:
        ValueError / TypeError: bad arguments, before any TensorFlow tracing.
        KeyboardInterrupt: after Ctrl-C (SIGINT), once a checkpoint of the last complete
            batch is written (when `checkpoint_dir` is set).
        SystemExit: code 143 after SIGTERM (what schedulers and preemptible machines send),
            once the same checkpoint is written.
        CheckpointError: `resume=True` with a corrupt checkpoint or one from another setup.

    Example:

    >>> history = fit(model, x, y, epochs=10, k1=20, k2=40, global_clipnorm=1.0)
    >>> bptt_keras.plot_loss_curves(history)
    """
    # ---- set-up: checks, optimizer, compiled engine, resume, callbacks -------------------
    args = check_fit(
        model, x, y, epochs=epochs, batch_size=batch_size, k1=k1, k2=k2, optimizer=optimizer,
        global_clipnorm=global_clipnorm, clipnorm=clipnorm, loss=loss, metrics=metrics,
        reduction=reduction, validation_data=validation_data,
        validation_split=validation_split, validation_freq=validation_freq,
        initial_epoch=initial_epoch, callbacks=callbacks, shuffle=shuffle, seed=seed,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        strategy=strategy, fast=fast, recompute=recompute, sample_weight=sample_weight,
        steps_per_execution=steps_per_execution, steps_per_epoch=steps_per_epoch,
        verbose=verbose,
    )  # fmt: skip
    optimizer = _optimizer(args)
    # Callbacks (TensorBoard, ReduceLROnPlateau, ...) find the optimizer where Keras' own
    # fit puts it.
    model.optimizer = optimizer
    engine = _engine(args, optimizer)
    traces_before = engine.trace_count()
    checkpointer = Checkpointer(
        args.checkpoint_dir, model, optimizer, fingerprint(args),
        args.parts.sizes if args.stateful else None, strategy=args.strategy,
    )  # fmt: skip
    state = checkpointer.restore() if args.resume else None
    if state is None:
        seed = _draw_seed() if args.seed is None else args.seed
        state = TrainingState(epoch=args.initial_epoch, seed=seed)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*args.callbacks, history], add_progbar=args.verbose != 0, model=model,
        verbose=args.verbose, epochs=args.epochs, steps=args.batches_per_epoch,
    )  # fmt: skip
    model.stop_training = False
    history.nonfinite, history.compiled_calls = None, 0
    # Every applied update's global gradient norm (before clipping), in order: callbacks read
    # them at epoch ends (`GradientNormsThroughTime`) without batch hooks, which would end
    # the compiled calls at every batch. `model.history` is where Keras' fit puts it too.
    history.update_grad_norms = array("d")
    model.history = history
    callback_list.on_train_begin()
    history.history = {k: list(v) for k, v in state.history.items()}
    done = len(history.history.get("loss", []))
    history.epoch = list(range(state.epoch - done, state.epoch))
    loop = _Loop(args, engine, callback_list, history, checkpointer, state)

    # ---- the loop over epochs ---------------------------------------------------------------
    with Interrupt() as loop.interrupt:
        for epoch in range(state.epoch, args.epochs):
            callback_list.on_epoch_begin(epoch)
            if not loop.train_epoch(epoch):
                break  # a non-finite update: stopped with the last finite weights
            logs = state.progress.logs(args.normaliser, args.metrics)
            if args.validation is not None and (epoch + 1) % args.validation_freq == 0:
                logs |= _validate(args, engine)
            callback_list.on_epoch_end(epoch, logs)
            loop.logs = logs
            last_step = state.step - 1  # the epoch's last batch (a dataset's count is known now)
            state.epoch, state.step = epoch + 1, 0
            checkpointer.save(state, history.history)
            if loop.interrupt.requested:
                loop.stop_interrupted(epoch, last_step)
            if model.stop_training:
                break
    history.trace_count = engine.trace_count() - traces_before
    callback_list.on_train_end(loop.logs)
    return history


class _Loop:
    """One `fit` run's epochs: calls of many updates, callbacks per batch, checkpoints and
    interrupts at batch boundaries, the running sums of the reported loss."""

    def __init__(self, args: FitArgs, engine: Engine, callbacks, history, checkpointer, state):
        self.args, self.engine, self.callbacks = args, engine, callbacks
        self.history, self.checkpointer, self.state = history, checkpointer, state
        self.interrupt: Interrupt | None = None
        self.logs: dict = {}
        self.zeros = engine.zero_states(args.batch_size)
        self._batch = {}  # under a strategy: the current batch, split over the replicas
        self._stream = None  # a dataset's batches, kept across epochs with steps_per_epoch
        if args.strategy is None:
            self.table = tf.constant(
                [[b.start, b.loss_start, b.next_start - b.start] for b in args.blocks], tf.int32
            )
        if args.dataset is None:
            # The whole data as tensors, once per run: every call gathers its blocks'
            # windows from them by index (`multi_step.train_updates`).
            self._use_arrays(args.x, args.y, args.w, args.rows)

    def _use_arrays(self, x, y, w, rows: int) -> None:
        """The arrays the calls gather their batches from (`rows` of them are real)."""
        self.arrays, self.rows = (x, y, w), rows
        if self.args.strategy is None:
            self.data = [tf.convert_to_tensor(a) for a in self.arrays]

    def train_epoch(self, epoch: int) -> bool:
        """Trains the epoch's remaining batches; False after a non-finite update."""
        args, state = self.args, self.state
        per_batch, first_batch = len(args.blocks), state.step
        if first_batch == 0:  # a fresh epoch (a resumed mid-epoch run keeps its sums)
            state.progress = Progress()
        # A stateful model starts every epoch from zero states, except when resuming
        # mid-epoch, where it continues from the checkpointed ones.
        if first_batch == 0 or state.states is None:
            state.states = self.zeros if args.stateful else None
        states = state.states if args.stateful else self.zeros
        if args.dataset is not None:
            return self._train_streamed(epoch, first_batch, states)
        plan = plan_epoch(
            rows=args.rows, batches=args.batches_per_epoch, batch=args.batch_size,
            blocks=args.blocks, normaliser=args.normaliser,
            weights=args.w if args.weighted else None, seed=state.seed, epoch=epoch,
            shuffle=args.shuffle,
        )  # fmt: skip
        self._use_plan(plan)
        end = args.batches_per_epoch * per_batch
        return self._train_span(epoch, plan, first_batch * per_batch, end, states, base=0)[0]

    def _use_plan(self, plan: EpochPlan) -> None:
        self._batch.clear()
        if self.args.strategy is None:  # the order and denominators, once per plan
            self.plan_tensors = (
                tf.constant(plan.padded, tf.int32),
                tf.constant(plan.denominators, tf.float32),
            )

    def _train_streamed(self, epoch: int, first_batch: int, states) -> bool:
        """Trains an epoch of a dataset's batches, a group of them per plan (see
        `bptt_keras.engine.streaming`)."""
        args, source = self.args, self.args.dataset
        per_batch, size = len(args.blocks), args.batch_size
        group = 1 if args.strategy is not None else max(1, args.limit // per_batch)
        if source.batches_per_epoch:  # no group larger than an epoch: no padding to build
            group = min(group, source.batches_per_epoch)
        steps = source.steps_per_epoch
        if steps is None:  # one pass per epoch, from a resumed run's batch on
            stream = self._batches(first_batch)
        else:  # one pass for the run, as Keras: epochs are its consecutive stretches
            if self._stream is None:
                self._stream = self._batches(self.state.batches_done)
            stream = self._stream
        number = first_batch
        while steps is None or number < steps:
            take = group if steps is None else min(group, steps - number)
            batches = list(itertools.islice(stream, take))
            if not batches:
                if steps is not None:
                    warnings.warn(
                        f"`x` ran out of data at epoch {epoch + 1}, batch {number + 1}, before "
                        f"steps_per_epoch={steps}: training stops (use `dataset.repeat()`).",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    args.model.stop_training = True
                break
            x, y, w, real = stack_group(batches, size, group)
            plan = _group_plan(args, [b[2] for b in batches], real, group)
            self._use_arrays(x, y, w, group * size)
            self._use_plan(plan)
            finite, states = self._train_span(
                epoch, plan, 0, len(batches) * per_batch, states, base=number
            )
            if not finite:
                return False
            number += len(batches)
            if args.model.stop_training:
                break
        return True

    def _batches(self, skip: int):
        return checked_batches(self.args.dataset, self.args.parts, self.args.loss, skip=skip)

    def _train_span(self, epoch: int, plan: EpochPlan, update: int, end: int, states, base: int):
        """Trains updates `update ... end - 1` of `plan`, whose batch 0 is the epoch's batch
        `base`; returns `(finite, states the next batch starts from)`."""
        args, state = self.args, self.state
        per_batch = len(args.blocks)
        while update < end:
            if update % per_batch == 0:
                self.callbacks.on_train_batch_begin(base + update // per_batch)
            count = next_call(
                update, blocks=args.blocks, end=end, limit=args.limit,
                cut_before=self._cut_before(update // per_batch),
            )  # fmt: skip
            stats, captured, finals = self._call(update, count, states, plan)
            if not self._report(epoch, update, stats, plan, base):
                return False, states
            update += len(stats)
            if update % per_batch:
                states = captured  # mid-batch: the next call continues this batch
                continue
            # A batch boundary: the next batch starts from zero states, or a stateful
            # model's final ones; checkpoints, Ctrl-C and stop requests act here.
            state.states = finals if args.stateful else None
            states = finals if args.stateful else self.zeros
            state.epoch, state.step = epoch, base + update // per_batch
            # The epoch's end checkpoints itself (a dataset's end is known only after it).
            known = args.batches_per_epoch
            if known is None or state.step < known:
                due = args.checkpoint_every and state.batches_done % args.checkpoint_every == 0
                if self.interrupt.requested or due:
                    self.checkpointer.save(state, self.history.history)
                if self.interrupt.requested:
                    self.stop_interrupted(epoch, state.step - 1)
            if args.model.stop_training:
                break
        return True, states

    def _cut_before(self, current: int):
        """Batch boundaries where the host must act: after every batch for batch hooks or
        once Ctrl-C or a stop request arrived, and where a checkpoint is due."""
        args, done = self.args, self.state.batches_done

        def cut(batch: int) -> bool:
            if args.split_batches or self.interrupt.requested or args.model.stop_training:
                return True
            every = args.checkpoint_dir is not None and args.checkpoint_every
            return bool(every) and (done + batch - current) % args.checkpoint_every == 0

        return cut

    def _call(self, first: int, count: int, states, plan: EpochPlan):
        """Trains updates `first ... first + count - 1` in one compiled call; returns their
        stats `(loss sum, grad norm, finite)` up to the first non-finite one, and the
        captured and final states of the last update run."""
        args, engine = self.args, self.engine
        self.history.compiled_calls += 1
        if args.strategy is None:
            order, denominators = self.plan_tensors
            stats, done, captured, finals = engine.train_updates_fn(
                *self.data, order, self.table, denominators, states,
                tf.constant(first, tf.int32), tf.constant(count, tf.int32),
                batch=args.batch_size, limit=args.limit, rows=self.rows,
                shape=block_shape(args.blocks[first % len(args.blocks)]),
            )  # fmt: skip
            return stats.numpy()[: int(done)], captured, finals  # the one host sync
        # Under a strategy: one update per call, the batch split over the replicas.
        number, index = divmod(first, len(args.blocks))
        if self._batch.get("number") != number:
            rows = plan.padded[number * args.batch_size : (number + 1) * args.batch_size]
            tensors = [engine.distribute(a[rows]) for a in self.arrays]
            self._batch.update(number=number, tensors=tensors)
        spec = block_spec(args.blocks[index], float(plan.denominators[first]))
        stats, finals, captured = engine.train_fn(*self._batch["tensors"], states, spec)
        return stats.numpy()[None], captured, finals

    def _report(self, epoch: int, first: int, stats, plan: EpochPlan, base: int) -> bool:
        """Adds a call's updates to the running sums, in order, and runs the batch hooks
        (the plan's batch 0 is the epoch's batch `base`); False (with a warning) at a
        non-finite update."""
        per_batch, state = len(self.args.blocks), self.state
        for offset, (total, grad_norm, finite, penalty, *sums) in enumerate(stats.tolist()):
            number, index = divmod(first + offset, per_batch)
            number += base
            if index == 0 and offset:
                self.callbacks.on_train_batch_begin(number)
            if not finite:
                block = self.args.blocks[index]
                self.history.nonfinite = {"epoch": epoch + 1, "step": number + 1}
                warnings.warn(
                    f"Non-finite loss or gradient at epoch {epoch + 1}, step {number + 1} "
                    f"(block {block.loss_start}-{block.end}): training stopped; the model "
                    "keeps the weights of the last finite update.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return False
            count = float(plan.counts[first + offset])
            state.progress.add(total, count, grad_norm, penalty, sums)
            self.history.update_grad_norms.append(grad_norm)
            if index == per_batch - 1:
                state.batches_done += 1
                logs = state.progress.logs(self.args.normaliser, self.args.metrics)
                self.logs = {k: v for k, v in logs.items() if k != "grad_norm"}
                self.callbacks.on_train_batch_end(number, self.logs)
        return True

    def stop_interrupted(self, epoch: int, step: int):
        self.callbacks.on_train_end(self.logs)
        directory = self.args.checkpoint_dir
        where = f" Checkpoint written to {str(directory)!r}." if directory else ""
        self.interrupt.stop(f"Training interrupted at epoch {epoch + 1}, step {step + 1}.{where}")


def _validate(args: FitArgs, engine: Engine) -> dict:
    """The `val_` logs: validation arrays or a validation dataset, full forward passes."""
    if isinstance(args.validation, Validation):
        return score(
            engine, args.validation, args.batch_size, args.normaliser, args.stateful,
            prefix="val_",
        )  # fmt: skip
    batches = checked_batches(args.validation, args.parts, args.loss, name="validation_data")
    return score_dataset(
        engine, batches, args.validation.batch_size, args.normaliser, prefix="val_"
    )


def _group_plan(args: FitArgs, weights: list, real: list[int], group: int) -> EpochPlan:
    """The plan of a group of a dataset's batches, stacked by `stack_group`: rows in
    order, each update's denominator and count from its own batch's real rows, as
    `plan_epoch` computes them for arrays (missing batches: never trained)."""
    per_batch, size = len(args.blocks), args.batch_size
    denominators = np.ones(group * per_batch)
    counts = np.zeros(group * per_batch)
    for i, (w, rows) in enumerate(zip(weights, real, strict=True)):
        order = pad_to_batches(np.arange(rows), 1, size)
        part = slice(i * per_batch, (i + 1) * per_batch)
        denominators[part], counts[part] = args.normaliser.per_update(
            order, rows, w, args.blocks, size
        )
    order = np.arange(group * size)
    return EpochPlan(order, order, denominators, counts)


# ---- the optimizer and the compiled engine, reused across `fit` calls ----------------------

_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DEFAULT_OPTIMIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES_KEPT = 4  # per model: enough for a few optimizers or settings, bounded


def _engine(args: FitArgs, optimizer) -> Engine:
    """The compiled engine for `fit`, reused across `fit` calls on the same model.

    A compiled step holds the model's and the optimizer's variables and the loss settings,
    so it is keyed on exactly those: another `fit` on the same model with the same optimizer
    object and settings traces and compiles nothing again. (The engine keeps its optimizer
    and strategy alive, so their `id`s cannot be reused while it is cached.)
    """
    settings = {
        "loss": args.loss,
        "metrics": args.metrics,
        "global_clipnorm": args.global_clipnorm,
        "clipnorm": args.clipnorm,
        "fast": args.fast,
        "recompute": args.recompute,
    }
    key = (id(optimizer), id(args.strategy), *sorted(settings.items()))
    engines = _ENGINES.setdefault(args.model, {})
    if key not in engines:
        engines[key] = Engine(args.model, optimizer=optimizer, strategy=args.strategy, **settings)
        while len(engines) > _ENGINES_KEPT:
            engines.pop(next(iter(engines)))
    return engines[key]


def _optimizer(args: FitArgs):
    """The given optimizer, built; or the default `Adam(learning_rate=1e-3)` in its initial
    state, the same object for every `fit` call on this model (and strategy), so that its
    compiled step is reused: its variables are reset to their freshly built values instead
    of building a new optimizer."""
    model, strategy = args.model, args.strategy
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    if args.optimizer is not None:
        with scope:
            if not args.optimizer.built:
                args.optimizer.build(model.trainable_variables)
        return args.optimizer
    kept = _DEFAULT_OPTIMIZERS.get(model)
    if kept is not None and kept[0] is strategy:
        _, optimizer, initial = kept
        for variable, value in zip(optimizer.variables, initial, strict=True):
            variable.assign(value)
        return optimizer
    with scope:
        optimizer = keras.optimizers.Adam(learning_rate=1e-3)
        optimizer.build(model.trainable_variables)
    initial = [np.array(v.numpy()) for v in optimizer.variables]
    _DEFAULT_OPTIMIZERS[model] = (strategy, optimizer, initial)
    return optimizer


def _draw_seed() -> int:
    return int(np.random.SeedSequence().entropy % (2**31))
