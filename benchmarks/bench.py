"""Throughput and memory of BPTT training: bptt_keras vs Keras `fit` (and PyTorch if installed).

    python benchmarks/bench.py                       # everything, 5 rounds
    python benchmarks/bench.py --workloads small --rounds 7
    python benchmarks/bench.py --quick               # a smoke run (tiny sizes, 2 rounds)
    python benchmarks/bench.py --workloads tbptt --rounds 3
                                                     # truncated BPTT over a long stream
    python benchmarks/bench.py --workloads charlm --charlm-seconds 60 --rounds 1
                                                     # character LM vs PyTorch, equal time
    python benchmarks/bench.py --workloads large --configs engine_fast --ref HEAD
                                                     # keras_fit, engine_fast and, in the
                                                     # same rounds, engine_fast as of HEAD

Peers (PyTorch, JAX) run when installed (`pip install ".[bench]"`) and are listed as skipped
otherwise.

Throughput workloads (sequences per second of a training epoch, Adam, MSE):
    small       SimpleRNN(50) + Dense, T = 100, batch 32, 1000 noisy-sine sequences
    large       LSTM(256) + Dense,     T = 500, batch 64, 256 sequences
    small_gru   GRU(50) + Dense,       as small
    large_gru   GRU(256) + Dense,      as large

Configurations run interleaved (A B C A B C ...), each run in a fresh subprocess (TensorFlow,
PyTorch and JAX cannot share one process safely); each run trains two epochs on a fresh model
and the second epoch is timed (the first pays tracing and compilation).
The report gives the median over rounds and the ratio to Keras `fit` measured in the same
run. Each round also measures, in a child process of its own, the workload's roofline
(`roofline.py`): the rate of each of its matrix products' shapes (a compiled XLA loop of
`tf.matmul` and PyTorch's `torch.matmul`), the time of an empty compiled call and, for the
LSTM, the fast path's loops with their products taken out; each configuration is reported
with its GFLOP/s and its fraction of that roofline (the products' time at the faster
library's rate for each shape over the configuration's time per batch).

Truncated-BPTT workload (`tbptt`): one long stream, 32 rows of T = 2000 steps (a noisy sine;
each row a contiguous stretch), TBPTT(k) for k in 2, 20, 100 with SimpleRNN(16) and
LSTM(128) + Dense and GRU(128) + Dense, Adam, MSE. Time per optimizer
update (epoch time / updates per epoch) of
    engine_rows     `bk.fit(model, x (32, T, 1), k1=k)`: truncation over the long rows
    engine_stream   `bk.fit(stateful model, stream layout (32 * T/k, k, 1))`: the streams route
    engine_full     `bk.fit(model, x (32, T, 1))`: full BPTT, one update per epoch (the work
                    a TBPTT epoch must not exceed by much)
    keras_stateful  Keras `fit` on a stateful model over the stream layout, `shuffle=False`,
                    states reset at every epoch start
    torch           `nn.RNN` / `nn.LSTM` over k-step chunks, hidden state detached per chunk
                    (as PyTorch's word_language_model)
each trains three epochs in a fresh subprocess; the median of epochs 2 and 3 is reported (the
first pays tracing and compilation), interleaved rounds, ratios to keras_stateful and to
engine_full measured in the same rounds.

Character language model (`charlm`, opt-in: `--workloads charlm`): Tiny Shakespeare,
Embedding(64) -> 2 x LSTM(256) -> Linear(65) logits, batch 32, TBPTT k = 100, Adam(2e-3),
global clipnorm 5, mean cross-entropy per character, in each framework for the same
wall-clock budget (`--charlm-seconds`, default 120 s), then scored on the validation stream:
    torch        pytorch/examples `word_language_model/main.py` (batchify, get_batch,
                 repackage_hidden per chunk, clip_grad_norm_, evaluate()), with Adam
    engine       `bk.fit(stateful model, token_stream_batches(seq_len=k))`: one block per
                 batch, the state carried from batch to batch
    engine_rows  `bk.fit(model, token_rows (32, row_len), k1=k)`: the long rows
Reported: training characters per second after the first compiled call (which pays the
compilation; its time is reported too), the ratio to torch, and the validation loss in
nats and bits per character after the budget; `--rounds` interleaved rounds (default 3).

Memory workload: peak resident memory of full-BPTT gradient steps of LSTM(128) + Dense and
GRU(128) + Dense (`--memory-cells`), batch 32, for T in 100, 1000, 4000, each in a fresh
subprocess: the peak RSS (reset with Linux `/proc/self/clear_refs` once the process is set
up) above the resident size of the
process before its first step. Tracing costs the same at every T, so the growth above the
T = 100 figure is what BPTT's stored activations cost. The step time is the second step's.
Configurations: plain (`fast=False`), fast (`recompute=None`: the stored-activation fast
path), default (`bptt_gradients`' defaults: `recompute="auto"`, which recomputes from
T = 1000), recompute (`recompute=64`: segments recomputed inside the fast path's gradient),
recompute_grad (`fast=False, recompute=64`: the `tf.recompute_grad` fallback) and
truncated_k100; run interleaved for `--rounds` rounds
(default 3 for memory), the median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WORKLOADS = {
    "small": {"cell": "simple_rnn", "units": 50, "steps": 100, "batch": 32, "n": 1000},
    "large": {"cell": "lstm", "units": 256, "steps": 500, "batch": 64, "n": 256},
    "small_gru": {"cell": "gru", "units": 50, "steps": 100, "batch": 32, "n": 1000},
    "large_gru": {"cell": "gru", "units": 256, "steps": 500, "batch": 64, "n": 256},
}
QUICK = {
    "small": {"cell": "simple_rnn", "units": 16, "steps": 20, "batch": 16, "n": 64},
    "large": {"cell": "lstm", "units": 32, "steps": 40, "batch": 16, "n": 32},
    "small_gru": {"cell": "gru", "units": 16, "steps": 20, "batch": 16, "n": 64},
    "large_gru": {"cell": "gru", "units": 32, "steps": 40, "batch": 16, "n": 32},
}
TBPTT = {
    "rows": 32,
    "steps": 2000,
    "ks": (2, 20, 100),
    "cells": {"simple_rnn": 16, "lstm": 128, "gru": 128},
}
TBPTT_QUICK = {"rows": 8, "steps": 40, "ks": (4,), "cells": {"simple_rnn": 4}}
TBPTT_EPOCHS = 3
MEMORY_STEPS = (100, 1000, 4000)
MEMORY_MODES = {  # benchmark name -> mode of bptt_keras.experiments.memory_time
    "plain": "plain",  # fast=False
    "fast": "fast",  # fast=True, recompute=None: the stored-activation path
    "default": "default",  # the defaults: recompute="auto" (recomputes from T = 1000)
    "recompute": "recompute",  # fast=True, recompute=64
    "recompute_grad": "recompute_grad",  # fast=False, recompute=64
    "truncated_k100": "truncated",  # fast=True, k1=min(100, T)
}


def _data(spec):
    from bptt_keras import next_step_pairs
    from bptt_keras.tasks import noisy_sines

    return next_step_pairs(noisy_sines(spec["n"], spec["steps"] + 1, seed=0))


class _EpochTimer:
    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.times.append(time.perf_counter() - inner.start)

        self.times: list[float] = []
        self.callback = Timer()


def run_keras_fit(spec, x, y, steps_per_execution=1):
    import keras

    import bptt_keras as bk

    model = bk.build_model(spec["cell"], spec["units"], seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="mse",
        steps_per_execution=steps_per_execution,
    )
    timer = _EpochTimer()
    model.fit(x, y, batch_size=spec["batch"], epochs=2, verbose=0, callbacks=[timer.callback])
    return timer.times[-1]


def run_keras_fit_spe16(spec, x, y):
    """Keras `fit` with 16 batches per compiled call, as the engine's default: how much of
    the engine's lead is that batching alone."""
    return run_keras_fit(spec, x, y, steps_per_execution=16)


