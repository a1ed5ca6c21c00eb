"""Plots of training runs and forecasts, drawn the way pandas and seaborn draw.

Every function takes `ax=`: with `ax=None` it draws on pyplot's current axes (a new pyplot
figure when there is none), so a notebook cell shows the plot inline and a script can call
`plt.show()` or `plt.savefig(...)`; with an explicit `ax` it draws there and touches no pyplot
state. Long-lived code that saves many figures (the command line, the experiments) passes
`ax=new_axes()`, a figure outside pyplot that is freed once saved. Every function returns the
`Axes` it drew on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bptt_keras._validation import as_float_array, describe


def new_axes(figsize: tuple[float, float] = (6.4, 4.0)) -> Axes:
    """Axes on a new figure outside pyplot: nothing keeps it alive once you drop it.

    Args:
        figsize: figure size in inches.

    Returns:
        The `Axes`; save it with `ax.figure.savefig(path)`.

    Example:

    >>> ax = plot_loss_curves(history, ax=new_axes())
    >>> ax.figure.savefig("loss.png")
    """
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _axes(ax: Axes | None, figsize=(6.4, 4.0)) -> Axes:
    """`ax` checked, or pyplot's current axes (a new figure of `figsize` if none is open)."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"`ax` must be a matplotlib Axes or None. Received: {describe(ax)}")
        return ax
    # Imported here: pyplot picks a GUI or inline backend when imported, which code that only
    # draws on explicit axes (the CLI, the experiments) should not trigger.
    import matplotlib.pyplot as plt

    if not plt.get_fignums():
        plt.figure(figsize=figsize, layout="constrained")
    return plt.gca()


