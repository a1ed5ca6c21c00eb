"""The machine's own limit for a BPTT workload: matrix-product work counted from the shapes,
and the rate this process gets for products of exactly those shapes.

A recurrent layer's training step is a chain of small dependent products (one per time step
forward, one per step backward) plus one large product for the weight gradients. The
roofline of a batch is the time those products alone take at the rate measured for their
shapes, in a compiled XLA loop (what the fast path's step runs) and in PyTorch (oneDNN, the
library behind `nn.LSTM` on a CPU); a configuration's achieved fraction is that time over its
measured time per batch. Everything else in a step (gates, the optimizer, the call itself) is
what the fraction leaves out.

Used by `bench.py` (`--matmul-child`); importing this module imports no framework.
"""

from __future__ import annotations

import os
import statistics
import time

GATES = {"simple_rnn": 1, "gru": 3, "lstm": 4}


def throughput_products(spec: dict, features: int = 1) -> list[dict]:
    """The matrix products of one training batch of `build_model(cell, units)` (one
    recurrent layer + Dense(1)), as the fast path computes them.

    Args:
        spec: a `bench.WORKLOADS` entry: `cell`, `units` (H), `steps` (T), `batch` (B).
        features: inputs per step (D).

    Returns:
        Dicts `{"name", "m", "k", "n", "repeat"}`: per step the forward product
        `[h, x_t, 1] [U; W; b]` (B x (H + D + 1) times (H + D + 1) x GH, G gates) and the
        backward recurrence `dz U^T` (B x GH times GH x H), each `repeat = T` times; once per
        batch the weight gradient `[h, x, 1]^T dz` over all steps ((H + D + 1) x TB times
        TB x GH). The Dense(1) head (6 B H FLOPs per step, under 1 % of the total) is left out.
    """
    b, h, t = spec["batch"], spec["units"], spec["steps"]
    g = GATES[spec["cell"]] * h
    return [
        {"name": "forward [h, x, 1] [U; W; b]", "m": b, "k": h + features + 1, "n": g, "repeat": t},
        {"name": "backward dz U^T", "m": b, "k": g, "n": h, "repeat": t},
        {"name": "weight gradient over all steps", "m": h + features + 1, "k": t * b, "n": g,
         "repeat": 1},
    ]  # fmt: skip


