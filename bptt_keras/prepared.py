"""A run's data: the series split by time, scaled on its training part, cut into next-step
windows; and the test-segment forecasts every run is scored by.

`bptt_keras.run.train` prepares its data here; `bptt_keras.rundir.load_run` prepares the same
data again to score or extend a saved run.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from bptt_keras.config import TrainConfig
from bptt_keras.data import Scaler, fit_scaler, next_step_pairs, sliding_windows, split_by_time
from bptt_keras.datasets import load_csv_series, load_series
from bptt_keras.prediction import errors, forecast, predict_next


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


def test_forecasts(model: keras.Model, data: PreparedData, *, window: int):
    """Forecasts the held-out test segment one step ahead and in closed loop.

    Args:
        model: a trained next-step model.
        data: the run's `PreparedData`.
        window: context steps (the run's `config.window`).

    Returns:
        `(metrics, predictions)`: test RMSE/MAE in original units of the one-step, closed-loop
        and persistence forecasts (`{"one_step_rmse": ..., ...}`), and
        `{"one-step": (time, values), "closed loop": (time, values)}` with `(n_test,)` arrays.
    """
    start = data.n_train + data.n_val
    truth = data.values[start:]
    one_step = data.scaler.inverse_transform(
        predict_next(model, data.scaled, context=window, start=start)
    )[:, 0]
    closed = data.scaler.inverse_transform(
        forecast(model, data.scaled[start - window : start], steps=data.n_test)
    )[:, 0]
    persistence = data.values[start - 1 : -1]
    metrics = {}
    for name, prediction in (
        ("one_step", one_step),
        ("closed_loop", closed),
        ("persistence", persistence),
    ):
        metrics[f"{name}_rmse"], metrics[f"{name}_mae"] = errors(truth, prediction)
    test_time = data.time[start:]
    return metrics, {"one-step": (test_time, one_step), "closed loop": (test_time, closed)}
