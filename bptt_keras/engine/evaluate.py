"""`evaluate`, and the validation of `fit`: the loss (and metrics) with full forward passes.

One loss definition everywhere (`bptt_keras.losses`): the compiled forward pass returns loss
and metric *sums*, `Normaliser` divides them, and the model's regularisation penalty is added
as Keras adds it to `evaluate`'s loss.
"""

from __future__ import annotations

import keras

from bptt_keras._validation import check_int
from bptt_keras.engine.arguments import (
    Validation,
    check_run,
    check_stream,
    checked_batches,
    refuse_array_arguments,
    step_weights,
)
from bptt_keras.engine.gradients import engine_for
from bptt_keras.engine.resume import metric_logs
from bptt_keras.engine.streaming import is_dataset, stack_group
from bptt_keras.losses import Normaliser
from bptt_keras.metrics import get_metrics


def evaluate(
    model: keras.Model,
    x,
    y=None,
    *,
    batch_size: int | None = None,
    loss=None,
    metrics: list | None = None,
    reduction: str = "mean",
    sample_weight=None,
    fast: bool = True,
    return_dict: bool = False,
) -> float | dict:
    """The loss `L` of `model` on `(x, y)` with full forward passes (no update).

    The same loss definition as `fit`'s reported and validation losses (see
    `bptt_keras.losses`): the (weighted) per-element mean, times `T` for "sum_over_time",
    plus the model's regularisation penalty (`model.losses`) as in Keras. A stateful model
    carries its state from batch to batch from zero states.

    Args:
        model: a `build_model` model.
        x: `(n, time, input_dim)` inputs, or a `tf.data.Dataset` of `(x, y)` or
            `(x, y, sample_weight)` batches, read one batch at a time (see `fit`).
        y: targets aligned with `x` (see `bptt_gradients`); None with a dataset.
        batch_size: rows per forward pass (a stateful model's own batch size); default
            32; None with a dataset, whose batches set it.
        loss: see `bptt_gradients`; default: the compiled loss, else "mse".
        metrics: as in `fit` (needs `return_dict=True` to be seen).
        reduction: see `bptt_gradients`.
        sample_weight: optional `(n, time)` per-step weights.
        fast: the fast forward pass where available.
        return_dict: return `{"loss": ..., metric name: ...}` instead of the loss alone.

    Returns:
        The loss, a float (or the dict).

    Example:

    >>> val_loss = evaluate(model, x_val, y_val)
    >>> evaluate(model, x_val, y_val, metrics=["mae"], return_dict=True)
    {'loss': 0.0123, 'mae': 0.0871}
    """
    if is_dataset(x):
        logs = _evaluate_dataset(
            model, x, y, batch_size=batch_size, loss=loss, metrics=metrics,
            reduction=reduction, sample_weight=sample_weight, fast=fast,
        )  # fmt: skip
        return logs if return_dict else logs["loss"]
    parts, loss, x, y, *_ = check_run(model, x, y, loss, reduction, None, None, None)
    batch_size = check_int(32 if batch_size is None else batch_size, name="batch_size")
    w = step_weights(parts, x, sample_weight)
    found = get_metrics(metrics, loss)
    stateful = parts.stateful
    normaliser = Normaliser(loss, reduction, parts.output_dim, x.shape[1])
    engine = engine_for(
        model, loss=loss, strategy=None, fast=bool(fast), recompute=None, metrics=found
    )
    logs = score(engine, Validation(x, y, w), batch_size, normaliser, stateful)
    return logs if return_dict else logs["loss"]


def _evaluate_dataset(model, dataset, y, *, batch_size, loss, metrics, reduction, sample_weight,
                      fast) -> dict:  # fmt: skip
    """`evaluate` over a tf.data.Dataset, streamed."""
    refuse_array_arguments(y=y, sample_weight=sample_weight, batch_size=batch_size)
    parts, loss, source = check_stream(model, dataset, loss, reduction)
    engine = engine_for(
        model, loss=loss, strategy=None, fast=bool(fast), recompute=None,
        metrics=get_metrics(metrics, loss),
    )  # fmt: skip
    normaliser = Normaliser(loss, reduction, parts.output_dim, source.time)
    return score_dataset(
        engine, checked_batches(source, parts, loss), source.batch_size, normaliser
    )


def score_dataset(
    engine, batches, batch_size: int, normaliser: Normaliser, *, prefix: str = ""
) -> dict:
    """As `score`, over a dataset's checked batches `(x, y, w)` (`checked_batches`), read
    one at a time. Each batch is padded to `batch_size` rows of weight 0, so that the
    forward pass has one shape (and splits evenly over replicas under a strategy); a
    stateful model carries its state from batch to batch."""
    totals, count = None, 0.0
    states = engine.zero_states(batch_size)
    for batch in batches:
        x, y, w, _ = stack_group([batch], batch_size, 1)
        scores, finals = engine.eval_fn(
            *(engine.distribute(a) for a in (x, y, w)),
            states if engine.stateful else engine.zero_states(batch_size),
        )
        states = finals
        scores = scores.numpy()
        totals = scores if totals is None else totals + scores
        count += normaliser.count(batch[2])
    return _logs(engine, totals, count, normaliser, prefix)


def _logs(engine, totals, count: float, normaliser: Normaliser, prefix: str) -> dict:
    """`{prefix + "loss": ..., prefix + metric: ...}` from the summed `[loss, metric sum,
    count, ...]` of the forward passes and the scored elements (`count`)."""
    if totals is None:
        totals = [0.0] * (1 + 2 * len(engine.metrics))
    loss = normaliser.report(float(totals[0]), count) + float(engine.penalty())
    return {prefix + "loss": loss} | metric_logs(engine.metrics, list(totals[1:]), prefix)


def score(
    engine, data: Validation, batch_size: int, normaliser: Normaliser, stateful: bool,
    *, prefix: str = "",
) -> dict:  # fmt: skip
    """`{prefix + "loss": ..., prefix + metric: ...}` over `data`, batch by batch."""
    rows, step = data.x.shape[0], batch_size
    totals, count = None, 0.0
    states = engine.parts.zero_states(batch_size) if stateful else None
    if engine.replicas > 1:
        rows -= rows % engine.replicas
        step -= step % engine.replicas
    for i in range(0, rows, step):
        part = slice(i, min(i + step, rows))
        size = part.stop - part.start
        if (engine.replicas > 1 and size % engine.replicas) or (stateful and size != batch_size):
            break
        start = states if stateful else engine.zero_states(size)
        scores, finals = engine.eval_fn(
            *(engine.distribute(a[part]) for a in (data.x, data.y, data.w)), start
        )
        states = finals if stateful else None
        scores = scores.numpy()
        totals = scores if totals is None else totals + scores
        count += normaliser.count(data.w[part])
    return _logs(engine, totals, count, normaliser, prefix)
