"""Shared pieces of the training experiments: model specs, a learning curve, its plot."""

from __future__ import annotations

import keras
import numpy as np
from matplotlib.figure import Figure

from bptt_keras.engine import evaluate, fit
from bptt_keras.models import build_model

MODELS = {
    "tanh RNN": {"cell": "simple_rnn", "init": "orthogonal"},
    "IRNN": {"cell": "simple_rnn", "init": "irnn"},
    "LSTM": {"cell": "lstm", "init": "default"},
    "GRU": {"cell": "gru", "init": "default"},
}
"""The models the long-range tasks compare (IRNN: Le, Jaitly & Hinton 2015)."""


def make_model(name: str, units: int, *, input_dim: int, output_dim: int, seed: int):
    spec = MODELS[name]
    return build_model(
        spec["cell"],
        units,
        input_dim=input_dim,
        output_dim=output_dim,
        init=spec["init"],
        seed=seed,
    )


def score(model: keras.Model, data: tuple, *, loss: str) -> float:
    """Weighted mean loss of `model` on `(x, y[, w])`: the engine's `evaluate`, the same
    definition as every `val_loss` of the learning curve."""
    x, y, *w = data
    return evaluate(model, x, y, loss=loss, sample_weight=w[0] if w else None, batch_size=256)


ARJOVSKY_TRAINING = {
    "train_sequences": 20000,
    "val_sequences": 1000,
    "batch_size": 20,
    "epochs": 20,
    "learning_rate": 1e-3,
    "global_clipnorm": None,
    "optimizer": "rmsprop",
    "clipvalue": 1.0,
}
"""Arjovsky, Shah & Bengio 2016's training, shared by the adding and copy `paper` scales:
RMSprop 1e-3 with decay 0.9, each gradient element clipped at 1, batch 20 and 20,000 updates
(their code's defaults), as 20 passes over 20,000 sequences so that the held-out loss is
recorded every 1,000 updates."""


def make_optimizer(name: str, learning_rate: float, clipvalue: float | None = None):
    """Adam, or RMSprop with decay 0.9 (Arjovsky et al. 2016's choice for every model);
    `clipvalue` clips each gradient element, as their code does."""
    kwargs = {} if clipvalue is None else {"clipvalue": clipvalue}
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate, rho=0.9, **kwargs)
    raise ValueError(f'`optimizer` must be "adam" or "rmsprop". Received: {name!r}')


def describe_training(cfg: dict) -> str:
    """The training settings of a comparison, for its table's notes."""
    name = {"adam": "Adam", "rmsprop": "RMSprop (decay 0.9)"}[cfg.get("optimizer", "adam")]
    if cfg.get("clipvalue") is not None:
        clip = f"each gradient element clipped to +-{cfg['clipvalue']:g}"
    else:
        clip = f"gradient norm clipped to {cfg['global_clipnorm']:g}"
    units = cfg["units"]
    if isinstance(units, dict):
        units = ", ".join(f"{model} {n}" for model, n in units.items())
    return (
        f"{name} (learning rate {cfg['learning_rate']:g}), {clip}, units: {units}, batch "
        f"{cfg['batch_size']}, full BPTT."
    )


