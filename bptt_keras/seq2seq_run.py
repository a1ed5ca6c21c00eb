"""`bptt-keras seq2seq`: train an encoder-decoder on a pairs file and keep it as a run directory.

run_dir/
    model.keras      the trained encoder-decoder (`keras.models.load_model`)
    codec.json       its `PairCodec` (vocabularies, lengths, reversal)
    config.json      the options of the run
    history.csv/json loss, val_exact, val_chars per epoch
    metrics.json     held-out exact match and per-character accuracy, seconds
    examples.txt     held-out sources, targets and greedy decodings
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bptt_keras._validation import check_choice, check_float, check_int
from bptt_keras.choices import CELL_NAMES
from bptt_keras.pairs import load_pairs


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Options of `train_pairs` (and of `bptt-keras seq2seq`)."""

    pairs: str
    reverse: bool = True
    cell: str = "lstm"
    units: int = 128
    num_layers: int = 1
    embedding_dim: int | None = None
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> Seq2SeqConfig:
        check_choice(self.cell, name="cell", choices=CELL_NAMES)
        for name in ("units", "num_layers", "epochs", "batch_size"):
            check_int(getattr(self, name), name=name)
        if self.embedding_dim is not None:
            check_int(self.embedding_dim, name="embedding_dim")
        check_float(self.learning_rate, name="learning_rate", low=0.0, low_inclusive=False)
        check_float(self.val_fraction, name="val_fraction", low=0.0, high=0.5)
        check_int(self.seed, name="seed", minimum=0)
        return self


def split_pairs(pairs, *, val_fraction: float, seed: int):
    """Shuffles (seeded) and holds out the last `val_fraction` (at least 1 pair, if any)."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    shuffled = [pairs[i] for i in order]
    held = max(int(round(len(pairs) * val_fraction)), 1) if val_fraction > 0 else 0
    if held >= len(pairs):
        raise ValueError(
            f"`pairs` has {len(pairs)} pair(s): too few to hold out {val_fraction:g} of them "
            "for validation and still train."
        )
    return shuffled[: len(pairs) - held], shuffled[len(pairs) - held :]


def train_pairs(config: Seq2SeqConfig, *, out_dir, verbose: int = 1) -> dict:
    """Trains an encoder-decoder on `config.pairs` and writes the run directory `out_dir`.

    Pairs are shuffled (seeded); the last `val_fraction` are held out and scored after each
    epoch by greedy decoding (exact match and per character).

    Returns:
        `{"metrics": dict, "examples": [(source, target, decoded)], "files": [names]}`.
    """
    from bptt_keras.rundir import atomic_directory, write_history
    from bptt_keras.seq2seq import PairCodec, build_seq2seq, exact_match, fit_seq2seq

    config = config.validate()
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{str(out_dir)!r} already exists; choose a new directory.")
    pairs = load_pairs(config.pairs)
    train, val = split_pairs(pairs, val_fraction=config.val_fraction, seed=config.seed)
    codec = PairCodec.from_pairs(pairs, reverse=config.reverse)
    model = build_seq2seq(
        config.cell,
        config.units,
        source_vocab=codec.source_size,
        target_vocab=codec.target_size,
        embedding_dim=config.embedding_dim,
        num_layers=config.num_layers,
        seed=config.seed,
    )
    start = time.perf_counter()
    history = fit_seq2seq(
        model,
        codec,
        train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        validation_pairs=val or None,
        seed=config.seed,
        verbose=2 if verbose else 0,
    )
    seconds = time.perf_counter() - start
    scores = exact_match(model, codec, val) if val else None
    metrics = {
        "train_pairs": len(train),
        "val_pairs": len(val),
        "val_exact": None if scores is None else scores["exact"],
        "val_chars": None if scores is None else scores["chars"],
        "seconds": seconds,
        "parameters": int(model.count_params()),
    }
    examples = []
    if scores is not None:
        examples = [(s, t, d) for (s, t), d in zip(val, scores["predictions"], strict=True)]
    with atomic_directory(out_dir) as tmp:
        model.save(tmp / "model.keras")
        (tmp / "codec.json").write_text(codec.to_json() + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_history(tmp, {k: v for k, v in history.items() if isinstance(v, list)})
        lines = [f"{s}\t{t}\t{d}\t{'ok' if d == t else 'WRONG'}" for s, t, d in examples]
        (tmp / "examples.txt").write_text(
            "source\ttarget\tgreedy\tright\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        files = sorted(p.name for p in tmp.iterdir())
    return {"metrics": metrics, "examples": examples, "files": files}


def translate(run_dir, sources, *, beam: int = 1) -> list[str]:
    """Decodes `sources` with a run directory's model (greedy, or beam search of `beam`).

    Raises:
        ValueError: a source longer than the model's, or with a character it never saw.
    """
    import keras

    from bptt_keras.seq2seq import PairCodec, beam_search, greedy_decode

    run_dir = Path(run_dir)
    for name in ("model.keras", "codec.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{str(run_dir)!r} is not a `bptt-keras seq2seq` run directory (no {name})."
            )
    beam = check_int(beam, name="beam")
    codec = PairCodec.from_json((run_dir / "codec.json").read_text(encoding="utf-8"))
    ids = codec.encode_sources(list(sources))  # bad characters fail before the model loads
    model = keras.models.load_model(run_dir / "model.keras")
    if beam == 1:
        rows = greedy_decode(model, ids, max_length=codec.target_length)
    else:
        rows = [
            beam_search(model, row, width=beam, max_length=codec.target_length)[0][0] for row in ids
        ]
    return [codec.decode_target(row) for row in rows]
