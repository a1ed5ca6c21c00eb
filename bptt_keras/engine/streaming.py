"""`fit`'s input from a `tf.data.Dataset`: its element spec checked against the model, and
its batches streamed to the compiled calls without holding the dataset in memory.

Arrays are held whole (one tensor for the run) and every call gathers its rows from them by
index. A dataset may be larger than memory or endless, so it is read batch by batch: a
*group* of consecutive batches is fetched, checked (as arrays are), padded to the static
batch size `B` and stacked,

    dataset   [b0: 32 rows][b1: 32 rows][b2: 17 rows]          (B = 32, group of 4 batches)
    group     | b0 | b1 | b2 + 15 rows of weight 0 | 32 rows of weight 0 |
              calls train updates of b0, b1, b2 only; the padding keeps one static shape

and the group's updates run through the same compiled multi-update call as arrays', so a
dataset of `B`-row batches trains exactly as the same rows in arrays with `shuffle=False`.
A group holds as many batches as one call trains (`steps_per_execution`), so memory is a
few batches whatever the dataset's size.

Everything here runs on the host, before the data reaches TensorFlow's compiled steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from bptt_keras._validation import describe
from bptt_keras.losses import StepLoss
from bptt_keras.unroll import Parts


def is_dataset(value) -> bool:
    """Whether `value` is a `tf.data.Dataset` (without importing anything new)."""
    return isinstance(value, tf.data.Dataset)


@dataclass(frozen=True)
class DatasetInput:
    """A checked dataset of `(x, y)` or `(x, y, sample_weight)` batches.

    Attributes:
        dataset: the `tf.data.Dataset`.
        batch_size: `B`, the static batch every update is padded to: the element spec's
            batch dimension, or the first batch's rows when the spec leaves it open.
        time: `T`, the steps of every sequence.
        weighted: whether elements carry per-step weights `(batch, time)`.
        steps_per_epoch: batches per epoch, or None for one pass over the dataset.
        cardinality: batches in one pass when tf.data knows it, else None.
    """

    dataset: tf.data.Dataset
    batch_size: int
    time: int
    weighted: bool
    steps_per_epoch: int | None
    cardinality: int | None

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches of an epoch, when known (the progress bar's `steps`)."""
        return self.steps_per_epoch or self.cardinality

    def describe(self) -> str:
        return str(self.dataset.element_spec)


def check_dataset(
    dataset, parts: Parts, loss: StepLoss, *, steps_per_epoch: int | None, name: str = "x"
) -> DatasetInput:
    """Checks a dataset's element spec against the model (before any tracing).

    Args:
        dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches.
        parts: the model's parts (input and output sizes, token input).
        loss: the resolved loss (sparse targets are class ids). A stateful model (carrying
            state from batch to batch) needs every batch to hold its fixed batch size, known
            from the element spec.
        steps_per_epoch: checked positive int or None.
        name: the argument's name in messages.

    Returns:
        A `DatasetInput`. When the spec leaves the batch or time dimension open, the first
        batch is read (one element; the dataset is not otherwise consumed) to fix them.

    Raises:
        TypeError: elements that are not tuples of 2 or 3 tensors.
        ValueError: ranks or sizes that do not match the model, an open batch size with a
            stateful model, an empty dataset.
    """
    spec = dataset.element_spec
    if (
        not isinstance(spec, tuple)
        or len(spec) not in (2, 3)
        or not all(isinstance(s, tf.TensorSpec) for s in spec)
    ):
        raise TypeError(
            f"`{name}` as a tf.data.Dataset must yield tuples (x, y) or (x, y, sample_weight) "
            f"of tensors. Received element_spec {spec}"
        )
    x_spec, y_spec = spec[0], spec[1]
    x_rank = 2 if parts.tokens else 3
    expected = "(batch, time) token ids" if parts.tokens else "(batch, time, input_dim)"
    if x_spec.shape.rank != x_rank:
        raise ValueError(
            f"`{name}`'s elements must be batches of {expected}: batch the dataset (e.g. "
            f"`dataset.batch(32)`). Received x element_spec {x_spec}"
        )
    if parts.tokens and not (x_spec.dtype.is_integer or x_spec.dtype.is_floating):
        raise ValueError(
            f"`{name}`'s x must hold token ids (integers). Received x element_spec {x_spec}"
        )
    if not parts.tokens and x_spec.shape[-1] not in (None, parts.input_dim):
        raise ValueError(
            f"`{name}`'s x has {x_spec.shape[-1]} feature(s) per step but the model expects "
            f"input_dim={parts.input_dim}. Received x element_spec {x_spec}"
        )
    y_ranks = (2, 3) if loss.sparse else (3,)
    if y_spec.shape.rank not in y_ranks:
        target = "(batch, time) class ids" if loss.sparse else "(batch, time, output_dim)"
        raise ValueError(
            f"`{name}`'s y must be batches of {target}. Received y element_spec {y_spec}"
        )
    if not loss.sparse and y_spec.shape[-1] not in (None, parts.output_dim):
        raise ValueError(
            f"`{name}`'s y has {y_spec.shape[-1]} value(s) per step but the model's "
            f"output_dim is {parts.output_dim}. Received y element_spec {y_spec}"
        )
    if len(spec) == 3 and spec[2].shape.rank != 2:
        raise ValueError(
            f"`{name}`'s sample weights must be batches of per-step weights (batch, time). "
            f"Received sample_weight element_spec {spec[2]}"
        )
    batch, time = x_spec.shape[0], x_spec.shape[1]
    for other in spec[1:]:
        if other.shape[1] is not None and time is not None and other.shape[1] != time:
            raise ValueError(
                f"`{name}`'s elements disagree on the number of steps: {spec}. x, y and "
                "sample weights must be aligned step by step."
            )
        time = time if time is not None else other.shape[1]
    stateful = parts.stateful
    model_batch = parts.model.inputs[0].shape[0] if stateful else None
    if stateful and batch is None:
        raise ValueError(
            f"A stateful model carries row i of each batch into row i of the next, so every "
            f"batch must hold exactly its {model_batch} rows; `{name}`'s batch size is "
            f"unknown (element_spec {x_spec}). Batch with "
            f"`dataset.batch({model_batch}, drop_remainder=True)`."
        )
    if stateful and batch != model_batch:
        raise ValueError(
            f"`{name}`'s batches hold {batch} rows but the stateful model's fixed batch size "
            f"is {model_batch}. Received x element_spec {x_spec}"
        )
    if batch is None or time is None:
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError(f"`{name}` (a tf.data.Dataset) yielded no batch.")
        batch = batch if batch is not None else int(first[0].shape[0])
        time = time if time is not None else int(first[0].shape[1])
    cardinality = int(dataset.cardinality())
    if cardinality == 0:
        raise ValueError(f"`{name}` (a tf.data.Dataset) holds no batch.")
    if cardinality == tf.data.INFINITE_CARDINALITY and steps_per_epoch is None:
        raise ValueError(
            f"`{name}` is an endless dataset (e.g. `.repeat()`): pass `steps_per_epoch`, the "
            "batches that make one epoch."
        )
    return DatasetInput(
        dataset=dataset,
        batch_size=int(batch),
        time=int(time),
        weighted=len(spec) == 3,
        steps_per_epoch=steps_per_epoch,
        cardinality=cardinality if cardinality >= 0 else None,
    )