def _run_engine(spec, x, y, fast, steps_per_execution=None):
    import keras

    import bptt_keras as bk

    model = bk.build_model(spec["cell"], spec["units"], seed=0)
    timer = _EpochTimer()
    bk.fit(
        model,
        x,
        y,
        batch_size=spec["batch"],
        epochs=2,
        verbose=0,
        seed=0,
        fast=fast,
        optimizer=keras.optimizers.Adam(1e-3),
        callbacks=[timer.callback],
        # Only when set: an `engine_fast@REF` run may import a version without the option.
        **({} if steps_per_execution is None else {"steps_per_execution": steps_per_execution}),
    )
    return timer.times[-1]


def run_engine_fast(spec, x, y):
    return _run_engine(spec, x, y, fast=True)


def run_engine_plain(spec, x, y):
    return _run_engine(spec, x, y, fast=False)


def run_engine_fast_spe1(spec, x, y):
    """The default fast path with one compiled call per batch (`steps_per_execution=1`)."""
    return _run_engine(spec, x, y, fast=True, steps_per_execution=1)


def run_torch(spec, x, y):
    import numpy as np
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    rnn_class = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[
        spec["cell"]
    ]
    rnn = rnn_class(1, spec["units"], batch_first=True)
    head = torch.nn.Linear(spec["units"], 1)
    params = [*rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(0)
    elapsed = 0.0
    for _ in range(2):
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), spec["batch"]):
            rows = order[i : i + spec["batch"]]
            optimizer.zero_grad()
            out, _ = rnn(xt[rows])
            loss = torch.mean((head(out) - yt[rows]) ** 2)
            loss.backward()
            optimizer.step()
        elapsed = time.perf_counter() - start
    return elapsed


def run_jax(spec, x, y):
    """JAX peer: the same model as a `lax.scan` over time, jitted step, hand-written Adam."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    units, cell = spec["units"], spec["cell"]
    width = {"simple_rnn": 1, "gru": 3, "lstm": 4}[cell] * units
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {
        "W": jax.random.normal(keys[0], (1, width)) * 0.1,
        "U": jax.random.normal(keys[1], (units, width)) / np.sqrt(units),
        "b": jnp.zeros(width),
        "b_rec": jnp.zeros(width),  # GRU only (Keras' reset_after=True recurrent bias)
        "V": jax.random.normal(keys[2], (units, 1)) * 0.1,
        "c": jnp.zeros(1),
    }
    if cell != "gru":
        del params["b_rec"]

    def forward(p, xb):  # (B, T, 1) -> (B, T, 1)
        xw = jnp.swapaxes(xb @ p["W"] + p["b"], 0, 1)  # (T, B, width)
        batch = xb.shape[0]
        if cell == "gru":  # Keras' GRU, reset_after=True (its default): r scales h U + b_rec

            def step(h, xw_t):
                x_z, x_r, x_h = jnp.split(xw_t, 3, axis=-1)
                h_z, h_r, h_h = jnp.split(h @ p["U"] + p["b_rec"], 3, axis=-1)
                z, r = jax.nn.sigmoid(x_z + h_z), jax.nn.sigmoid(x_r + h_r)
                h = z * h + (1 - z) * jnp.tanh(x_h + r * h_h)
                return h, h

            _, hs = jax.lax.scan(step, jnp.zeros((batch, units)), xw)
        elif cell == "lstm":

            def step(carry, xw_t):
                h, c = carry
                i, f, g, o = jnp.split(xw_t + h @ p["U"], 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            zeros = jnp.zeros((batch, units))
            _, hs = jax.lax.scan(step, (zeros, zeros), xw)
        else:

            def step(h, xw_t):
                h = jnp.tanh(xw_t + h @ p["U"])
                return h, h

            _, hs = jax.lax.scan(step, jnp.zeros((batch, units)), xw)
        return jnp.swapaxes(hs, 0, 1) @ p["V"] + p["c"]

    def loss_fn(p, xb, yb):
        return jnp.mean((forward(p, xb) - yb) ** 2)

    @jax.jit
    def train_step(p, m, v, t, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        m = jax.tree.map(lambda a, g: 0.9 * a + 0.1 * g, m, grads)
        v = jax.tree.map(lambda a, g: 0.999 * a + 0.001 * g * g, v, grads)
        scale = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        p = jax.tree.map(lambda w, a, b: w - scale * a / (jnp.sqrt(b) + 1e-7), p, m, v)
        return p, m, v, loss

    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    rng = np.random.default_rng(0)
    elapsed, t = 0.0, 0
    for _ in range(2):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        for i in range(0, len(x), spec["batch"]):
            rows = order[i : i + spec["batch"]]
            t += 1
            params, m, v, loss = train_step(params, m, v, t, x[rows], y[rows])
        loss.block_until_ready()
        elapsed = time.perf_counter() - start
    return elapsed


# ---- truncated BPTT over one long stream ------------------------------------------------


def _stream_layout(x, k):
    """Rows `(rows, T, f)` -> the stream layout `(T/k * rows, k, f)` of `stream_batches`:
    batch j holds chunk j of every row (row i of batch j + 1 continues row i of batch j)."""
    rows, steps, features = x.shape
    chunks = x.reshape(rows, steps // k, k, features).transpose(1, 0, 2, 3)
    return chunks.reshape(-1, k, features)


def _epoch_times(run_epoch, epochs=TBPTT_EPOCHS):
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        run_epoch(epoch)
        times.append(time.perf_counter() - start)
    return times


def _median_after_first(times):
    return statistics.median(times[1:])


def tbptt_engine_rows(cell, units, k, x, y):
    import keras

    import bptt_keras as bk

    model = bk.build_model(cell, units, seed=0)
    timer = _EpochTimer()
    bk.fit(
        model, x, y, k1=k, batch_size=x.shape[0], epochs=TBPTT_EPOCHS, shuffle=False, verbose=0,
        seed=0, optimizer=keras.optimizers.Adam(1e-3), callbacks=[timer.callback],
    )  # fmt: skip
    return timer.times


def tbptt_engine_full(cell, units, k, x, y):
    return tbptt_engine_rows(cell, units, None, x, y)


def tbptt_engine_stream(cell, units, k, x, y):
    import keras

    import bptt_keras as bk

    rows = x.shape[0]
    model = bk.build_model(cell, units, stateful=True, batch_size=rows, seed=0)
    timer = _EpochTimer()
    bk.fit(
        model, _stream_layout(x, k), _stream_layout(y, k), batch_size=rows,
        epochs=TBPTT_EPOCHS, shuffle=False, verbose=0, seed=0,
        optimizer=keras.optimizers.Adam(1e-3), callbacks=[timer.callback],
    )  # fmt: skip
    return timer.times


def tbptt_keras_stateful(cell, units, k, x, y):
    import keras

    import bptt_keras as bk

    rows = x.shape[0]
    model = bk.build_model(cell, units, stateful=True, batch_size=rows, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    timer = _EpochTimer()
    reset = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: bk.reset_states(model))
    model.fit(
        _stream_layout(x, k), _stream_layout(y, k), batch_size=rows, epochs=TBPTT_EPOCHS,
        shuffle=False, verbose=0, callbacks=[reset, timer.callback],
    )  # fmt: skip
    return timer.times


def tbptt_torch(cell, units, k, x, y):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    torch_cells = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    rnn = torch_cells[cell](1, units, batch_first=True)
    head = torch.nn.Linear(units, 1)
    optimizer = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rows, steps = x.shape[:2]

    def zero():
        h = torch.zeros(1, rows, units)
        return (h, torch.zeros(1, rows, units)) if cell == "lstm" else h

    def run_epoch(epoch):
        hidden = zero()
        for begin in range(0, steps, k):
            # word_language_model's repackage_hidden: the state is carried, its history cut.
            hidden = tuple(h.detach() for h in hidden) if cell == "lstm" else hidden.detach()
            optimizer.zero_grad()
            out, hidden = rnn(xt[:, begin : begin + k], hidden)
            loss = torch.mean((head(out) - yt[:, begin : begin + k]) ** 2)
            loss.backward()
            optimizer.step()

    return _epoch_times(run_epoch)


TBPTT_CONFIGS = {
    "engine_rows": tbptt_engine_rows,
    "engine_stream": tbptt_engine_stream,
    "engine_full": tbptt_engine_full,
    "keras_stateful": tbptt_keras_stateful,
    "torch": tbptt_torch,
}


def tbptt_child(config, cell, k, quick, data_path):
    """One timed run in this (fresh) process; prints a JSON line."""
    import numpy as np

    spec = TBPTT_QUICK if quick else TBPTT
    with np.load(data_path) as data:
        x, y = data["x"], data["y"]
    times = TBPTT_CONFIGS[config](cell, spec["cells"][cell], int(k), x, y)
    print(json.dumps({"epochs_s": times}))


def tbptt(rounds, quick, only=None, cells=None):
    """Interleaved rounds over every (cell, k, configuration); per-update medians. `cells`:
    a subset of the workload's cells (default all)."""
    import tempfile

    import numpy as np

    from bptt_keras import stream_batches
    from bptt_keras.tasks import noisy_sines

    spec = TBPTT_QUICK if quick else TBPTT
    series = noisy_sines(1, spec["rows"] * spec["steps"] + 1, noise=0.1, seed=0)[0]
    x, y = stream_batches(series, batch_size=spec["rows"], seq_len=spec["steps"])
    data_path = os.path.join(tempfile.mkdtemp(prefix="bptt-bench-"), "tbptt.npz")
    np.savez(data_path, x=x, y=y)
    configs = [c for c in TBPTT_CONFIGS if (only is None or c in only) and _available(c)]
    skipped = [c for c in TBPTT_CONFIGS if c not in configs]
    chosen = [c for c in spec["cells"] if cells is None or c in cells]
    cases = [(cell, k) for cell in chosen for k in spec["ks"]]
    runs = {(cell, k, c): [] for cell, k in cases for c in configs}
    for round_ in range(rounds):
        for cell, k in cases:
            for config in configs:
                child = ["--tbptt-child", config, cell, str(k), "--data", data_path]
                result = _child(*child, *(["--quick"] if quick else []))
                runs[cell, k, config].append(_median_after_first(result["epochs_s"]))
            print(
                f"  tbptt round {round_ + 1}/{rounds} {cell} k={k}: "
                + ", ".join(f"{c} {runs[cell, k, c][-1]:.3f}s" for c in configs),
                flush=True,
            )
    rows = []
    for cell, k in cases:
        updates = spec["steps"] // k
        epoch = {c: statistics.median(runs[cell, k, c]) for c in configs}
        for config in configs:
            per_round = runs[cell, k, config]

            def ratio(base, per_round=per_round, cell=cell, k=k):
                if base not in configs:
                    return None
                return statistics.median(
                    b / t for b, t in zip(runs[cell, k, base], per_round, strict=True)
                )

            rows.append(
                {
                    "cell": cell,
                    "units": spec["cells"][cell],
                    "k": k,
                    "config": config,
                    "epoch_s": epoch[config],
                    "updates": 1 if config == "engine_full" else updates,
                    "ms_per_update": 1000
                    * epoch[config]
                    / (1 if config == "engine_full" else updates),
                    # > 1: faster than the baseline (median of per-round ratios)
                    "vs_keras_stateful": ratio("keras_stateful"),
                    "vs_torch": ratio("torch"),
                    # epoch time relative to one full-BPTT update of the same rows (< 1.2 wanted)
                    "epoch_vs_full": epoch[config] / epoch["engine_full"]
                    if "engine_full" in configs
                    else None,
                    "epochs_s": per_round,
                }
            )
    return {"spec": spec, "rounds": rounds, "rows": rows, "skipped": skipped}


