r"""A hand-derived NumPy reference for (truncated) backpropagation through time.

The test-suite checks TensorFlow's `GradientTape` gradients against this module, so it is
written independently of TensorFlow and Keras: pure NumPy, float64 throughout, every
derivative spelled out below and coded by hand (micrograd's "check against an independent
implementation" idea).

Model: a one-layer Elman RNN with a per-step linear head, parameterised exactly like Keras'
`SimpleRNN(units, return_sequences=True)` followed by `Dense(out)`, so that
`model.get_weights()` gives `params = [W, U, b, V, c]` in this order:

    W (in, units)   U (units, units)   b (units,)   V (units, out)   c (out,)

Forward pass, for t = 0 .. T-1 (row vectors, one row per batch element):

    a_t    = x_t W + h_{t-1} U + b            (B, units)   h_{-1} = h0 (zeros by default)
    h_t    = act(a_t)                         (B, units)   act in {tanh, relu}
    yhat_t = h_t V + c                        (B, out)

Loss, with F = out:

    L = kappa * sum_{b,t,f} (yhat_{b,t,f} - y_{b,t,f})^2
    kappa = 1 / (B T F)   reduction="mean"           (Keras "mse")
    kappa = 1 / (B F)     reduction="sum_over_time"  (= T times the "mean" loss)

Backward pass (full BPTT). Write e_t = dL/dyhat_t, g_t = dL/dh_t (the *total* derivative,
through the head and every later step) and delta_t = dL/da_t:

    e_t     = 2 kappa (yhat_t - y_t)                              (B, out)
    g_t     = e_t V^T + delta_{t+1} U^T,   delta_T = 0            (B, units)
    delta_t = g_t * act'(a_t)              (elementwise)          (B, units)
    act'(a) = 1 - tanh(a)^2 for tanh;  1[a > 0] for relu (0 at a = 0)

    dL/dW = sum_t x_t^T delta_t        dL/dU = sum_t h_{t-1}^T delta_t
    dL/db = sum_t 1^T delta_t          dL/dV = sum_t h_t^T e_t        dL/dc = sum_t 1^T e_t

Truncation, TBPTT(k1, k2) of Williams & Peng (1990), "An efficient gradient-based algorithm
for on-line training of recurrent network trajectories", with the weights held fixed: time is
cut into blocks [s, e) with s = 0, k1, 2 k1, ... and e = min(s + k1, T). The loss terms of a
block back-propagate through the block and the k2 - k1 steps before it, i.e. down to step
start = max(0, s - (k2 - k1)); the state h_{start-1} entering that step is a constant (the
gradient is cut there, as `tf.stop_gradient` would). The returned gradient is the sum over
blocks of the gradients of the block losses, each scaled by the same kappa as L:

    t            0  1  2  3  4  5  6        T = 7, k1 = 2, k2 = 3
    block s=0    L  L                      start = 0
    block s=2       .  L  L                start = 1
    block s=4             .  L  L          start = 3
    block s=6                   .  L       start = 5     (last block is shorter)

    L: loss terms of the block, back-propagated through;  .: extra look-back steps.

k1 = k2 = k is plain truncated BPTT (chunks [0, k), [k, 2k), ... with the state cut at each
chunk start); k1 = k2 = None (or any k1 = k2 >= T) is full BPTT. Forward values, the loss and
the head gradients dL/dV, dL/dc never depend on the truncation: only the paths *between* time
steps are cut, which biases the recurrent gradients towards short dependencies.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bptt_keras._validation import check_choice, describe

ACTIVATIONS = ("tanh", "relu")
REDUCTIONS = ("mean", "sum_over_time")

_PARAM_NAMES = ("W", "U", "b", "V", "c")


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def _tanh_derivative(a: np.ndarray, h: np.ndarray) -> np.ndarray:
    return 1.0 - h * h  # from h = tanh(a): cheaper and exactly what Keras differentiates


def _relu_derivative(a: np.ndarray, h: np.ndarray) -> np.ndarray:
    return (a > 0.0).astype(np.float64)  # TensorFlow's convention: 0 at the kink a = 0


# name -> (act, act' given (a, h = act(a)))
_ACT: dict[str, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    "tanh": (np.tanh, _tanh_derivative),
    "relu": (_relu, _relu_derivative),
}


def _as_float64(value: Any, *, name: str) -> np.ndarray:
    try:
        return np.array(value, dtype=np.float64)  # a copy: callers' arrays are never touched
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`{name}` must be an array of real numbers. Received: {describe(value)}"
        ) from err


def _check_inputs(
    params: Sequence[Any], x: Any, y: Any | None, h0: Any | None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None, np.ndarray]:
    """Converts everything to float64 and checks that the shapes fit together."""
    if isinstance(params, np.ndarray) or not isinstance(params, Sequence) or len(params) != 5:
        raise ValueError(
            "`params` must be a sequence of the 5 arrays [W, U, b, V, c] (the order of "
            f"`model.get_weights()` for SimpleRNN + Dense). Received: {describe(params)}"
        )
    params = [_as_float64(p, name=n) for p, n in zip(params, _PARAM_NAMES, strict=True)]
    W, U, b, V, c = params
    shapes = ", ".join(f"{n}{p.shape}" for n, p in zip(_PARAM_NAMES, params, strict=True))
    units = U.shape[0] if U.ndim == 2 else -1
    if not (
        W.ndim == 2
        and U.shape == (units, units)
        and W.shape[1] == units
        and b.shape == (units,)
        and V.ndim == 2
        and V.shape[0] == units
        and c.shape == (V.shape[1],)
    ):
        raise ValueError(
            "`params` must have shapes W (in, units), U (units, units), b (units,), "
            f"V (units, out), c (out,). Received: {shapes}"
        )
    x = _as_float64(x, name="x")
    if x.ndim != 3 or x.shape[2] != W.shape[0] or x.shape[1] < 1:
        raise ValueError(
            f"`x` must have shape (batch, time >= 1, in={W.shape[0]}) to match W. "
            f"Received: x.shape={x.shape}, {shapes}"
        )
    batch, time, _ = x.shape
    if y is not None:
        y = _as_float64(y, name="y")
        if y.shape != (batch, time, V.shape[1]):
            raise ValueError(
                f"`y` must have shape (batch, time, out) = {(batch, time, V.shape[1])} to match "
                f"`x` and V. Received: y.shape={y.shape}, x.shape={x.shape}, {shapes}"
            )
    if h0 is None:
        h0 = np.zeros((batch, units))
    else:
        h0 = _as_float64(h0, name="h0")
        if h0.shape != (batch, units):
            raise ValueError(
                f"`h0` must have shape (batch, units) = {(batch, units)}. "
                f"Received: h0.shape={h0.shape}"
            )
    return params, x, y, h0


def _check_window(value: Any, *, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")
    return int(value)


def _scale(reduction: str, batch: int, time: int, out: int) -> float:
    """kappa in the module docstring: the constant every squared error is multiplied by."""
    return 1.0 / (batch * time * out) if reduction == "mean" else 1.0 / (batch * out)


def _forward(
    params: list[np.ndarray], x: np.ndarray, h0: np.ndarray, activation: str
) -> dict[str, np.ndarray]:
    """The loop over time on validated float64 arrays; see `rnn_forward`."""
    W, U, b, V, c = params
    act = _ACT[activation][0]
    batch, time, _ = x.shape
    a = np.empty((batch, time, U.shape[0]))
    h = np.empty_like(a)
    h_prev = h0
    for t in range(time):
        a[:, t] = x[:, t] @ W + h_prev @ U + b  # (B, units)
        h[:, t] = h_prev = act(a[:, t])
    yhat = h @ V + c  # (B, T, out)
    return {"a": a, "h": h, "yhat": yhat}


def rnn_forward(
    params: Sequence[Any],
    x: Any,
    *,
    activation: str = "tanh",
    h0: Any | None = None,
) -> dict[str, np.ndarray]:
    """Runs the Elman RNN and its per-step linear head forward, in float64.

    Args:
        params: the 5 arrays `[W, U, b, V, c]` with shapes `(in, units)`, `(units, units)`,
            `(units,)`, `(units, out)`, `(out,)`, i.e. `model.get_weights()` of
            `SimpleRNN(units, return_sequences=True)` followed by `Dense(out)`.
        x: inputs, `(batch, time, in)`.
        activation: `"tanh"` or `"relu"`.
        h0: initial state `h_{-1}`, `(batch, units)`; zeros if None.

    Returns:
        A dict of float64 arrays: `"a"` pre-activations `(batch, time, units)`, `"h"` states
        `(batch, time, units)`, `"yhat"` outputs `(batch, time, out)`.

    Raises:
        ValueError: shapes that do not fit together, or an unknown activation.

    Example:

    >>> params = [np.eye(1), np.zeros((1, 1)), np.zeros(1), 2 * np.eye(1), np.ones(1)]
    >>> rnn_forward(params, np.zeros((1, 3, 1)))["yhat"][0, :, 0]
    array([1., 1., 1.])
    """
    check_choice(activation, name="activation", choices=ACTIVATIONS)
    params, x, _, h0 = _check_inputs(params, x, None, h0)
    return _forward(params, x, h0, activation)


def _loss(
    params: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    h0: np.ndarray,
    activation: str,
    reduction: str,
) -> float:
    yhat = _forward(params, x, h0, activation)["yhat"]
    return float(_scale(reduction, *y.shape) * np.sum((yhat - y) ** 2))


def numpy_bptt(
    params: Sequence[Any],
    x: Any,
    y: Any,
    *,
    k1: int | None = None,
    k2: int | None = None,
    activation: str = "tanh",
    reduction: str = "mean",
    h0: Any | None = None,
) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Loss and (truncated) BPTT gradients of the squared error, derived by hand.

    Implements the backward equations and the TBPTT(k1, k2) blocks of the module docstring:
    the loss terms of block `[s, min(s + k1, T))` back-propagate down to step
    `max(0, s - (k2 - k1))`, where the incoming state is a constant, and the blocks' gradients
    are summed. `k1 = k2 = None` (or `k1 = k2 >= T`) is full BPTT.

    Args:
        params: the 5 arrays `[W, U, b, V, c]`, shapes `(in, units)`, `(units, units)`,
            `(units,)`, `(units, out)`, `(out,)` (Keras `get_weights()` order).
        x: inputs, `(batch, time, in)`.
        y: targets, `(batch, time, out)`.
        k1: steps between truncation points (block length); None for full BPTT. Values
            larger than `time` mean one block.
        k2: steps back-propagated from the end of a full block, `k2 >= k1`; defaults to `k1`.
        activation: `"tanh"` or `"relu"`.
        reduction: `"mean"` (Keras "mse", divides by batch * time * out) or
            `"sum_over_time"` (divides by batch * out; `time` times the mean).
        h0: initial state, `(batch, units)`; zeros if None. Never differentiated.

    Returns:
        `(loss, grads, dL_dh)`: `loss` the full, untruncated loss as a float (truncation changes
        gradients only); `grads` float64 arrays aligned with `params`; `dL_dh` the float64
        `(batch, time, units)` derivative of the loss with respect to each state `h_t`. Under
        full BPTT it is the total derivative (through the head and all later steps), the
        quantity whose norm per step is plotted in vanishing-gradient studies; under truncation
        it is the same sum over blocks as the gradients, i.e. the derivative of the truncated
        surrogate (so it no longer obeys the full recursion across cut points).

    Raises:
        ValueError: `k1`/`k2` not positive integers (bools and floats included), `k1 > k2`,
            `k2` given without `k1`, shapes that do not fit together, an unknown activation or
            reduction.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> params = [rng.normal(size=s) for s in [(2, 3), (3, 3), (3,), (3, 1), (1,)]]
    >>> x, y = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 1))
    >>> loss, grads, dL_dh = numpy_bptt(params, x, y, k1=2)
    >>> [g.shape for g in grads], dL_dh.shape
    ([(2, 3), (3, 3), (3,), (3, 1), (1,)], (4, 6, 3))
    """
    check_choice(activation, name="activation", choices=ACTIVATIONS)
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    k1 = _check_window(k1, name="k1")
    k2 = _check_window(k2, name="k2")
    if k1 is None and k2 is not None:
        raise ValueError(
            f"`k2` needs `k1` (the block length); pass both or neither. Received: k1=None, k2={k2}"
        )
    if k1 is not None and k2 is not None and k1 > k2:
        raise ValueError(f"`k1` must be <= `k2`. Received: k1={k1}, k2={k2}")
    params, x, y, h0 = _check_inputs(params, x, y, h0)
    W, U, b, V, c = params
    batch, time, _ = x.shape
    if k1 is None:
        k1 = k2 = time
    elif k2 is None:
        k2 = k1

    fwd = _forward(params, x, h0, activation)
    a, h, yhat = fwd["a"], fwd["h"], fwd["yhat"]
    kappa = _scale(reduction, batch, time, y.shape[2])
    loss = float(kappa * np.sum((yhat - y) ** 2))

    e = 2.0 * kappa * (yhat - y)  # dL/dyhat_t, (B, T, out)
    direct = e @ V.T  # the head's part of dL/dh_t, (B, T, units)
    dact = _ACT[activation][1](a, h)  # act'(a_t), (B, T, units)

    # Only dL/dh needs the block loop: every parameter gradient below is linear in it, so the
    # sum over blocks of block gradients equals the gradient computed from the summed dL/dh.
    dL_dh = np.zeros_like(h)
    for s in range(0, time, k1):
        end = min(s + k1, time)
        start = max(0, s - (k2 - k1))
        carry = np.zeros((batch, U.shape[0]))  # delta_{t+1} U^T; zero past the block's end
        for t in range(end - 1, start - 1, -1):
            g = (carry + direct[:, t]) if t >= s else carry  # look-back steps carry no loss
            dL_dh[:, t] += g
            carry = (g * dact[:, t]) @ U.T
        # The loop stops at `start`: h_{start-1} is a constant, nothing flows into it.

    delta = dL_dh * dact  # dL/da_t, (B, T, units)
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # h_{t-1}, (B, T, units)
    grads = [
        np.einsum("bti,btu->iu", x, delta),
        # h_{start-1} U still feeds a_start, so dU keeps that term even where the state is cut.
        np.einsum("bti,btu->iu", h_prev, delta),
        delta.sum(axis=(0, 1)),
        np.einsum("btu,bto->uo", h, e),
        e.sum(axis=(0, 1)),
    ]
    return loss, grads, dL_dh


