"""Experiment `truncation`: how long a dependency truncated BPTT can learn.

The delayed echo (`bptt_keras.tasks.delayed_echo`) repeats the input `lag` steps later. Its
best losses are known exactly: 0 for a model that carries `x_(t-lag)` in its state, and
`(T - lag) / T` for one that cannot (its best guess is the mean, 0). A target at step `t`
can only be learned from the gradient when `t - lag` lies inside the forward window of the
block that owns `t` (`bptt_keras.covered_fraction`). So truncated BPTT(k) with `k <= lag`
cannot learn the echo at all: the forward state still *carries* `x_(t-lag)`, but no gradient
tells the weights to keep it (Williams & Peng 1990; Sutskever 2013, PhD thesis). Above the
lag, a growing share of the steps is covered; TBPTT(k1, k2) with `k2 - k1` extra steps of
backward window covers more steps per update at the same `k1`.
"""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from bptt_keras.engine import fit
from bptt_keras.models import build_model
from bptt_keras.plotting import plot_loss_curves
from bptt_keras.tasks import delayed_echo, delayed_echo_losses
from bptt_keras.truncation import covered_fraction

CONFIG = {
    "quick": {
        "lag": 4,
        "length": 20,
        "runs": {"full": [None, None], "k = 2": [2, 2], "TBPTT(4, 8)": [4, 8]},
        "cell": "lstm",
        "units": 16,
        "train_sequences": 512,
        "val_sequences": 128,
        "batch_size": 32,
        "epochs": 8,
        "learning_rate": 1e-2,
        "global_clipnorm": 1.0,
    },
    "full": {
        "lag": 8,
        "length": 40,
        "runs": {
            "full": [None, None],
            "k = 2": [2, 2],
            "k = 4": [4, 4],
            "k = 8": [8, 8],
            "k = 9": [9, 9],
            "k = 12": [12, 12],
            "k = 16": [16, 16],
            "k = 24": [24, 24],
            "TBPTT(4, 8)": [4, 8],
            "TBPTT(4, 12)": [4, 12],
            "TBPTT(2, 16)": [2, 16],
        },
        "cell": "gru",
        "units": 32,
        "train_sequences": 1024,
        "val_sequences": 256,
        "batch_size": 32,
        "epochs": 12,
        "learning_rate": 1e-2,
        "global_clipnorm": 1.0,
    },
}


def compare_truncations(
    train: tuple,
    val: tuple,
    runs: dict,
    *,
    lag: int,
    cell: str,
    units: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    global_clipnorm: float | None,
    seed: int,
    progress=None,
) -> tuple[list[dict], dict]:
    """Trains one model per truncation on the delayed echo and scores what it learned.

    Args:
        train, val: `(x, y)` of `delayed_echo(..., lag=lag)`, `(n, T, 1)` each.
        runs: name -> `(k1, k2)`; `(None, None)` is full BPTT.
        lag: the echo's delay.
        cell, units: the model (`build_model`).
        epochs, batch_size, learning_rate, global_clipnorm, seed: the training (Adam).
        progress: a `bptt_keras.progress.Progress` told of each finished run, or None.

    Returns:
        `(rows, curves)`: one row per run (k1, k2, the share of steps whose window covers
        the lag, final validation MSE, the exact references, whether the echo was learned),
        and each run's validation MSE per epoch.
    """
    x, y = train
    length = x.shape[1]
    reference = delayed_echo_losses(length, lag)
    # The 'forgets' level on the scored set itself: predicting 0 everywhere (its expectation
    # is (T - lag) / T; a finite set scores a little above or below).
    forgets = float(np.mean(np.square(val[1])))
    rows, curves = [], {}
    for name, (k1, k2) in runs.items():
        model = build_model(cell, units, seed=seed)
        history = fit(
            model,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            k1=k1,
            k2=k2,
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            global_clipnorm=global_clipnorm,
            validation_data=val,
            seed=seed,
            verbose=0,
        )
        losses = history.history["val_loss"]
        if progress is not None:
            progress.done(name)
        curves[name] = losses
        window = k2 or length
        rows.append(
            {
                "run": name,
                "k1": k1 or length,
                "k2": window,
                "lag": lag,
                "share of steps whose window covers the lag": covered_fraction(
                    length, k1 or length, window, lag
                ),
                "final val MSE": float(losses[-1]),
                "forgets (T - lag)/T": reference["forgets"],
                "forgets on the validation set": forgets,
                "final / forgets": float(losses[-1] / forgets),
                "remembers": reference["remembers"],
                "learned the echo": bool(losses[-1] < 0.5 * forgets),
            }
        )
    return rows, curves


