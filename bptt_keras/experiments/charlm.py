"""Experiment `charlm`: what truncation costs a character language model on real text.

Every run trains on the same text (Tiny Shakespeare, split by position as nanoGPT's
`prepare.py`: first 90 % train, last 10 % validation) for the same number of epochs, so on
an equal number of training characters; only the truncation length `k` (TBPTT(k, k), one
update per `k` characters, word_language_model's `--bptt`) or the cell changes. The state is
carried along each row from block to block in training and over the whole validation stream
in evaluation, so a short `k` limits what the *gradient* can teach (dependencies longer than
`k` characters are never credited), not what the state can hold. A shorter `k` also means
more, noisier updates per character: both effects are in the measured curve.

Published figures for the same split, quoted beside ours (`PUBLISHED`): nanoGPT's
character-level Shakespeare (a Transformer; Karpathy's README).
"""

from __future__ import annotations

import time

import keras
from matplotlib.figure import Figure

from bptt_keras.config import LMConfig
from bptt_keras.generation import generate
from bptt_keras.language_model import fit_lm, lm_data, sample_prompt
from bptt_keras.lm_scores import bits_per_token
from bptt_keras.text import load_shakespeare

CELL_LABELS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "tanh RNN"}

CONFIG = {
    "quick": {
        "text_chars": 40_000,
        "ks": [5, 25],
        "cells": ["lstm", "gru", "simple_rnn"],
        "cell_k": 25,
        "units": 32,
        "num_layers": 1,
        "embedding_dim": 16,
        "batch_size": 16,
        "epochs": 2,
        "learning_rate": 1e-2,
        "global_clipnorm": 5.0,
        "char_rnn": False,
        "sample_length": 120,
    },
    "full": {
        "text_chars": None,
        "ks": [5, 10, 25, 50, 100, 200],
        "cells": ["lstm", "gru", "simple_rnn"],
        "cell_k": 100,
        "units": 128,
        "num_layers": 2,
        "embedding_dim": 64,
        "batch_size": 32,
        "epochs": 2,
        "learning_rate": 2e-3,
        "global_clipnorm": 5.0,
        "char_rnn": True,
        "sample_length": 400,
    },
}

PUBLISHED = [
    {
        "source": "nanoGPT README, 'baby GPT' (config/train_shakespeare_char.py)",
        "model": "Transformer, 6 layers x 6 heads, 384 channels, context 256",
        "hardware, time": "one A100 GPU, about 3 minutes",
        "val loss (nats/char)": "1.4697",
        "quote": "On one A100 GPU this training run takes about 3 minutes and the best "
        "validation loss is 1.4697.",
    },
    {
        "source": "nanoGPT README, CPU settings ('I only have a macbook')",
        "model": "Transformer, 4 layers x 4 heads x 128, context 64, 2000 iterations",
        "hardware, time": "a laptop CPU, about 3 minutes",
        "val loss (nats/char)": "1.88",
        "quote": "This still runs in about ~3 minutes, but gets us a loss of only 1.88",
    },
]

# char-rnn's train.lua defaults (Karpathy 2015): LSTM 2 x 128, seq_length 50, batch_size 50,
# RMSprop lr 2e-3 with decay_rate 0.95, grad_clip 5, dropout 0. Its README publishes no
# validation figure for Tiny Shakespeare, so the row is ours, run with its settings.
CHAR_RNN = {
    "cell": "lstm",
    "units": 128,
    "num_layers": 2,
    "k1": 50,
    "batch_size": 50,
    "learning_rate": 2e-3,
    "rho": 0.95,
    "clip": 5.0,
}


def _text(cfg: dict) -> str:
    text = load_shakespeare()
    return text if cfg["text_chars"] is None else text[: cfg["text_chars"]]


def train_one(text: str, config: LMConfig, *, optimizer=None) -> dict:
    """Trains one language model on `text` and measures it.

    Args:
        text: the whole text (split 90/10 by position).
        config: the run's `LMConfig` (its `text` is ignored).
        optimizer: replaces `Adam(config.learning_rate)`.

    Returns:
        A dict: `model`, `data` (`LMData`), `history` (per epoch), `metrics` and `seconds` of
        training (wall clock, including the first call's compilation).
    """
    data = lm_data(config, text)
    start = time.perf_counter()
    model, history, metrics = fit_lm(config, data, optimizer=optimizer)
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "data": data,
        "history": history,
        "metrics": metrics,
        "seconds": seconds,
    }


