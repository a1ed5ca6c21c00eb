"""Synthetic sequence tasks with known structure (and, where possible, a known best loss)."""

from __future__ import annotations

import numpy as np

from bptt_keras._validation import check_float, check_int


def noisy_sines(
    n: int,
    length: int,
    *,
    noise: float = 0.1,
    min_period: float = 10.0,
    max_period: float = 40.0,
    seed: int | None = None,
) -> np.ndarray:
    """Sine waves with random period and phase plus Gaussian observation noise.

    `s[i, t] = sin(2 pi t / P_i + phi_i) + noise * e[i, t]`, with `P_i ~ U(min_period,
    max_period)`, `phi_i ~ U(0, 2 pi)`, `e ~ N(0, 1)`. Unlike the source document's uniform
    noise, the next value is predictable from the past up to the noise: no next-step
    predictor can have an expected MSE below `noise**2`, and a good one approaches it.

    Args:
        n: number of sequences.
        length: steps per sequence.
        noise: standard deviation of the observation noise (>= 0).
        min_period, max_period: range of periods, in steps.
        seed: seed of the NumPy generator (same seed, same data).

    Returns:
        float32 array `(n, length, 1)`.

    Example:

    >>> x, y = next_step_pairs(noisy_sines(1000, 101, seed=0))  # (1000, 100, 1) each
    """
    n = check_int(n, name="n")
    length = check_int(length, name="length")
    noise = check_float(noise, name="noise", low=0.0)
    min_period = check_float(min_period, name="min_period", low=2.0)
    max_period = check_float(max_period, name="max_period", low=min_period)
    rng = np.random.default_rng(seed)
    period = rng.uniform(min_period, max_period, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    t = np.arange(length)[None, :]
    clean = np.sin(2 * np.pi * t / period + phase)
    return (clean + noise * rng.standard_normal((n, length)))[..., None].astype(np.float32)


def delayed_echo(
    n: int, length: int, *, lag: int, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A task whose only dependency has a known length: repeat the input `lag` steps later.

        x   x0 x1 x2 x3 x4 x5 ...        (i.i.d. N(0, 1))
        y    0  0  0 x0 x1 x2 ...        (lag = 3: y_t = x_(t - lag), and 0 for t < lag)

    The best mean squared error is known exactly: 0 for a model that keeps `x_(t-lag)` in its
    state, and `(length - lag) / length` for one that cannot (its best guess is the mean, 0).
    Gradient paths must span `lag` steps, so truncated BPTT with a window that is too short
    cannot learn it — the experiment that shows what truncation costs.

    Args:
        n: number of sequences.
        length: steps per sequence, `> lag`.
        lag: the delay, `>= 1`.
        seed: NumPy generator seed.

    Returns:
        `(x, y)`, float32 arrays `(n, length, 1)`.
    """
    n = check_int(n, name="n")
    length = check_int(length, name="length", minimum=2)
    lag = check_int(lag, name="lag")
    if lag >= length:
        raise ValueError(
            f"`lag` must be smaller than `length`. Received: lag={lag}, length={length}"
        )
    x = np.random.default_rng(seed).standard_normal((n, length, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, lag:] = x[:, :-lag]
    return x, y


def delayed_echo_losses(length: int, lag: int) -> dict[str, float]:
    """The exact reference losses of `delayed_echo` (expected MSE over all steps).

    Returns:
        `{"remembers": 0.0, "forgets": (length - lag) / length}`.
    """
    return {"remembers": 0.0, "forgets": (length - lag) / length}
