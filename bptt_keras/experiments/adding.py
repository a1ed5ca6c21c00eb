"""Experiment `adding`: the adding problem, a long-range task with a known baseline.

Each sequence has a value channel (U(0, 1)) and a marker channel with one marker in each
half; the target, at the last step only, is the sum of the two marked values
(`bptt_keras.tasks.adding_problem`). Predicting the mean, 1, scores MSE 1/6 ~ 0.167 whatever
the sequence length; going below it means the gradient from the last step reached back to
a marker as far as T/2 or more steps away. The loss is scored on the last step only
(`sample_weight` = a mask), and the held-out MSE is recorded after every epoch.

Published (qualitative, their training budgets are 10-100x ours): Le, Jaitly & Hinton 2015,
Fig. 2 - IRNN and LSTM go far below the baseline for T = 150..400, the tanh RNN does not
beat it from T = 150 on; Arjovsky, Shah & Bengio 2016, Fig. 2 - LSTM solves T = 100..750.
"""

from __future__ import annotations

from bptt_keras.experiments._training import MODELS, compare_models, report_comparison
from bptt_keras.tasks import ADDING_BASELINE_MSE, adding_problem

CONFIG = {
    "quick": {
        "lengths": [10],
        "models": list(MODELS),
        "units": 16,
        "train_sequences": 960,
        "val_sequences": 256,
        "batch_size": 32,
        "epochs": 5,
        "learning_rate": 1e-2,
        "global_clipnorm": 1.0,
    },
    "full": {
        "lengths": [50, 100, 200],
        "models": list(MODELS),
        "units": 64,
        "train_sequences": 10000,
        "val_sequences": 1000,
        "batch_size": 50,
        "epochs": 10,
        "learning_rate": 1e-3,
        "global_clipnorm": 1.0,
    },
}

PUBLISHED = {
    "tanh RNN": "stays at the baseline for T >= 150 (Le et al. 2015, Fig. 2)",
    "IRNN": "far below the baseline for T = 150..400 (Le et al. 2015, Fig. 2)",
    "LSTM": "far below the baseline (Le et al. 2015, Fig. 2; Arjovsky et al. 2016, Fig. 2)",
    "GRU": "no figure in these papers",
}


def run(report) -> None:
    """Trains every model at every length; writes `results.*` and `learning_curves.png`."""
    cfg = report.config
    curves = compare_models(
        cfg,
        report.seed,
        lengths=cfg["lengths"],
        make_data=adding_problem,
        input_dim=2,
        output_dim=1,
        loss="mse",
        progress=report.progress(len(cfg["lengths"]) * len(cfg["models"])),
    )
    report_comparison(
        report,
        curves,
        baselines={length: ADDING_BASELINE_MSE for length in curves},
        metric="MSE",
        baseline_column="baseline MSE",
        published=PUBLISHED,
        title="Adding problem: held-out MSE at the last step",
        notes="Baseline: always predicting 1 scores Var(u1 + u2) = 1/6 (Hochreiter & "
        "Schmidhuber 1997; Le et al. 2015). 'final / baseline' < 1 means the model uses the "
        f"marked values. Adam (learning rate {cfg['learning_rate']:g}), gradient norm clipped "
        f"to {cfg['global_clipnorm']:g}, {cfg['units']} units, batch {cfg['batch_size']}, "
        "full BPTT.",
        plot_title="Adding problem: held-out MSE vs updates (dashed: predict-the-mean "
        "baseline 1/6)",
        ylabel="MSE at the last step (log scale)",
        caption="Adding problem learning curves",
        summary="Models whose final MSE is below half the baseline",
    )