def _row(name: str, cell: str, config: LMConfig, out: dict, *, initial: float) -> dict:
    m, chars = out["metrics"], out["metrics"]["train_chars_per_epoch"] * config.epochs
    return {
        "run": name,
        "cell": CELL_LABELS[cell],
        "k1 = k2 (chars)": config.k1,
        "updates": config.epochs * (m["train_chars_per_epoch"] // (config.batch_size * config.k1)),
        "training chars": chars,
        "val nats/char": m["val_nats_per_char"],
        "val bits/char": m["val_bits_per_char"],
        "val perplexity": m["val_perplexity"],
        "untrained val nats/char": initial,
        "seconds": out["seconds"],
        "chars/s": chars / out["seconds"],
        "parameters": m["parameters"],
    }


def _config(cfg: dict, seed: int, **changes) -> LMConfig:
    base = {
        "cell": "lstm",
        "units": cfg["units"],
        "num_layers": cfg["num_layers"],
        "embedding_dim": cfg["embedding_dim"],
        "batch_size": cfg["batch_size"],
        "epochs": cfg["epochs"],
        "learning_rate": cfg["learning_rate"],
        "global_clipnorm": cfg["global_clipnorm"],
        "seed": seed,
    }
    return LMConfig(**{**base, **changes}).validate()


def plot_charlm(rows: list[dict], curves: dict, *, published: float) -> Figure:
    """Validation bits per character against the truncation length, and the curves."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_k, ax_curves = fig.subplots(1, 2)
    sweep = sorted(
        (r["k1 = k2 (chars)"], r["val bits/char"]) for r in rows if r["run"].startswith("LSTM k")
    )
    ax_k.plot([k for k, _ in sweep], [b for _, b in sweep], "o-", label="LSTM, TBPTT(k, k)")
    markers = {"GRU": "s", "tanh RNN": "^"}
    for r in rows:
        if r["cell"] in markers:
            ax_k.plot(
                r["k1 = k2 (chars)"], r["val bits/char"], markers[r["cell"]], ms=8, label=r["run"]
            )
    ax_k.axhline(
        bits_per_token(published),
        color="k",
        ls="--",
        lw=1,
        label=f"nanoGPT CPU figure ({published} nats)",
    )
    ax_k.set_xscale("log")
    ax_k.set_xticks([k for k, _ in sweep], [str(k) for k, _ in sweep])
    ax_k.set_xlabel("truncation length k (characters, log scale)")
    ax_k.set_ylabel("validation bits per character")
    ax_k.set_title("Equal training characters: bits/char vs k")
    ax_k.grid(True, alpha=0.3)
    ax_k.legend(fontsize=7)
    for name, values in curves.items():
        ax_curves.plot(range(len(values)), values, "o-", ms=3, label=name)
    ax_curves.set_xlabel("epoch (0: untrained)")
    ax_curves.set_ylabel("validation bits per character")
    ax_curves.set_title("Validation bits per character per epoch")
    ax_curves.grid(True, alpha=0.3)
    ax_curves.legend(fontsize=7, ncols=2)
    return fig


def run(report) -> None:
    """The k sweep (LSTM), the cells at one k, char-rnn's settings (full mode), samples."""
    cfg, seed = report.config, report.seed
    text = _text(cfg)
    plan = [(f"LSTM k = {k}", "lstm", _config(cfg, seed, k1=k), None) for k in cfg["ks"]]
    for cell in cfg["cells"]:
        if cell != "lstm" or cfg["cell_k"] not in cfg["ks"]:
            plan.append(
                (
                    f"{CELL_LABELS[cell]} k = {cfg['cell_k']}",
                    cell,
                    _config(cfg, seed, cell=cell, k1=cfg["cell_k"]),
                    None,
                )
            )
    if cfg["char_rnn"]:
        c = CHAR_RNN
        optimizer = keras.optimizers.RMSprop(learning_rate=c["learning_rate"], rho=c["rho"])
        plan.append(
            (
                "char-rnn's settings (LSTM 2x128, k = 50, batch 50, RMSprop)",
                "lstm",
                _config(
                    cfg,
                    seed,
                    units=c["units"],
                    num_layers=c["num_layers"],
                    k1=c["k1"],
                    batch_size=c["batch_size"],
                    global_clipnorm=c["clip"],
                ),
                optimizer,
            )
        )
    progress = report.progress(len(plan))
    rows, curves, trained = [], {}, {}
    for name, cell, config, optimizer in plan:
        out = train_one(text, config, optimizer=optimizer)
        # The untrained model's loss: the same seed builds the same initial weights.
        initial = _untrained_loss(config, out["data"])
        rows.append(_row(name, cell, config, out, initial=initial))
        curves[name] = [bits_per_token(initial), *out["history"]["val_bpc"]]
        trained[name] = out
        progress.done(name)
    report.table(
        "results",
        rows,
        title="Character language models on Tiny Shakespeare at equal training characters",
        notes="Validation: the last 10 % of the text by position, evaluated as one stream per "
        "row with the state carried (word_language_model's `evaluate`). TBPTT(k, k): one "
        "update per k characters, the state carried across blocks and cut at each. 'seconds' "
        "includes compilation. Untrained: about ln(vocabulary) nats.",
    )
    report.data(
        "curves",
        [
            {"run": name, "epoch": epoch, "val_bpc": float(v)}
            for name, values in curves.items()
            for epoch, v in enumerate(values)
        ],
    )
    published = [{k: v for k, v in p.items() if k != "quote"} for p in PUBLISHED]
    best = min(rows, key=lambda r: r["val nats/char"])
    published.append(
        {
            "source": "this run, best of the table",
            "model": f"{best['run']} ({best['parameters']} parameters)",
            "hardware, time": f"this machine's CPU, {best['seconds']:.0f} s",
            "val loss (nats/char)": f"{best['val nats/char']:.4f}",
        }
    )
    report.table(
        "published",
        published,
        title="Beside published figures on the same split (validation loss, nats per character)",
        notes="Quotes (Karpathy, nanoGPT README): "
        + " / ".join(f'"{p["quote"]}"' for p in PUBLISHED)
        + ". char-rnn's README publishes no Tiny Shakespeare validation loss; its default "
        "settings run under our engine are a row of the results table in full mode (char-rnn "
        "clips each gradient element to +-5, we clip the global norm at 5).",
    )
    fig = plot_charlm(rows, curves, published=float(PUBLISHED[1]["val loss (nats/char)"]))
    report.figure("charlm", fig, caption="Validation bits per character against k")
    out = trained[best["run"]]
    samples = "".join(
        f"--- temperature {t} ---\n"
        + generate(
            out["model"],
            out["data"].vocab,
            prompt=sample_prompt(out["data"]),
            length=cfg["sample_length"],
            temperature=t,
            seed=seed,
        )
        + "\n\n"
        for t in (0.5, 0.8, 1.0)
    )
    (report.out / "samples.txt").write_text(f"# {best['run']}\n\n{samples}", encoding="utf-8")
    sweep = sorted(
        (r["k1 = k2 (chars)"], r["val bits/char"]) for r in rows if r["run"].startswith("LSTM k")
    )
    report.finish(
        "LSTM validation bits/char at equal training characters: "
        + ", ".join(f"k = {k}: {b:.3f}" for k, b in sweep)
        + f". Best run: {best['run']}, {best['val nats/char']:.3f} nats/char "
        f"({best['val bits/char']:.3f} bits/char) in {best['seconds']:.0f} s. Samples of the "
        "best run: `samples.txt`."
    )


def _untrained_loss(config: LMConfig, data) -> float:
    from bptt_keras.engine import evaluate
    from bptt_keras.language_model import LOSS
    from bptt_keras.models import build_model

    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.cell,
        config.units,
        vocab_size=data.vocab.size,
        embedding_dim=config.embedding_dim,
        num_layers=config.num_layers,
        tie_weights=config.tie_weights,
        seed=config.seed,
    )
    xv, yv = data.val
    return float(evaluate(model, xv, yv, loss=LOSS, batch_size=xv.shape[0]))
