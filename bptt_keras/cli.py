"""The `bptt-keras` command.

    bptt-keras train                     # default model on the shipped sunspot series
    bptt-keras train --cell lstm --epochs 100 --out runs/lstm
    bptt-keras train --csv my.csv --column value --window 48
    bptt-keras train --k1 5 --k2 10 --clipnorm 1.0 --checkpoint-dir ck   # truncated BPTT

Bad options and bad data end with a one-line `bptt-keras: error: ...` and exit status 2,
before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from bptt_keras import __version__
from bptt_keras.config import TrainConfig
from bptt_keras.datasets import SERIES
from bptt_keras.models import CELLS, INITS
from bptt_keras.run import train

_DEFAULTS = TrainConfig()

# Help text per TrainConfig field; the CLI option is the field name with dashes.
_HELP = {
    "dataset": f"shipped series to train on: {', '.join(SERIES)}",
    "csv": "train on this CSV file instead of a shipped series (needs --column)",
    "column": "value column of --csv",
    "time_column": "optional time column of --csv (used for plot axes)",
    "cell": f"recurrent cell: {', '.join(CELLS)}",
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
    "clipnorm": "clip the global gradient norm to this (Pascanu et al. 2013); omit: no clipping",
    "checkpoint_dir": "write crash-safe checkpoints here (every epoch); omit: none",
    "resume": "continue from the newest checkpoint in --checkpoint-dir",
}

# Option types for fields whose default (None) does not tell.
_TYPES = {"k1": int, "k2": int, "clipnorm": float}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, False) whose help says what they mean."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
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
    for f in fields(TrainConfig):
        default = getattr(_DEFAULTS, f.name)
        option = f"--{f.name.replace('_', '-')}"
        if isinstance(default, bool):
            train.add_argument(option, dest=f.name, action="store_true", help=_HELP[f.name])
            continue
        kind = _TYPES.get(f.name) or {int: int, float: float}.get(type(default), str)
        train.add_argument(option, dest=f.name, type=kind, default=default, help=_HELP[f.name])
    train.add_argument(
        "--out",
        default=None,
        help="run directory to create (must not exist); omitted: runs/train-<cell>-<time>",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
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
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    out = Path(args.out or f"runs/train-{config.cell}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists():
        return _fail(f"--out {str(out)!r} already exists; choose a new directory.")

    try:
        config.validate()
        result = train(config, out_dir=out, verbose=0 if args.quiet else 1)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        return _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        saved = (
            f" The last complete batch is checkpointed in {config.checkpoint_dir!r}; rerun with "
            "--resume to continue."
            if config.checkpoint_dir
            else ""
        )
        print(f"bptt-keras: interrupted; no run directory was written.{saved}", file=sys.stderr)
        return 130
    m = result.metrics
    print(
        f"test RMSE (original units): one-step {m['one_step_rmse']:.4g}, "
        f"closed-loop {m['closed_loop_rmse']:.4g}, persistence {m['persistence_rmse']:.4g}"
    )
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in result.files.values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