def tbptt_markdown(result):
    spec = result["spec"]
    lines = [
        f"**tbptt**: {spec['rows']} rows x T = {spec['steps']} (one stream), Adam, MSE; time per "
        f"optimizer update, median of {result['rounds']} interleaved rounds (each: median of "
        f"epochs 2-{TBPTT_EPOCHS})"
        + (f" (skipped: {', '.join(result['skipped'])})" if result["skipped"] else ""),
        "",
        "| cell | k | configuration | ms / update | updates / epoch | vs Keras stateful fit "
        "| vs PyTorch | epoch / full-BPTT epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, suffix="x"):
        return "-" if value is None else f"{value:.2f}{suffix}"

    for row in result["rows"]:
        lines.append(
            f"| {row['cell']}({row['units']}) | {row['k']} | {row['config']} | "
            f"{row['ms_per_update']:.3f} | {row['updates']} | {fmt(row['vs_keras_stateful'])} | "
            f"{fmt(row['vs_torch'])} | {fmt(row['epoch_vs_full'], '')} |"
        )
    return "\n".join(lines)


# ---- character language model (Tiny Shakespeare) ----------------------------------------

CHARLM = {  # the sizes of both frameworks' models and of their training
    "embedding": 64,  # E
    "units": 256,  # H, per LSTM layer
    "layers": 2,
    "batch": 32,  # B, columns of the stream
    "bptt": 100,  # k, steps per update
    "lr": 2e-3,  # Adam
    "clip": 5.0,  # global gradient norm
    "chars": None,  # the whole text
}
CHARLM_QUICK = {**CHARLM, "embedding": 16, "units": 32, "batch": 8, "bptt": 50, "chars": 20_000}
CHARLM_SECONDS = 120.0  # wall-clock training budget per run (--charlm-seconds)
CHARLM_SECONDS_QUICK = 5.0
CHARLM_VAL_FRACTION = 0.1  # nanoGPT's split: the first 90 % trains, the last 10 % validates


class _Budget:
    """Stops a `bptt_keras.fit` run once `seconds` have passed since `start` (and at least
    one compiled call after the first has ended, so that a rate can be measured), without
    batch hooks: a callback with batch hooks would make `fit` end its compiled calls at
    every batch, which is not the default being measured. A thread polls the optimizer's
    update counter: `marks` records `(time, updates)` at every change (the end of a compiled
    call); `fit` checks `model.stop_training` after every call."""

    def __init__(self, model, optimizer, seconds, start):
        import threading

        self.model, self.optimizer, self.seconds, self.start = model, optimizer, seconds, start
        self.marks: list[tuple[float, int]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        last = 0
        while not self.done.wait(0.01):
            updates = int(self.optimizer.iterations.numpy())
            now = time.perf_counter()
            if updates != last:
                self.marks.append((now, updates))
                last = updates
            if now - self.start >= self.seconds and len(self.marks) >= 2:
                self.model.stop_training = True

    def close(self, end):
        self.done.set()
        self.thread.join()
        updates = int(self.optimizer.iterations.numpy())
        if not self.marks or self.marks[-1][1] != updates:
            self.marks.append((end, updates))


def _charlm_rate(spec, first, last):
    """Training characters per second between two `(time, updates)` marks (None if equal)."""
    (t1, n1), (t2, n2) = first, last
    return (n2 - n1) * spec["batch"] * spec["bptt"] / (t2 - t1) if n2 > n1 else None


def _charlm_engine_run(spec, data, seconds, stateful):
    import keras

    import bptt_keras as bk

    vocab, batch = int(data["vocab_size"]), spec["batch"]
    sizes = dict(
        vocab_size=vocab, embedding_dim=spec["embedding"], num_layers=spec["layers"], seed=0
    )
    if stateful:  # one k-step block per batch, the state carried from batch to batch
        model = bk.build_model("lstm", spec["units"], stateful=True, batch_size=batch, **sizes)
        x, y, extra = data["x_stream"], data["y_stream"], {}
    else:  # the long rows, one update per k-step block (16 updates per call, as `engine`)
        model = bk.build_model("lstm", spec["units"], **sizes)
        x, y = data["x_rows"], data["y_rows"]
        extra = {"k1": spec["bptt"], "steps_per_execution": 16}
    optimizer = keras.optimizers.Adam(spec["lr"])
    start = time.perf_counter()
    budget = _Budget(model, optimizer, seconds, start)
    try:
        history = bk.fit(
            model, x, y, batch_size=batch, shuffle=False, epochs=1_000_000, verbose=0, seed=0,
            loss="sparse_categorical_crossentropy", optimizer=optimizer,
            global_clipnorm=spec["clip"], **extra,
        )  # fmt: skip
    finally:
        end = time.perf_counter()
        budget.close(end)
    first = budget.marks[0]
    if stateful:
        scored = model
    else:  # the same weights in a stateful model, scored like `engine`'s
        scored = bk.build_model("lstm", spec["units"], stateful=True, batch_size=batch, **sizes)
        scored.set_weights(model.get_weights())
    eval_start = time.perf_counter()
    val = bk.evaluate(
        scored, data["xv_stream"], data["yv_stream"], batch_size=batch,
        loss="sparse_categorical_crossentropy",
    )  # fmt: skip
    return {
        "train_s": end - start,
        "updates": budget.marks[-1][1],
        "first_call_s": first[0] - start,
        "first_call_updates": first[1],
        "chars_per_s": _charlm_rate(spec, first, budget.marks[-1]),
        "train_loss": float(history.history["loss"][-1]),
        "val_nats": float(val),
        "eval_s": time.perf_counter() - eval_start,
    }


def charlm_engine(spec, data, seconds):
    return _charlm_engine_run(spec, data, seconds, stateful=True)


def charlm_engine_rows(spec, data, seconds):
    return _charlm_engine_run(spec, data, seconds, stateful=False)


def charlm_torch(spec, data, seconds):
    """pytorch/examples `word_language_model/main.py`: its `RNNModel` (Embedding -> LSTM ->
    Linear -> log_softmax, `init_weights`), `batchify`, `get_batch`, `repackage_hidden`,
    `clip_grad_norm_` and `evaluate`, with Adam instead of its hand-written SGD, no
    dropout, and a wall-clock budget instead of a number of epochs."""
    import torch
    from torch import nn
    from torch.nn import functional

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    ntokens, bptt, batch = int(data["vocab_size"]), spec["bptt"], spec["batch"]

    class RNNModel(nn.Module):
        def __init__(self, ntoken, ninp, nhid, nlayers):
            super().__init__()
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers)
            self.decoder = nn.Linear(nhid, ntoken)
            self.nhid, self.nlayers = nhid, nlayers
            initrange = 0.1
            nn.init.uniform_(self.encoder.weight, -initrange, initrange)
            nn.init.zeros_(self.decoder.bias)
            nn.init.uniform_(self.decoder.weight, -initrange, initrange)

        def forward(self, source, hidden):
            output, hidden = self.rnn(self.encoder(source), hidden)
            decoded = self.decoder(output).view(-1, self.decoder.out_features)
            return functional.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            shape = (self.nlayers, bsz, self.nhid)
            return (weight.new_zeros(shape), weight.new_zeros(shape))

    def batchify(ids, bsz):  # (T, B), time-major: column j is the j-th stretch of the text
        ids = torch.from_numpy(ids.astype("int64"))
        nbatch = ids.size(0) // bsz
        return ids.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()

    def get_batch(source, i):
        seq_len = min(bptt, len(source) - 1 - i)
        return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)

    def repackage_hidden(h):
        return h.detach() if isinstance(h, torch.Tensor) else tuple(map(repackage_hidden, h))

    model = RNNModel(ntokens, spec["embedding"], spec["units"], spec["layers"])
    criterion = nn.NLLLoss()
    # Keras' Adam epsilon (1e-7), so that both run the same optimizer.
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"], eps=1e-7)
    train_data, val_data = batchify(data["train"], batch), batchify(data["val"], batch)

    start = time.perf_counter()
    marks, chars, stop = [], 0, False
    while not stop:  # epochs
        model.train()
        hidden = model.init_hidden(batch)
        epoch_loss, epoch_chars = 0.0, 0
        for i in range(0, train_data.size(0) - 1, bptt):
            source, targets = get_batch(train_data, i)
            hidden = repackage_hidden(hidden)
            model.zero_grad()
            output, hidden = model(source, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
            optimizer.step()
            epoch_loss += loss.item() * targets.numel()  # .item(): the update is done
            epoch_chars += targets.numel()
            chars += targets.numel()
            marks.append((time.perf_counter(), chars))
            if marks[-1][0] - start >= seconds and len(marks) >= 2:
                stop = True
                break
    end = marks[-1][0]

    def evaluate(data_source):
        model.eval()
        total_loss = 0.0
        hidden = model.init_hidden(batch)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, bptt):
                source, targets = get_batch(data_source, i)
                output, hidden = model(source, hidden)
                hidden = repackage_hidden(hidden)
                total_loss += len(source) * criterion(output, targets).item()
        return total_loss / (len(data_source) - 1)

    eval_start = time.perf_counter()
    val = evaluate(val_data)
    (t1, c1), (t2, c2) = marks[0], marks[-1]
    return {
        "train_s": end - start,
        "updates": len(marks),
        "first_call_s": t1 - start,
        "first_call_updates": 1,
        "chars_per_s": (c2 - c1) / (t2 - t1),
        "train_loss": epoch_loss / epoch_chars,
        "val_nats": val,
        "eval_s": time.perf_counter() - eval_start,
    }