def finite_difference_gradients(
    params: Sequence[Any],
    x: Any,
    y: Any,
    *,
    eps: float = 1e-6,
    activation: str = "tanh",
    reduction: str = "mean",
    h0: Any | None = None,
) -> list[np.ndarray]:
    """Central-difference gradients of the full loss with respect to every parameter entry.

    `(L(p + eps) - L(p - eps)) / (2 eps)` per entry, in float64: error O(eps^2) from the
    Taylor remainder plus O(1e-16 / eps) from rounding. Two forward passes per parameter
    entry, so meant for the small sizes of tests. Not valid where a relu pre-activation lies
    within about `eps` of 0.

    Args:
        params: the 5 arrays `[W, U, b, V, c]` (see `numpy_bptt`); never modified.
        x: inputs, `(batch, time, in)`.
        y: targets, `(batch, time, out)`.
        eps: step, a positive number.
        activation: `"tanh"` or `"relu"`.
        reduction: `"mean"` or `"sum_over_time"`.
        h0: initial state, `(batch, units)`; zeros if None.

    Returns:
        float64 arrays aligned with `params`.

    Raises:
        ValueError: a non-positive `eps`, shapes that do not fit together, an unknown
            activation or reduction.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> params = [rng.normal(size=s) for s in [(2, 3), (3, 3), (3,), (3, 1), (1,)]]
    >>> x, y = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6, 1))
    >>> fd = finite_difference_gradients(params, x, y)
    >>> all(np.allclose(f, g) for f, g in zip(fd, numpy_bptt(params, x, y)[1]))
    True
    """
    check_choice(activation, name="activation", choices=ACTIVATIONS)
    check_choice(reduction, name="reduction", choices=REDUCTIONS)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < np.inf:
        raise ValueError(f"`eps` must be a positive finite number. Received: eps={eps!r}")
    params, x, y, h0 = _check_inputs(params, x, y, h0)
    grads = []
    for p in params:
        grad = np.empty_like(p)
        for i in np.ndindex(p.shape):
            original = p[i]
            p[i] = original + eps
            plus = _loss(params, x, y, h0, activation, reduction)
            p[i] = original - eps
            minus = _loss(params, x, y, h0, activation, reduction)
            p[i] = original  # `params` are float64 copies, but leave them as they were
            grad[i] = (plus - minus) / (2.0 * eps)
        grads.append(grad)
    return grads
