"""The main job: train a next-step model on one series, forecast the held-out end, save a run.

`bptt-keras train` and the notebooks call `train(config, out_dir=...)`. Data flow:

    series -> split by time (train | val | test) -> scaler fitted on train
           -> windows of window+1 steps inside each split -> next_step_pairs
           -> bptt_keras.fit (full or truncated BPTT, clipping, checkpoints)
           -> one-step and closed-loop forecasts of the test segment, in original units
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import keras

from bptt_keras.config import TrainConfig
from bptt_keras.diagnostics import gradient_norms_through_time
from bptt_keras.engine import fit
from bptt_keras.models import build_model
from bptt_keras.prepared import PreparedData, prepare_data, test_forecasts
from bptt_keras.progress import interactive
from bptt_keras.rundir import RunResult, save_run

__all__ = ["EpochProgress", "PreparedData", "RunResult", "prepare_data", "test_forecasts", "train"]


class EpochProgress(keras.callbacks.Callback):
    """Progress over epochs: one bar in a terminal or notebook, one line per epoch elsewhere.

    Args:
        epochs: the number of epochs of the run.
        stream: where plain lines go (default `sys.stdout`).

    Example:

    >>> bk.fit(model, x, y, epochs=100, verbose=0, callbacks=[EpochProgress(100)])
    """

    def __init__(self, epochs: int, stream=None):
        super().__init__()
        self._epochs, self._stream = epochs, stream
        self._bar = None
        self._start = self._epoch_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        stream = sys.stdout if self._stream is None else self._stream
        if interactive(stream):
            if self._bar is None:
                # Stateful metrics are shown as logged, not averaged over epochs.
                self._bar = keras.utils.Progbar(
                    self._epochs, unit_name="epoch", stateful_metrics=list(logs)
                )
            self._bar.update(epoch + 1, values=[(k, float(v)) for k, v in logs.items()])
            return
        seconds = time.perf_counter() - self._epoch_start
        values = " - ".join(f"{k}: {float(v):.4g}" for k, v in logs.items())
        print(f"epoch {epoch + 1}/{self._epochs} - {seconds:.2f}s - {values}", file=stream)
        stream.flush()


def train(config: TrainConfig, *, out_dir: str | os.PathLike | None = None, verbose: int = 1):
    """Trains a next-step model as `config` says and forecasts the held-out test segment.

    Args:
        config: the run's `TrainConfig`.
        out_dir: if given, a directory to create with the run's files (`model.keras`,
            `history.csv`, `history.json`, `metrics.json`, `config.json`, `loss_curve.png`,
            `forecast.png`, `gradient_norms.png/.csv`). It must not exist yet; files are
            written to a temporary sibling that is renamed at the end, so a failed run
            leaves nothing partial.
        verbose: 0 silent, 1 progress over epochs (a bar in a terminal or notebook, one line
            per epoch in a log).

    Returns:
        A `RunResult`.

    Raises:
        ValueError / TypeError: bad configuration or data, before anything is built.
        FileExistsError: `out_dir` already exists.
    """
    data = prepare_data(config)
    if out_dir is not None and Path(out_dir).exists():
        raise FileExistsError(f"`out_dir` already exists: {str(out_dir)!r}; choose a new one.")

    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.cell, config.units, num_layers=config.num_layers, init=config.init, seed=config.seed
    )
    callbacks = [EpochProgress(config.epochs)] if verbose else []
    fitted = fit(
        model,
        *data.train,
        validation_data=data.val,
        epochs=config.epochs,
        batch_size=config.batch_size,
        k1=config.k1,
        k2=config.k2,
        global_clipnorm=config.global_clipnorm,
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        checkpoint_dir=config.checkpoint_dir,
        resume=config.resume,
        shuffle=True,
        seed=config.seed,
        verbose=0,
        callbacks=callbacks,
    )
    history = {k: [float(v) for v in vals] for k, vals in fitted.history.items()}
    probe_x, probe_y = (a[:64] for a in data.train)
    grad_norms = gradient_norms_through_time(model, probe_x, probe_y)

    metrics, predictions = test_forecasts(model, data, window=config.window)
    metrics["final_loss"] = history["loss"][-1]
    if "val_loss" in history:
        metrics["final_val_loss"] = history["val_loss"][-1]
    result = RunResult(
        model=model,
        history=history,
        metrics=metrics,
        predictions=predictions,
        data=data,
        gradient_norms=grad_norms,
    )
    if fitted.nonfinite is not None:
        metrics["stopped_nonfinite_at"] = fitted.nonfinite
    if out_dir is not None:
        result.files = save_run(result, config, out_dir)
    return result