def charlm_step_shapes(spec):
    """The matrix products one LSTM step makes, per layer: forward `[h, x_t, 1] [U; W; b]`
    (B x (H + inputs + 1) times (H + inputs + 1) x 4H, as the fast path computes it) and the
    backward recurrence `dz U^T` (B x 4H times 4H x H)."""
    b, h = spec["batch"], spec["units"]
    shapes = []
    for layer in range(spec["layers"]):
        inputs = spec["embedding"] if layer == 0 else h
        shapes += [(f"forward, layer {layer + 1}", b, h + inputs + 1, 4 * h),
                   (f"backward dz U^T, layer {layer + 1}", b, 4 * h, h)]  # fmt: skip
    return shapes


def charlm_flops_per_update(spec, vocab):
    """Multiply-add FLOPs (2 per multiply-add) of one TBPTT update, counted from the shapes:
    per step and layer the forward product, the backward recurrence `dz U^T`, the weight
    gradient `[h, x, 1]^T dz` and the input gradient `dz W^T` (not for the first layer, whose
    input is the embedding lookup); the head's forward, input and weight gradients."""
    b, h, k = spec["batch"], spec["units"], spec["bptt"]
    total = 0
    for layer in range(spec["layers"]):
        inputs = spec["embedding"] if layer == 0 else h
        total += 2 * b * (h + inputs + 1) * 4 * h * 2  # forward product + weight gradient
        total += 2 * b * 4 * h * h  # backward recurrence
        total += 2 * b * 4 * h * inputs if layer else 0  # gradient to the layer below
    total += 3 * 2 * b * h * vocab  # head: forward, input gradient, weight gradient
    return total * k


