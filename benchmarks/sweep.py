"""Time per training batch over sequence length and batch size: bptt_keras, Keras `fit`,
PyTorch and JAX, so a user can see where each wins.

    python benchmarks/sweep.py                     # T in 50, 200, 1000 x batch 8, 64, 256
    python benchmarks/sweep.py --rounds 1 --steps 50 --batches 8   # one point
    python benchmarks/sweep.py --quick             # a smoke run (tiny sizes)

Model: LSTM(128) + Dense(1) on noisy sines (one feature), next-step MSE, Adam(1e-3), full
BPTT, each framework's defaults otherwise (ours: `bk.fit`, whose default recomputes
segments at T >= 1000; Keras: `model.fit`; PyTorch: `nn.LSTM` + `nn.Linear`; JAX: `lax.scan`
+ `jit`; the same code as `bench.py`'s small and large workloads). Every (T, batch,
framework) run is a fresh subprocess that trains two epochs on a fresh model and times the
second (the first pays tracing and compilation); each epoch has enough batches for about half
a second of work (3 to 128 batches). Configurations run interleaved, `--rounds` rounds
(default 3), and the median is reported, with the ratio to Keras `fit` measured in the same
rounds. Writes `sweep.md` (tables), `sweep.json` (raw) and `sweep.png` (log-log plot) to
`--out` (default: this folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import bench

STEPS = (50, 200, 1000)
BATCHES = (8, 64, 256)
UNITS = 128
CONFIGS = ("keras_fit", "engine_fast", "torch", "jax")  # bench.CONFIGS names
LABELS = {
    "keras_fit": "Keras fit",
    "engine_fast": "bptt_keras fit",
    "torch": "PyTorch",
    "jax": "JAX",
}


def batches_per_epoch(steps: int, batch: int) -> int:
    """Enough batches for about 0.5 s of work per epoch at a rough 50 us + 3.5 us x batch per
    LSTM(128) step (measured order of magnitude on 2 cores), between 3 and 128."""
    per_batch_s = steps * (50e-6 + 3.5e-6 * batch)
    return max(3, min(128, round(0.5 / per_batch_s)))


def spec_for(steps: int, batch: int, units: int = UNITS) -> dict:
    n = batches_per_epoch(steps, batch) * batch
    return {"cell": "lstm", "units": units, "steps": steps, "batch": batch, "n": n}


def child(config: str, spec: dict, data_path: str) -> None:
    """One timed run in this (fresh) process; prints a JSON line."""
    import numpy as np

    with np.load(data_path) as data:
        x, y = data["x"], data["y"]
    print(json.dumps({"epoch_s": bench.CONFIGS[config](spec, x, y)}))


def _run_child(config: str, spec: dict, data_path: str) -> float:
    args = [sys.executable, __file__, "--child", config, json.dumps(spec), data_path]
    out = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{config} {spec}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_s"]


def sweep(steps_list, batch_list, rounds, configs, units=UNITS) -> list[dict]:
    """Interleaved rounds over every (T, batch, configuration); one row per point with the
    per-round times per batch."""
    import numpy as np

    folder = tempfile.mkdtemp(prefix="bptt-sweep-")
    points = []
    for steps in steps_list:
        for batch in batch_list:
            spec = spec_for(steps, batch, units)
            path = os.path.join(folder, f"{steps}_{batch}.npz")
            x, y = bench._data(spec)
            np.savez(path, x=x, y=y)
            points.append({"steps": steps, "batch": batch, "spec": spec, "data": path})
    times = {(p["steps"], p["batch"], c): [] for p in points for c in configs}
    for round_ in range(rounds):
        for point in points:
            for config in configs:
                epoch = _run_child(config, point["spec"], point["data"])
                per_batch = epoch / (point["spec"]["n"] // point["batch"])
                times[point["steps"], point["batch"], config].append(per_batch)
            print(
                f"  round {round_ + 1}/{rounds} T={point['steps']} batch={point['batch']}: "
                + ", ".join(
                    f"{c} {times[point['steps'], point['batch'], c][-1] * 1e3:.1f} ms"
                    for c in configs
                ),
                flush=True,
            )
    rows = []
    for point in points:
        key = (point["steps"], point["batch"])
        row = {"steps": key[0], "batch": key[1], "batches": point["spec"]["n"] // key[1]}
        for config in configs:
            row[config] = statistics.median(times[(*key, config)])
            row[f"{config}_rounds"] = times[(*key, config)]
        rows.append(row)
    return rows


def markdown(rows, configs, rounds, units=UNITS) -> str:
    lines = [
        f"LSTM({units}) + Dense(1), full BPTT, Adam: milliseconds per training batch (median "
        f"of {rounds} interleaved rounds; each run's second epoch) and, in brackets, the "
        "speed-up over Keras `fit` in the same rounds (higher is faster).",
        "",
        "| T | batch | batches/epoch | " + " | ".join(LABELS[c] for c in configs) + " | fastest |",
        "|---" * (len(configs) + 4) + "|",
    ]
    for row in rows:
        base = row.get("keras_fit")
        cells = []
        for config in configs:
            ratio = "" if base is None else f" ({base / row[config]:.2f}x)"
            cells.append(f"{row[config] * 1e3:.1f}{ratio}")
        fastest = min(configs, key=lambda c: row[c])
        lines.append(
            f"| {row['steps']} | {row['batch']} | {row['batches']} | "
            + " | ".join(cells)
            + f" | {LABELS[fastest]} |"
        )
    return "\n".join(lines)


def plot(rows, configs, path, units=UNITS) -> None:
    """Log-log: time per batch against T, one panel per batch size, one line per framework."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.8), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        chosen = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["steps"])
        steps = [r["steps"] for r in chosen]
        for config in configs:
            ax.plot(steps, [r[config] * 1e3 for r in chosen], marker="o", label=LABELS[config])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("sequence length T")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ms per training batch (lower is faster)")
    axes[0][-1].legend()
    fig.suptitle(f"LSTM({units}) full-BPTT training step, {os.cpu_count()} CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="T values")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=", ".join(CONFIGS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]), args.child[2])
        return
    configs = [c for c in args.configs.split(",") if bench._available(c)]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or "keras_fit" not in configs:
        parser.error(f"--configs must include keras_fit and be among {CONFIGS}; got {unknown}")
    units, rounds = (8, 1) if args.quick else (UNITS, args.rounds)
    steps = (10, 20) if args.quick else tuple(int(s) for s in args.steps.split(","))
    batch_list = (4,) if args.quick else tuple(int(b) for b in args.batches.split(","))
    info = bench.versions()
    print(f"{info['machine']}; {info['instruction set']}", flush=True)
    rows = sweep(steps, batch_list, rounds, configs, units)
    text = markdown(rows, configs, rounds, units)
    header = "| " + " | ".join(f"{k}: {v}" for k, v in info.items()) + " |"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sweep.md"), "w") as handle:
        handle.write(f"{header}\n\n{text}\n")
    with open(os.path.join(args.out, "sweep.json"), "w") as handle:
        json.dump({"versions": info, "units": units, "rounds": rounds, "rows": rows}, handle)
    plot(rows, configs, os.path.join(args.out, "sweep.png"), units)
    print()
    print(text)


if __name__ == "__main__":
    main()
