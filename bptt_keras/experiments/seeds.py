"""One experiment over several seeds: each seed's own run directory, and a summary that
reports every measured number as mean ± standard deviation (min-max) over the seeds, with
the learning curves' spread.

A single seed cannot tell a learned result from run-to-run variation (the copy experiment's
LSTM moved from 0.74x to 1.08x of its baseline between two runs that differed only in float
rounding). `bptt-keras reproduce NAME --seeds 0,1,2` runs `run_experiment` once per seed
(data, weights and order all follow the seed) into `OUT/seed-<s>/` and writes to `OUT/`:

- `<table>.csv` / `.md` for every table the runs share, row by row: numbers that differ
  between seeds become `mean ± std (min-max)` (sample standard deviation); numbers equal
  in every run (sizes, settings, exact references) and text stay as they are; yes/no
  columns become the count of yes;
- `curves.png`: each learning curve's mean over the seeds with its min-max band;
- `config.json` (the seeds) and `README.md`.

`--jobs N` runs N seeds at a time, each in its own process with `cores // N` TensorFlow
threads: the small matrix products of a recurrent step use one core poorly, so on 2 cores
two one-thread processes train about 1.6x as many updates per second as one two-thread
process (measured on the adding problem, LSTM 128 units, batch 20). A seed's numbers may
then differ from a `--jobs 1` run in float rounding only.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bptt_keras.experiments.report import Report, load_tables
from bptt_keras.progress import Progress

_CURVE_X = ("updates", "epoch", "chars", "training chars")
_CURVE_Y = "val_loss"


def summarise_cell(values: list):
    """One table cell over the seeds (see the module docstring)."""
    if all(isinstance(v, bool) for v in values):
        return f"{sum(values)}/{len(values)} yes"
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numeric or all(v == values[0] for v in values):
        return values[0] if len({str(v) for v in values}) == 1 else " / ".join(map(str, values))
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if len(finite) < len(values):
        return " / ".join(f"{float(v):.4g}" for v in values)
    mean, spread = statistics.fmean(finite), statistics.stdev(finite)
    return f"{mean:.4g} ± {spread:.2g} ({min(finite):.4g}-{max(finite):.4g})"


def summarise_rows(tables: list[list[dict]]) -> list[dict]:
    """Row-by-row summary of the same table from several seeds.

    Args:
        tables: one list of row dicts per seed; the same configuration gives the same rows
            in the same order.

    Returns:
        One row dict per row, each cell as `summarise_cell` makes it.

    Raises:
        ValueError: the seeds' tables differ in their rows or columns.
    """
    shapes = {(len(rows), tuple(tuple(r) for r in rows)) for rows in tables}
    if len(shapes) != 1:
        raise ValueError("The seeds' tables differ in their rows or columns; cannot summarise.")
    return [
        {column: summarise_cell([rows[i][column] for rows in tables]) for column in tables[0][i]}
        for i in range(len(tables[0]))
    ]


def _read_curves(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def plot_spread(curves: list[list[dict]], *, title: str) -> Figure | None:
    """Mean learning curve per run over the seeds, with its min-max band (log y)."""
    if not curves or not curves[0] or _CURVE_Y not in curves[0][0]:
        return None
    columns = list(curves[0][0])
    x_name = next((c for c in _CURVE_X if c in columns), None)
    if x_name is None:
        return None
    keys = [c for c in columns if c not in (x_name, _CURVE_Y)]
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    groups: dict = {}
    for rows in curves:
        for row in rows:
            label = ", ".join(f"{k} {row[k]}" if k in ("T", "lag") else row[k] for k in keys)
            groups.setdefault(label, {}).setdefault(float(row[x_name]), []).append(
                float(row[_CURVE_Y])
            )
    for label, by_x in groups.items():
        xs = sorted(by_x)
        values = [by_x[x] for x in xs]
        mean = np.array([np.mean(v) for v in values])
        ax.plot(xs, mean, label=label)
        ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel(x_name)
    ax.set_ylabel("validation loss (mean over seeds; band: min-max)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    return fig


def run_in_processes(
    name: str, seeds: list[int], *, scale: str, out: Path, jobs: int, verbose: int = 1
) -> None:
    """Runs `bptt-keras reproduce NAME --seed S` for every seed, `jobs` processes at a time,
    each with `cores // jobs` TensorFlow threads; each seed's output goes to `OUT/seed-S.log`.

    Raises:
        RuntimeError: a seed's run failed (its log named); the others are stopped.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = os.environ | {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1"}
    pending, running = list(seeds), {}
    progress = Progress(name, len(seeds), enabled=bool(verbose))
    try:
        while pending or running:
            while pending and len(running) < jobs:
                seed = pending.pop(0)
                command = [
                    sys.executable, "-m", "bptt_keras", "reproduce", name, "--scale", scale,
                    "--seed", str(seed), "--out", str(out / f"seed-{seed}"), "--quiet",
                ]  # fmt: skip
                with open(out / f"seed-{seed}.log", "w") as log:
                    running[seed] = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=env
                    )
            time.sleep(0.5)
            for seed, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[seed]
                if process.returncode != 0:
                    raise RuntimeError(
                        f"Experiment {name!r} failed for seed {seed} (exit status "
                        f"{process.returncode}); see {out / f'seed-{seed}.log'}."
                    )
                progress.done(f"seed {seed} done")
    finally:  # an interrupt or a failed seed stops the others
        for process in running.values():
            process.terminate()
            process.wait()


