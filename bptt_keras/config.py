"""The one typed configuration of a training run, shared by the CLI, notebooks and scripts."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bptt_keras._validation import check_choice, check_float, check_int
from bptt_keras.choices import CELL_NAMES, INITS
from bptt_keras.datasets import SERIES
from bptt_keras.truncation import check_truncation


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a next-step forecasting run on one series.

    Vary it with `dataclasses.replace(config, units=64)`; call `validate()` (done by
    `bptt_keras.run.train`) to get a clear error for a bad value before anything is built.

    Attributes:
        dataset: a shipped series (`"sunspots"`, `"co2"`); ignored when `csv` is set.
        csv: path of a CSV file to train on instead (needs `column`).
        column: value column of `csv`.
        time_column: optional time column of `csv`, used for plot axes.
        cell: `"simple_rnn"`, `"lstm"` or `"gru"`.
        units: hidden units per layer.
        num_layers: stacked recurrent layers.
        init: `"default"`, `"orthogonal"`, `"glorot"` or `"irnn"` (see `build_model`).
        window: context steps per training window (windows hold `window + 1` values).
        stride: steps between training window starts.
        epochs: passes over the training windows.
        batch_size: windows per update.
        learning_rate: Adam learning rate.
        val_fraction: share of the series (after train) used for validation.
        test_fraction: final share of the series held out for the forecast test.
        seed: seeds weights, shuffling and every random op.
        k1: truncated BPTT block length (None: full BPTT over each window); `<= window`.
        k2: steps each block back-propagates through (default `k1`); `k1 <= k2 <= window`.
        global_clipnorm: clip the global gradient norm to this value (None: no clipping).
        checkpoint_dir: directory for crash-safe checkpoints (None: none).
        resume: continue from the newest checkpoint in `checkpoint_dir`.
    """

    dataset: str = "sunspots"
    csv: str | None = None
    column: str | None = None
    time_column: str | None = None
    cell: str = "simple_rnn"
    units: int = 32
    num_layers: int = 1
    init: str = "default"
    window: int = 20
    stride: int = 1
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-2
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    k1: int | None = None
    k2: int | None = None
    global_clipnorm: float | None = None
    checkpoint_dir: str | None = None
    resume: bool = False

    def validate(self) -> TrainConfig:
        """Checks every field; returns `self` so it can be chained.

        Raises:
            ValueError / TypeError: naming the field, the value received and what is expected.
        """
        if self.csv is None:
            check_choice(self.dataset, name="dataset", choices=SERIES)
        elif self.column is None:
            raise ValueError("`column` is required with `csv`: name the column to train on.")
        check_choice(self.cell, name="cell", choices=CELL_NAMES)
        check_choice(self.init, name="init", choices=INITS)
        if self.init == "irnn" and self.cell != "simple_rnn":
            raise ValueError(
                f"`init='irnn'` applies to `cell='simple_rnn'` only. Received: cell={self.cell!r}"
            )
        for field in ("units", "num_layers", "window", "stride", "epochs", "batch_size"):
            check_int(getattr(self, field), name=field)
        check_int(self.seed, name="seed", minimum=0)
        check_float(self.learning_rate, name="learning_rate", low=0.0, low_inclusive=False)
        for field in ("val_fraction", "test_fraction"):
            check_float(getattr(self, field), name=field, low=0.0, high=1.0, high_inclusive=False)
        check_truncation(self.k1, self.k2, self.window)
        if self.global_clipnorm is not None:
            check_float(self.global_clipnorm, name="global_clipnorm", low=0.0, low_inclusive=False)
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("`resume` needs `checkpoint_dir` (where the checkpoints are).")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "`val_fraction + test_fraction` must be < 1 to leave training data. Received: "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        return self

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def read_config(path: str | os.PathLike) -> TrainConfig:
    """Reads a `config.json` written by `bptt-keras train` into a validated `TrainConfig`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, not an object, an unknown field, or a bad value (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No configuration file {str(path)!r}.")
    try:
        values = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a JSON configuration: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object of TrainConfig fields.")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{str(path)!r} has unknown field(s) {', '.join(unknown)}; TrainConfig fields are: "
            f"{', '.join(TrainConfig.__dataclass_fields__)}."
        )
    return TrainConfig(**values).validate()


@dataclass(frozen=True)
class LMConfig:
    """Everything that defines a character language-model run (`bptt-keras lm`).

    Attributes:
        text: path of a UTF-8 text file to train on (None: the shipped Tiny Shakespeare).
        cell: `"simple_rnn"`, `"lstm"` or `"gru"`.
        units: hidden units per recurrent layer.
        num_layers: stacked recurrent layers.
        embedding_dim: width of the character embedding.
        dropout: dropout rate on the non-recurrent connections (Zaremba et al. 2014).
        tie_weights: the head's weights are the embedding's, transposed (Press & Wolf 2017);
            needs `embedding_dim == units`.
        batch_size: parallel rows of the stream (PyTorch word_language_model's batchify).
        k1: truncated BPTT: characters per block, one update per block (WLM's `--bptt`).
        k2: characters each block back-propagates through (None: `k1`).
        epochs: passes over the training text.
        learning_rate: Adam learning rate.
        global_clipnorm: clip the global gradient norm to this (None: no clipping).
        val_fraction: final share of the text held out for validation (nanoGPT: 0.1).
        seed: seeds weights, dropout and sampling.
        sample_length: characters sampled per temperature for `samples.txt`.
        checkpoint_dir: directory for crash-safe checkpoints (None: none).
        resume: continue from the newest checkpoint in `checkpoint_dir`.
    """

    text: str | None = None
    cell: str = "lstm"
    units: int = 256
    num_layers: int = 2
    embedding_dim: int = 64
    dropout: float = 0.0
    tie_weights: bool = False
    batch_size: int = 32
    k1: int = 100
    k2: int | None = None
    epochs: int = 3
    learning_rate: float = 2e-3
    global_clipnorm: float | None = 5.0
    val_fraction: float = 0.1
    seed: int = 0
    sample_length: int = 300
    checkpoint_dir: str | None = None
    resume: bool = False

    def validate(self) -> LMConfig:
        """Checks every field; returns `self`.

        Raises:
            ValueError / TypeError: naming the field, the value received and what is expected.
        """
        check_choice(self.cell, name="cell", choices=CELL_NAMES)
        for field in ("units", "num_layers", "embedding_dim", "batch_size", "k1", "epochs"):
            check_int(getattr(self, field), name=field)
        check_int(self.seed, name="seed", minimum=0)
        check_int(self.sample_length, name="sample_length", minimum=0)
        check_float(self.dropout, name="dropout", low=0.0, high=1.0, high_inclusive=False)
        check_float(self.learning_rate, name="learning_rate", low=0.0, low_inclusive=False)
        check_float(self.val_fraction, name="val_fraction", low=0.0, high=1.0, low_inclusive=False,
                    high_inclusive=False)  # fmt: skip
        if self.k2 is not None and check_int(self.k2, name="k2") < self.k1:
            raise ValueError(f"`k2` must be >= k1 = {self.k1}. Received: k2={self.k2}")
        if self.global_clipnorm is not None:
            check_float(self.global_clipnorm, name="global_clipnorm", low=0.0, low_inclusive=False)
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("`resume` needs `checkpoint_dir` (where the checkpoints are).")
        if not isinstance(self.tie_weights, bool):
            raise TypeError(f"`tie_weights` must be True or False. Received: {self.tie_weights!r}")
        if self.tie_weights and self.embedding_dim != self.units:
            raise ValueError(
                "`tie_weights` scores the last layer's output against the embedding rows: it "
                f"needs embedding_dim == units. Received: embedding_dim={self.embedding_dim}, "
                f"units={self.units} (set embedding_dim={self.units})."
            )
        return self

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)