def _label(ax: Axes, xlabel: str, ylabel: str, title: str | None) -> Axes:
    """Axis labels, title, a light grid and the legend: the finish every plot here shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return ax


def _history_dict(history) -> dict[str, list[float]]:
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping) or not logs:
        raise TypeError(
            "`history` must be a keras History or a non-empty dict of per-epoch lists, e.g. "
            f"{{'loss': [...], 'val_loss': [...]}}. Received: {describe(history)}"
        )
    return {str(k): [float(v) for v in np.ravel(vals)] for k, vals in logs.items()}


def plot_loss_curves(
    history,
    *,
    ax: Axes | None = None,
    keys: Sequence[str] | None = None,
    log_scale: bool = False,
    title: str | None = "Training curve",
    ylabel: str = "loss (MSE)",
) -> Axes:
    """Plots training (and validation) loss per epoch.

    Args:
        history: a `keras.callbacks.History` (from `model.fit` or `bptt_keras.fit`) or a dict
            `{"loss": [...], "val_loss": [...], ...}`.
        ax: axes to draw on; None: pyplot's current axes (a new figure if none is open).
        keys: which entries to plot; default every entry whose name ends in "loss".
        log_scale: logarithmic y axis (losses often fall by decades).
        title: axes title.
        ylabel: y-axis label.

    Returns:
        The matplotlib `Axes`.

    Example:

    >>> plot_loss_curves({"loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.6, 0.4]})  # inline
    >>> ax = plot_loss_curves(history, ax=new_axes())  # off pyplot, for scripts and loops
    >>> ax.figure.savefig("loss.png")
    """
    logs = _history_dict(history)
    if keys is None:
        keys = [k for k in logs if k.endswith("loss")] or list(logs)
    missing = [k for k in keys if k not in logs]
    if missing:
        raise ValueError(f"`keys` {missing} are not in the history. Available: {list(logs)}")
    ax = _axes(ax)
    for key in keys:
        epochs = np.arange(1, len(logs[key]) + 1)
        style = "--" if key.startswith("val_") else "-"
        label = {"loss": "train", "val_loss": "validation"}.get(key, key)
        ax.plot(epochs, logs[key], style, label=label)
    if log_scale:
        ax.set_yscale("log")
    return _label(ax, "epoch", ylabel, title)


def plot_forecast(
    truth,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    time=None,
    split: float | None = None,
    split_label: str = "held-out data starts",
    ax: Axes | None = None,
    title: str | None = "Forecast",
    xlabel: str = "time step",
    ylabel: str = "value",
) -> Axes:
    """Plots a series and one or more predictions of it.

    Args:
        truth: `(time,)` true values.
        predictions: `{label: (time_of_prediction, values)}`, each a pair of 1-D arrays of
            equal length, e.g. `{"one-step": (t[200:], p1), "closed loop": (t[200:], p2)}`.
        time: `(time,)` x values for `truth` (default `0..len(truth)-1`).
        split: x position of a vertical line marking where held-out data starts.
        split_label: legend label of that line.
        ax: axes to draw on; None: pyplot's current axes (a new figure if none is open).
        title, xlabel, ylabel: labels.

    Returns:
        The matplotlib `Axes`.
    """
    values = as_float_array(truth, name="truth", ranks=(1,))
    x = np.arange(values.shape[0]) if time is None else np.asarray(time)
    if x.shape != values.shape:
        raise ValueError(
            f"`time` must have the same shape as `truth` {values.shape}. Received: {describe(x)}"
        )
    if not isinstance(predictions, Mapping):
        raise TypeError(
            "`predictions` must be a dict {label: (time, values)}. "
            f"Received: {describe(predictions)}"
        )
    ax = _axes(ax, figsize=(8.0, 4.0))
    ax.plot(x, values, color="0.3", lw=1.2, label="truth")
    for label, pair in predictions.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                f"`predictions[{label!r}]` must be a pair (time, values). "
                f"Received: {describe(pair)}"
            )
        px, py = np.asarray(pair[0]), np.ravel(np.asarray(pair[1], dtype=float))
        if px.shape != py.shape:
            raise ValueError(
                f"`predictions[{label!r}]` has {px.shape[0]} times but {py.shape[0]} values."
            )
        ax.plot(px, py, lw=1.5, label=label)
    if split is not None:
        ax.axvline(split, color="k", ls=":", lw=1, label=split_label)
    return _label(ax, xlabel, ylabel, title)


def plot_gradient_norms(
    norms: Mapping[str, np.ndarray],
    *,
    ax: Axes | None = None,
    distance: bool = True,
    title: str | None = "Gradient norm through time",
) -> Axes:
    """Plots ||dL/dh_t|| for several models on one log-scale axes.

    Args:
        norms: `{label: (time,) array}`, e.g. from `gradient_norms_through_time`.
        ax: axes to draw on; None: pyplot's current axes (a new figure if none is open).
        distance: x axis as the distance `T - 1 - t` to the last step (where the loss of a
            last-step task sits), so vanishing shows as a falling line; else the step `t`.
        title: axes title.

    Returns:
        The matplotlib `Axes`.
    """
    if not isinstance(norms, Mapping) or not norms:
        raise TypeError(
            f"`norms` must be a non-empty dict {{label: array}}. Received: {describe(norms)}"
        )
    ax = _axes(ax)
    for label, values in norms.items():
        values = as_float_array(values, name=f"norms[{label!r}]", ranks=(1,), allow_nonfinite=True)
        steps = np.arange(values.shape[0])
        x = values.shape[0] - 1 - steps if distance else steps
        ax.plot(x, np.maximum(values, np.finfo(np.float32).tiny), label=label)
    ax.set_yscale("log")
    xlabel = "distance to the last step, T - 1 - t (steps)" if distance else "time step t"
    return _label(ax, xlabel, "||dL/dh_t|| (log scale)", title)


def plot_block_plan(
    time: int, k1: int, k2: int, *, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Draws the TBPTT(k1, k2) blocks over a sequence: loss steps, look-back, state cuts.

    Args:
        time: sequence length `T`.
        k1, k2: the truncation (see `bptt_keras.truncation`).
        ax: axes to draw on; None: pyplot's current axes (a new figure if none is open).
        title: axes title (default names the setting).

    Returns:
        The matplotlib `Axes`, one row per block (one weight update each in `fit`).
    """
    from bptt_keras.truncation import plan_blocks

    blocks = plan_blocks(time, k1, k2)
    ax = _axes(ax, figsize=(5.0, 0.5 + 0.4 * len(blocks)))
    for row, block in enumerate(blocks):
        look = [(block.start, block.loss_start - block.start)]
        ax.broken_barh(look, (row - 0.35, 0.7), color="0.8", label="look-back (no loss)")
        loss = [(block.loss_start, block.end - block.loss_start)]
        ax.broken_barh(loss, (row - 0.35, 0.7), color="C0", label="loss steps")
        ax.plot([block.start] * 2, [row - 0.45, row + 0.45], color="C3", lw=2.5, label="state cut")
    ax.set_yticks(range(len(blocks)))
    ax.set_ylim(len(blocks) - 0.5, -0.5)  # block 0 on top
    ax.set_xlim(0, time)
    ax.set_xlabel("time step t")
    ax.set_ylabel("block")
    full = " (full BPTT)" if k1 == k2 == time else ""
    ax.set_title(title or f"k1 = {k1}, k2 = {k2}{full}")
    ax.grid(True, axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="lower right", fontsize="small")
    return ax
