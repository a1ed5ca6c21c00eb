"""The `bptt-keras` command.

    bptt-keras train                     # default model on the shipped sunspot series
    bptt-keras train --cell lstm --epochs 100 --out runs/lstm
    bptt-keras train --csv my.csv --column value --window 48
    bptt-keras train --k1 5 --k2 10 --global-clipnorm 1.0 --checkpoint-dir ck   # truncated BPTT
    bptt-keras train --config runs/lstm/config.json      # replay a run (options override it)
    bptt-keras forecast runs/lstm --steps 20             # forecast past the series' end
    bptt-keras lm                                        # character LM on Tiny Shakespeare
    bptt-keras lm --text my.txt --k1 50 --epochs 5 --out runs/mine
    bptt-keras reproduce --list                          # the experiments
    bptt-keras reproduce adding --quick --out runs/adding

Bad options and bad data end with a one-line `bptt-keras: error: ...` and exit status 2,
before anything is written. `--help`, `--version` and `reproduce --list` answer without
importing TensorFlow; the commands that do import it hide its C++ start-up lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

# Only modules that do not import TensorFlow: see `_quiet_tensorflow`.
from bptt_keras import __version__
from bptt_keras.choices import CELL_NAMES, INITS
from bptt_keras.config import LMConfig, TrainConfig
from bptt_keras.datasets import SERIES

# Help text per TrainConfig field; the CLI option is the field name with dashes.
_HELP = {
    "dataset": f"shipped series to train on: {', '.join(SERIES)}",
    "csv": "train on this CSV file instead of a shipped series (needs --column)",
    "column": "value column of --csv",
    "time_column": "optional time column of --csv (used for plot axes)",
    "cell": f"recurrent cell: {', '.join(CELL_NAMES)}",
    "units": "hidden units per recurrent layer",
    "num_layers": "number of stacked recurrent layers",
    "init": f"initialisation: {', '.join(INITS)} (irnn: simple_rnn only)",
    "window": "context steps per training window",
    "stride": "steps between training window starts",
    "epochs": "training epochs",
    "batch_size": "windows per update",
    "learning_rate": "Adam learning rate",
    "val_fraction": "share of the series used for validation (after the training part)",
    "test_fraction": "final share of the series held out and forecast",
    "seed": "random seed (weights, shuffling)",
    "k1": "truncated BPTT: steps per block, one update per block; omit for full BPTT",
    "k2": "truncated BPTT: steps each block back-propagates through; omit for k2 = k1",
    "global_clipnorm": (
        "clip the global gradient norm to this (Pascanu et al. 2013); omit: no clipping"
    ),
    "checkpoint_dir": "write crash-safe checkpoints here (every epoch); omit: none",
    "resume": "continue from the newest checkpoint in --checkpoint-dir",
}

# Help text per LMConfig field (`bptt-keras lm`).
_LM_HELP = {
    "text": "train on this UTF-8 text file instead of the shipped Tiny Shakespeare",
    "cell": f"recurrent cell: {', '.join(CELL_NAMES)}",
    "units": "hidden units per recurrent layer",
    "num_layers": "number of stacked recurrent layers",
    "embedding_dim": "width of the character embedding",
    "dropout": "dropout on the non-recurrent connections (embedding, between layers, head)",
    "tie_weights": "the head's weights are the embedding's, transposed (needs "
    "--embedding-dim equal to --units)",
    "batch_size": "parallel rows of the character stream",
    "k1": "truncated BPTT: characters per block, one update per block",
    "k2": "truncated BPTT: characters each block back-propagates through; omit for k2 = k1",
    "epochs": "passes over the training text",
    "learning_rate": "Adam learning rate",
    "global_clipnorm": "clip the global gradient norm to this",
    "val_fraction": "final share of the text held out for validation",
    "seed": "random seed (weights, dropout, sampling)",
    "sample_length": "characters sampled per temperature for samples.txt",
    "checkpoint_dir": "write crash-safe checkpoints here (every epoch); omit: none",
    "resume": "continue from the newest checkpoint in --checkpoint-dir",
}

# Option types for fields whose default (None) does not tell.
_TYPES = {"k1": int, "k2": int, "global_clipnorm": float}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, False) whose help says what they mean."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _quiet_tensorflow() -> None:
    """Imports TensorFlow with the process's stderr (file descriptor 2) sent to a temporary file.

    TensorFlow's C++ start-up lines (`WARNING: All log messages before absl::InitializeLog()`,
    `I0000 ... cudart_stub`, the CUDA probe) are written before its logging is configured, so
    no log level hides them. They are replayed if the import fails. The command line is the
    program, so it may also set `TF_CPP_MIN_LOG_LEVEL` (a value you set wins); the library
    itself changes no environment variable.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # later INFO lines (XLA's first compile)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs once, here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _add_config_options(parser, defaults, helps: dict) -> None:
    """One option per field of a config dataclass (`--field-name`), defaulting to the field's
    value in `defaults`; the option's type comes from the built-in default (or `_TYPES`)."""
    builtins = type(defaults)()
    for f in fields(defaults):
        default, builtin = getattr(defaults, f.name), getattr(builtins, f.name)
        option = f"--{f.name.replace('_', '-')}"
        if isinstance(builtin, bool):
            parser.add_argument(
                option, dest=f.name, action="store_true", default=default, help=helps[f.name]
            )
            continue
        kind = _TYPES.get(f.name) or {int: int, float: float}.get(type(builtin), str)
        parser.add_argument(option, dest=f.name, type=kind, default=default, help=helps[f.name])


