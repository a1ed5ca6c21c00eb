"""Per-step losses, their reduction, and the one owner of the loss denominator.

The loss is a per-step loss reduced over the sequence, as in the source document
(`loss = sum_t loss_t`), divided by a constant `N`:

    reduction="mean":           L = 1/(B*T*F) * sum_{b,t,f} l(yhat[b,t,f], y[b,t,f])   (Keras' mse)
    reduction="sum_over_time":  L = 1/(B*F)   * sum_{b,t,f} l(...)                      (= T * mean)

With per-step weights `w[b, t]` (`sample_weight`: a mask of the steps that are scored, as in
the adding problem, whose only target is at the last step) each term is multiplied by
`w[b, t]`, and "mean" divides by `F * sum(w)` instead of `B*T*F`: the weighted mean over the
scored steps. Without weights, `w = 1` and both definitions agree. `F` is the number of loss
elements per step: the output features for squared error, 1 for cross-entropy.

The compiled steps return loss *sums*; `Normaliser` alone turns them into means (as flax's
`compute_weighted_cross_entropy` returns a sum and its normalising factor), for a block's
update, for the loss reported per batch and epoch, and for validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import describe

LOSSES = (
    "mse",
    "mae",
    "huber",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)
"""Per-step losses, by the short name `StepLoss.name` uses (Keras' aliases are accepted)."""

REDUCTIONS = ("mean", "sum_over_time")

# Keras' canonical loss function names (`keras.losses.get(alias).__name__`) -> ours.
_CANONICAL = {
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "huber": "huber",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "categorical_crossentropy": "categorical_crossentropy",
    "binary_crossentropy": "binary_crossentropy",
}
_CROSS_ENTROPIES = {
    # loss -> the output activation that makes the model's outputs probabilities
    "sparse_categorical_crossentropy": "softmax",
    "categorical_crossentropy": "softmax",
    "binary_crossentropy": "sigmoid",
}


@dataclass(frozen=True)
class StepLoss:
    """A per-step loss, resolved: what `elements` computes.

    Attributes:
        name: one of `LOSSES`.
        from_logits: cross-entropies only: the outputs are logits (else probabilities).
        delta: Huber's threshold.
        label_smoothing: categorical / binary cross-entropy's label smoothing.
    """

    name: str
    from_logits: bool = True
    delta: float = 1.0
    label_smoothing: float = 0.0

    @property
    def key(self) -> str:
        """A short stable text for checkpoint fingerprints ("mse", or the name and the
        settings that differ from their defaults)."""
        extra = []
        if self.name in _CROSS_ENTROPIES and not self.from_logits:
            extra.append("probabilities")
        if self.name == "huber" and self.delta != 1.0:
            extra.append(f"delta={self.delta:g}")
        if self.label_smoothing:
            extra.append(f"label_smoothing={self.label_smoothing:g}")
        return ":".join([self.name, *extra])

    @property
    def sparse(self) -> bool:
        """Targets are integer classes `(batch, time)`, not `(batch, time, output_dim)`."""
        return self.name == "sparse_categorical_crossentropy"

    @property
    def per_feature(self) -> bool:
        """One loss element per output feature (else one per step: categorical losses)."""
        return self.name in ("mse", "mae", "huber", "binary_crossentropy")


def output_activation(model) -> str | None:
    """The name of the activation of the model's last layer that has one, or None."""
    for layer in reversed(model.layers):
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return getattr(activation, "__name__", None)
    return None


def get_loss(loss, model=None) -> StepLoss:
    """Resolves `loss` (a name, a `keras.losses.Loss` or a `StepLoss`) for `model`.

    A cross-entropy given by name decides `from_logits` from the model's output activation:
    probabilities after a softmax (sigmoid for binary cross-entropy) head, logits after any
    other, so that a softmax head is never softmaxed twice. A `keras.losses.Loss` object
    keeps its own `from_logits` (and `delta`, `label_smoothing`); its `reduction` is not
    used (`reduction=` of `fit` is).

    Raises:
        ValueError / TypeError: an unknown name, an unsupported Loss class or setting.
    """
    if isinstance(loss, StepLoss):
        return loss
    supported = f"one of {LOSSES} (or Keras' aliases, or a keras.losses.Loss of those)"
    if isinstance(loss, str):
        try:
            canonical = keras.losses.get(loss).__name__
        except (ValueError, AttributeError):
            canonical = None
        name = _CANONICAL.get(canonical)
        if name is None:
            raise ValueError(f"`loss` must be {supported}. Received: {loss!r}")
        from_logits = True
        if name in _CROSS_ENTROPIES and model is not None:
            from_logits = output_activation(model) != _CROSS_ENTROPIES[name]
        return StepLoss(name, from_logits=from_logits)
    if isinstance(loss, keras.losses.Loss):
        name = _CANONICAL.get(getattr(getattr(loss, "fn", None), "__name__", None))
        if name is None:
            raise TypeError(f"`loss` must be {supported}. Received: {describe(loss)}")
        kwargs = dict(getattr(loss, "_fn_kwargs", {}))
        if kwargs.get("ignore_class") is not None:
            raise ValueError(
                "`loss` with `ignore_class` is not supported: pass a `sample_weight` that is "
                f"0 on the ignored steps instead. Received: ignore_class={kwargs['ignore_class']}"
            )
        if kwargs.get("axis", -1) != -1:
            raise ValueError(
                f"`loss` must reduce over the last axis. Received axis={kwargs['axis']}"
            )
        return StepLoss(
            name,
            from_logits=bool(kwargs.get("from_logits", True)),
            delta=float(kwargs.get("delta", 1.0)),
            label_smoothing=float(kwargs.get("label_smoothing", 0.0)),
        )
    raise TypeError(f"`loss` must be {supported}. Received: {describe(loss)}")


def elements(loss, y, yhat):
    """Per-element losses.

    Args:
        loss: a `StepLoss` (or a name, resolved without a model: cross-entropies on logits).
        y: targets `(batch, time, F)`; integer classes `(batch, time)` for sparse
            cross-entropy; one-hot or soft `(batch, time, C)` for categorical.
        yhat: model outputs `(batch, time, output_dim)`.

    Returns:
        `(batch, time, F)`: `F = output_dim` for the per-feature losses (squared and absolute
        error, Huber, binary cross-entropy), 1 for the categorical ones.
    """
    loss = get_loss(loss)
    if loss.name == "sparse_categorical_crossentropy":
        labels = tf.cast(y, tf.int32)
        if loss.from_logits:
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=yhat)[
                ..., None
            ]
        return keras.losses.sparse_categorical_crossentropy(labels, yhat)[..., None]
    y = tf.cast(y, yhat.dtype)
    if loss.name == "mse":
        return tf.square(yhat - y)
    if loss.name == "mae":
        return tf.abs(yhat - y)
    if loss.name == "huber":
        error = tf.abs(yhat - y)
        quadratic = tf.minimum(error, loss.delta)
        # 0.5 e^2 inside the threshold, delta * (e - delta / 2) beyond it (Keras' `huber`).
        return 0.5 * tf.square(quadratic) + loss.delta * (error - quadratic)
    if loss.name == "categorical_crossentropy":
        return keras.losses.categorical_crossentropy(
            y, yhat, from_logits=loss.from_logits, label_smoothing=loss.label_smoothing
        )[..., None]
    if loss.label_smoothing:
        y = y * (1.0 - loss.label_smoothing) + 0.5 * loss.label_smoothing
    return keras.ops.binary_crossentropy(y, yhat, from_logits=loss.from_logits)


