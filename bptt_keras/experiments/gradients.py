"""Experiment `gradients`: what BPTT does to gradients as they travel back in time.

Part 1 (Hochreiter 1991, the diploma thesis that first analysed vanishing and exploding
gradients, as reviewed in Hochreiter & Schmidhuber 1997, section 3.1; Bengio, Simard &
Frasconi 1994; Pascanu, Mikolov & Bengio 2013, section 2.1 "The mechanics"): a loss
on the last step only, and the norm of the total derivative `dL/dh_t` against the distance
`T - 1 - t` to that loss, for a tanh RNN whose recurrent matrix is rescaled to a largest
singular value `lambda_1` in {0.5, 0.9, 1, 1.5, 3}, and for LSTM, GRU and IRNN at their usual
initialisations. Each step multiplies the gradient by the Jacobian
`dh_t/dh_(t-1) = diag(f'(a_t)) U^T`, so `||dh_T/dh_t|| <= (lambda_1 * gamma)^(T - t)` with
`gamma = max |f'| = 1` for tanh: `lambda_1 < 1` is *sufficient* for vanishing, `lambda_1 > 1`
only *necessary* for exploding (not sufficient: `|tanh'| < 1` away from 0 shrinks each
step, so at `lambda_1 = 1.5` the measured growth is only about 1.06 per step). The bound is
checked numerically on every sequence and step.

Part 2 (Pascanu et al. 2013, section 2.3 "The geometrical interpretation" and Fig. 6; the
clipping rule is their section 3.2, Algorithm 1): the one-unit network
`x_t = w * sigmoid(x_(t-1)) + b`, `x_0 = 0.5`, loss `(sigmoid(x_50) - 0.7)^2`, whose error
surface over `(w, b)` has a near-vertical wall where the map's fixed points bifurcate. Plain
gradient descent that reaches the wall is thrown far away by one huge gradient; descent with
the gradient norm clipped (their Algorithm 1) takes a bounded step and keeps descending.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bptt_keras.diagnostics import gradient_norms_through_time, recurrent_spectrum, scale_recurrent
from bptt_keras.models import build_model
from bptt_keras.oracle import rnn_forward

# The cliff is the same small NumPy problem in both versions (Pascanu et al.'s setting).
_CLIFF = {"steps": 50, "start": [5.0, -2.25], "learning_rate": 1.0, "clip": 0.5, "updates": 60}

CONFIG = {
    "quick": {
        "units": 16,
        "steps": 30,
        "batch": 8,
        "scales": [0.5, 0.9, 1.0, 1.5, 3.0],
        "cells": ["lstm", "gru", "irnn"],
        "grid": 61,
        "cliff": _CLIFF,
    },
    "full": {
        "units": 64,
        "steps": 100,
        "batch": 32,
        "scales": [0.5, 0.9, 1.0, 1.5, 3.0],
        "cells": ["lstm", "gru", "irnn"],
        "grid": 241,
        "cliff": _CLIFF,
    },
}

_CELL_LABELS = {"lstm": "LSTM", "gru": "GRU", "irnn": "IRNN (identity + ReLU)"}


def _data(batch: int, steps: int, seed: int):
    """Inputs N(0, 1), a random target, and a mask that scores only the last step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, 1)).astype(np.float32)
    y = rng.standard_normal((batch, steps, 1)).astype(np.float32)
    mask = np.zeros((batch, steps), np.float32)
    mask[:, -1] = 1.0
    return x, y, mask