def numpy_batches(source: DatasetInput, check, *, skip: int = 0, name: str = "x") -> Iterator:
    """The dataset's batches from batch `skip` on, as checked NumPy `(x, y, w)`.

    Args:
        source: the checked dataset.
        check: `check(x, y, w, number) -> (x, y, w)`, the same checks arrays get (model
            sizes, token ids, targets, weights); it names the batch in its messages.
        skip: batches to pass over first (a resumed run's position), with `Dataset.skip`,
            so that they are not converted.
        name: the argument's name in messages.

    Yields:
        `(x (rows, T, ...), y, w (rows, T))` with `1 <= rows <= B`.
    """
    dataset = source.dataset.skip(skip) if skip else source.dataset
    for number, element in enumerate(dataset.as_numpy_iterator(), start=skip):
        x, y, *w = element
        rows = x.shape[0]
        if not 1 <= rows <= source.batch_size or x.shape[1] != source.time:
            raise ValueError(
                f"`{name}`'s batch {number} has shape {x.shape}, but batches must hold 1 to "
                f"{source.batch_size} rows (the first batch's size) of {source.time} steps "
                "(the first batch's length): pad sequences to one length (e.g. "
                "`padded_batch` with fixed `padded_shapes`)."
            )
        yield check(x, y, w[0] if w else None, number)


def stack_group(batches: list, batch_size: int, group: int):
    """Stacks up to `group` checked batches into `(group * B, ...)` arrays.

    Each batch is padded to `B` rows by repeating its last row with weight 0, and missing
    batches are whole rows of weight 0 (never trained: the call's update count stops
    before them), so that every group has one static shape.

    Returns:
        `(x, y, w, real_rows)`: the stacked arrays and each batch's real rows.
    """
    x0, y0, w0 = batches[0]
    out = [np.zeros((group * batch_size, *a.shape[1:]), a.dtype) for a in (x0, y0, w0)]
    real = []
    for i, arrays in enumerate(batches):
        rows = arrays[0].shape[0]
        real.append(rows)
        for target, array in zip(out, arrays, strict=True):
            part = target[i * batch_size : (i + 1) * batch_size]
            part[:rows] = array
            part[rows:] = array[-1:]
        out[2][i * batch_size + rows : (i + 1) * batch_size] = 0.0
    for i in range(len(batches), group):  # rows of weight 0 keep the static shape
        for target in out[:2]:
            target[i * batch_size : (i + 1) * batch_size] = target[:1]
    return (*out, real)


def spec_summary(value) -> str:
    """A dataset's element spec, or another value described, for messages."""
    return str(value.element_spec) if is_dataset(value) else describe(value)