def _parser(defaults: TrainConfig | None = None) -> argparse.ArgumentParser:
    """The command's parser; `defaults` (e.g. a replayed run's configuration) sets the
    defaults of `train`'s options."""
    defaults = defaults or TrainConfig()
    parser = argparse.ArgumentParser(
        prog="bptt-keras",
        description="Backpropagation through time with Keras 3: train and inspect recurrent "
        "networks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a next-step model on a series and forecast its held-out end",
        description="Train a recurrent next-step model on one series (default: yearly "
        "sunspots), forecast the held-out final part, and write a run directory with "
        "model.keras, history.csv/json (loss, val_loss, grad_norm per epoch), metrics.json, "
        "config.json, loss_curve.png, forecast.png and gradient_norms.png/.csv.",
        formatter_class=_Formatter,
    )
    _add_config_options(train, defaults, _HELP)
    train.add_argument(
        "--out",
        default=None,
        help="run directory to create (must not exist); omitted: runs/train-<cell>-<time>",
    )
    train.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="start from this config.json (e.g. a run directory's, to replay the run); "
        "options given on the command line override its values",
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")

    lm = commands.add_parser(
        "lm",
        help="train a character language model by truncated BPTT (default: Tiny Shakespeare)",
        description="Train a character-level language model (Embedding -> stacked RNN -> "
        "logits) by truncated BPTT over the text's stream, score the held-out final part in "
        "nats, bits per character and perplexity, and write a run directory with model.keras, "
        "vocab.json, config.json, history.csv/json, metrics.json, loss_curve.png (bits per "
        "character), samples.txt and README.md.",
        formatter_class=_Formatter,
    )
    _add_config_options(lm, LMConfig(), _LM_HELP)
    lm.add_argument(
        "--out", default=None, help="run directory to create (must not exist); omitted: "
        "runs/lm-<cell>-<time>",
    )  # fmt: skip
    lm.add_argument("--quiet", action="store_true", help="no progress output")

    s2s = commands.add_parser(
        "seq2seq",
        help="train an encoder-decoder on a tab-separated pairs file (source<TAB>target)",
        description="Train an encoder-decoder (the encoder's final state starts the decoder; "
        "teacher forcing; full BPTT) on a UTF-8 file of `source<TAB>target` lines, hold out "
        "a seeded 10 %% for exact-match scoring, and write a run directory with model.keras, "
        "codec.json, config.json, history.csv/json, metrics.json and examples.txt. "
        "`bptt-keras translate RUN_DIR TEXT...` decodes with it.",
        formatter_class=_Formatter,
    )
    s2s.add_argument("pairs", help="UTF-8 file of `source<TAB>target` lines")
    s2s.add_argument(
        "--no-reverse", dest="reverse", action="store_false",
        help="read each source as written (default: reversed, Sutskever et al. 2014)",
    )  # fmt: skip
    s2s.add_argument("--cell", default="lstm", help="lstm, gru or simple_rnn")
    s2s.add_argument("--units", type=int, default=128, help="units per recurrent layer")
    s2s.add_argument("--num-layers", type=int, default=1, help="layers in encoder and decoder")
    s2s.add_argument("--embedding-dim", type=int, default=None, help="default: --units")
    s2s.add_argument("--epochs", type=int, default=20, help="passes over the training pairs")
    s2s.add_argument("--batch-size", type=int, default=32, help="pairs per update")
    s2s.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's step size")
    s2s.add_argument("--val-fraction", type=float, default=0.1, help="pairs held out")
    s2s.add_argument("--seed", type=int, default=0, help="seed of the split, weights, order")
    s2s.add_argument(
        "--out", default=None, help="run directory to create (must not exist); omitted: "
        "runs/seq2seq-<time>",
    )  # fmt: skip
    s2s.add_argument("--quiet", action="store_true", help="no progress output")

    tr = commands.add_parser(
        "translate",
        help="decode texts with a `bptt-keras seq2seq` run directory",
        description="Decode each TEXT with the encoder-decoder saved in RUN_DIR (greedy, or "
        "beam search with --beam > 1); prints one decoded line per TEXT.",
        formatter_class=_Formatter,
    )
    tr.add_argument("run_dir", help="a run directory of `bptt-keras seq2seq`")
    tr.add_argument("texts", nargs="+", metavar="TEXT", help="source texts to decode")
    tr.add_argument("--beam", type=int, default=1, help="beam width (1: greedy decoding)")

    fc = commands.add_parser(
        "forecast",
        help="forecast the steps after the end of a saved run's series (original units)",
        description="Load a run directory written by `bptt-keras train` and forecast the "
        "steps after the end of its series in closed loop (each prediction fed back), from "
        "the last `window` values, in the series' own units. Prints `step,time,value` CSV.",
        formatter_class=_Formatter,
    )
    fc.add_argument("run_dir", help="a run directory of `bptt-keras train`")
    fc.add_argument("--steps", type=int, default=10, help="future steps to forecast")
    fc.add_argument("--out", default=None, help="also write the CSV to this file (must not exist)")

    reproduce = commands.add_parser(
        "reproduce",
        help="rerun one of the experiments (vanishing gradients, adding, copy, ...)",
        description="Run one experiment and write its run directory: results tables (CSV and "
        "Markdown, published figures beside measured ones), plots (PNG), config.json and a "
        "README.md. `--list` shows the experiments.",
        formatter_class=_Formatter,
    )
    reproduce.add_argument("name", nargs="?", help="experiment to run (see --list)")
    reproduce.add_argument("--list", action="store_true", help="list the experiments and exit")
    reproduce.add_argument(
        "--quick", action="store_true", help="the minutes-sized version (as the tests run it)"
    )
    reproduce.add_argument(
        "--scale",
        choices=("quick", "full", "paper"),
        default=None,
        help="quick, full (the default) or paper: the published sizes and budgets, where the "
        "experiment has them (seq2seq: Keras' 4- and 5-digit rows, about 1.5 hours; copy: "
        "Arjovsky et al.'s sizes, RMSprop and 20,000 updates, about 3 minutes; adding: "
        "the same for 128-unit models at T = 100, 200, 400, about 36 minutes for three seeds "
        "with --jobs 3)",
    )
    reproduce.add_argument(
        "--out",
        default=None,
        help="run directory to create (must not exist); omitted: runs/reproduce-<name>-<time>",
    )
    reproduce.add_argument("--seed", type=int, default=0, help="seed of data, weights, order")
    reproduce.add_argument(
        "--seeds",
        default=None,
        help="several seeds, e.g. 0,1,2: one run per seed in OUT/seed-<s>/ and a summary in "
        "OUT/ with mean ± std (min-max) of every measured number and the curves' spread",
    )
    reproduce.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --seeds: seeds run at a time, each in its own process with cores/JOBS "
        "threads (on 2 cores, --jobs 2 trains small recurrent models about 1.6x faster)",
    )
    reproduce.add_argument(
        "--quiet", action="store_true", help="no progress lines (one per model and length)"
    )
    return parser


