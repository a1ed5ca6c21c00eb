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

import numpy as np
import tensorflow as tf

LOSSES = ("mse", "sparse_categorical_crossentropy")
"""Per-step losses: squared error, or cross-entropy of integer targets against logits."""

REDUCTIONS = ("mean", "sum_over_time")


def elements(loss: str, y, yhat):
    """Per-element losses.

    Args:
        loss: one of `LOSSES`.
        y: targets `(batch, time, F)` for "mse", integer classes `(batch, time)` otherwise.
        yhat: model outputs `(batch, time, output_dim)` (logits for cross-entropy).

    Returns:
        `(batch, time, F)`: `F = output_dim` for "mse", 1 for cross-entropy.
    """
    if loss == "mse":
        return tf.square(yhat - tf.cast(y, yhat.dtype))
    labels = tf.cast(y, tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=yhat)[..., None]


@dataclass(frozen=True)
class Normaliser:
    """The denominator `N` of `L = sum(w * elements) / N`, in every place a loss is divided.

    Args:
        loss: one of `LOSSES`.
        reduction: one of `REDUCTIONS`.
        features: the targets' feature count (`y.shape[-1]` for "mse").
        time: the sequence length `T` (the reported "sum_over_time" loss is `T` times the
            per-element mean).
    """

    loss: str
    reduction: str
    features: int
    time: int

    @property
    def per_step(self) -> int:
        """Loss elements per step, `F`: the features for squared error, 1 for cross-entropy."""
        return self.features if self.loss == "mse" else 1

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
