r"""A hand-derived NumPy reference for (truncated) BPTT through a GRU, in float64.

The GRU sibling of `bptt_keras.oracle` (whose docstring explains the truncation and the loss
scaling, shared here): pure NumPy, no TensorFlow, every derivative written out below, so the
engine's GRU gradients (plain autodiff and the hand-derived fast path alike) can be checked
against an independent implementation.

Model: `GRU(units, return_sequences=True)` followed by `Dense(out)`, parameterised exactly as
Keras 3 (`model.get_weights()` gives `[W, U, b, V, c]`), gate order z, r, h:

    W (in, 3u)   U (u, 3u)   b (2, 3u) if reset_after else (3u,)   V (u, out)   c (out,)

Forward pass, for t = 0 .. T-1 (row vectors; sigma the logistic function):

    [xz, xr, xh] = x_t W + b_in                     b_in = b[0] (reset_after) or b
    reset_after:       [hz, hr, hh] = h_{t-1} U + b[1]
                       z = sigma(xz + hz),  r = sigma(xr + hr),  n = tanh(xh + r * hh)
    not reset_after:   [hz, hr] = h_{t-1} U[:, :2u]
                       z = sigma(xz + hz),  r = sigma(xr + hr),  n = tanh(xh + (r * h_{t-1}) U_h)
    h_t    = z * h_{t-1} + (1 - z) * n
    yhat_t = h_t V + c,        L = kappa * sum (yhat - y)^2  (kappa as in `oracle`)

Backward, for g = dL/dh_t (the total derivative: head at t plus the carry from t + 1):

    dz = g (h_{t-1} - n),   dn = g (1 - z)
    a_z' = dz z (1 - z),    a_n' = dn (1 - n^2)                pre-activation gradients
    reset_after:       a_r' = a_n' hh r (1 - r)
                       dL/d(x W + b_in) = [a_z', a_r', a_n']
                       dL/d(h U + b[1]) = [a_z', a_r', a_n' r]   =: m
                       dW += x^T [..],  db[0] += sum [..],  dU += h_{t-1}^T m,  db[1] += sum m
                       g_{t-1} = g z + m U^T
    not reset_after:   q = a_n' U_h^T                          (dL/d(r * h_{t-1}))
                       a_r' = q h_{t-1} r (1 - r)
                       dW += x^T [a_z', a_r', a_n'],  db += sum [a_z', a_r', a_n']
                       dU[:, :2u] += h_{t-1}^T [a_z', a_r'],  dU[:, 2u:] += (r h_{t-1})^T a_n'
                       g_{t-1} = g z + q r + [a_z', a_r'] U[:, :2u]^T
    dV = sum_t h_t^T e_t,  dc = sum_t e_t,  e_t = 2 kappa (yhat_t - y_t)
"""

from __future__ import annotations

import numpy as np

from bptt_keras.oracle import _check_window, _scale


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def gru_bptt(
    params,
    x,
    y,
    *,
    reset_after: bool = True,
    k1: int | None = None,
    k2: int | None = None,
    reduction: str = "mean",
) -> tuple[float, list[np.ndarray]]:
    """Loss and (truncated) BPTT gradients of a GRU + linear head, by hand, in float64.

    Args:
        params: `[W, U, b, V, c]` as `model.get_weights()` of `GRU(u, return_sequences=True,
            reset_after=...)` + `Dense(out)` (shapes in the module docstring).
        x: `(batch, time, in)`; y: `(batch, time, out)`.
        reset_after: Keras' `reset_after` of the layer.
        k1, k2: TBPTT(k1, k2) as in `bptt_keras.oracle.numpy_bptt` (None, None: full BPTT;
            k2 defaults to k1).
        reduction: `"mean"` (Keras' `mse`) or `"sum_over_time"`.

    Returns:
        `(loss, [dW, dU, db, dV, dc])`, float64, shaped as `params`.

    Example:

    >>> loss, grads = gru_bptt(model.get_weights(), x, y, k1=5, k2=10)
    """
    W, U, b, V, c = (np.array(p, dtype=np.float64) for p in params)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    batch, time, _ = x.shape
    units = U.shape[0]
    if b.shape != ((2, 3 * units) if reset_after else (3 * units,)):
        raise ValueError(
            f"`params`' bias must have shape {(2, 3 * units) if reset_after else (3 * units,)} "
            f"for reset_after={reset_after}. Received {b.shape}"
        )
    k1, k2 = _check_window(k1, name="k1"), _check_window(k2, name="k2")
    k1 = time if k1 is None else k1
    k2 = k1 if k2 is None else k2
    if k2 < k1:
        raise ValueError(f"`k2` must be >= `k1`. Received k1={k1}, k2={k2}")
    kappa = _scale(reduction, batch, time, y.shape[2])
    b_in = b[0] if reset_after else b
    u_zr, u_h = U[:, : 2 * units], U[:, 2 * units :]

    # Forward, keeping every quantity the backward pass multiplies by.
    h_prev = np.zeros((batch, units))
    saved = []
    hs = np.empty((batch, time, units))
    for t in range(time):
        xz, xr, xh = np.split(x[:, t] @ W + b_in, 3, axis=-1)
        if reset_after:
            hz, hr, hh = np.split(h_prev @ U + b[1], 3, axis=-1)
            z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
            n = np.tanh(xh + r * hh)
        else:
            hz, hr = np.split(h_prev @ u_zr, 2, axis=-1)
            z, r = _sigmoid(xz + hz), _sigmoid(xr + hr)
            hh = None
            n = np.tanh(xh + (r * h_prev) @ u_h)
        saved.append((h_prev, z, r, n, hh))
        h_prev = hs[:, t] = z * h_prev + (1.0 - z) * n
    yhat = hs @ V + c
    loss = float(kappa * np.sum((yhat - y) ** 2))
    e = 2.0 * kappa * (yhat - y)  # (B, T, out)

    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    dV = np.einsum("btu,bto->uo", hs, e)
    dc = e.sum(axis=(0, 1))
    for s in range(0, time, k1):
        end, start = min(s + k1, time), max(0, s - (k2 - k1))
        g = np.zeros((batch, units))
        for t in range(end - 1, start - 1, -1):
            if t >= s:
                g = g + e[:, t] @ V.T
            h_prev, z, r, n, hh = saved[t]
            a_z = g * (h_prev - n) * z * (1.0 - z)
            a_n = g * (1.0 - z) * (1.0 - n * n)
            if reset_after:
                a_r = a_n * hh * r * (1.0 - r)
                dx = np.concatenate([a_z, a_r, a_n], axis=-1)
                m = np.concatenate([a_z, a_r, a_n * r], axis=-1)
                dW += x[:, t].T @ dx
                db[0] += dx.sum(axis=0)
                dU += h_prev.T @ m
                db[1] += m.sum(axis=0)
                g = g * z + m @ U.T
            else:
                q = a_n @ u_h.T
                a_r = q * h_prev * r * (1.0 - r)
                dx = np.concatenate([a_z, a_r, a_n], axis=-1)
                dW += x[:, t].T @ dx
                db += dx.sum(axis=0)
                dU[:, : 2 * units] += h_prev.T @ dx[:, : 2 * units]
                dU[:, 2 * units :] += (r * h_prev).T @ a_n
                g = g * z + q * r + dx[:, : 2 * units] @ u_zr.T
    return loss, [dW, dU, db, dV, dc]