def matmul_child(workload, quick):
    """The roofline inputs of `workload` measured in this (fresh) process (a JSON line): the
    rate of each of its products' shapes as a compiled XLA loop of `tf.matmul` (what the fast
    path's XLA step runs) and as PyTorch's `torch.matmul` (the library behind nn.LSTM on a
    CPU), and the time of an empty compiled call (`roofline.py`)."""
    import roofline

    if workload == "charlm":
        spec = CHARLM_QUICK if quick else CHARLM
        products = [
            {"name": name, "m": m, "k": k, "n": n, "repeat": spec["bptt"]}
            for name, m, k, n in charlm_step_shapes(spec)
        ]
    else:
        spec = (QUICK if quick else WORKLOADS)[workload]
        products = roofline.throughput_products(spec)
    rates = roofline.measure_rates(products, torch_too=_available("torch"))
    result = {"products": rates, "empty_call_s": roofline.empty_call_s()}
    if workload != "charlm" and spec["cell"] == "lstm":  # what the products leave out
        result["elementwise_s"] = roofline.lstm_elementwise_s(
            spec["batch"], spec["units"], spec["steps"]
        )
    print(json.dumps(result))


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


CHARLM_CONFIGS = {
    "torch": charlm_torch,  # the baseline
    "engine": charlm_engine,
    "engine_rows": charlm_engine_rows,
}


def charlm_child(config, quick, data_path, seconds):
    """One budgeted training run and its validation in this (fresh) process; a JSON line."""
    import numpy as np

    spec = CHARLM_QUICK if quick else CHARLM
    with np.load(data_path) as data:
        arrays = dict(data)
    print(json.dumps(CHARLM_CONFIGS[config](spec, arrays, float(seconds))))


