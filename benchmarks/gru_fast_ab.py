"""GRU on the fast path vs plain autodiff: s/epoch of `bk.fit(..., fast=True)` and `fast=False`.

GRU(128) + Dense(1) trained by TBPTT(k, k) over a 32 x 2000 stream (the `tbptt` workload's
shape), Adam; after a first (compiling) epoch, 2 epochs timed; 3 interleaved rounds, median.

    python benchmarks/gru_fast_ab.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bptt_keras as bk  # noqa: E402

ROUNDS = 3


def seconds_per_epoch(x, y, *, fast: bool, k: int) -> float:
    model = bk.build_model("gru", 128, seed=0)
    options = dict(
        k1=k,
        batch_size=x.shape[0],
        shuffle=False,
        verbose=0,
        seed=0,
        fast=fast,
        optimizer=keras.optimizers.Adam(1e-3),
    )
    bk.fit(model, x, y, epochs=1, **options)  # compiles
    start = time.perf_counter()
    bk.fit(model, x, y, epochs=3, initial_epoch=1, **options)
    return (time.perf_counter() - start) / 2


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2000, 1)).astype("float32")
    y = np.roll(x, -1, axis=1)
    for k in (20, 100):
        times = {True: [], False: []}
        for _ in range(ROUNDS):
            for fast in (True, False):
                times[fast].append(seconds_per_epoch(x, y, fast=fast, k=k))
        fast, plain = np.median(times[True]), np.median(times[False])
        print(
            f"GRU(128) k={k}: fast {fast:.3f} s/epoch, plain {plain:.3f}, plain/fast "
            f"{plain / fast:.2f}x; rounds fast {np.round(times[True], 3).tolist()} plain "
            f"{np.round(times[False], 3).tolist()}",
            flush=True,
        )


if __name__ == "__main__":
    main()