def _fail(message: str) -> int:
    print(f"bptt-keras: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bptt-keras` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "forecast":
        return _forecast(args)
    if args.command == "lm":
        return _lm(args)
    if args.command == "seq2seq":
        return _seq2seq(args)
    if args.command == "translate":
        return _translate(args)
    if args.config is not None:  # the file's values become defaults; given options win
        try:
            from bptt_keras.config import read_config

            replay = read_config(args.config)
        except (ValueError, TypeError, FileNotFoundError) as err:
            return _fail(f"--config: {str(err).splitlines()[0]}")
        args = _parser(replay).parse_args(argv)
    return _train(args)


def _reproduce(args) -> int:
    # Imported here: `bptt-keras train` should not pay for the experiments' imports.
    from bptt_keras.experiments import EXPERIMENTS, run_experiment

    if args.list:
        width = max(len(name) for name in EXPERIMENTS)
        for name, experiment in EXPERIMENTS.items():
            print(f"{name:<{width}}  {experiment.summary}")
        return 0
    if args.name is None:
        return _fail(
            "reproduce needs an experiment name; `bptt-keras reproduce --list` lists them."
        )
    if args.name not in EXPERIMENTS:
        return _fail(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}.")
    if args.seed < 0:
        return _fail(f"--seed must be >= 0. Received: {args.seed}")
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            return _fail(
                f"--seeds takes comma-separated integers, e.g. 0,1,2. Received: {args.seeds!r}"
            )
        if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            return _fail(
                f"--seeds needs at least two different seeds >= 0. Received: {args.seeds!r}"
            )
    if args.jobs < 1:
        return _fail(f"--jobs must be at least 1. Received: {args.jobs}")
    if args.jobs > 1 and args.seeds is None:
        return _fail(f"--jobs {args.jobs} runs several seeds at a time; it needs --seeds.")
    if args.quick and args.scale not in (None, "quick"):
        return _fail(f"--quick and --scale {args.scale} contradict each other; give one.")
    scale = "quick" if args.quick else (args.scale or "full")
    out = Path(args.out or f"runs/reproduce-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists():
        return _fail(f"--out {str(out)!r} already exists; choose a new directory.")
    _quiet_tensorflow()
    module = EXPERIMENTS[args.name].load()  # imports TensorFlow
    if scale not in module.CONFIG:
        return _fail(
            f"experiment {args.name!r} has no --scale {scale}; it has: "
            f"{', '.join(sorted(module.CONFIG))}."
        )
    try:
        if seeds is not None:
            from bptt_keras.experiments.seeds import run_seeds

            report = run_seeds(
                args.name,
                seeds,
                scale=scale,
                out=out,
                verbose=0 if args.quiet else 1,
                jobs=args.jobs,
            )
        else:
            report = run_experiment(
                args.name, scale=scale, out=out, seed=args.seed, verbose=0 if args.quiet else 1
            )
    except KeyboardInterrupt:
        print(f"bptt-keras: interrupted; {out}/ is incomplete (no README.md).", file=sys.stderr)
        return 130
    print((report.out / "README.md").read_text().split("\n\n")[1])
    print(f"wrote {out}/: {', '.join(sorted(report.files))}")
    return 0


def _run_job(config, out: Path, job, *, quiet: bool, check=None):
    """Validates `config`, runs `job(config, out_dir=out, verbose=...)` with TensorFlow's
    start-up lines hidden, and turns bad input and Ctrl-C into the CLI's exit statuses.

    Returns:
        The job's result, or the exit status (an int) when it failed or was interrupted.
    """
    if out.exists():
        return _fail(f"--out {str(out)!r} already exists; choose a new directory.")
    try:
        config.validate()
        if check is not None:
            check()
        _quiet_tensorflow()
        return job(config, out_dir=out, verbose=0 if quiet else 1)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        checkpoints = getattr(config, "checkpoint_dir", None)
        saved = (
            f" The last complete batch is checkpointed in {checkpoints!r}; rerun with "
            "--resume to continue."
            if checkpoints
            else ""
        )
        print(f"bptt-keras: interrupted; no run directory was written.{saved}", file=sys.stderr)
        return 130


def _train(args) -> int:
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    out = Path(args.out or f"runs/train-{config.cell}-{time.strftime('%Y%m%d-%H%M%S')}")

    def job(*a, **k):
        from bptt_keras.run import train

        return train(*a, **k)

    result = _run_job(config, out, job, quiet=args.quiet)
    if isinstance(result, int):
        return result
    m = result.metrics
    print(
        f"test RMSE (original units): one-step {m['one_step_rmse']:.4g}, "
        f"closed-loop {m['closed_loop_rmse']:.4g}, persistence {m['persistence_rmse']:.4g}"
    )
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in result.files.values()))}")
    return 0