def charlm(rounds, quick, seconds, only=None):
    """Interleaved rounds of budgeted runs; throughput and validation loss per run."""
    import math
    import tempfile

    import numpy as np

    from bptt_keras.text import (
        Vocabulary,
        load_shakespeare,
        split_text,
        token_rows,
        token_stream_batches,
    )

    spec = CHARLM_QUICK if quick else CHARLM
    text = load_shakespeare()
    vocab = Vocabulary.from_text(text)  # from the whole text: all 65 characters
    ids = np.asarray(vocab.encode(text[: spec["chars"]]), dtype=np.int32)
    train, val = split_text(ids, val_fraction=CHARLM_VAL_FRACTION)
    batch, bptt = spec["batch"], spec["bptt"]
    x_stream, y_stream = token_stream_batches(train, batch_size=batch, seq_len=bptt)
    xv_stream, yv_stream = token_stream_batches(val, batch_size=batch, seq_len=bptt)
    # The long rows, cut to whole k-step blocks: the characters `engine` trains on (and no
    # shorter last block, which would be a second compiled shape).
    x_rows, y_rows = token_rows(train, batch_size=batch)
    x_rows, y_rows = (a[:, : a.shape[1] // bptt * bptt] for a in (x_rows, y_rows))
    data_path = os.path.join(tempfile.mkdtemp(prefix="bptt-bench-"), "charlm.npz")
    np.savez(
        data_path, vocab_size=len(vocab), train=train, val=val, x_stream=x_stream,
        y_stream=y_stream, xv_stream=xv_stream, yv_stream=yv_stream, x_rows=x_rows,
        y_rows=y_rows,
    )  # fmt: skip
    wanted = [c for c in CHARLM_CONFIGS if only is None or c in only or c == "torch"]
    configs = [c for c in wanted if _available(c)]
    skipped = [c for c in wanted if c not in configs]
    runs = {c: [] for c in configs}
    for round_ in range(rounds):
        for config in configs:
            child = ["--charlm-child", config, "--data", data_path, "--charlm-seconds"]
            child += [str(seconds), *(["--quick"] if quick else [])]
            runs[config].append(_child(*child))
        print(
            f"  charlm round {round_ + 1}/{rounds}: "
            + ", ".join(
                f"{c} {(runs[c][-1]['chars_per_s'] or 0):.0f} chars/s, "
                f"val {runs[c][-1]['val_nats']:.3f}"
                for c in configs
            ),
            flush=True,
        )

    def median(config, key):
        values = [r[key] for r in runs[config] if r[key] is not None]
        return statistics.median(values) if values else None

    rows = []
    for config in configs:
        per_round = [
            None if (r["chars_per_s"] is None or t["chars_per_s"] is None)
            else r["chars_per_s"] / t["chars_per_s"]
            for r, t in zip(runs[config], runs.get("torch", [{}] * rounds), strict=True)
        ] if "torch" in configs else [None] * rounds  # fmt: skip
        known = [r for r in per_round if r is not None]
        rate = median(config, "chars_per_s")
        first = median(config, "first_call_s")
        first_updates = median(config, "first_call_updates")
        compile_s = None if rate is None else first - first_updates * batch * bptt / rate
        rows.append(
            {
                "config": config,
                "chars_per_s": rate,
                "ms_per_update": None if rate is None else 1000 * batch * bptt / rate,
                "vs_torch": statistics.median(known) if known else None,
                "per_round_vs_torch": per_round,
                "first_call_s": first,
                "first_call_updates": first_updates,
                "compile_s": compile_s,  # the first call less its updates at the rate
                "train_s": median(config, "train_s"),
                "updates": median(config, "updates"),
                "train_nats": median(config, "train_loss"),
                "val_nats": median(config, "val_nats"),
                "val_bits": median(config, "val_nats") / math.log(2),
                "eval_s": median(config, "eval_s"),
                "runs": runs[config],
            }
        )
    flops = charlm_flops_per_update(spec, len(vocab))
    for row in rows:
        rate = row["chars_per_s"]
        row["gflops"] = None if rate is None else flops * rate / (batch * bptt) / 1e9
    return {
        "spec": spec,
        "seconds": seconds,
        "flops_per_update": flops,
        "matmul": _child("--matmul-child", "charlm", *(["--quick"] if quick else []))["products"],
        "vocab": len(vocab),
        "train_chars": len(train),
        "val_chars": len(val),
        "rounds": rounds,
        "rows": rows,
        "skipped": skipped,
    }


def charlm_markdown(result):
    spec = result["spec"]
    lines = [
        f"**charlm**: Tiny Shakespeare ({result['train_chars']} training / "
        f"{result['val_chars']} validation characters, V = {result['vocab']}), "
        f"Embedding({spec['embedding']}) -> {spec['layers']} x LSTM({spec['units']}) -> "
        f"Linear(V), batch {spec['batch']}, TBPTT k = {spec['bptt']}, Adam({spec['lr']:g}), "
        f"global clipnorm {spec['clip']:g}; each run trains for {result['seconds']:g} s of "
        f"wall clock (compilation included), then scores the validation stream; median of "
        f"{result['rounds']} interleaved rounds"
        + (f" (skipped: {', '.join(result['skipped'])})" if result["skipped"] else ""),
        "",
        "| configuration | chars/s | ms / update | vs PyTorch | per round vs PyTorch "
        "| first call (s) | compile (s) | trained (s) | updates | train loss, last epoch "
        "| val loss (nats/char) | val (bits/char) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, spec_="{:.2f}"):
        return "-" if value is None else spec_.format(value)

    for row in result["rows"]:
        rounds_ = " ".join(fmt(r) for r in row["per_round_vs_torch"])
        lines.append(
            f"| {row['config']} | {fmt(row['chars_per_s'], '{:.0f}')} | "
            f"{fmt(row['ms_per_update'], '{:.1f}')} | {fmt(row['vs_torch'], '{:.2f}x')} | "
            f"{rounds_} | {fmt(row['first_call_s'])} ({fmt(row['first_call_updates'], '{:.0f}')}"
            f" updates) | {fmt(row['compile_s'], '{:.1f}')} | {fmt(row['train_s'], '{:.1f}')} | "
            f"{fmt(row['updates'], '{:.0f}')} | {fmt(row['train_nats'], '{:.3f}')} | "
            f"{fmt(row['val_nats'], '{:.3f}')} | {fmt(row['val_bits'], '{:.3f}')} |"
        )
    lines += [
        "",
        f"Work per update, counted from the shapes: {result['flops_per_update'] / 1e9:.2f} "
        "GFLOP (matrix products only); achieved: "
        + ", ".join(f"{r['config']} {fmt(r['gflops'], '{:.0f}')} GFLOP/s" for r in result["rows"])
        + ". The step's matrix products alone, measured in one process (a compiled XLA loop "
        "of `tf.matmul`, what the fast path's step runs, and `torch.matmul`):",
        "",
        "| product | shape (m x k times k x n) | XLA loop GFLOP/s | PyTorch GFLOP/s "
        "| XLA / PyTorch |",
        "|---|---|---|---|---|",
    ]
    for m in result["matmul"]:
        torch_rate = m.get("torch_gflops")
        ratio = None if torch_rate is None else m["xla_gflops"] / torch_rate
        lines.append(
            f"| {m['name']} | {m['m']} x {m['k']} x {m['n']} | {m['xla_gflops']:.0f} | "
            f"{fmt(torch_rate, '{:.0f}')} | {fmt(ratio, '{:.2f}x')} |"
        )
    over = [r["config"] for r in result["rows"] if r["train_s"] > 1.1 * result["seconds"]]
    if over:
        lines += [
            "",
            f"Trained well past the budget (not at equal time): {', '.join(over)}. `fit` acts "
            "on `stop_training` at batch boundaries only; for `engine_rows` a batch is all "
            "the long rows, i.e. a whole epoch.",
        ]
    return "\n".join(lines)


CONFIGS = {
    "keras_fit": run_keras_fit,
    "keras_fit_spe16": run_keras_fit_spe16,
    "engine_plain": run_engine_plain,
    "engine_fast": run_engine_fast,
    "engine_fast_spe1": run_engine_fast_spe1,
    "torch": run_torch,
    "jax": run_jax,
}


def _available(name):
    if name not in ("torch", "jax"):
        return True
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def throughput_child(config, workload, quick, data_path):
    """One timed run in this (fresh) process; prints a JSON line."""
    import numpy as np

    spec = (QUICK if quick else WORKLOADS)[workload]
    with np.load(data_path) as data:  # made by the parent: peers never import TensorFlow
        x, y = data["x"], data["y"]
    base = config.split("@")[0]  # engine_fast@REF: the same run, REF's code (see --ref)
    print(json.dumps({"epoch_s": CONFIGS[base](spec, x, y), "package": _package_dir()}))


def _package_dir():
    if "bptt_keras" not in sys.modules:
        return None
    return os.path.dirname(sys.modules["bptt_keras"].__file__)


def _ref_tree(ref):
    """`git archive` of `ref` unpacked in a temporary folder (the repository is untouched)."""
    import tempfile

    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout.strip()
    target = tempfile.mkdtemp(prefix="bptt-bench-ref-")
    archive = subprocess.run(
        ["git", "archive", ref, "bptt_keras"], capture_output=True, check=True, cwd=root
    )
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    return target


def _child(*args, pythonpath=None):
    env = None
    if pythonpath:  # ahead of the installed package: a --ref run imports REF's bptt_keras
        env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, timeout=3600, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(workload, spec, rounds, quick, only=None, ref=None):
    """Interleaved rounds of the configurations (`only`: a subset; `keras_fit` always runs,
    it is the baseline). `ref`: `(git ref, unpacked tree)`, adds `engine_fast@REF`, the
    default fast path of that commit, run in the same rounds."""
    import tempfile

    import numpy as np

    data_path = os.path.join(tempfile.mkdtemp(prefix="bptt-bench-"), f"{workload}.npz")
    x, y = _data(spec)
    np.savez(data_path, x=x, y=y)
    wanted = [c for c in CONFIGS if only is None or c in only or c == "keras_fit"]
    configs = [c for c in wanted if _available(c)]
    skipped = [c for c in wanted if c not in configs]
    trees = {}
    if ref is not None:
        name = f"engine_fast@{ref[0]}"
        at = configs.index("engine_fast") + 1 if "engine_fast" in configs else len(configs)
        configs.insert(at, name)
        trees[name] = ref[1]
    times = {c: [] for c in configs}
    limits = []
    for round_ in range(rounds):
        for name in configs:  # interleaved: A B C A B C ...
            # Each run in its own process: TensorFlow, PyTorch and JAX do not share one
            # process safely, and no run inherits another's caches or allocator state.
            child = ["--run-child", name, workload, "--data", data_path]
            child += ["--quick"] if quick else []
            result = _child(*child, pythonpath=trees.get(name))
            if name in trees and result["package"] != os.path.join(trees[name], "bptt_keras"):
                raise RuntimeError(f"{name} imported {result['package']}, not the ref's tree")
            times[name].append(result["epoch_s"])
        # The roofline's rates, measured in the same rounds (the same machine conditions).
        limits.append(_child("--matmul-child", workload, *(["--quick"] if quick else [])))
        print(
            f"  {workload} round {round_ + 1}/{rounds}: "
            + ", ".join(f"{c} {times[c][-1]:.3f}s" for c in configs),
            flush=True,
        )
    medians = {c: statistics.median(t) for c, t in times.items()}
    base = medians["keras_fit"]
    roof = _roofline_summary(spec, limits)
    rows = []
    for c in configs:
        batch_s = medians[c] / roof["batches"]
        rows.append(
            {
                "config": c,
                "median_epoch_s": medians[c],
                "seq_per_s": spec["n"] / medians[c],
                "vs_keras_fit": base / medians[c],
                "epochs_s": times[c],
                "per_round_vs_keras_fit": [
                    k / t for k, t in zip(times["keras_fit"], times[c], strict=True)
                ],
                "batch_s": batch_s,
                "gflops": roof["flops_per_batch"] / batch_s / 1e9,
                "of_roofline": roof["bound_s"]["best_gflops"] / batch_s,
            }
        )
    return {
        "workload": workload,
        "spec": spec,
        "rounds": rounds,
        "rows": rows,
        "skipped": skipped,
        "roofline": roof,
    }


def _roofline_summary(spec, limits):
    """Medians over rounds of each product's rates and of the empty call; the work per batch
    and the roofline time per batch at the XLA, PyTorch and best rate of each shape."""
    import math

    import roofline

    products = roofline.throughput_products(spec)
    rates = []
    for i, product in enumerate(products):
        row = dict(product)
        for key in ("xla_gflops", "torch_gflops", "best_gflops"):
            values = [lim["products"][i].get(key) for lim in limits]
            row[key] = None if None in values else statistics.median(values)
        rates.append(row)
    keys = ("xla_gflops", "torch_gflops", "best_gflops")
    return {
        "batches": math.ceil(spec["n"] / spec["batch"]),
        "flops_per_batch": roofline.flops(products),
        "products": rates,
        "bound_s": {key: roofline.roofline_s(products, rates, key) for key in keys},
        "empty_call_s": statistics.median(lim["empty_call_s"] for lim in limits),
        "elementwise_s": (
            statistics.median(lim["elementwise_s"] for lim in limits)
            if "elementwise_s" in limits[0]
            else None
        ),
    }


# ---- memory ---------------------------------------------------------------------------


def memory_child(config, steps, cell="lstm", units=128, batch=32):
    """One measurement in this (fresh) process; prints a JSON line.

    The measurement is `bptt_keras.experiments.memory_time.measure_step`, the same code as
    the `memory` experiment (`bptt-keras reproduce memory`), so both report the same figures.
    """
    from bptt_keras.experiments.memory_time import measure_step

    mode = MEMORY_MODES[config]
    row = measure_step(mode, steps, units=units, batch=batch, segment=64, k=100, cell=cell)
    print(
        json.dumps(
            {
                "config": config,
                "cell": cell,
                "steps": steps,
                "peak_above_kib": row["peak_mib"] * 1024,
                "step_s": row["step_s"],
            }
        )
    )


def memory(configs, steps_list, rounds, cells=("lstm",)):
    """Interleaved rounds (every cell, T and configuration once per round); one row per
    run."""
    results = []
    for round_ in range(rounds):
        for cell, steps, config in [(c, t, m) for c in cells for t in steps_list for m in configs]:
            row = _child("--memory-child", config, str(steps), cell)
            row["round"] = round_
            print(
                f"  memory round {round_ + 1}/{rounds} {cell} T={steps} {config}: "
                f"+{row['peak_above_kib'] / 1024:.1f} MiB, {row['step_s']:.3f}s",
                flush=True,
            )
            results.append(row)
    return results


def memory_summary(rows):
    """Per (T, config): median peak and step time, and the growth above the smallest T and
    the step time relative to `plain` (median of the per-round ratios)."""
    configs = list(dict.fromkeys(r["config"] for r in rows))
    steps_list = sorted({r["steps"] for r in rows})
    rounds = sorted({r.get("round", 0) for r in rows})

    def pick(steps, config, round_):
        found = [
            r
            for r in rows
            if r["steps"] == steps and r["config"] == config and r.get("round", 0) == round_
        ]
        return found[0] if found else None

    summary = {}
    for steps in steps_list:
        for config in configs:
            runs = [pick(steps, config, k) for k in rounds]
            runs = [r for r in runs if r is not None]
            peaks = [r["peak_above_kib"] / 1024 for r in runs]
            growth = [
                r["peak_above_kib"] / 1024
                - pick(steps_list[0], config, r.get("round", 0))["peak_above_kib"] / 1024
                for r in runs
            ]
            ratios = [
                r["step_s"] / pick(steps, "plain", r.get("round", 0))["step_s"]
                for r in runs
                if pick(steps, "plain", r.get("round", 0)) is not None
            ]
            summary[(steps, config)] = {
                "peak_mib": statistics.median(peaks),
                "peaks_mib": peaks,
                "growth_mib": statistics.median(growth),
                "step_s": statistics.median(r["step_s"] for r in runs),
                "vs_plain": statistics.median(ratios) if ratios else None,
            }
    return configs, steps_list, summary


# ---- report ---------------------------------------------------------------------------


def _cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.split(":")[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name (Linux `/proc/cpuinfo`), else what `platform` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.platform()


def instruction_set():
    """The widest vector instructions the CPU offers: timings differ between AVX2 and
    AVX-512 machines, so every report names which ran it."""
    flags = set((_cpuinfo_field("flags") or "").split())
    if not flags:
        return "unknown (no /proc/cpuinfo)"
    found = [name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
             if flag in flags][:1] or ["no AVX"]  # fmt: skip
    extras = [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX"),
              ("fma", "FMA")) if flag in flags]  # fmt: skip
    return " + ".join(found + extras)


def versions():
    import keras
    import numpy as np
    import tensorflow as tf

    info = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {cpu_model()}",
        "instruction set": instruction_set(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "not installed"
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = "not installed (peer skipped)"
    return info


def roofline_markdown(roof):
    """The limit a throughput table is measured against (see `roofline.py`)."""

    def fmt(value, spec_="{:.0f}"):
        return "-" if value is None else spec_.format(value)

    def ms(seconds):
        return "-" if seconds is None else f"{seconds * 1e3:.2f}"

    bound = roof["bound_s"]
    empty = roof["empty_call_s"]
    lines = [
        f"Roofline: {roof['flops_per_batch'] / 1e9:.3f} GFLOP of matrix products per batch "
        f"(counted from the shapes; {roof['batches']} batches per epoch). The same shapes' "
        "rates, measured in a child process in every round (median):",
        "",
        "| product | shape (m x k times k x n) x repeats | XLA loop GFLOP/s "
        "| PyTorch GFLOP/s | roofline uses |",
        "|---|---|---|---|---|",
    ]
    for p in roof["products"]:
        lines.append(
            f"| {p['name']} | {p['m']} x {p['k']} x {p['n']} x {p['repeat']} | "
            f"{fmt(p['xla_gflops'])} | {fmt(p['torch_gflops'])} | {fmt(p['best_gflops'])} |"
        )
    lines += [
        "",
        f"Products alone, per batch: {ms(bound['best_gflops'])} ms at the faster library's "
        f"rate per shape ({ms(bound['xla_gflops'])} ms at XLA's, "
        f"{ms(bound['torch_gflops'])} ms at PyTorch's): `of roofline` is that time over "
        "each configuration's time per batch. "
        f"An empty XLA-compiled call takes {empty * 1e6:.0f} us, so a step compiled as one "
        f"call per batch cannot take less than {(bound['best_gflops'] + empty) * 1e3:.2f} ms "
        f"per batch; with 16 batches per call (`fit`'s default) "
        f"{(bound['best_gflops'] + empty / 16) * 1e3:.2f} ms.",
    ]
    if roof.get("elementwise_s") is not None:
        lines[-1] += (
            " The fast path's two time loops with their products taken out (the element-wise "
            "work of the gates, the cell state and the stored rows, XLA-compiled; "
            f"`roofline.lstm_elementwise_s`) take {ms(roof['elementwise_s'])} ms per batch: "
            f"products + element-wise = {ms(bound['xla_gflops'] + roof['elementwise_s'])} ms "
            "at XLA's rates, run one after the other."
        )
    return "\n".join(lines)


def memory_markdown(cell, rows):
    """The memory tables of one cell's runs."""
    configs, steps_list, summary = memory_summary(rows)
    name = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}[cell]
    lines = [
        f"**memory, {name}(128)**: two full-BPTT gradient steps, {name}(128) + Dense, batch "
        "32: peak RSS above the process before the steps (MiB) / time of the second step (s); "
        "median of interleaved rounds",
        "",
        "| T | " + " | ".join(configs) + " |",
        "|---" * (len(configs) + 1) + "|",
    ]
    for steps in steps_list:
        cells = [
            f"{summary[steps, c]['peak_mib']:.1f} / {summary[steps, c]['step_s']:.2f}"
            for c in configs
        ]
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    top = steps_list[-1]
    lines += [
        "",
        f"growth of the peak from T = {steps_list[0]} to T = {top} (MiB; median over "
        f"rounds) and step time at T = {top} relative to plain (median of per-round "
        "ratios):",
        "",
        "| | " + " | ".join(configs) + " |",
        "|---" * (len(configs) + 1) + "|",
        "| growth | " + " | ".join(f"+{summary[top, c]['growth_mib']:.0f}" for c in configs) + " |",
        "| time vs plain | "
        + " | ".join(
            "-" if summary[top, c]["vs_plain"] is None else f"{summary[top, c]['vs_plain']:.2f}x"
            for c in configs
        )
        + " |",
    ]
    return "\n".join(lines)


def markdown(report):
    lines = ["| " + " | ".join(f"{k}: {v}" for k, v in report["versions"].items()) + " |", ""]
    for result in report["throughput"]:
        spec = result["spec"]
        lines += [
            f"**{result['workload']}**: {spec['cell']}({spec['units']}) + Dense, "
            f"T = {spec['steps']}, batch {spec['batch']}, {spec['n']} sequences; median of "
            f"{result['rounds']} interleaved rounds"
            + (f" (skipped: {', '.join(result['skipped'])})" if result["skipped"] else ""),
            "",
            "| configuration | epoch (s) | sequences/s | vs Keras fit | per round vs Keras fit "
            "| ms / batch | GFLOP/s | of roofline |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            rounds_ = " ".join(f"{r:.2f}" for r in row["per_round_vs_keras_fit"])
            lines.append(
                f"| {row['config']} | {row['median_epoch_s']:.3f} | "
                f"{row['seq_per_s']:.0f} | {row['vs_keras_fit']:.2f}x | {rounds_} | "
                f"{row['batch_s'] * 1e3:.2f} | {row['gflops']:.1f} | "
                f"{row['of_roofline']:.0%} |"
            )
        lines += ["", roofline_markdown(result["roofline"]), ""]
    if report.get("tbptt"):
        lines += [tbptt_markdown(report["tbptt"]), ""]
    if report.get("charlm"):
        lines += [charlm_markdown(report["charlm"]), ""]
    if report["memory"]:
        for cell in dict.fromkeys(r.get("cell", "lstm") for r in report["memory"]):
            rows = [r for r in report["memory"] if r.get("cell", "lstm") == cell]
            lines += [memory_markdown(cell, rows), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        default="small,large,small_gru,large_gru,tbptt,memory",
        help="comma-separated: small, large, small_gru, large_gru, tbptt, memory, charlm",
    )
    parser.add_argument(
        "--tbptt-cells", help="tbptt workload: cells to run (default simple_rnn,lstm,gru)"
    )
    parser.add_argument(
        "--memory-cells",
        default="lstm,gru",
        help="memory workload: cells to measure, comma-separated (default lstm,gru)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; memory 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument(
        "--configs",
        help="throughput configurations to run, comma-separated (default: all; keras_fit, "
        f"the baseline, always runs): {', '.join(CONFIGS)}",
    )
    parser.add_argument(
        "--ref",
        help="also run engine_fast as of this git commit (e.g. HEAD), interleaved in the "
        "same rounds: an A/B of uncommitted changes to the fast path",
    )
    parser.add_argument(
        "--tbptt-child", nargs=3, metavar=("CONFIG", "CELL", "K"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--charlm-seconds",
        type=float,
        help=f"charlm: wall-clock training budget per run (default {CHARLM_SECONDS:g} s; "
        f"quick {CHARLM_SECONDS_QUICK:g} s)",
    )
    parser.add_argument("--charlm-child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--matmul-child", metavar="WORKLOAD", help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("CONFIG", "T", "CELL"), help=argparse.SUPPRESS
    )
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument(
        "--run-child", nargs=2, metavar=("CONFIG", "WORKLOAD"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.memory_child[2])
        return
    if args.run_child:
        throughput_child(*args.run_child, args.quick, args.data)
        return
    if args.tbptt_child:
        tbptt_child(*args.tbptt_child, args.quick, args.data)
        return
    if args.charlm_child:
        charlm_child(args.charlm_child, args.quick, args.data, args.charlm_seconds)
        return
    if args.matmul_child:
        matmul_child(args.matmul_child, args.quick)
        return
    chosen = args.workloads.split(",")
    args.rounds_set = args.rounds is not None
    rounds = args.rounds or (2 if args.quick else 5)
    specs = QUICK if args.quick else WORKLOADS
    only = None
    if args.configs:
        only = args.configs.split(",")
        known = {*CONFIGS, *TBPTT_CONFIGS, *CHARLM_CONFIGS}
        unknown = [c for c in only if c not in known]
        if unknown:
            parser.error(
                f"unknown configurations {unknown}; choose from {list(CONFIGS)} (small, large), "
                f"{list(TBPTT_CONFIGS)} (tbptt) or {list(CHARLM_CONFIGS)} (charlm)"
            )
    ref = (args.ref, _ref_tree(args.ref)) if args.ref else None
    report = {
        "versions": versions(),
        "throughput": [],
        "tbptt": None,
        "charlm": None,
        "memory": [],
    }
    print(f"{report['versions']['machine']}; {report['versions']['instruction set']}")
    for workload in WORKLOADS:
        if workload in chosen:
            report["throughput"].append(
                throughput(workload, specs[workload], rounds, args.quick, only, ref)
            )
    if "tbptt" in chosen:
        tbptt_rounds = args.rounds or (2 if args.quick else 3)
        cells = args.tbptt_cells.split(",") if args.tbptt_cells else None
        report["tbptt"] = tbptt(tbptt_rounds, args.quick, only, cells)
    if "charlm" in chosen:
        seconds = args.charlm_seconds or (CHARLM_SECONDS_QUICK if args.quick else CHARLM_SECONDS)
        charlm_rounds = args.rounds or (1 if args.quick else 3)
        report["charlm"] = charlm(charlm_rounds, args.quick, seconds, only)
    if "memory" in chosen:
        steps = (20, 60) if args.quick else MEMORY_STEPS
        memory_rounds = 1 if args.quick else (args.rounds if args.rounds_set else 3)
        cells = args.memory_cells.split(",")
        report["memory"] = memory(list(MEMORY_MODES), steps, memory_rounds, cells)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()
