"""What each input path costs: arrays, a tf.data.Dataset (in memory or from a Python
generator), a masked model, and Keras' own `fit` through `BPTTModel`, for full and truncated
BPTT, against arrays in the same rounds.

    python benchmarks/inputs.py                  # LSTM(64), T = 100, batch 32, 3 rounds
    python benchmarks/inputs.py --quick          # a smoke run (tiny sizes, 1 round)

Every (configuration, truncation) run is a fresh subprocess that trains four epochs on a
fresh model and reports the median of epochs 2-4 (the first pays tracing and compilation;
a single second epoch was seen to take up to 8x the third under Keras' `fit` now and
then). Configurations run interleaved, `--rounds` rounds, and the median is reported with
its ratio to `arrays` (bk.fit on NumPy arrays, the default fast path, same truncation) and
to Keras' `fit` (full BPTT, the unmasked model: Keras has no truncation, so for k1 = 20 rows
this compares epochs over the same data) measured in the same rounds.

Configurations:

- `arrays`: `bk.fit(model, x, y, batch_size=32)`.
- `dataset`: `bk.fit(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(32))`.
- `generator`: the same batches from a Python generator (`Dataset.from_generator`): what a
  pipeline that makes its data on the fly costs.
- `masked`: the model with `Masking(0.0)` first and a quarter of the steps padded (rows of
  random length in [T/2, T]): the plain autodiff loop, since the fast path declines masks.
- `plain`: the unmasked model with `fast=False`: separates the mask's own cost from the
  plain path's.
- `bptt_model`: `BPTTModel(model, k1)` trained by Keras' own `fit` on the arrays.
- `keras_fit`, `keras_fit_masked`: Keras' `model.fit` (full BPTT only: Keras has no
  truncation), unmasked and masked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import bench

SPEC = {"units": 64, "steps": 100, "batch": 32, "n": 512}
QUICK = {"units": 4, "steps": 12, "batch": 4, "n": 16}
CONFIGS = (
    "arrays", "dataset", "generator", "masked", "plain", "bptt_model", "keras_fit",
    "keras_fit_masked",
)  # fmt: skip
TRUNCATIONS = {"full": None, "k1=20": 20}


def _data(spec, masked):
    import numpy as np

    from bptt_keras import next_step_pairs
    from bptt_keras.tasks import noisy_sines

    x, y = next_step_pairs(noisy_sines(spec["n"], spec["steps"] + 1, seed=0))
    if masked:  # rows of random length in [T/2, T], padded with zeros at the end
        rng = np.random.default_rng(0)
        lengths = rng.integers(spec["steps"] // 2, spec["steps"] + 1, size=len(x))
        for row, length in enumerate(lengths):
            x[row, length:] = 0.0
            y[row, length:] = 0.0
    return x.astype("float32"), y.astype("float32")


def _model(spec, masked):
    import keras

    import bptt_keras as bk

    model = bk.build_model("lstm", spec["units"], seed=0)
    if not masked:
        return model
    inputs = keras.Input((None, 1))
    h = keras.layers.Masking(0.0)(inputs)
    for layer in model.layers[1:]:
        h = layer(h)
    return keras.Model(inputs, h)


def child(config, truncation, quick):
    """One run: the second epoch's seconds."""
    import warnings

    import keras
    import tensorflow as tf

    import bptt_keras as bk

    spec = QUICK if quick else SPEC
    k1 = TRUNCATIONS[truncation]
    if quick and k1:
        k1 = 4
    masked = config in ("masked", "keras_fit_masked")
    x, y = _data(spec, masked)
    model = _model(spec, masked)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    common = {"epochs": 4, "verbose": 0, "callbacks": [Timer()]}
    optimizer = keras.optimizers.Adam(1e-3)
    batch = spec["batch"]
    if config in ("keras_fit", "keras_fit_masked"):
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=batch, shuffle=False, **common)
    elif config == "bptt_model":
        wrapped = bk.BPTTModel(model, k1=k1)
        wrapped.compile(optimizer=optimizer, loss="mse")
        wrapped.fit(x, y, batch_size=batch, shuffle=False, **common)
    else:
        if config == "dataset":
            data = (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch),)
        elif config == "generator":

            def batches():
                for start in range(0, len(x), batch):
                    yield x[start : start + batch], y[start : start + batch]

            shape = (None, spec["steps"], 1)
            spec_x = tf.TensorSpec(shape, tf.float32)
            data = (tf.data.Dataset.from_generator(batches, output_signature=(spec_x, spec_x)),)
        else:
            data = (x, y)
        kwargs = {"batch_size": batch, "shuffle": False} if len(data) == 2 else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the masked model's fast path note
            bk.fit(
                model, *data, k1=k1, optimizer=optimizer, fast=config != "plain", **kwargs,
                **common,
            )  # fmt: skip
    return statistics.median(times[1:])


def _runs(truncation):
    return [c for c in CONFIGS if truncation == "full" or not c.startswith("keras_fit")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "TRUNCATION"))
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.quick)))
        return
    rounds = 1 if args.quick else args.rounds
    results: dict = {t: {c: [] for c in _runs(t)} for t in TRUNCATIONS}
    for _ in range(rounds):
        for truncation in TRUNCATIONS:
            for config in _runs(truncation):
                command = [sys.executable, __file__, "--child", config, truncation]
                done = subprocess.run(
                    command + (["--quick"] if args.quick else []),
                    capture_output=True, text=True, timeout=1800,
                )  # fmt: skip
                if done.returncode:
                    raise RuntimeError(f"{config} {truncation}: {done.stderr[-3000:]}")
                results[truncation][config].append(json.loads(done.stdout.splitlines()[-1]))
    spec = QUICK if args.quick else SPEC
    info = bench.versions()
    lines = [
        "| " + " | ".join(f"{k}: {v}" for k, v in info.items()) + " |",
        "",
        f"LSTM({spec['units']}) + Dense, T = {spec['steps']}, batch {spec['batch']}, "
        f"{spec['n']} sequences, Adam(1e-3); seconds per epoch (median of epochs 2-4), median "
        f"of {rounds} interleaved round(s).",
        "",
        "| truncation | configuration | epoch (s) | per round | vs arrays | vs Keras fit |",
        "|---|---|---|---|---|---|",
    ]
    keras_full = statistics.median(results["full"]["keras_fit"])
    for truncation, runs in results.items():
        base = statistics.median(runs["arrays"])
        for config, times in runs.items():
            median = statistics.median(times)
            per_round = " ".join(f"{t:.3f}" for t in times)
            lines.append(
                f"| {truncation} | {config} | {median:.3f} | {per_round} | "
                f"{base / median:.2f}x | {keras_full / median:.2f}x |"
            )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main()
