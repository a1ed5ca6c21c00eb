"""Per-step metrics reported beside the loss (`fit(..., metrics=[...])`), as Keras names them.

A metric is a weighted sum over the scored steps and the count it is divided by, computed
inside the compiled step from the same outputs as the loss and added up on the host update
by update (as the loss is: `bptt_keras.losses`), so that train and validation figures are
exact weighted means over an epoch and survive a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from bptt_keras._validation import describe
from bptt_keras.losses import StepLoss

KINDS = (
    "mse",
    "mae",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
)
# Keras metric classes -> the kind computed here.
_CLASSES = {
    "MeanSquaredError": "mse",
    "MeanAbsoluteError": "mae",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "CategoricalAccuracy": "categorical_accuracy",
    "BinaryAccuracy": "binary_accuracy",
}
_ALIASES = {
    "mse": "mse",
    "mean_squared_error": "mse",
    "mae": "mae",
    "mean_absolute_error": "mae",
    "sparse_categorical_accuracy": "sparse_categorical_accuracy",
    "categorical_accuracy": "categorical_accuracy",
    "binary_accuracy": "binary_accuracy",
}
# "accuracy" / "acc" follow the loss, as in Keras' `compile`.
_ACCURACY_FOR = {
    "sparse_categorical_crossentropy": "sparse_categorical_accuracy",
    "categorical_crossentropy": "categorical_accuracy",
    "binary_crossentropy": "binary_accuracy",
}


@dataclass(frozen=True)
class StepMetric:
    """A metric, resolved.

    Attributes:
        name: the name it is reported under (`val_` + name for validation).
        kind: one of `KINDS`.
        threshold: `binary_accuracy`'s decision threshold on the outputs.
    """

    name: str
    kind: str
    threshold: float = 0.5

    @property
    def per_feature(self) -> bool:
        return self.kind in ("mse", "mae", "binary_accuracy")


def get_metrics(metrics, loss: StepLoss) -> tuple[StepMetric, ...]:
    """Resolves `metrics` (names or `keras.metrics.Metric` objects of the supported kinds).

    Raises:
        ValueError / TypeError: naming the metric that is not supported.
    """
    if metrics is None:
        return ()
    if isinstance(metrics, (str, keras.metrics.Metric)):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(
            f"`metrics` must be a list of names or Keras metrics. Received: {describe(metrics)}"
        )
    supported = f"{sorted(_ALIASES)} or 'accuracy', or Keras metric objects of {sorted(_CLASSES)}"
    resolved = []
    for metric in metrics:
        if isinstance(metric, str):
            kind = _ALIASES.get(metric)
            if metric in ("accuracy", "acc"):
                kind = _ACCURACY_FOR.get(loss.name)
                if kind is None:
                    raise ValueError(
                        f"`metrics`: {metric!r} needs a cross-entropy loss (it follows the loss, "
                        f"as in Keras); the loss is {loss.name!r}. Use 'mae' or 'mse'."
                    )
            if kind is None:
                raise ValueError(f"`metrics`: {metric!r} is not supported; use {supported}.")
            resolved.append(StepMetric(metric, kind))
        elif isinstance(metric, keras.metrics.Metric) and type(metric).__name__ in _CLASSES:
            kind = _CLASSES[type(metric).__name__]
            threshold = float(getattr(metric, "threshold", 0.5) or 0.5)
            resolved.append(StepMetric(metric.name, kind, threshold))
        else:
            raise TypeError(f"`metrics`: {describe(metric)} is not supported; use {supported}.")
    for metric in resolved:
        if (metric.kind == "sparse_categorical_accuracy") != loss.sparse:
            targets = "integer class" if loss.sparse else "per-feature or one-hot"
            raise ValueError(
                f"`metrics`: {metric.name!r} does not fit the loss {loss.name!r}, whose targets "
                f"are {targets}: sparse_categorical_accuracy goes with "
                "sparse_categorical_crossentropy, and only there."
            )
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"`metrics` names must be distinct. Received: {names}")
    return tuple(resolved)


def metric_sums(metric: StepMetric, y, yhat, weights):
    """`(weighted sum, count)` of one metric over a window, float scalars.

    Args:
        metric: the metric.
        y, yhat: targets and outputs, as for `bptt_keras.losses.elements`.
        weights: `(batch, time)` per-step weights.
    """
    weights = tf.cast(weights, yhat.dtype)
    if metric.kind == "sparse_categorical_accuracy":
        hit = tf.equal(tf.argmax(yhat, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32))
        values = tf.cast(hit, yhat.dtype)
    elif metric.kind == "categorical_accuracy":
        hit = tf.equal(tf.argmax(yhat, axis=-1), tf.argmax(y, axis=-1))
        values = tf.cast(hit, yhat.dtype)
    else:
        y = tf.cast(y, yhat.dtype)
        if metric.kind == "mse":
            values = tf.square(yhat - y)
        elif metric.kind == "mae":
            values = tf.abs(yhat - y)
        else:
            values = tf.cast(tf.equal(tf.cast(yhat > metric.threshold, y.dtype), y), y.dtype)
        features = tf.cast(tf.shape(values)[-1], yhat.dtype)
        return tf.reduce_sum(values * weights[..., None]), tf.reduce_sum(weights) * features
    return tf.reduce_sum(values * weights), tf.reduce_sum(weights)
