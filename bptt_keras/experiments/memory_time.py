"""Experiment `memory`: peak memory and step time of BPTT variants as the sequence grows.

One full-BPTT gradient step of LSTM(128) + Dense (batch 32) on sequences of T = 100..4000
steps, for: plain autodiff through the loop (`fast=False`), the hand-derived backward pass
with stored activations (`fast=True, recompute=None`), the defaults (`recompute="auto"`:
recomputation from T = 1000 on), recomputation (`recompute=64`: every step's output and every
64th cell state kept, each segment rebuilt inside the custom gradient, a checkpointing scheme
like Chen et al. 2016's; memory still grows linearly in T), the `tf.recompute_grad` fallback
used for layers without a fast path, and truncated BPTT(100), whose memory should not depend
on T at all. Each measurement runs in
a fresh process (`python -m bptt_keras.experiments.memory_time MODE T ...`): the peak
resident set size (Linux `VmHWM`, reset after set-up) above the set-up process, over two
gradient steps, and the time of the second. The same child serves `benchmarks/bench.py`.

Context, not a comparable figure: Gruslys et al. 2016's dynamic-programming algorithm (another
scheme) saves 95% of BPTT's memory at T = 1000 for 33% more time; plain BPTT's memory grows
linearly in T (Werbos 1990).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from matplotlib.figure import Figure

CONFIG = {
    "quick": {
        "lengths": [100, 1000],
        "modes": ["plain", "fast", "recompute", "truncated"],
        "units": 128,
        "batch": 32,
        "segment": 64,
        "k": 100,
        "parallel": 2,
    },
    "full": {
        "lengths": [100, 500, 1000, 2000, 4000],
        # "default" measures what a user gets without options (recompute="auto").
        "modes": ["plain", "fast", "default", "recompute", "recompute_grad", "truncated"],
        "units": 128,
        "batch": 32,
        "segment": 64,
        "k": 100,
        "parallel": 1,
    },
}

LABELS = {
    "plain": "full BPTT, plain autodiff (fast=False)",
    "fast": "full BPTT, hand-derived backward, stored activations (recompute=None)",
    "default": "full BPTT, the defaults (fast, recompute='auto': recomputes from T = 1000)",
    "recompute": "full BPTT, recompute",
    "recompute_grad": "full BPTT, tf.recompute_grad fallback (fast=False), recompute",
    "truncated": "truncated BPTT(k)",
}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_step(
    mode: str, steps: int, *, units=128, batch=32, segment=64, k=100, cell="lstm"
) -> dict:
    """Peak RSS above set-up and time of one gradient step, in *this* process.

    Call it in a fresh process (see `measure`): the peak is a process-wide high-water mark.

    Returns:
        `{"mode", "T", "peak_mib", "step_s"}`.
    """
    import bptt_keras as bk  # imported here: the parent process never loads TensorFlow

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, 1)).astype("float32")
    y = rng.normal(size=(batch, steps, 1)).astype("float32")
    model = bk.build_model(cell, units, seed=0)
    kwargs = {
        "plain": {"fast": False},
        "fast": {"fast": True, "recompute": None},  # the stored-activation path
        "default": {},  # recompute="auto": recomputes from T = 1000
        "recompute": {"fast": True, "recompute": segment},
        "recompute_grad": {"fast": False, "recompute": segment},
        "truncated": {"fast": True, "k1": min(k, steps)},
    }[mode]
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the high-water mark: imports and data are excluded
    before = _rss_kib("VmRSS")
    bk.bptt_gradients(model, x, y, **kwargs)  # first step: tracing and allocation
    start = time.perf_counter()
    bk.bptt_gradients(model, x, y, **kwargs)
    elapsed = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    return {"mode": mode, "T": steps, "peak_mib": (peak - before) / 1024, "step_s": elapsed}


def measure(mode: str, steps: int, **sizes) -> dict:
    """`measure_step` in a fresh Python process (so no run sees another's allocations)."""
    args = [sys.executable, "-m", "bptt_keras.experiments.memory_time", mode, str(steps)]
    args += [f"--{key}={value}" for key, value in sizes.items()]
    out = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement {mode} T={steps} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(report) -> None:
    """Measures every (mode, T); writes `results.*` and `memory_time.png`."""
    cfg = report.config
    sizes = {key: cfg[key] for key in ("units", "batch", "segment", "k")}
    jobs = [(mode, steps) for steps in cfg["lengths"] for mode in cfg["modes"]]
    progress = report.progress(len(jobs))

    def one(job):
        result = measure(*job, **sizes)
        progress.done(f"{job[0]}, T = {job[1]}")
        return result

    with ThreadPoolExecutor(max_workers=cfg["parallel"]) as pool:
        results = list(pool.map(one, jobs))
    by = {(r["mode"], r["T"]): r for r in results}
    first = cfg["lengths"][0]
    rows = []
    for r in results:
        plain = by.get(("plain", r["T"]))
        rows.append(
            {
                "T": r["T"],
                "mode": LABELS[r["mode"]]
                + (f" {cfg['segment']}" if r["mode"].startswith("recompute") else "")
                + (f", k = {cfg['k']}" if r["mode"] == "truncated" else ""),
                "peak MiB above set-up": r["peak_mib"],
                f"growth above T = {first} (MiB)": r["peak_mib"]
                - by[(r["mode"], first)]["peak_mib"],
                "step time (s)": r["step_s"],
                "time / plain": r["step_s"] / plain["step_s"] if plain else None,
            }
        )
    last = cfg["lengths"][-1]
    growth = {m: by[(m, last)]["peak_mib"] - by[(m, first)]["peak_mib"] for m in cfg["modes"]}
    report.table(
        "results",
        rows,
        title=f"One full-BPTT gradient step, LSTM({cfg['units']}) + Dense, batch {cfg['batch']}",
        notes="Peak resident memory (VmHWM, reset after set-up) above the set-up process over "
        "two steps; time of the second step. Each cell is a fresh process. A saving can be of "
        f"the growth above T = {first} or of the total peak: the two differ (compare both "
        "columns). Recomputation keeps every step's output and every segment-th cell state, "
        "so its memory still grows linearly in T. For context only (another algorithm, not "
        "comparable): Gruslys et al. 2016 save 95% of BPTT's memory at T = 1000 for +33% time.",
    )
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_mem, ax_time = fig.subplots(1, 2)
    for mode in cfg["modes"]:
        ts = cfg["lengths"]
        ax_mem.plot(ts, [by[(mode, t)]["peak_mib"] for t in ts], "o-", label=LABELS[mode])
        ax_time.plot(ts, [by[(mode, t)]["step_s"] for t in ts], "o-", label=LABELS[mode])
    for ax, ylabel, title in [
        (ax_mem, "peak memory above set-up (MiB, log)", "Peak memory of one gradient step"),
        (ax_time, "time of one gradient step (s, log)", "Step time"),
    ]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_mem.legend(fontsize=8)
    report.figure("memory_time", fig, caption="Peak memory and step time against T")
    report.finish(
        f"Growth of the peak from T = {first} to T = {last} (MiB): "
        + ", ".join(f"{m} {g:+.0f}" for m, g in growth.items())
        + "."
    )


def _main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="One memory/time measurement (child process).")
    parser.add_argument("mode", choices=list(LABELS))
    parser.add_argument("steps", type=int)
    for key in ("units", "batch", "segment", "k"):
        parser.add_argument(f"--{key}", type=int, default=CONFIG["full"][key])
    parser.add_argument("--cell", default="lstm", choices=("simple_rnn", "lstm", "gru"))
    args = parser.parse_args(argv)
    sizes = {key: getattr(args, key) for key in ("units", "batch", "segment", "k", "cell")}
    print(json.dumps(measure_step(args.mode, args.steps, **sizes)))


if __name__ == "__main__":
    _main(sys.argv[1:])
