"""Experiments users can rerun: each is a function of (quick, seed) that writes a run directory.

    bptt-keras reproduce --list
    bptt-keras reproduce adding --quick --out runs/adding

| name | what it shows |
|---|---|
| `gradients` | vanishing/exploding gradient norms vs the recurrent scale; Pascanu et al.'s cliff |
| `adding` | the adding problem (U(0, 1) variant of Le et al. 2015) against its 1/6 baseline |
| `copy` | the copy-memory task (Arjovsky et al. 2016) against 10 log(8)/(T+20) |
| `truncation` | truncated BPTT window vs the dependency lag it can learn |
| `memory` | peak memory and step time of full / truncated / recomputed BPTT as T grows |
| `forecasting` | sunspot and CO2 forecasts against persistence and a linear AR model |
| `charlm` | character language models: bits per character vs the truncation length k |
| `seq2seq` | encoder-decoders: Keras' addition table, source reversal as a gradient path, dates |

Each experiment module has `CONFIG = {"quick": {...}, "full": {...}}` and `run(report)`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from bptt_keras._validation import check_int
from bptt_keras.experiments.report import Report, markdown_table


@dataclass(frozen=True)
class Experiment:
    """One rerunnable experiment: its name, a one-line summary and the module that runs it."""

    name: str
    summary: str
    module: str

    def load(self):
        return importlib.import_module(f"bptt_keras.experiments.{self.module}")


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment(
            "gradients",
            "vanishing/exploding gradient norms vs sigma_max(U) for tanh RNN, LSTM, GRU, IRNN; "
            "Pascanu et al. 2013's one-unit cliff with plain vs clipped descent",
            "gradients",
        ),
        Experiment(
            "adding",
            "adding problem (the U(0, 1) variant of Le et al. 2015 and Arjovsky et al. 2016) for "
            "tanh RNN, IRNN, "
            "LSTM, GRU against the constant baseline MSE 1/6",
            "adding",
        ),
        Experiment(
            "copy",
            "copy memory (Arjovsky, Shah & Bengio 2016) for LSTM, GRU, tanh RNN against the "
            "memoryless baseline 10 log(8)/(T+20)",
            "copy_memory",
        ),
        Experiment(
            "truncation",
            "truncated BPTT(k) and TBPTT(k1, k2) around a known dependency lag, with the exact "
            "'remembers' and 'forgets' losses",
            "truncation_lag",
        ),
        Experiment(
            "memory",
            "peak memory and step time of full, truncated and recomputed BPTT for T = 100..4000",
            "memory_time",
        ),
        Experiment(
            "forecasting",
            "sunspot and CO2 one-step and multi-step forecasts vs persistence and a "
            "least-squares linear AR model (RMSE, MAE)",
            "forecasting",
        ),
        Experiment(
            "charlm",
            "character language models on Tiny Shakespeare: validation bits/char against the "
            "truncation length k at equal training characters, LSTM vs GRU vs tanh RNN, samples",
            "charlm",
        ),
        Experiment(
            "seq2seq",
            "encoder-decoders: Keras' addition example's table (2 and 3 digits), reversed vs "
            "as-written source at equal updates with the gradient reaching each source "
            "character, dates -> ISO on unseen days",
            "seq2seq",
        ),
    ]
}


def list_experiments() -> list[Experiment]:
    """The experiments, in the order of the issue that asked for them."""
    return list(EXPERIMENTS.values())


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`; a ValueError lists the valid names otherwise."""
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ValueError(
            f"Unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)} "
            "(`bptt-keras reproduce --list`)."
        )
    return EXPERIMENTS[name]


def run_experiment(
    name: str,
    *,
    quick: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    overrides: dict | None = None,
    verbose: int = 1,
    scale: str | None = None,
) -> Report:
    """Runs one experiment and writes its run directory.

    Args:
        name: see `list_experiments()`.
        quick: the minutes-on-2-cores version (used by the tests and the notebooks' fast mode);
            default the full CPU-sized version.
        out: run directory; default `runs/reproduce-<name>-<time>`.
        seed: seed of data, weights and shuffling (runs are deterministic on CPU).
        overrides: configuration entries replacing the mode's (e.g. `{"delays": [10, 30]}`);
            an unknown key is an error. The run's `config.json` records the result.
        verbose: 1 prints one line per finished unit of work (model, length, elapsed time,
            estimated time left), 0 nothing.
        scale: `"quick"`, `"full"` or, where the experiment has one, `"paper"` (the
            published sizes and budgets; hours on 2 cores): overrides `quick`.

    Returns:
        The `Report`: `report.tables` (name -> list of row dicts), `report.files`.

    Example:

    >>> report = run_experiment("truncation", quick=True, out="runs/truncation")
    >>> report.tables["results"][0]
    """
    experiment = get_experiment(name)
    seed = check_int(seed, name="seed", minimum=0)
    module = experiment.load()
    scale = scale or ("quick" if quick else "full")
    if scale not in module.CONFIG:
        raise ValueError(
            f"`scale` must be one of {sorted(module.CONFIG)} for experiment {name!r}. "
            f"Received: {scale!r}"
        )
    config = dict(module.CONFIG[scale])
    unknown = sorted(set(overrides or {}) - set(config))
    if unknown:
        raise ValueError(
            f"`overrides` has unknown key(s) {unknown} for experiment {name!r}; its settings "
            f"are: {', '.join(config)}."
        )
    config.update(overrides or {})
    out = Path(out or f"runs/reproduce-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    report = Report(
        name, out, quick=scale == "quick", seed=seed, config=config, verbose=verbose, scale=scale
    )
    module.run(report)
    return report


__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "Report",
    "get_experiment",
    "list_experiments",
    "markdown_table",
    "run_experiment",
]
