"""Gradient norms through time in TensorBoard: a Keras callback.

Every `every` epochs it measures ‖∂L/∂h_t‖ for every step t of one recurrent layer on a
fixed probe batch (`diagnostics.gradient_norms_through_time`) and writes, to
`log_dir/gradients`, what `tensorboard --logdir log_dir` shows:

- an image: the norms against the distance to the last step, log scale (IMAGES tab);
- a histogram of log10 ‖∂L/∂h_t‖ over t (HISTOGRAMS / DISTRIBUTIONS tabs);
- scalars (SCALARS tab): `first_over_last` = ‖∂L/∂h_0‖ / ‖∂L/∂h_(T-1)‖ (below 1: the
  gradient shrinks going back, i.e. vanishes) and `per_step_factor`, the geometric mean
  factor per step going back (exp of the slope of log norm against distance);
- the exact norms as a tensor summary (`norms`), for scripts (TensorBoard's UI does not
  draw plain tensors);
- `grad_norm`: the global gradient norm (before clipping) of every optimizer update, as a
  scalar over the update count, when training runs under `bptt_keras.fit` (which records
  them in `history.update_grad_norms` without ending its compiled calls at every batch);
  under Keras' own `fit`, the epoch's `grad_norm` log if there is one.

It writes its own event files and works beside Keras' `TensorBoard` callback writing to the
same `log_dir` (that one writes to `log_dir/train` and `log_dir/validation`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import check_int, describe
from bptt_keras.diagnostics import _layer_index, gradient_norms_through_time
from bptt_keras.engine.arguments import check_weights, check_xy
from bptt_keras.engine.keras_options import resolve_loss
from bptt_keras.unroll import Parts

SUBDIR = "gradients"


def per_step_factor(norms: np.ndarray) -> float:
    """Geometric-mean factor by which ‖∂L/∂h_t‖ changes per step going back in time.

    Args:
        norms: `(time,)` norms, step 0 first (as `gradient_norms_through_time` returns).

    Returns:
        exp of the least-squares slope of log norm against the distance `T - 1 - t` to the
        last step (steps with a zero norm left out); NaN with fewer than two positive norms.
    """
    norms = np.asarray(norms, dtype=np.float64)
    distance = np.arange(len(norms))[::-1]
    positive = norms > 0
    if positive.sum() < 2:
        return float("nan")
    slope = np.polyfit(distance[positive], np.log(norms[positive]), 1)[0]
    return float(np.exp(slope))


def _plot_png(norms: np.ndarray, epoch: int) -> bytes:
    import matplotlib

    from bptt_keras.plotting import plot_gradient_norms

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=80)
    plot_gradient_norms({f"epoch {epoch + 1}": norms}, ax=ax)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


class GradientNormsThroughTime(keras.callbacks.Callback):
    """Logs ‖∂L/∂h_t‖ for every step t to TensorBoard (image, histogram, scalars).

    Args:
        x_probe: `(batch, time, input_dim)` (or `(batch, time)` token ids): a fixed batch to
            measure on (a few sequences are enough; the measurement is one forward and
            backward pass).
        y_probe: its targets, aligned with `x_probe` as for `fit`.
        log_dir: TensorBoard log directory; events go to `log_dir/gradients`.
        every: measure every this many epochs (the last epoch of a run is always measured).
        layer: recurrent layer index or name (default: the first).
        sample_weight: optional `(batch, time)` weights, as in
            `gradient_norms_through_time` (a weight only on the last step shows how far the
            gradient of a last-step loss travels back).
        loss: the loss to differentiate (default: the model's compiled loss, else "mse", as
            in `gradient_norms_through_time`); pass the one given to `bptt_keras.fit` when
            the model is not compiled.

    Example:

    >>> probe = GradientNormsThroughTime(x[:8], y[:8], "logs")
    >>> bk.fit(model, x, y, epochs=20, callbacks=[probe])
    >>> # tensorboard --logdir logs
    """

    def __init__(
        self,
        x_probe,
        y_probe,
        log_dir: str | os.PathLike,
        *,
        every: int = 1,
        layer: int | str | None = None,
        sample_weight=None,
        loss=None,
    ):
        super().__init__()
        # Checked against the model in `set_model` (token ids or features, the loss's target
        # layout), before training starts.
        self.x_probe, self.y_probe = x_probe, y_probe
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"`log_dir` must be a path. Received: {describe(log_dir)}")
        self.log_dir = Path(log_dir)
        self.every = check_int(every, name="every")
        self.layer = layer
        self.sample_weight = sample_weight
        self.loss = loss
        self.history: list[np.ndarray] = []  # the norms of every measured epoch, in order
        self._writer = None
        self._updates_logged = 0
        self._last_epoch = None

    # ---- Keras hooks ------------------------------------------------------------------
    def set_model(self, model):
        super().set_model(model)
        # Checked when training is set up, so a bad probe or `layer` fails before the first
        # update rather than at the end of the first epoch.
        # A `BPTTModel` measures the model it wraps, with the loss it was compiled with.
        self._loss = resolve_loss(model, self.loss)
        self._network = getattr(model, "inner", model)
        parts = Parts(self._network)
        _layer_index(parts, self.layer)
        loss = self._loss
        self.x_probe, self.y_probe = check_xy(
            parts, self.x_probe, self.y_probe, loss, x_name="x_probe", y_name="y_probe"
        )
        check_weights(self.sample_weight, self.x_probe.shape[:2])

    def on_train_begin(self, logs=None):
        params = self.params or {}
        self._last_epoch = params.get("epochs")
        self._writer = tf.summary.create_file_writer(str(self.log_dir / SUBDIR))
        self._updates_logged = 0

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self.on_train_begin()
        self._write_update_norms(epoch, logs or {})
        last = self._last_epoch is not None and epoch + 1 == self._last_epoch
        if (epoch + 1) % self.every and not last:
            return
        norms = gradient_norms_through_time(
            self._network, self.x_probe, self.y_probe, layer=self.layer,
            sample_weight=self.sample_weight, loss=self._loss,
        )  # fmt: skip
        self.history.append(norms)
        self.write_norms(norms, epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---- writing ------------------------------------------------------------------------
    def write_norms(self, norms: np.ndarray, epoch: int) -> None:
        """Writes one measurement at step `epoch` (an image, a histogram, scalars and the
        exact norms)."""
        norms = np.asarray(norms, dtype=np.float64)
        floor = np.finfo(np.float64).tiny
        with self._writer.as_default(step=epoch):
            tf.summary.write("norms", tf.constant(norms))
            tf.summary.histogram("log10_norms", np.log10(np.maximum(norms, floor)))
            tf.summary.scalar("first_over_last", norms[0] / max(norms[-1], floor))
            tf.summary.scalar("per_step_factor", per_step_factor(norms))
            png = tf.image.decode_png(_plot_png(norms, epoch), channels=4)
            tf.summary.image("norms_through_time", png[None])
        self._writer.flush()

    def _write_update_norms(self, epoch: int, logs: dict) -> None:
        history = getattr(self.model, "history", None)
        updates = getattr(history, "update_grad_norms", None)
        with self._writer.as_default():
            if updates is not None:  # bptt_keras.fit: every update's norm
                new = updates[self._updates_logged :]
                # Steps count the optimizer's updates, so a second `fit` call (or a resumed
                # run) continues the curve where the first ended.
                first = int(self.model.optimizer.iterations.numpy()) - len(new)
                for i, value in enumerate(new):
                    tf.summary.scalar("grad_norm", value, step=first + i)
                self._updates_logged = len(updates)
            elif "grad_norm" in logs:
                tf.summary.scalar("grad_norm_epoch_mean", logs["grad_norm"], step=epoch)
        self._writer.flush()
