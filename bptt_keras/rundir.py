"""The run directory of `bptt-keras train`: written atomically, read back by `load_run`.

model.keras            the trained model (Keras 3 format)
scaler.json            the scaler fitted on the training segment (offset, scale)
config.json            the `TrainConfig` (`bptt-keras train --config` replays it)
versions.json          package, Python, TensorFlow, Keras, NumPy versions; git commit
metrics.json           test-segment RMSE/MAE in original units, final losses
history.csv / .json    loss, val_loss, grad_norm per epoch
loss_curve.png, forecast.png, gradient_norms.png/.csv
README.md              what the run was and what it measured, on one page
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from bptt_keras.config import TrainConfig, read_config
from bptt_keras.data import Scaler
from bptt_keras.prediction import forecast
from bptt_keras.prepared import PreparedData, prepare_data, test_forecasts

_NEEDED = ("model.keras", "scaler.json", "config.json", "metrics.json")


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


def versions() -> dict[str, str | None]:
    """The versions a run depends on, and the git commit of this package's checkout.

    Returns:
        `{"bptt_keras": ..., "python": ..., "tensorflow": ..., "keras": ..., "numpy": ...,
        "git_commit": ...}`; `git_commit` is None outside a git checkout (an installed wheel)
        and ends in `-dirty` when the checkout has uncommitted changes.
    """
    import tensorflow as tf

    from bptt_keras import __version__

    return {
        "bptt_keras": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "git_commit": _git_commit(Path(__file__).resolve().parent.parent),
    }


def _git_commit(root: Path) -> str | None:
    if not (root / ".git").exists():  # an installed copy: site-packages is not our checkout
        return None
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _readme(result: RunResult, config: TrainConfig, env: dict) -> str:
    name = config.csv or config.dataset
    m = result.metrics
    truncation = (
        "full BPTT" if config.k1 is None else f"TBPTT({config.k1}, {config.k2 or config.k1})"
    )
    rows = [
        ("one-step", m["one_step_rmse"], m["one_step_mae"]),
        ("closed loop", m["closed_loop_rmse"], m["closed_loop_mae"]),
        ("persistence (baseline)", m["persistence_rmse"], m["persistence_mae"]),
    ]
    table = "\n".join(f"| {label} | {rmse:.4g} | {mae:.4g} |" for label, rmse, mae in rows)
    commit = env["git_commit"] or "not a git checkout"
    what = (
        f"{config.num_layers} x {config.cell}({config.units}), {config.epochs} epochs of "
        f"{truncation} on windows of {config.window} steps (seed {config.seed}); the last "
        f"{result.data.n_test} steps were held out and forecast."
    )
    return f"""# Run: {config.cell} on {name}

{what}

| test forecast (original units) | RMSE | MAE |
|---|---|---|
{table}

Final training loss {m["final_loss"]:.4g} (scaled units){
        f", validation {m['final_val_loss']:.4g}" if "final_val_loss" in m else ""
    }.

![loss per epoch](loss_curve.png)

![forecasts of the held-out steps](forecast.png)

Reload it with `bk.load_run("<this directory>")`; forecast beyond the end of the series with
`bptt-keras forecast <this directory> --steps N`; replay it with
`bptt-keras train --config <this directory>/config.json`.

Versions: bptt_keras {env["bptt_keras"]} ({commit}), Python {env["python"]}, TensorFlow \
{env["tensorflow"]}, Keras {env["keras"]}, NumPy {env["numpy"]} (`versions.json`).
"""


def save_run(result: RunResult, config: TrainConfig, out_dir: str | os.PathLike):
    """Writes a run's files to `out_dir` atomically (temporary directory, then rename).

    Args:
        result: what `bptt_keras.run.train` returned.
        config: the run's configuration.
        out_dir: the directory to create; it must not exist.

    Returns:
        `{name: path}` of the files written.
    """
    from bptt_keras.plotting import new_axes, plot_forecast, plot_gradient_norms, plot_loss_curves

    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        result.model.save(tmp / "model.keras")
        scaler = result.data.scaler
        _write_json(
            tmp / "scaler.json", {"offset": scaler.offset.tolist(), "scale": scaler.scale.tolist()}
        )
        _write_json(tmp / "config.json", config.to_dict())
        env = versions()
        _write_json(tmp / "versions.json", env)
        _write_json(tmp / "metrics.json", result.metrics)
        write_history(tmp, result.history)

        # Figures outside pyplot (`new_axes`): a long-lived process that trains many runs keeps
        # no figure alive after saving it.
        name = config.csv or config.dataset
        ax = plot_loss_curves(
            result.history,
            ax=new_axes(),
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
            ax=new_axes((8.0, 4.0)),
            time=data.time[shown:],
            split=data.time[start],
            title=f"{name}: forecasts of the held-out final {data.n_test} steps",
            xlabel="time",
            ylabel=name,
        )
        ax.figure.savefig(tmp / "forecast.png", dpi=120)
        ax = plot_gradient_norms(
            {f"trained {config.cell}": result.gradient_norms},
            ax=new_axes(),
            title=f"||dL/dh_t|| of the trained model over a {config.window}-step window",
        )
        ax.figure.savefig(tmp / "gradient_norms.png", dpi=120)
        np.savetxt(
            tmp / "gradient_norms.csv", result.gradient_norms, header="dL_dh_norm", comments=""
        )
        (tmp / "README.md").write_text(_readme(result, config, env))
    return {path.name: path for path in sorted(out_dir.iterdir())}


@contextlib.contextmanager
def atomic_directory(out_dir: Path):
    """Yields a temporary sibling of `out_dir` to write a run's files into, renamed to
    `out_dir` at the end; on any failure (or Ctrl-C) it is removed, so a failed run leaves
    nothing partial."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_history(directory: Path, history: dict) -> None:
    """Writes a history `{name: [value per epoch]}` as `history.json` and `history.csv`."""
    _write_json(directory / "history.json", history)
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    for i in range(len(history["loss"])):
        rows.append(f"{i + 1}," + ",".join(repr(history[k][i]) for k in keys))
    (directory / "history.csv").write_text("\n".join(rows) + "\n")


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