def flops(products: list[dict]) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of `products`, repeats included."""
    return sum(2 * p["m"] * p["k"] * p["n"] * p["repeat"] for p in products)


def roofline_s(products: list[dict], rates: list[dict], key: str) -> float | None:
    """Seconds the products take at the measured rates (`key`: `"xla_gflops"`,
    `"torch_gflops"` or `"best_gflops"`); None if a rate is missing."""
    total = 0.0
    for product, rate in zip(products, rates, strict=True):
        if rate.get(key) is None:
            return None
        total += (
            2 * product["m"] * product["k"] * product["n"] * product["repeat"] / (rate[key] * 1e9)
        )
    return total


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_rates(products: list[dict], torch_too: bool = True) -> list[dict]:
    """GFLOP/s of each product's shape in this process, best of 5 calls.

    XLA: a compiled `tf.while_loop` of 3-2000 products, ~5 GFLOP per call so that the call's
    own cost (~0.2-0.3 ms) is not counted as the products'. Each product depends on the one
    before (one element of its input is overwritten with one of the previous result, as a
    recurrence's input depends on the previous step), so XLA can neither hoist nor overlap
    them. PyTorch: a Python loop of `torch.matmul` on all cores, measured after every XLA
    rate (PyTorch's OpenMP threads spin after their work and would slow an XLA loop run
    right after). `best_gflops` is the faster of the two: the machine's rate for that shape.
    """
    import tensorflow as tf

    rows = []
    for product in products:
        m, k, n = product["m"], product["k"], product["n"]
        count = min(2000, max(3, -(-5_000_000_000 // (2 * m * k * n))))
        a, w = tf.random.normal((m, k)), tf.random.normal((k, n)) * 0.01

        @tf.function(jit_compile=True)
        def loop(a, w, count=count):
            def body(i, a, acc):
                result = tf.matmul(a, w)
                corner = tf.reshape(result[0, 0] * 1e-9, [1])
                return i + 1, tf.tensor_scatter_nd_update(a, [[0, 0]], corner), acc + corner

            return tf.while_loop(lambda i, *_: i < count, body, (0, a, tf.zeros([1])))[2]

        loop(a, w).numpy()
        best = min(_timed(lambda a=a, w=w, loop=loop: loop(a, w).numpy()) for _ in range(5))
        rows.append({**product, "count": count, "xla_gflops": 2 * m * k * n * count / best / 1e9})
    for row in rows:
        if torch_too:
            row["torch_gflops"] = _torch_gflops(row["m"], row["k"], row["n"], row["count"])
        row["best_gflops"] = max(row["xla_gflops"], row.get("torch_gflops") or 0.0)
    return rows


def _torch_gflops(m: int, k: int, n: int, count: int) -> float:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a, w = torch.randn(m, k), torch.randn(k, n)

    def loop():
        for _ in range(count):
            torch.matmul(a, w)

    loop()
    best = min(_timed(loop) for _ in range(5))
    return 2 * m * k * n * count / best / 1e9


def empty_call_s(calls: int = 300) -> float:
    """Median seconds of one call of an XLA-compiled function that does (almost) nothing: the
    floor under any compiled training step, however small its arithmetic."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def nothing(x):
        return x + 1.0

    x = tf.constant(0.0)
    for _ in range(20):
        nothing(x).numpy()
    times = [_timed(lambda: nothing(x).numpy()) for _ in range(calls)]
    return statistics.median(times)


def lstm_elementwise_s(batch: int, units: int, steps: int) -> float:
    """Seconds of the LSTM fast path's two time loops with their matrix products taken out:
    what a batch costs beyond the roofline however fast the products are.

    The same per-step work as `bptt_keras.fast.stored._lstm` (one `tanh` of the (B, 4u)
    pre-activations, the cell update, the slopes and rows stored for the backward pass; the
    backward step's element-wise ops), XLA-compiled, with each step's product replaced by a
    free stand-in (the pre-activations are h tiled four times; dL/dh_(t-1) is a slice of dz),
    so the recurrence's dependence is kept. Best of 5 calls.
    """
    import tensorflow as tf

    scale = tf.concat([tf.fill([units], 0.5)] * 2 + [tf.ones([units]), tf.fill([units], 0.5)], 0)
    shift = tf.concat([tf.fill([units], 0.5)] * 2 + [tf.zeros([units]), tf.fill([units], 0.5)], 0)

    @tf.function(jit_compile=True)
    def loops(h0):
        slope_rows = tf.TensorArray(tf.float32, size=steps, element_shape=[batch, 4 * units])
        cell_rows = tf.TensorArray(tf.float32, size=steps, element_shape=[batch, 2 * units])
        hs = tf.TensorArray(tf.float32, size=steps, element_shape=[batch, units])

        def forward(t, h, c, hs, slope_rows, cell_rows):
            a = tf.tanh(tf.tile(h, [1, 4]) * scale)  # stands in for [h, x, 1] [U; W; b]
            i, f, g, o = tf.split(a * scale + shift, 4, axis=-1)
            c = f * c + i * g
            tc = tf.tanh(c)
            h = o * tc
            slopes = scale * scale * (1.0 - tf.square(a)) * tf.concat([g, c, i, tc], -1)
            cell = tf.concat([o * (1.0 - tf.square(tc)), f], -1)
            return (
                t + 1,
                h,
                c,
                hs.write(t, h),
                slope_rows.write(t, slopes),
                cell_rows.write(t, cell),
            )

        _, h, _, hs, slope_rows, cell_rows = tf.while_loop(
            lambda t, *_: t < steps, forward, (0, h0, h0, hs, slope_rows, cell_rows)
        )
        slope_seq, cell_seq, h_seq = slope_rows.stack(), cell_rows.stack(), hs.stack()
        dzs = tf.TensorArray(tf.float32, size=steps, element_shape=[batch, 4 * units])

        def back(t, dh, dc, dzs):  # `fast.common.lstm_back_step` without its product
            dh = dh + h_seq[t]  # stands in for the step's output gradient
            to_c, f = tf.split(cell_seq[t], 2, axis=-1)
            dc = dc + dh * to_c
            dz = tf.concat([dc, dc, dc, dh], -1) * slope_seq[t]
            return t - 1, dz[:, :units], dc * f, dzs.write(t, dz)  # slice: for dz U^T

        _, dh, dc, dzs = tf.while_loop(
            lambda t, *_: t >= 0, back, (steps - 1, tf.zeros_like(h), tf.zeros_like(h), dzs)
        )
        return tf.reduce_sum(dzs.stack()[0]) + tf.reduce_sum(dh) + tf.reduce_sum(dc)

    h0 = tf.random.normal((batch, units)) * 0.1
    loops(h0).numpy()
    return min(_timed(lambda: loops(h0).numpy()) for _ in range(5))