def jacobian_bound_ratio(weights: list[np.ndarray], x: np.ndarray, scale: float) -> np.ndarray:
    """Largest `||dh_T/dh_t||_2 / scale^(T - t)` over the batch, for every `t` (tanh RNN).

    Args:
        weights: `[W, U, b, V, c]` of a SimpleRNN(tanh) + Dense model.
        x: `(batch, time, in)` inputs.
        scale: the largest singular value of `U` (`lambda_1`; gamma = 1 for tanh).

    Returns:
        `(time,)` ratios; the bound of Pascanu et al. 2013 says every entry is `<= 1`.
    """
    h = rnn_forward(weights, x)["h"]  # (batch, time, units), float64
    recurrent = np.asarray(weights[1], np.float64)
    batch, steps, units = h.shape
    product = np.broadcast_to(np.eye(units), (batch, units, units)).copy()  # dh_T/dh_T
    ratios = np.zeros(steps)
    for t in range(steps - 1, -1, -1):
        norms = np.linalg.norm(product, ord=2, axis=(1, 2))
        ratios[t] = norms.max() / scale ** (steps - 1 - t)
        # dh_t/dh_(t-1) = diag(1 - h_t^2) U^T (row-vector convention h_t = tanh(.. + h U))
        jac = (1.0 - h[:, t, :, None] ** 2) * recurrent.T[None]
        product = product @ jac
    return ratios


def _decay_factor(norms: np.ndarray) -> float:
    """Geometric mean per-step factor of the gradient norm going back (slope of log norm)."""
    distance = np.arange(len(norms))[::-1]
    positive = norms > 0
    slope = np.polyfit(distance[positive], np.log(norms[positive]), 1)[0]
    return float(np.exp(slope))


def _regime(scale: float) -> str:
    if scale < 1.0:
        return "vanishing guaranteed (lambda_1 < 1)"
    if scale == 1.0:
        return "boundary"
    return "exploding possible (lambda_1 > 1)"


def cliff_loss_and_grad(w, b, *, steps: int = 50, x0: float = 0.5, target: float = 0.7):
    """Loss and BPTT gradient of Pascanu et al.'s one-unit network, vectorised over `(w, b)`.

    Forward `x_t = w s(x_(t-1)) + b` (s: sigmoid), `L = (s(x_T) - target)^2`; backward the
    BPTT recursion `d_(t-1) = d_t * w * s'(x_(t-1))`, `dL/dw = sum_t d_t s(x_(t-1))`,
    `dL/db = sum_t d_t`.

    Returns:
        `(loss, dL/dw, dL/db)`, arrays broadcast from `w` and `b`.
    """
    w, b = np.broadcast_arrays(np.asarray(w, np.float64), np.asarray(b, np.float64))
    xs = [np.full(w.shape, x0)]
    for _ in range(steps):
        xs.append(w / (1.0 + np.exp(-xs[-1])) + b)
    s_last = 1.0 / (1.0 + np.exp(-xs[-1]))
    loss = (s_last - target) ** 2
    delta = 2.0 * (s_last - target) * s_last * (1.0 - s_last)  # dL/dx_T
    dw, db = np.zeros(w.shape), np.zeros(w.shape)
    for t in range(steps, 0, -1):
        s_prev = 1.0 / (1.0 + np.exp(-xs[t - 1]))
        dw += delta * s_prev
        db += delta
        delta = delta * w * s_prev * (1.0 - s_prev)
    return loss, dw, db


def descend(start, *, learning_rate: float, clip: float | None, updates: int, steps: int = 50):
    """Gradient descent on the cliff, plain (`clip=None`) or with the norm clipped to `clip`.

    Returns:
        `(updates + 1, 2)` array of `(w, b)` along the path.
    """
    theta = np.asarray(start, np.float64)
    path = [theta.copy()]
    for _ in range(updates):
        _, dw, db = cliff_loss_and_grad(theta[0], theta[1], steps=steps)
        grad = np.array([float(dw), float(db)])
        norm = np.linalg.norm(grad)
        if clip is not None and norm > clip:  # Pascanu et al. 2013, Algorithm 1
            grad *= clip / norm
        theta = theta - learning_rate * grad
        path.append(theta.copy())
    return np.array(path)


