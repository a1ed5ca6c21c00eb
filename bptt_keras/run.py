"""The main job: train a next-step model on one series, forecast the held-out end, save a run.

`bptt-keras train` and the notebooks call `train(config, out_dir=...)`. Data flow:

    series -> split by time (train | val | test) -> scaler fitted on train
           -> windows of window+1 steps inside each split -> next_step_pairs
           -> bptt_keras.fit (full or truncated BPTT, clipping, checkpoints)
           -> one-step and closed-loop forecasts of the test segment, in original units
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from bptt_keras.config import TrainConfig
from bptt_keras.data import Scaler, fit_scaler, next_step_pairs, sliding_windows, split_by_time
from bptt_keras.datasets import load_csv_series, load_series
from bptt_keras.diagnostics import gradient_norms_through_time
from bptt_keras.engine import fit
from bptt_keras.forecast import errors, forecast, predict_next
from bptt_keras.models import build_model


@dataclass
class PreparedData:
    """A series split by time, scaled, and cut into next-step training pairs.

    Attributes:
        values: `(time,)` raw series; `time`: `(time,)` its time index.
        scaler: fitted on the training segment only.
        scaled: `(time, 1)` the whole series scaled.
        n_train, n_val, n_test: segment lengths (in that order along time).
        train, val: `(x, y)` pairs `(n, window, 1)`; `val` is None when `n_val == 0`.
    """

    values: np.ndarray
    time: np.ndarray
    scaler: Scaler
    scaled: np.ndarray
    n_train: int
    n_val: int
    n_test: int
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None


@dataclass
class RunResult:
    """What `train` produced.

    Attributes:
        model: the trained `keras.Model`.
        history: per-epoch logs, `{"loss": [...], "val_loss": [...]}`.
        metrics: test-segment RMSE/MAE in original units for the one-step forecast, the
            closed-loop forecast and the persistence baseline.
        predictions: `{"one-step": (time, values), "closed loop": (time, values)}`.
        data: the `PreparedData` used.
        gradient_norms: `(window,)` norms of dL/dh_t of the trained model on up to 64
            training windows (`gradient_norms_through_time`).
        files: paths written, by name (empty when no `out_dir`).
    """

    model: keras.Model
    history: dict[str, list[float]]
    metrics: dict[str, float]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    data: PreparedData
    gradient_norms: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)


def _load(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.csv is not None:
        values, time = load_csv_series(
            config.csv, column=config.column, time_column=config.time_column
        )
        return values, (np.arange(values.shape[0]) if time is None else time)
    return load_series(config.dataset, return_time=True)


def prepare_data(config: TrainConfig) -> PreparedData:
    """Loads, splits, scales and windows the series named by `config`.

    Raises:
        ValueError: a segment shorter than `window + 1` steps, NaN/inf values, unknown data.
    """
    config.validate()
    values, time = _load(config)
    train_raw, val_raw, test_raw = split_by_time(
        values, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    length = config.window + 1
    for name, segment in (("training", train_raw), ("validation", val_raw)):
        if segment.shape[0] and segment.shape[0] < length:
            raise ValueError(
                f"The {name} segment has {segment.shape[0]} steps, shorter than one window of "
                f"`window + 1` = {length} steps. Use a smaller `window` or a larger fraction."
            )
    if test_raw.shape[0] == 0:
        raise ValueError("`test_fraction` leaves no test steps to forecast; use a value > 0.")
    scaler = fit_scaler(train_raw)
    scaled = scaler.transform(values[:, None])

    def pairs(segment: np.ndarray):
        return next_step_pairs(
            sliding_windows(scaler.transform(segment), length=length, stride=config.stride)
        )

    return PreparedData(
        values=np.asarray(values),
        time=np.asarray(time),
        scaler=scaler,
        scaled=scaled,
        n_train=train_raw.shape[0],
        n_val=val_raw.shape[0],
        n_test=test_raw.shape[0],
        train=pairs(train_raw),
        val=pairs(val_raw) if val_raw.shape[0] else None,
    )


class EpochProgress(keras.callbacks.Callback):
    """A one-line progress bar over epochs (instead of one bar per epoch)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._epochs = epochs
        self._bar = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._bar is None:
            # Stateful metrics are shown as logged, not averaged over epochs.
            self._bar = keras.utils.Progbar(
                self._epochs, unit_name="epoch", stateful_metrics=list(logs)
            )
        self._bar.update(epoch + 1, values=[(k, float(v)) for k, v in logs.items()])