def learning_curve(
    model: keras.Model,
    train: tuple,
    val: tuple,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    global_clipnorm: float | None,
    loss: str,
    seed: int,
    optimizer: str = "adam",
    clipvalue: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Trains with full BPTT and scores the held-out set before and after every epoch.

    Args:
        train, val: `(x, y)` or `(x, y, sample_weight)`.

    Returns:
        `(updates, val_loss)`: arrays of length `epochs + 1` (the first entry is before
        training).
    """
    x, y, *w = train
    initial = score(model, val, loss=loss)
    history = fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=make_optimizer(optimizer, learning_rate, clipvalue),
        global_clipnorm=global_clipnorm,
        loss=loss,
        sample_weight=w[0] if w else None,
        validation_data=val,
        seed=seed,
        verbose=0,
    )
    per_epoch = -(-x.shape[0] // batch_size)  # full BPTT: one update per batch
    updates = per_epoch * np.arange(epochs + 1)
    # A run stopped by a non-finite loss in its first epoch has no validation loss at all.
    losses = np.array([initial, *history.history.get("val_loss", [])])
    if len(losses) < epochs + 1:  # stopped early on a non-finite loss: the curve ends there
        losses = np.concatenate([losses, np.full(epochs + 1 - len(losses), np.nan)])
    return updates, losses


BEATS = 0.9
"""A model *beats* a baseline when its final held-out loss is below `BEATS` times the
baseline's loss measured on the same held-out set: a margin beyond that set's sampling
error (about 6 % for the adding problem's 1,000 validation sequences), so that a model at
the baseline's level is never counted as having learned."""


class Curves(dict):
    """`{length: {model: (updates, val_losses)}}` (see `learning_curve`), plus what was
    measured on each length's held-out set: `measured_baselines[length]` (the baseline's loss
    on that very set) and `metrics[(length, model)]` (e.g. recall accuracy)."""

    def __init__(self):
        super().__init__()
        self.measured_baselines: dict = {}
        self.metrics: dict = {}
        # (length, model) -> the update whose loss or gradient was non-finite, where training
        # stopped (the curve is NaN from the next epoch on).
        self.stopped: dict = {}


def compare_models(
    cfg: dict,
    seed: int,
    *,
    lengths: list[int],
    make_data,
    input_dim: int,
    output_dim: int,
    loss: str,
    progress=None,
    baseline_of=None,
    final_metrics=None,
) -> Curves:
    """Trains every model of `cfg["models"]` on a task at every length, full BPTT.

    Args:
        cfg: the experiment's configuration (`models`, `units`, `train_sequences`,
            `val_sequences`, `epochs`, `batch_size`, `learning_rate`, `global_clipnorm`).
        seed: seeds data (a fresh pair of seeds per length), weights and shuffling.
        lengths: sequence lengths (or delays) to train at.
        make_data: `make_data(n, length, seed=...)` -> `(x, y)` or `(x, y, mask)`.
        input_dim, output_dim, loss: as the task needs.
        progress: a `bptt_keras.progress.Progress` told of each finished model, or None.
        baseline_of: `baseline_of(val) -> float`, the baseline strategy's loss on the
            held-out set (stored in `measured_baselines`), or None.
        final_metrics: `final_metrics(model, val) -> dict` of extra held-out results of the
            trained model (stored in `metrics`), or None.

    Returns:
        A `Curves`: `{length: {model: (updates, val_losses)}}` with the measurements.
    """
    curves = Curves()
    for i, length in enumerate(lengths):
        train = make_data(cfg["train_sequences"], length, seed=seed * 1000 + 2 * i)
        val = make_data(cfg["val_sequences"], length, seed=seed * 1000 + 2 * i + 1)
        curves[length] = {}
        if baseline_of is not None:
            curves.measured_baselines[length] = float(baseline_of(val))
        for name in cfg["models"]:
            units = cfg["units"][name] if isinstance(cfg["units"], dict) else cfg["units"]
            model = make_model(name, units, input_dim=input_dim, output_dim=output_dim, seed=seed)
            curves[length][name] = learning_curve(
                model,
                train,
                val,
                epochs=cfg["epochs"],
                batch_size=cfg["batch_size"],
                learning_rate=cfg["learning_rate"],
                global_clipnorm=cfg["global_clipnorm"],
                optimizer=cfg.get("optimizer", "adam"),
                clipvalue=cfg.get("clipvalue"),
                loss=loss,
                seed=seed,
            )
            nonfinite = getattr(model.history, "nonfinite", None)
            if nonfinite is not None:
                per_epoch = curves[length][name][0][1]  # the curve's x: updates per epoch
                epochs_done = nonfinite["epoch"] - 1
                curves.stopped[(length, name)] = int(epochs_done * per_epoch + nonfinite["step"])
            if final_metrics is not None:
                curves.metrics[(length, name)] = final_metrics(model, val)
            if progress is not None:
                progress.done(f"{name}, T = {length}")
    return curves


def summary_rows(
    curves: dict, *, baselines: dict, metric: str, baseline_column: str, published: dict
) -> list[dict]:
    """One results row per (length, model): initial, final and best held-out loss against
    the task's baseline (its expected value, and its loss measured on the same held-out set
    when `curves` has it), whether the model beats it (`BEATS`), any extra metrics, the
    update at which a diverged run stopped, and the published result quoted for that model."""
    rows = []
    measured = getattr(curves, "measured_baselines", {})
    extras = getattr(curves, "metrics", {})
    stopped = getattr(curves, "stopped", {})
    for length, by_model in curves.items():
        for name, (updates, losses) in by_model.items():
            row = {
                "T": length,
                "model": name,
                "updates": int(updates[-1]),
                f"initial {metric}": float(losses[0]),
                f"final {metric}": float(losses[-1]),
                f"best {metric}": float(np.nanmin(losses)),
                baseline_column: baselines[length],
            }
            reference = measured.get(length, baselines[length])
            if length in measured:
                row["baseline on the validation set"] = reference
            row["final / baseline"] = float(losses[-1] / reference)
            row[f"beats the baseline (< {BEATS:g}x)"] = bool(losses[-1] < BEATS * reference)
            row |= extras.get((length, name), {})
            if stopped:  # a column only where some run diverged; "-": trained to the end
                row["stopped: non-finite loss at update"] = stopped.get((length, name), "-")
            row["published"] = published[name]
            rows.append(row)
    return rows


def report_comparison(
    report,
    curves: dict,
    *,
    baselines: dict,
    metric: str,
    baseline_column: str,
    published: dict,
    title: str,
    notes: str,
    plot_title: str,
    ylabel: str,
    caption: str,
    summary: str,
) -> None:
    """Writes a model comparison: `results.*`, `curves.csv`, `learning_curves.png` and the
    run's summary (the models whose final loss is below half the baseline).

    Args:
        curves: `compare_models`' result; baselines: `{length: baseline loss}`.
        metric, baseline_column, published: see `summary_rows`.
        title, notes: of the results table; plot_title, ylabel, caption: of the plot.
        summary: the summary's opening words, e.g. "Models whose final MSE is below half
            the baseline".
    """
    rows = summary_rows(
        curves,
        baselines=baselines,
        metric=metric,
        baseline_column=baseline_column,
        published=published,
    )
    measured = getattr(curves, "measured_baselines", {})
    notes += (
        f" 'final / baseline' is relative to the baseline's loss on the validation set itself"
        f" ('baseline on the validation set'); a model beats the baseline when its final loss"
        f" is below {BEATS:g}x that value, beyond the set's sampling error."
        if measured
        else ""
    )
    report.table("results", rows, title=title, notes=notes)
    report.data("curves", curve_rows(curves, key="T"))
    fig = plot_curves(curves, measured or baselines, title=plot_title, ylabel=ylabel)
    report.figure("learning_curves", fig, caption=caption)
    beat = [f"{r['model']} (T={r['T']})" for r in rows if r["final / baseline"] < BEATS]
    report.finish(f"{summary}: " + (", ".join(beat) or "none") + ".")


def curve_rows(curves: dict, *, key: str) -> list[dict]:
    """`{length: {model: (updates, losses)}}` as CSV rows `(key, model, updates, val_loss)`."""
    return [
        {key: length, "model": model, "updates": int(u), "val_loss": float(v)}
        for length, by_model in curves.items()
        for model, (updates, losses) in by_model.items()
        for u, v in zip(updates, losses, strict=True)
    ]


def plot_curves(curves: dict, baselines: dict, *, title: str, ylabel: str, logy: bool = True):
    """One panel per sequence length: held-out loss vs updates, each baseline as a line.

    Args:
        curves: `{length: {model: (updates, losses)}}`.
        baselines: `{length: baseline loss}`.
    """
    lengths = list(curves)
    fig = Figure(figsize=(4.2 * len(lengths), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(lengths), sharey=True))
    for ax, length in zip(axes, lengths, strict=True):
        for model, (updates, losses) in curves[length].items():
            ax.plot(updates, losses, marker="o", ms=3, label=model)
        ax.axhline(baselines[length], color="black", ls="--", lw=1, label="baseline")
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"T = {length}")
        ax.set_xlabel("updates")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=8)
    fig.suptitle(title)
    return fig