def _norm_row(label, model, norms, worst_ratio, bound_holds, theory) -> dict:
    """One row of the gradient-norm table (`norms[t]` = ||dL/dh_t||, loss at the last step)."""
    return {
        "model": label,
        "lambda_1 (measured)": recurrent_spectrum(model)["max_singular_value"],
        "norm at distance 0": float(norms[-1]),
        f"norm at distance {len(norms) - 1}": float(norms[0]),
        "far / near": float(norms[0] / norms[-1]),
        "per-step factor": _decay_factor(norms),
        "max ||dh_T/dh_t|| / lambda_1^(T-t)": worst_ratio,
        "bound holds": bound_holds,
        "theory (Pascanu et al. 2013, sec. 2.1)": theory,
    }


def _norms_part(report, cfg):
    units, steps, batch = cfg["units"], cfg["steps"], cfg["batch"]
    x, y, mask = _data(batch, steps, report.seed)
    curves, rows = {}, []
    for scale in cfg["scales"]:
        model = build_model("simple_rnn", units, init="orthogonal", seed=report.seed)
        scale_recurrent(model, scale)
        norms = gradient_norms_through_time(model, x, y, sample_weight=mask)
        # distance 0 is the identity (ratio 1 by definition): the bound is tested on every
        # earlier step
        worst = float(jacobian_bound_ratio(model.get_weights(), x, scale)[:-1].max())
        label = f"tanh RNN, lambda_1 = {scale:g}"
        curves[label] = norms
        rows.append(_norm_row(label, model, norms, worst, worst <= 1.0 + 1e-6, _regime(scale)))
    for cell in cfg["cells"]:
        if cell == "irnn":
            model = build_model("simple_rnn", units, init="irnn", seed=report.seed)
        else:
            model = build_model(cell, units, seed=report.seed)
        norms = gradient_norms_through_time(model, x, y, sample_weight=mask)
        label = _CELL_LABELS[cell]
        curves[label] = norms
        rows.append(_norm_row(label, model, norms, None, None, "gated / identity: no tanh bound"))
    report.table(
        "gradient_norms",
        rows,
        title=f"||dL/dh_t|| for a loss on the last of T = {steps} steps ({units} units)",
        notes="'far / near' is the norm at the first step over the norm at the last; the "
        "per-step factor is exp(slope) of log-norm vs distance. Published: a tanh RNN's "
        "gradient vanishes for lambda_1 < 1 (sufficient condition) and can explode only if "
        "lambda_1 > 1 (a necessary condition, not a sufficient one: growth per step is "
        "lambda_1 times |tanh'| < 1), Pascanu, Mikolov & Bengio 2013, section 2.1; first "
        "analysed by Hochreiter 1991 (diploma thesis); Bengio, Simard & Frasconi 1994.",
    )
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2, sharey=True)
    distance = np.arange(steps)[::-1]
    for label, norms in curves.items():
        ax = left if label.startswith("tanh") else right
        ax.semilogy(distance, norms, label=label)
    for ax, title in [(left, "tanh RNN, recurrent matrix rescaled"), (right, "other cells")]:
        ax.set_xlabel("distance to the loss, T - 1 - t (steps)")
        ax.set_title(title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("||dL/dh_t|| (log scale)")
    fig.suptitle("Gradient norm through time: vanishing below lambda_1 = 1, exploding above")
    report.figure("gradient_norms", fig, caption="Gradient norm against distance to the loss")
    return rows


def _cliff_part(report, cfg):
    c = cfg["cliff"]
    ws = np.linspace(2.0, 10.0, cfg["grid"])
    bs = np.linspace(-6.0, 0.0, cfg["grid"])
    grid_w, grid_b = np.meshgrid(ws, bs)
    surface, _, _ = cliff_loss_and_grad(grid_w, grid_b, steps=c["steps"])
    paths = {
        "plain gradient descent": descend(
            c["start"], learning_rate=c["learning_rate"], clip=None, updates=c["updates"]
        ),
        f"clipped at norm {c['clip']:g}": descend(
            c["start"], learning_rate=c["learning_rate"], clip=c["clip"], updates=c["updates"]
        ),
    }
    rows = []
    for label, path in paths.items():
        moves = np.linalg.norm(np.diff(path, axis=0), axis=1)
        final_loss, _, _ = cliff_loss_and_grad(path[-1, 0], path[-1, 1], steps=c["steps"])
        rows.append(
            {
                "method": label,
                "start (w, b)": f"({c['start'][0]:g}, {c['start'][1]:g})",
                "learning rate": c["learning_rate"],
                "updates": c["updates"],
                "largest step": float(moves.max()),
                "at update": int(moves.argmax()) + 1,
                "final (w, b)": f"({path[-1, 0]:.3g}, {path[-1, 1]:.3g})",
                "final loss": float(final_loss),
            }
        )
    report.table(
        "cliff",
        rows,
        title="Pascanu et al.'s cliff: x_t = w sigmoid(x_(t-1)) + b, loss (sigmoid(x_50) - 0.7)^2",
        notes="Published (Pascanu, Mikolov & Bengio 2013, Fig. 6, qualitative): at the wall "
        "the plain step is huge and throws the parameters away from the valley; the clipped "
        "step has bounded length and descends along the wall.",
    )
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    image = ax.pcolormesh(grid_w, grid_b, np.log10(surface + 1e-12), shading="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="log10 loss")
    styles = [("tab:red", "o-", 5, 3), ("white", ".--", 3, 2)]  # plain on top, clipped below
    for (label, path), (colour, marker, ms, z) in zip(paths.items(), styles, strict=True):
        inside = (
            (path[:, 0] >= ws[0])
            & (path[:, 0] <= ws[-1])
            & (path[:, 1] >= bs[0])
            & (path[:, 1] <= bs[-1])
        )
        first_out = int(np.argmin(inside)) if not inside.all() else len(path)
        shown = path[:first_out]
        ax.plot(shown[:, 0], shown[:, 1], marker, ms=ms, color=colour, label=label, zorder=z)
        if first_out < len(path):
            ax.annotate(
                f"update {first_out}: thrown to\n(w, b) = ({path[first_out, 0]:.3g}, "
                f"{path[first_out, 1]:.3g})",
                xy=tuple(shown[-1]),
                xytext=(3.0, -5.5),
                color=colour,
                fontsize=8,
                arrowprops={"arrowstyle": "->", "color": colour},
            )
    ax.set_xlim(ws[0], ws[-1])
    ax.set_ylim(bs[0], bs[-1])
    ax.set_xlabel("w (recurrent weight)")
    ax.set_ylabel("b (bias)")
    ax.set_title("Error surface with a cliff; plain vs clipped descent")
    ax.legend(loc="upper right", fontsize=8)
    report.figure("cliff", fig, caption="Pascanu et al.'s cliff with both descent paths")
    return rows


def run(report) -> None:
    """Runs both parts and writes `gradient_norms.*` and `cliff.*` into the report."""
    cfg = report.config
    norms = _norms_part(report, cfg)
    cliff = _cliff_part(report, cfg)
    by_model = {r["model"]: r for r in norms}
    small = by_model["tanh RNN, lambda_1 = 0.5"]["far / near"]
    large = by_model["tanh RNN, lambda_1 = 3"]["far / near"]
    plain, clipped = cliff
    report.finish(
        f"tanh RNN: the gradient reaching the first step is {small:.2g} x the last step's at "
        f"lambda_1 = 0.5 and {large:.2g} x at lambda_1 = 3; the bound "
        f"(lambda_1)^(T-t) held for every scale: "
        f"{all(r['bound holds'] for r in norms if r['bound holds'] is not None)}. Cliff: "
        f"largest plain step {plain['largest step']:.3g} (final loss {plain['final loss']:.3g})"
        f", clipped {clipped['largest step']:.3g} (final loss {clipped['final loss']:.3g})."
    )