@dataclass(frozen=True)
class Normaliser:
    """The denominator `N` of `L = sum(w * elements) / N`, in every place a loss is divided.

    Args:
        loss: a `StepLoss` (or a name: see `get_loss`).
        reduction: one of `REDUCTIONS`.
        features: the model's output features (`F` of the per-feature losses).
        time: the sequence length `T` (the reported "sum_over_time" loss is `T` times the
            per-element mean).
    """

    loss: StepLoss | str
    reduction: str
    features: int
    time: int

    @property
    def per_step(self) -> int:
        """Loss elements per step, `F`: the features for per-feature losses, 1 for the
        categorical ones."""
        return self.features if get_loss(self.loss).per_feature else 1

    def of_weights(self, weights: np.ndarray) -> float:
        """`N` for the scored steps of one update, given their weights `(rows, steps)`.

        A block whose weights are all zero has no loss; `N = 1` keeps its (zero) gradient
        finite.
        """
        if self.reduction == "mean":
            return float(weights.sum()) * self.per_step if weights.any() else 1.0
        return float(weights.shape[0] * self.per_step)

    def per_update(
        self, order: np.ndarray, rows: int, weights: np.ndarray | None, blocks, batch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`N` and the count of scored elements of every update of an epoch.

        Args:
            order: the epoch's row order padded to whole batches; positions from `rows` on
                are padding with weight 0.
            rows: the number of real sequences.
            weights: `(rows, time)` per-step weights, or None (all ones).
            blocks: the truncation plan of one batch (loss ranges tile `[0, T)`).
            batch: the batch size.

        Returns:
            `(denominators, counts)`, float64 arrays `(batches * blocks,)` in update order:
            `counts` is `F * sum(w)` over the block's scored steps and real rows (what the
            reported mean divides by), `denominators` the `N` of the block's update.
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
        counts = scored * self.per_step
        if self.reduction == "mean":
            denominators = np.where(counts > 0, counts, 1.0)
        else:
            denominators = np.broadcast_to(real_rows[:, None] * self.per_step, counts.shape)
        return denominators.reshape(-1), counts.reshape(-1)

    def count(self, weights: np.ndarray) -> float:
        """Scored elements of `(rows, steps)` weights: what a reported mean divides by."""
        return float(weights.sum()) * self.per_step

    def report(self, total: float, count: float) -> float:
        """The reported loss `L` for a loss sum over `count` scored elements: the per-element
        mean, times `T` for "sum_over_time"."""
        scale = float(self.time) if self.reduction == "sum_over_time" else 1.0
        return scale * total / (count if count > 0 else 1.0)