def _lm(args) -> int:
    config = LMConfig(**{f.name: getattr(args, f.name) for f in fields(LMConfig)})
    out = Path(args.out or f"runs/lm-{config.cell}-{time.strftime('%Y%m%d-%H%M%S')}")

    def check():  # read before TensorFlow's import: a bad file fails at once
        if config.text is not None:
            from bptt_keras.text import load_text

            load_text(config.text)

    def job(*a, **k):
        from bptt_keras.language_model import train_lm

        return train_lm(*a, **k)

    result = _run_job(config, out, job, quiet=args.quiet, check=check)
    if isinstance(result, int):
        return result
    m = result.metrics
    print(
        f"validation: {m['val_nats_per_char']:.4f} nats/char, {m['val_bits_per_char']:.4f} "
        f"bits/char, perplexity {m['val_perplexity']:.3f}"
    )
    print(f"sample (temperature 0.8): {result.samples[0.8][:200]!r}")
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in result.files.values()))}")
    return 0


def _seq2seq(args) -> int:
    from bptt_keras.seq2seq_run import Seq2SeqConfig

    config = Seq2SeqConfig(**{f.name: getattr(args, f.name) for f in fields(Seq2SeqConfig)})
    out = Path(args.out or f"runs/seq2seq-{time.strftime('%Y%m%d-%H%M%S')}")

    def check():  # read before TensorFlow's import: a malformed file fails at once
        from bptt_keras.pairs import load_pairs

        load_pairs(config.pairs)

    def job(*a, **k):
        from bptt_keras.seq2seq_run import train_pairs

        return train_pairs(*a, **k)

    result = _run_job(config, out, job, quiet=args.quiet, check=check)
    if isinstance(result, int):
        return result
    m = result["metrics"]
    if m["val_exact"] is not None:
        print(
            f"held out: {m['val_pairs']} pairs, exact match {m['val_exact']:.3f}, "
            f"per character {m['val_chars']:.3f}"
        )
    for source, target, decoded in result["examples"][:3]:
        print(f"  {source!r} -> {decoded!r} (target {target!r})")
    print(f"wrote {out}/: {', '.join(result['files'])}")
    return 0


def _translate(args) -> int:
    if not Path(args.run_dir).is_dir():
        return _fail(f"RUN_DIR {args.run_dir!r} is not a directory.")
    _quiet_tensorflow()
    from bptt_keras.seq2seq_run import translate

    try:
        decoded = translate(args.run_dir, args.texts, beam=args.beam)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    for line in decoded:
        print(line)
    return 0


def _forecast(args) -> int:
    if args.steps < 1:
        return _fail(f"--steps must be >= 1. Received: {args.steps}")
    if args.out is not None and Path(args.out).exists():
        return _fail(f"--out {args.out!r} already exists; choose a new file.")
    if not Path(args.run_dir).is_dir():  # before TensorFlow's import: an answer in no time
        return _fail(f"RUN_DIR {args.run_dir!r} is not a directory.")
    _quiet_tensorflow()
    from bptt_keras.rundir import load_run

    try:
        times, values = load_run(args.run_dir).future(steps=args.steps)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    lines = ["step,time,value"] + [
        f"{i + 1},{t:g},{v:.6g}" for i, (t, v) in enumerate(zip(times, values, strict=True))
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out is not None:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