def plot_truncations(rows: list[dict], curves: dict, *, lag: int, length: int) -> Figure:
    """Final loss against the gradient window, and the learning curves (`compare_truncations`'
    results)."""
    reference = delayed_echo_losses(length, lag)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_k, ax_curves = fig.subplots(1, 2)
    final = {r["run"]: r["final val MSE"] for r in rows}
    plain = sorted((r["k2"], r["run"]) for r in rows if r["k1"] == r["k2"])
    ks = [k for k, _ in plain]
    ax_k.plot(ks, [final[n] for _, n in plain], "o-", label="BPTT(k), k1 = k2 = k")
    for r in rows:
        if r["k1"] != r["k2"]:
            ax_k.plot(r["k2"], final[r["run"]], "s", ms=8, label=f"{r['run']} (at k = k2)")
    ax_k.axhline(reference["forgets"], color="k", ls="--", label="forgets: (T - lag) / T")
    ax_k.axvline(lag, color="0.5", lw=1, label=f"lag = {lag}")
    ax_k.set_xscale("log", base=2)
    ticks = sorted({*ks, lag})
    ax_k.set_xticks(ticks, [str(k) for k in ticks])
    ax_k.set_yscale("log")
    ax_k.set_xlabel("gradient window k2 (steps, log scale)")
    ax_k.set_ylabel("final validation MSE (log scale)")
    ax_k.set_title(f"Delayed echo, lag {lag}, T = {length}: final loss vs window")
    ax_k.grid(True, alpha=0.3)
    ax_k.legend(fontsize=7, loc="lower left")
    # up to a dozen runs: 20 distinct colours instead of the default cycle of 10
    palette = matplotlib.colormaps["tab20"].colors
    ax_curves.set_prop_cycle(color=palette[::2] + palette[1::2])
    plot_loss_curves(
        curves,
        ax=ax_curves,
        log_scale=True,
        title="Validation MSE per epoch",
        ylabel="validation MSE (log scale)",
    )
    ax_curves.axhline(reference["forgets"], color="k", ls="--", lw=1, label="forgets")
    ax_curves.legend(fontsize=7, ncols=2)
    return fig


def run(report) -> None:
    """Trains one model per truncation; writes `results.*` and `truncation.png`."""
    cfg, seed = report.config, report.seed
    lag, length = cfg["lag"], cfg["length"]
    train = delayed_echo(cfg["train_sequences"], length, lag=lag, seed=seed * 1000)
    val = delayed_echo(cfg["val_sequences"], length, lag=lag, seed=seed * 1000 + 1)
    reference = delayed_echo_losses(length, lag)
    rows, curves = compare_truncations(
        train, val, cfg["runs"], lag=lag, cell=cfg["cell"], units=cfg["units"],
        epochs=cfg["epochs"], batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"], global_clipnorm=cfg["global_clipnorm"], seed=seed,
        progress=report.progress(len(cfg["runs"])),
    )  # fmt: skip
    report.table(
        "results",
        rows,
        title=f"Delayed echo, lag {lag}, T = {length}: truncation window vs what is learned",
        notes="Exact references: 'remembers' 0, 'forgets' (T - lag)/T (the expected loss of "
        "predicting 0, the best any model without the dependency can do), and the same "
        "strategy's loss on the validation set itself ('forgets on the validation set'). "
        "Criterion: 'learned the echo' when the final MSE is below half the validation "
        "set's 'forgets' loss; a run between half and the full 'forgets' level learned part "
        "of it or nothing. Theory: BPTT(k) with k <= lag covers no step (Williams & Peng "
        "1990).",
    )
    report.data(
        "curves",
        [
            {"run": name, "epoch": epoch + 1, "val_loss": float(v)}
            for name, losses in curves.items()
            for epoch, v in enumerate(losses)
        ],
    )
    fig = plot_truncations(rows, curves, lag=lag, length=length)
    report.figure("truncation", fig, caption="Final loss against the truncation window")
    learned = [r["run"] for r in rows if r["learned the echo"]]
    missed = [r["run"] for r in rows if not r["learned the echo"]]
    report.finish(
        f"Learned the lag-{lag} echo: {', '.join(learned) or 'none'}. Stayed near the "
        f"'forgets' loss {rows[0]['forgets on the validation set']:.4g} (validation set; "
        f"{reference['forgets']:.3g} expected): {', '.join(missed) or 'none'}."
    )
