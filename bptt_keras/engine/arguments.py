"""Every check of `fit`'s and `bptt_gradients`' arguments, before anything is traced.

`check_fit` turns `fit`'s keyword arguments into one frozen `FitArgs`: arrays converted and
aligned with the model, truncation filled in and planned, the calls' size chosen. A bad
argument is a `ValueError` / `TypeError` naming it, what was received and what was expected,
raised before any TensorFlow tracing and before any weight changes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import as_float_array, check_choice, check_int, describe
from bptt_keras.engine import keras_options as options
from bptt_keras.engine.keras_options import resolve_loss
from bptt_keras.engine.streaming import DatasetInput, check_dataset, is_dataset, numpy_batches
from bptt_keras.losses import REDUCTIONS, Normaliser, StepLoss, get_loss
from bptt_keras.metrics import StepMetric, get_metrics
from bptt_keras.truncation import Block, check_truncation, plan_blocks
from bptt_keras.unroll import Parts


def check_xy(parts: Parts, x, y, loss: StepLoss | str, *, x_name="x", y_name="y"):
    """Validates `x`, `y` against the model and returns them as arrays (before any tracing)."""
    loss = get_loss(loss, parts.model)
    if parts.tokens:
        x = check_token_ids(x, parts.vocab_size, name=x_name)
    else:
        x = as_float_array(x, name=x_name, ranks=(3,), dtype=parts.dtype)
    if not parts.tokens and x.shape[-1] != parts.input_dim:
        raise ValueError(
            f"`{x_name}` has {x.shape[-1]} feature(s) per step but the model expects "
            f"input_dim={parts.input_dim}. Received shape {x.shape}"
        )
    if not loss.sparse:
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


def check_token_ids(x, vocab_size: int, *, name: str = "x") -> np.ndarray:
    """Token ids for a model with an `Embedding` input: int32 `(batch, time)` in
    `[0, vocab_size)` (a float array is accepted if it holds whole numbers)."""
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise TypeError(
            f"`{name}` must be an array of token ids (batch, time) for a model with an "
            f"Embedding input. Received: {describe(x)}"
        )
    array = np.asarray(x)
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty integer array of token ids, shape (batch, time), "
            f"for a model with an Embedding input of vocab_size={vocab_size}. "
            f"Received: {describe(array)}"
        )
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"`{name}` must hold whole-number token ids. Received: {describe(array)}")
    low, high = array.min(), array.max()
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"`{name}` must hold token ids in [0, {vocab_size}) (the model's vocab_size). "
            f"Received values in [{low}, {high}]"
        )
    return array.astype(np.int32)


def check_weights(weights, shape: tuple[int, int], *, name: str = "sample_weight") -> np.ndarray:
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


def model_strategy(model, strategy):
    """`strategy`, or else the `tf.distribute.Strategy` whose scope the model was built in
    (as Keras' `model.distribute_strategy`), or None."""
    if strategy is not None:
        return strategy
    return getattr(model, "_distribute_strategy", None)


def check_run(model, x, y, loss, reduction, k1, k2, recompute, *, fast=False):
    """The checks `bptt_gradients`, `evaluate` and `fit` share: model, data, loss,
    truncation. Returns `(parts, loss as a StepLoss, x, y, k1, k2, recompute)`, `recompute`
    resolved to a segment length or None (see `auto_recompute`)."""
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    parts = Parts(model)
    loss = resolve_loss(model, loss)
    x, y = check_xy(parts, x, y, loss)
    k1, k2 = check_truncation(k1, k2, x.shape[1])
    check_whole_sequence(parts, k1, k2, x.shape[1])
    recompute = check_recompute(recompute, k1, k2, x.shape[1], parts=parts, fast=fast)
    check_masking(parts, fast)
    return parts, loss, x, y, k1, k2, recompute


def check_masking(parts: Parts, fast: bool) -> None:
    """Says (a `UserWarning`) when a mask makes the engine decline its fast path."""
    from bptt_keras import fast as fast_path

    declined = [layer.name for layer in parts.recurrent if fast_path.supports(layer)]
    if parts.mask_layer is not None and fast and declined:
        warnings.warn(
            f"The model masks its inputs ({parts.mask_layer.name!r}): the hand-derived "
            "backward pass (fast=True) does not implement masks, so the recurrent layers "
            f"{declined} run the plain autodiff loop, which carries the state through "
            "masked steps as Keras does (same gradients as Keras' masked layers; slower). "
            "Pass fast=False to silence this.",
            UserWarning,
            stacklevel=4,
        )


def check_whole_sequence(parts: Parts, k1: int, k2: int, steps: int) -> None:
    """Refuses truncation over Bidirectional layers, which only full BPTT defines."""
    if parts.whole_sequence and (k1, k2) != (steps, steps):
        raise ValueError(
            "Truncated BPTT over a Bidirectional layer is ill-defined: its backward direction "
            "reads the whole sequence from the end, so a block of k1 steps has no state to "
            "start from or carry forward. Use full BPTT (k1=None) for "
            f"{[layer.name for layer in parts.whole_sequence]}. Received: k1={k1}, k2={k2}, "
            f"T={steps}"
        )


AUTO_RECOMPUTE_FROM = 1000
"""`recompute="auto"` (the default) recomputes full BPTT over at least this many steps."""


def auto_recompute(parts: Parts, steps: int, k1: int, k2: int, fast: bool) -> int | None:
    """The segment length `recompute="auto"` picks: `round(sqrt(T))` for full BPTT over
    `T >= AUTO_RECOMPUTE_FROM` steps on the fast path when every recurrent layer recomputes
    inside its own gradient (`fast.supports_recompute`), else None (no recomputation).

    Why: the stored-activation fast path keeps 6u numbers per step and layer beside h, and at
    T = 4000 its peak grows 1.46x (GRU) / 1.58x (LSTM) as much as plain autodiff's; the
    recomputing path keeps 8-14 % of plain's growth for at most +6 % time (LSTM) and none
    (GRU) (benchmarks/RESULTS.md). Below the threshold the stored path is kept unchanged:
    there the memory is small and every percent of speed counts (the large workload is
    T = 500). sqrt(T) balances the stored boundary states against one segment's work.
    """
    from bptt_keras import fast as fast_path

    full = k1 == steps and k2 == steps
    if not (fast and full and steps >= AUTO_RECOMPUTE_FROM) or parts.mask_layer is not None:
        return None
    if not all(fast_path.supports_recompute(layer) for layer in parts.recurrent):
        return None
    return max(1, round(math.sqrt(steps)))


def check_recompute(
    recompute, k1: int, k2: int, steps: int, *, parts: Parts, fast: bool
) -> int | None:
    if recompute is None:
        return None
    if isinstance(recompute, str):
        if recompute != "auto":
            raise ValueError(
                f'`recompute` must be "auto", None or a positive segment length. Received: '
                f"{recompute!r}"
            )
        return auto_recompute(parts, steps, k1, k2, fast)
    recompute = check_int(recompute, name="recompute")
    if parts.mask_layer is not None:
        raise ValueError(
            "`recompute` is not implemented for masked models (the recomputing backward "
            f"pass does not carry state through masked steps; mask layer "
            f"{parts.mask_layer.name!r}). Pass recompute=None. Received: recompute={recompute}"
        )
    if k1 != steps or k2 != steps:
        raise ValueError(
            "`recompute` applies to full BPTT (k1=k2=None); truncated BPTT already bounds "
            f"memory by k2. Received: recompute={recompute}, k1={k1}, k2={k2}"
        )
    return recompute


def check_strategy(strategy, model, batch: int, *, name: str) -> None:
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


_AUTO_BATCHES = 16  # at least this many batches' updates per automatic call (as before)
_MAX_AUTO_UPDATES = 1024
# Multiply-adds an automatic call aims at (about 0.1-0.3 s on 2 CPU cores): many tiny
# updates share a call, a few large ones keep calls short enough for Ctrl-C to be prompt.
_CALL_WORK = 2**29
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def auto_updates_per_call(parts: Parts, batch: int, blocks: list[Block]) -> int:
    """Updates per automatic compiled call: `_CALL_WORK` multiply-adds' worth (the recurrent
    layers' `(inputs + units) * gates * units` per step and row, over the longest block),
    at least 16 batches' updates, at most 1024 — but never the 16 batches' floor above 16
    updates when that exceeds the work aim: with long rows (one batch of hundreds of blocks,
    as a language model's `token_rows`) the floor would put a whole epoch in one call, tens
    of seconds without progress or a prompt Ctrl-C. Deterministic: it depends on the shapes,
    not on timings, so a run makes the same calls on every machine."""
    per_step = sum(
        int(np.prod(layer.cell.kernel.shape)) + int(np.prod(layer.cell.recurrent_kernel.shape))
        for layer in parts.recurrent
    )
    length = max(block.end - block.start for block in blocks)
    by_work = _CALL_WORK // max(1, batch * length * per_step)
    floor = min(_AUTO_BATCHES * len(blocks), _MAX_AUTO_UPDATES, max(_AUTO_BATCHES, by_work))
    return int(max(floor, min(by_work, _MAX_AUTO_UPDATES)))


def has_batch_hooks(callback) -> bool:
    # The base class's methods are no-ops; anything else is a hook: an override in a
    # subclass, or a function set on the instance (as `LambdaCallback` does).
    base = keras.callbacks.Callback
    return any(
        getattr(getattr(callback, hook), "__func__", None) is not getattr(base, hook)
        for hook in _BATCH_HOOKS
    )


def check_steps_per_execution(
    value, *, blocks: list[Block], strategy, callbacks, parts: Parts, batch: int
) -> tuple[int, bool]:
    """Updates per compiled call of `fit`, and whether calls must end at every batch.

    Returns `(limit, split_batches)`: `value`, or the automatic choice for None
    (`auto_updates_per_call`); one batch per call when a callback has batch hooks, so that
    they run after every batch, before the next one; one update per call under a strategy.
    """
    if value is None:
        if strategy is not None:
            return 1, True
        if any(has_batch_hooks(callback) for callback in callbacks):
            return len(blocks), True
        return auto_updates_per_call(parts, batch, blocks), False
    value = check_int(value, name="steps_per_execution")
    if value > 1 and strategy is not None:
        raise ValueError(
            f"`steps_per_execution`={value} is not supported with `strategy=`; pass 1 (or None)."
        )
    return value, False


@dataclass(frozen=True)
class Validation:
    """Validation data, checked: `x (n, time, input_dim)`, `y`, `w (n, time)`."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


@dataclass(frozen=True)
class FitArgs:
    """`fit`'s arguments, checked and filled in (see `fit` for their meaning).

    `w` is all ones when no `sample_weight` was given (`weighted` says which); `blocks` is
    the truncation plan of one batch; `limit` the most updates per compiled call and
    `split_batches` whether every call must end at a batch boundary (batch hooks).
    """

    model: keras.Model
    parts: Parts
    x: np.ndarray | None
    y: np.ndarray | None
    w: np.ndarray | None
    weighted: bool
    dataset: DatasetInput | None
    k1: int
    k2: int
    blocks: list[Block]
    normaliser: Normaliser
    epochs: int
    initial_epoch: int
    batch_size: int
    optimizer: keras.optimizers.Optimizer | None
    clipnorm: float | None
    global_clipnorm: float | None
    loss: StepLoss
    metrics: tuple[StepMetric, ...]
    reduction: str
    validation: Validation | DatasetInput | None
    validation_freq: int
    callbacks: list[keras.callbacks.Callback]
    shuffle: bool
    seed: int | None
    checkpoint_dir: Path | None
    checkpoint_every: int | None
    resume: bool
    strategy: tf.distribute.Strategy | None
    fast: bool
    recompute: int | None
    limit: int
    split_batches: bool
    stateful: bool
    verbose: Any

    @property
    def rows(self) -> int | None:
        """The number of sequences (None for a dataset)."""
        return None if self.x is None else int(self.x.shape[0])

    @property
    def time(self) -> int:
        """The sequence length `T`."""
        return self.dataset.time if self.dataset is not None else int(self.x.shape[1])

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches of an epoch (None: a dataset of unknown length, read to its end)."""
        if self.dataset is not None:
            return self.dataset.batches_per_epoch
        # Under a strategy a last partial batch could not be split evenly: it is dropped.
        if self.strategy is not None:
            return self.rows // self.batch_size
        return -(-self.rows // self.batch_size)


def check_fit(model, x, y, **kwargs) -> FitArgs:
    """Checks `fit`'s arguments (see `fit`; keyword arguments by the same names) and returns
    them as a `FitArgs`.

    Raises:
        ValueError / TypeError: naming the argument, what was received and what was
            expected.
    """
    k = kwargs
    options.check_regularisers(model)
    optimizer = options.resolve_optimizer(model, k["optimizer"])
    source = None
    if is_dataset(x):
        parts, loss, source, k1, k2, recompute = _check_streamed(model, x, y, k)
        x = y = w = None
        weighted, validation_data = source.weighted, k["validation_data"]
        batch_size, time = source.batch_size, source.time
    else:
        if k.get("steps_per_epoch") is not None:
            raise ValueError(
                "`steps_per_epoch` applies to a tf.data.Dataset `x` (an epoch of arrays is "
                f"one pass over their rows). Received steps_per_epoch={k['steps_per_epoch']}"
            )
        parts, loss, x, y, k1, k2, recompute = check_run(
            model, x, y, k["loss"], k["reduction"], k["k1"], k["k2"], k["recompute"],
            fast=bool(k["fast"]),
        )  # fmt: skip
        weighted = k["sample_weight"] is not None
        w = check_weights(k["sample_weight"], x.shape[:2])
        x, y, w, validation_data = options.split_validation(
            x, y, w, k["validation_split"], k["validation_data"], weighted=weighted
        )
        # A model's mask (padded steps) weighs like a 0/1 sample weight in the loss.
        w = parts.mask_weights(x, w)
        weighted = weighted or parts.mask_layer is not None
        rows, time = x.shape[:2]
        batch_size = 32 if k["batch_size"] is None else k["batch_size"]
        batch_size = check_int(batch_size, name="batch_size")
    metrics = get_metrics(options.resolve_metrics(model, k["metrics"]), loss)
    clipnorm, global_clipnorm = options.check_clipping(
        optimizer, k["clipnorm"], k["global_clipnorm"]
    )
    verbose = options.check_verbose(k["verbose"])
    epochs, initial_epoch, validation_freq = options.check_epoch_options(
        k["epochs"], k["initial_epoch"], k["validation_freq"]
    )
    strategy = model_strategy(model, k["strategy"])
    checkpoint_every, checkpoint_dir = k["checkpoint_every"], k["checkpoint_dir"]
    if checkpoint_every is not None:
        checkpoint_every = check_int(checkpoint_every, name="checkpoint_every")
    if k["resume"] and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir` (where to find checkpoints).")
    seed = k["seed"]
    if seed is not None:
        seed = check_int(seed, name="seed", minimum=0)
    callbacks = options.check_callbacks(k["callbacks"])  # read once: hooks, then CallbackList
    blocks = plan_blocks(time, k1, k2)
    limit, split_batches = check_steps_per_execution(
        k["steps_per_execution"], blocks=blocks, strategy=strategy, callbacks=callbacks,
        parts=parts, batch=batch_size,
    )  # fmt: skip
    stateful = parts.stateful
    if stateful and source is None:
        _check_stateful(model, rows, batch_size, k["shuffle"], strategy)
    if stateful and strategy is not None:
        raise ValueError("Stateful models are not supported with `strategy=` yet.")
    check_strategy(strategy, model, batch_size, name="batch_size")
    if source is None and rows < batch_size and strategy is not None:
        raise ValueError(
            f"x has {rows} sequences, fewer than one global batch of {batch_size}: under a "
            "strategy a partial batch cannot be split over replicas."
        )
    return FitArgs(
        model=model,
        parts=parts,
        x=x,
        y=y,
        w=w,
        weighted=weighted,
        dataset=source,
        k1=k1,
        k2=k2,
        blocks=blocks,
        normaliser=Normaliser(loss, k["reduction"], parts.output_dim, time),
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        optimizer=optimizer,
        clipnorm=clipnorm,
        global_clipnorm=global_clipnorm,
        loss=loss,
        metrics=metrics,
        reduction=k["reduction"],
        validation=_check_validation(validation_data, parts, loss),
        validation_freq=validation_freq,
        callbacks=callbacks,
        shuffle=bool(k["shuffle"]),
        seed=seed,
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
        checkpoint_every=checkpoint_every,
        resume=bool(k["resume"]),
        strategy=strategy,
        fast=bool(k["fast"]),
        recompute=recompute,
        limit=limit,
        split_batches=split_batches,
        stateful=stateful,
        verbose=verbose,
    )


def _check_streamed(model, dataset, y, k: dict):
    """`fit`'s checks for a tf.data.Dataset `x`: `(parts, loss, DatasetInput, k1, k2,
    recompute)`."""
    refuse_array_arguments(y=y, sample_weight=k["sample_weight"], batch_size=k["batch_size"])
    if k["validation_split"]:
        raise ValueError(
            "`validation_split` needs arrays (it holds out their last rows); with a "
            "tf.data.Dataset pass `validation_data` (arrays or a dataset). Received: "
            f"validation_split={k['validation_split']}"
        )
    steps = k.get("steps_per_epoch")
    if steps is not None:
        steps = check_int(steps, name="steps_per_epoch")
    parts, loss, source = check_stream(
        model, dataset, k["loss"], k["reduction"], steps_per_epoch=steps
    )
    k1, k2 = check_truncation(k["k1"], k["k2"], source.time)
    check_whole_sequence(parts, k1, k2, source.time)
    recompute = check_recompute(
        k["recompute"], k1, k2, source.time, parts=parts, fast=bool(k["fast"])
    )
    check_masking(parts, bool(k["fast"]))
    return parts, loss, source, k1, k2, recompute


_ARRAYS_ONLY = {
    "y": "the dataset's elements hold the targets",
    "sample_weight": "give weights as the elements' third tensor",
    "batch_size": "the dataset's batches set it (`dataset.batch(n)`)",
}


def refuse_array_arguments(**values) -> None:
    """Refuses, as Keras' `fit` does, arguments that only arrays take (`y`, `sample_weight`,
    `batch_size`) when `x` is a tf.data.Dataset."""
    for argument, value in values.items():
        if value is not None:
            raise ValueError(
                f"`{argument}` must be None when `x` is a tf.data.Dataset: "
                f"{_ARRAYS_ONLY[argument]}. Received: {argument}={describe(value)}"
            )


def check_stream(model, dataset, loss, reduction, *, steps_per_epoch=None):
    """The checks `fit` and `evaluate` share for a tf.data.Dataset: the model, the loss and
    the dataset's element spec. Returns `(parts, loss as a StepLoss, DatasetInput)`."""
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    parts = Parts(model)
    loss = get_loss(resolve_loss(model, loss), model)
    return parts, loss, check_dataset(dataset, parts, loss, steps_per_epoch=steps_per_epoch)


def step_weights(parts: Parts, x, sample_weight, *, name: str = "sample_weight") -> np.ndarray:
    """The per-step loss weights of `x`: `sample_weight` checked (`check_weights`), times
    the model's mask (padded steps weigh 0, as Keras' losses skip masked steps)."""
    return parts.mask_weights(x, check_weights(sample_weight, x.shape[:2], name=name))


def checked_batches(source: DatasetInput, parts: Parts, loss: StepLoss, *, skip=0, name="x"):
    """A dataset's batches from batch `skip` on as NumPy `(x, y, w)`, each checked as arrays
    are (`streaming.numpy_batches`), messages naming the batch."""

    def check(x, y, w, number: int):
        where = f"{name}'s batch {number}"
        x, y = check_xy(parts, x, y, loss, x_name=f"x of {where}", y_name=f"y of {where}")
        return x, y, step_weights(parts, x, w, name=f"sample_weight of {where}")

    return numpy_batches(source, check, skip=skip, name=name)


def _check_stateful(model, rows: int, batch_size: int, shuffle, strategy) -> None:
    model_batch = model.inputs[0].shape[0]
    if batch_size != model_batch:
        raise ValueError(
            f"`batch_size`={batch_size} must equal the stateful model's fixed batch size "
            f"{model_batch}: row i of each batch continues row i of the previous one."
        )
    if rows % batch_size:
        raise ValueError(
            f"A stateful model needs whole batches: x.shape[0]={rows} is not a multiple of "
            f"batch_size={batch_size} (use `stream_batches` to lay out a series)."
        )
    if shuffle:
        raise ValueError(
            "`shuffle=True` would break the row continuity a stateful model relies on; "
            "pass `shuffle=False`."
        )


def _check_validation(
    validation_data, parts: Parts, loss: StepLoss
) -> Validation | DatasetInput | None:
    if validation_data is None:
        return None
    if is_dataset(validation_data):
        return check_dataset(
            validation_data, parts, loss, steps_per_epoch=None, name="validation_data"
        )
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise TypeError(
            "`validation_data` must be a pair (x_val, y_val) or a triple (x_val, y_val, "
            f"w_val). Received: {describe(validation_data)}"
        )
    x_val, y_val = check_xy(
        parts, *validation_data[:2], loss, x_name="validation_data[0]", y_name="validation_data[1]"
    )
    w_val = step_weights(
        parts,
        x_val,
        validation_data[2] if len(validation_data) == 3 else None,
        name="validation_data[2]",
    )
    return Validation(x_val, y_val, w_val)