def run_seeds(
    name: str,
    seeds: list[int],
    *,
    scale: str,
    out: str | Path,
    verbose: int = 1,
    jobs: int = 1,
):
    """Runs experiment `name` once per seed and writes the summary (module docstring).

    Args:
        name: the experiment; seeds: at least two different seeds.
        scale: `"quick"`, `"full"` or `"paper"`; out: the summary's directory.
        verbose: 1 prints progress; jobs: seeds run at a time, each in its own process
            (1: one after another in this process).

    Returns:
        The summary's `Report`.
    """
    from bptt_keras.experiments import run_experiment

    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must name at least two different seeds. Received: {seeds}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"`jobs` must be an integer >= 1. Received: {jobs!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [out / f"seed-{seed}" for seed in seeds]
    started = time.monotonic()
    if jobs == 1:
        for seed, run in zip(seeds, runs, strict=True):
            run_experiment(name, scale=scale, out=run, seed=seed, verbose=verbose)
    else:
        run_in_processes(name, seeds, scale=scale, out=out, jobs=jobs, verbose=verbose)
    tables = [load_tables(run) for run in runs]
    summary = Report(
        name, out, quick=scale == "quick", seed=seeds[0],
        config={"seeds": list(seeds), "jobs": jobs}, verbose=0, scale=scale,
    )  # fmt: skip
    summary.started = started  # the summary's wall time covers every seed's run
    for table in tables[0]:
        rows = summarise_rows([by_name[table] for by_name in tables])
        summary.table(
            table,
            rows,
            title=f"{table}: {len(seeds)} seeds ({', '.join(map(str, seeds))})",
            notes="Numbers that differ between seeds: mean ± sample standard deviation "
            "(min-max); yes/no columns: how many seeds said yes. Each seed's own tables are in "
            "`seed-<s>/`.",
        )
    curve_files = [run / "curves.csv" for run in runs]
    if all(path.exists() for path in curve_files):
        title = f"{name}: seeds {', '.join(map(str, seeds))}"
        fig = plot_spread([_read_curves(p) for p in curve_files], title=title)
        if fig is not None:
            summary.figure("curves", fig, caption="Learning curves: mean and min-max over seeds")
    summary.finish(
        f"Experiment `{name}` over seeds {', '.join(map(str, seeds))}; each seed's run "
        "directory is `seed-<s>/`, its summary line: "
        + " | ".join((run / "README.md").read_text().split("\n\n")[1].strip() for run in runs)
    )
    return summary