def train(config: TrainConfig, *, out_dir: str | os.PathLike | None = None, verbose: int = 1):
    """Trains a next-step model as `config` says and forecasts the held-out test segment.

    Args:
        config: the run's `TrainConfig`.
        out_dir: if given, a directory to create with the run's files (`model.keras`,
            `history.csv`, `history.json`, `metrics.json`, `config.json`, `loss_curve.png`,
            `forecast.png`, `gradient_norms.png/.csv`). It must not exist yet; files are
            written to a temporary sibling that is renamed at the end, so a failed run
            leaves nothing partial.
        verbose: 0 silent, 1 a progress bar over epochs.

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

    start = data.n_train + data.n_val
    truth = data.values[start:]
    one_step = data.scaler.inverse_transform(
        predict_next(model, data.scaled, context=config.window, start=start)
    )[:, 0]
    closed = data.scaler.inverse_transform(
        forecast(model, data.scaled[start - config.window : start], steps=data.n_test)
    )[:, 0]
    persistence = data.values[start - 1 : -1]
    metrics = {}
    for name, prediction in (
        ("one_step", one_step),
        ("closed_loop", closed),
        ("persistence", persistence),
    ):
        metrics[f"{name}_rmse"], metrics[f"{name}_mae"] = errors(truth, prediction)
    metrics["final_loss"] = history["loss"][-1]
    if "val_loss" in history:
        metrics["final_val_loss"] = history["val_loss"][-1]
    test_time = data.time[start:]
    result = RunResult(
        model=model,
        history=history,
        metrics=metrics,
        predictions={"one-step": (test_time, one_step), "closed loop": (test_time, closed)},
        data=data,
        gradient_norms=grad_norms,
    )
    if fitted.nonfinite is not None:
        metrics["stopped_nonfinite_at"] = fitted.nonfinite
    if out_dir is not None:
        result.files = save_run(result, config, out_dir)
    return result


def save_run(result: RunResult, config: TrainConfig, out_dir: str | os.PathLike):
    """Writes a run's files to `out_dir` atomically (temporary directory, then rename).

    Returns:
        `{name: path}` of the files written.
    """
    from bptt_keras.plotting import plot_forecast, plot_gradient_norms, plot_loss_curves

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        result.model.save(tmp / "model.keras")
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(result.history, indent=2) + "\n")
        keys = list(result.history)
        rows = ["epoch," + ",".join(keys)]
        for i in range(len(result.history["loss"])):
            rows.append(f"{i + 1}," + ",".join(repr(result.history[k][i]) for k in keys))
        (tmp / "history.csv").write_text("\n".join(rows) + "\n")

        name = config.csv or config.dataset
        ax = plot_loss_curves(
            result.history,
            log_scale=True,
            title=f"{config.cell} on {name}: loss per epoch",
            ylabel="MSE (scaled units)",
        )
        ax.figure.savefig(tmp / "loss_curve.png", dpi=120)
        data = result.data
        start = data.n_train + data.n_val
        shown = max(0, start - 3 * data.n_test)  # the test segment and some history
        ax = plot_forecast(
            data.values[shown:],
            result.predictions,
            time=data.time[shown:],
            split=data.time[start],
            title=f"{name}: forecasts of the held-out final {data.n_test} steps",
            xlabel="time",
            ylabel=name,
        )
        ax.figure.savefig(tmp / "forecast.png", dpi=120)
        ax = plot_gradient_norms(
            {f"trained {config.cell}": result.gradient_norms},
            title=f"||dL/dh_t|| of the trained model over a {config.window}-step window",
        )
        ax.figure.savefig(tmp / "gradient_norms.png", dpi=120)
        np.savetxt(
            tmp / "gradient_norms.csv", result.gradient_norms, header="dL_dh_norm", comments=""
        )
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {path.name: path for path in sorted(out_dir.iterdir())}
