"""The `bptt-keras` command.

    bptt-keras train                     # default model on the shipped sunspot series
    bptt-keras train --cell lstm --epochs 100 --out runs/lstm
    bptt-keras train --csv my.csv --column value --window 48

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
}


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
        "model.keras, history.csv/json, metrics.json, config.json, loss_curve.png and "
        "forecast.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(TrainConfig):
        default = getattr(_DEFAULTS, f.name)
        kind = {int: int, float: float}.get(type(default), str)
        train.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=kind,
            default=default,
            help=_HELP[f.name],
        )
    train.add_argument(
        "--out",
        default=None,
        help="run directory to create (must not exist) [default: runs/train-<cell>-<time>]",
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
        return _fail("interrupted; nothing was written.")
    m = result.metrics
    print(
        f"test RMSE (original units): one-step {m['one_step_rmse']:.4g}, "
        f"closed-loop {m['closed_loop_rmse']:.4g}, persistence {m['persistence_rmse']:.4g}"
    )
    print(f"wrote {out}/: {', '.join(sorted(p.name for p in result.files.values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