@dataclass
class LoadedRun:
    """A saved run, ready to forecast in original units.

    Attributes:
        model: the trained `keras.Model`, `(batch, time, 1) -> (batch, time, 1)`.
        scaler: the `Scaler` fitted on the run's training segment.
        config: the run's `TrainConfig`.
        metrics: the run's `metrics.json`.
        versions: the run's `versions.json` (empty for runs saved before it existed).
        path: the run directory.
    """

    model: keras.Model
    scaler: Scaler
    config: TrainConfig
    metrics: dict[str, float]
    versions: dict[str, str | None]
    path: Path

    def forecast(self, context, *, steps: int) -> np.ndarray:
        """Closed-loop forecast in original units.

        Args:
            context: `(time,)` or `(time, 1)` past values in original units (at least one
                step; the run trained on windows of `config.window`).
            steps: future steps to predict.

        Returns:
            `(steps,)` float32 forecast in original units.
        """
        scaled = self.scaler.transform(np.asarray(context, dtype=np.float64).reshape(-1, 1))
        return self.scaler.inverse_transform(forecast(self.model, scaled, steps=steps))[:, 0]

    def future(self, *, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Forecasts the `steps` steps after the end of the run's whole series.

        The context is the series' last `config.window` values (the test segment included:
        the run is done, so the newest data inform the forecast).

        Returns:
            `(times, values)`, `(steps,)` each: the time index continued with the series'
            last time step, and the forecast in original units.
        """
        data = self.data()
        values = self.forecast(data.values[-self.config.window :], steps=steps)
        step = data.time[-1] - data.time[-2] if data.time.shape[0] > 1 else 1
        times = data.time[-1] + step * np.arange(1, steps + 1)
        return times, values

    def data(self) -> PreparedData:
        """The run's series, split, scaled and windowed exactly as for training."""
        return prepare_data(self.config)

    def test_metrics(self) -> dict[str, float]:
        """Recomputes the test-segment RMSE/MAE from the loaded model (equals `metrics`)."""
        return test_forecasts(self.model, self.data(), window=self.config.window)[0]


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Loads a run directory written by `bptt-keras train` or `bptt_keras.train(out_dir=...)`.

    Args:
        run_dir: the run directory.

    Returns:
        A `LoadedRun` (model, scaler, config, metrics, versions).

    Raises:
        FileNotFoundError: not a directory, or a file the run needs is missing (named).
        ValueError: a damaged file (named).

    Example:

    >>> run = load_run("runs/train-simple_rnn-20261205-120000")
    >>> run.forecast(series[-20:], steps=10)  # (10,) in the series' own units
    >>> run.test_metrics()["one_step_rmse"] == run.metrics["one_step_rmse"]
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"`run_dir` {str(path)!r} is not a directory.")
    missing = [name for name in _NEEDED if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete run directory: missing {', '.join(missing)} "
            "(runs saved before scaler.json existed cannot be reloaded in original units)."
        )
    config = read_config(path / "config.json")
    try:
        scaler_values = json.loads((path / "scaler.json").read_text())
        scaler = Scaler(
            offset=np.asarray(scaler_values["offset"], dtype=np.float32),
            scale=np.asarray(scaler_values["scale"], dtype=np.float32),
        )
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{str(path)!r} has a damaged scaler.json or metrics.json: {err}"
        ) from None
    env_path = path / "versions.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    model = keras.models.load_model(path / "model.keras")
    return LoadedRun(model, scaler, config, metrics, env, path)
