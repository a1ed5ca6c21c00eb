"""The language-model job: train a character model by truncated BPTT, score it, sample it.

`bptt-keras lm` and scripts call `train_lm(config, out_dir=...)`. Data flow:

    text -> Vocabulary (sorted characters) -> ids -> split by position (first 90 % | last 10 %)
         -> token_rows: batch_size contiguous rows (word_language_model's batchify)
         -> bptt_keras.fit(k1, k2): one update per k1-character block, the state carried
            along each row and cut at each block (word_language_model's repackage_hidden)
         -> validation over the held-out rows with the state carried, in nats, bits per
            character and perplexity -> samples at several temperatures
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras

from bptt_keras.config import LMConfig
from bptt_keras.engine import evaluate, fit
from bptt_keras.generation import generate
from bptt_keras.lm_scores import bits_per_token, perplexity
from bptt_keras.models import build_model
from bptt_keras.text import Vocabulary, load_shakespeare, load_text, split_text, token_rows

LOSS = "sparse_categorical_crossentropy"
TEMPERATURES = (0.5, 0.8, 1.0)


@dataclass(frozen=True)
class LMData:
    """A language-model run's data (`lm_data`): the text, its vocabulary, training rows
    `train = (x, y)` and validation rows `val = (xv, yv)`, integer ids of shape
    `(rows, length)`, `y` one character ahead of `x`."""

    text: str
    vocab: Vocabulary
    train: tuple
    val: tuple


@dataclass
class LMResult:
    """What `train_lm` returns: the trained model and vocabulary, the history per epoch
    (`loss`, `val_loss` in nats/char, and `bpc`, `val_bpc`), the final metrics, the samples
    by temperature, and the files written (if any)."""

    model: keras.Model
    vocab: Vocabulary
    history: dict
    metrics: dict
    samples: dict
    files: dict = field(default_factory=dict)


def lm_data(config: LMConfig, text: str | None = None) -> LMData:
    """Reads, encodes, splits and lays out the text of a language-model run.

    Args:
        config: the run's `LMConfig` (its `text`, `batch_size`, `k1` and `val_fraction`).
        text: the text itself, instead of reading `config.text` (None: read it; the shipped
            Tiny Shakespeare when `config.text` is None too).

    Returns:
        An `LMData`: the text, its `Vocabulary`, training rows `(x, y)` of shape
        `(batch_size, n_blocks * k1)` (whole blocks of `k1`, so every update has one shape)
        and validation rows `(xv, yv)` of shape `(rows, length)` (word_language_model's
        batchify of the held-out final `val_fraction`).

    Raises:
        ValueError: the training text is shorter than one block per row.
    """
    if text is None:
        text = load_shakespeare() if config.text is None else load_text(config.text)
    vocab = Vocabulary.from_text(text)
    train, val = split_text(vocab.encode(text), val_fraction=config.val_fraction)
    row = (len(train) - 1) // config.batch_size
    if row < config.k1:
        need = config.batch_size * config.k1 + 1
        raise ValueError(
            f"The training text has {len(train)} characters: rows of {row} for batch_size="
            f"{config.batch_size}, fewer than one block of k1={config.k1}. Need at least "
            f"{math.ceil(need / (1 - config.val_fraction))} characters, or a smaller batch_size "
            "or k1."
        )
    x, y = token_rows(train, batch_size=config.batch_size)
    x, y = (a[:, : row // config.k1 * config.k1] for a in (x, y))  # whole blocks: one shape
    val_rows = max(1, min(config.batch_size, (len(val) - 1) // 2))
    return LMData(text, vocab, (x, y), token_rows(val, batch_size=val_rows))


def fit_lm(
    config: LMConfig,
    data: LMData,
    *,
    optimizer: keras.optimizers.Optimizer | None = None,
    verbose: int = 0,
) -> tuple[keras.Model, dict, dict]:
    """Builds the model `config` describes and trains it on `data` by truncated BPTT.

    Args:
        config: the run's `LMConfig`.
        data: `lm_data(config, ...)`.
        optimizer: replaces the configuration's `Adam(config.learning_rate)` (e.g. char-rnn's
            RMSprop); its own clipping adds to `config.global_clipnorm`.
        verbose: 0 silent, 1 one line (or bar) per epoch.

    Returns:
        `(model, history, metrics)`: the trained model; per epoch `loss`, `val_loss` (nats
        per character), `bpc`, `val_bpc` and `grad_norm`; and the final validation scores
        (`val_nats_per_char`, `val_bits_per_char`, `val_perplexity`) with the sizes.
    """
    from bptt_keras.run import EpochProgress

    (x, y), (xv, yv) = data.train, data.val
    keras.utils.set_random_seed(config.seed)
    model = build_model(
        config.cell, config.units, vocab_size=data.vocab.size,
        embedding_dim=config.embedding_dim, num_layers=config.num_layers,
        dropout=config.dropout, tie_weights=config.tie_weights, seed=config.seed,
    )  # fmt: skip
    fitted = fit(
        model, x, y, batch_size=config.batch_size, k1=config.k1, k2=config.k2,
        epochs=config.epochs, loss=LOSS, shuffle=False, seed=config.seed,
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=config.learning_rate),
        global_clipnorm=config.global_clipnorm, validation_data=(xv, yv),
        checkpoint_dir=config.checkpoint_dir, resume=config.resume, verbose=0,
        callbacks=[EpochProgress(config.epochs)] if verbose else [],
    )  # fmt: skip
    history = {k: [float(v) for v in vals] for k, vals in fitted.history.items()}
    history["bpc"] = [bits_per_token(v) for v in history["loss"]]
    history["val_bpc"] = [bits_per_token(v) for v in history["val_loss"]]
    val_nats = evaluate(model, xv, yv, loss=LOSS, batch_size=xv.shape[0])
    metrics = {
        "val_nats_per_char": val_nats,
        "val_bits_per_char": bits_per_token(val_nats),
        "val_perplexity": perplexity(val_nats),
        "train_chars_per_epoch": int(x.size),
        "val_chars": int(xv.size),
        "vocab_size": data.vocab.size,
        "parameters": int(model.count_params()),
    }
    return model, history, metrics


def sample_prompt(data: LMData) -> str:
    """The prompt samples start from: a newline if the text has one, else its first
    character."""
    return "\n" if "\n" in data.vocab.chars else data.text[0]


def _check_checkpoint_vocab(config: LMConfig, vocab: Vocabulary) -> None:
    """Saves the vocabulary beside the checkpoints; on resume, it must be the same one."""
    if config.checkpoint_dir is None:
        return
    path = Path(config.checkpoint_dir) / "vocab.json"
    if config.resume and path.is_file():
        vocab.check_compatible(Vocabulary.load(path), what=f"the checkpoint's {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    vocab.save(path)


def train_lm(config: LMConfig, *, out_dir: str | os.PathLike | None = None, verbose: int = 1):
    """Trains a character language model as `config` says.

    Args:
        config: the run's `LMConfig`.
        out_dir: if given, a directory to create (it must not exist) with `model.keras`,
            `vocab.json`, `config.json`, `versions.json`, `history.csv/json`, `metrics.json`,
            `loss_curve.png` (bits per character), `samples.txt` and `README.md`; written to
            a temporary sibling and renamed at the end, so a failed run leaves nothing.
        verbose: 0 silent, 1 one line (or bar) per epoch.

    Returns:
        An `LMResult`.

    Raises:
        ValueError / TypeError / FileNotFoundError: bad configuration or text (named),
            before anything is built; a vocabulary that differs from the checkpoint's.
        FileExistsError: `out_dir` already exists.
    """
    config.validate()
    if out_dir is not None and Path(out_dir).exists():
        raise FileExistsError(f"`out_dir` already exists: {str(out_dir)!r}; choose a new one.")
    data = lm_data(config)
    _check_checkpoint_vocab(config, data.vocab)
    model, history, metrics = fit_lm(config, data, verbose=verbose)
    samples = {
        t: generate(
            model,
            data.vocab,
            prompt=sample_prompt(data),
            length=config.sample_length,
            temperature=t,
            seed=config.seed,
        )
        for t in TEMPERATURES
    }
    result = LMResult(model, data.vocab, history, metrics, samples)
    if out_dir is not None:
        result.files = _save(result, config, Path(out_dir))
    return result


def _save(result: LMResult, config: LMConfig, out_dir: Path) -> dict:
    from bptt_keras.plotting import new_axes, plot_loss_curves
    from bptt_keras.rundir import atomic_directory, versions, write_history

    with atomic_directory(out_dir) as tmp:
        result.model.save(tmp / "model.keras")
        result.vocab.save(tmp / "vocab.json")
        env = versions()
        for name, value in (
            ("config.json", config.to_dict()),
            ("versions.json", env),
            ("metrics.json", result.metrics),
        ):
            (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
        write_history(tmp, result.history)
        ax = plot_loss_curves(
            result.history, ax=new_axes(), keys=["bpc", "val_bpc"],
            title=f"{config.cell} {config.units}x{config.num_layers}: bits per character",
            ylabel="bits per character",
        )  # fmt: skip
        ax.figure.savefig(tmp / "loss_curve.png", dpi=120)
        (tmp / "samples.txt").write_text(
            "".join(f"--- temperature {t} ---\n{s}\n\n" for t, s in result.samples.items()),
            encoding="utf-8",
        )
        m = result.metrics
        source = config.text or "Tiny Shakespeare (shipped)"
        (tmp / "README.md").write_text(
            f"# Character language model: {config.cell} {config.units}x{config.num_layers}\n\n"
            f"Trained on {source} ({m['train_chars_per_epoch']} characters per epoch, "
            f"{config.epochs} epochs) by TBPTT(k1={config.k1}, k2={config.k2 or config.k1}), "
            f"batch {config.batch_size}; {m['parameters']} parameters.\n\n"
            f"Validation ({m['val_chars']} characters, the last {config.val_fraction:g} of the "
            f"text): **{m['val_nats_per_char']:.4f} nats/char, "
            f"{m['val_bits_per_char']:.4f} bits/char, perplexity {m['val_perplexity']:.3f}**."
            "\n\n![bits per character](loss_curve.png)\n\nSamples: `samples.txt`. Versions: "
            f"TensorFlow {env.get('tensorflow')}, Keras {env.get('keras')}.\n"
        )
    return {path.name: path for path in sorted(out_dir.iterdir())}
