"""Experiment `copy`: the copy-memory task of Arjovsky, Shah & Bengio (2016), section 4.1.

Ten symbols from 8 categories, `T` blank steps (the delimiter on the last), then the ten
symbols must be written back (`bptt_keras.tasks.copy_memory`). The loss is the cross-entropy
over all `T + 20` steps. A memoryless model predicts the blanks perfectly and guesses the
ten symbols uniformly: `10 log(8) / (T + 20)` (`copy_baseline_loss`). Going below it needs
the gradient from the last ten steps to reach the first ten, `T + 10` steps back.

Published (Arjovsky et al. 2016, Fig. 1, T = 100, 200, 300, 500, qualitative): the LSTM
beats the baseline only at T = 100, the tanh RNN at none; only their unitary RNN solves all.
The delays here are shorter, within reach of a CPU budget.
"""

from __future__ import annotations

from bptt_keras.experiments._training import compare_models, report_comparison
from bptt_keras.tasks import COPY_SYMBOLS, copy_baseline_loss, copy_memory

CONFIG = {
    "quick": {
        "delays": [5],
        "models": ["LSTM", "GRU", "tanh RNN"],
        "units": 32,
        "train_sequences": 1024,
        "val_sequences": 256,
        "batch_size": 64,
        "epochs": 6,
        "learning_rate": 1e-2,
        "global_clipnorm": 1.0,
    },
    "full": {
        "delays": [10, 30, 50],
        "models": ["LSTM", "GRU", "tanh RNN"],
        "units": 128,
        "train_sequences": 20000,
        "val_sequences": 1000,
        "batch_size": 64,
        "epochs": 10,
        "learning_rate": 1e-3,
        "global_clipnorm": 1.0,
    },
}

PUBLISHED = {
    "LSTM": "beats the baseline at T = 100, not at 200-500 (Arjovsky et al. 2016, Fig. 1)",
    "GRU": "not in Arjovsky et al. 2016",
    "tanh RNN": "does not beat the baseline for T = 100-500 (Arjovsky et al. 2016, Fig. 1)",
}


def run(report) -> None:
    """Trains every model at every delay; writes `results.*` and `learning_curves.png`."""
    cfg = report.config
    curves = compare_models(
        cfg,
        report.seed,
        lengths=cfg["delays"],
        make_data=lambda n, delay, seed: copy_memory(n, delay, seed=seed),
        input_dim=COPY_SYMBOLS + 2,
        output_dim=COPY_SYMBOLS + 1,
        loss="sparse_categorical_crossentropy",
        progress=report.progress(len(cfg["delays"]) * len(cfg["models"])),
    )
    report_comparison(
        report,
        curves,
        baselines={delay: copy_baseline_loss(delay) for delay in curves},
        metric="loss",
        baseline_column="baseline 10 log(8)/(T+20)",
        published=PUBLISHED,
        title="Copy memory: held-out cross-entropy per step (nats)",
        notes="Baseline: the memoryless strategy, 10 log(8)/(T+20) (Arjovsky, Shah & Bengio "
        "2016, section 4.1). 'final / baseline' < 1 means symbols are being recalled. Adam "
        f"(learning rate {cfg['learning_rate']:g}), clipping at {cfg['global_clipnorm']:g}, "
        f"{cfg['units']} units, batch {cfg['batch_size']}, full BPTT.",
        plot_title="Copy memory: held-out cross-entropy vs updates (dashed: memoryless baseline)",
        ylabel="cross-entropy per step (nats, log scale)",
        caption="Copy-memory learning curves",
        summary="Models whose final loss is below half the memoryless baseline",
    )
