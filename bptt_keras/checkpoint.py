"""Training checkpoints that survive crashes: written atomically, checked when read.

A checkpoint is one `.npz` file holding the model weights, the optimizer variables, any
carried recurrent state and a JSON record of where training stands (epoch, step, history,
running sums, seed). It is written to a temporary file in the same directory, flushed to disk
and renamed over the final name, and the directory is synced after the rename, so a crash (even
SIGKILL or a power loss) leaves either the previous checkpoint or the new one, never half of
one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

PATTERN = "ckpt-*.npz"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, or from a different run."""


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    index: int,
    weights: list[np.ndarray],
    optimizer_variables: list[np.ndarray],
    states: list[np.ndarray],
    meta: dict,
    keep: int = 2,
) -> Path:
    """Writes checkpoint number `index` atomically and prunes all but the newest `keep`.

    Args:
        directory: checkpoint directory (created if missing).
        index: monotonically increasing number (the count of completed batches).
        weights: `model.get_weights()`.
        optimizer_variables: values of `optimizer.variables`.
        states: carried recurrent states (flat list; empty when none are carried).
        meta: JSON-serialisable training position.
        keep: how many checkpoints to keep.

    Returns:
        The path written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    arrays |= {f"o{i}": v for i, v in enumerate(optimizer_variables)}
    arrays |= {f"s{i}": v for i, v in enumerate(states)}
    counts = {"weights": len(weights), "optimizer": len(optimizer_variables), "states": len(states)}
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "counts": counts}).encode(), np.uint8)
    final = directory / f"ckpt-{index:09d}.npz"
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    for old in sorted(directory.glob(PATTERN))[:-keep]:
        old.unlink(missing_ok=True)
    return final


def _fsync_directory(directory: Path) -> None:
    """Makes the rename itself durable: until the directory entry is on disk, a power loss
    could leave the old name (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint file in `directory`, or None."""
    found = sorted(Path(directory).glob(PATTERN)) if Path(directory).is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a checkpoint written by `save_checkpoint`.

    Returns:
        `{"weights": [...], "optimizer_variables": [...], "states": [...], "meta": {...}}`.

    Raises:
        CheckpointError: the file is truncated, corrupt or not a checkpoint.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            counts = meta["counts"]
            return {
                "weights": [data[f"w{i}"] for i in range(counts["weights"])],
                "optimizer_variables": [data[f"o{i}"] for i in range(counts["optimizer"])],
                "states": [data[f"s{i}"] for i in range(counts["states"])],
                "meta": meta,
            }
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupt or truncated and cannot be resumed from "
            f"({type(err).__name__}: {err}). Delete it to resume from an earlier checkpoint."
        ) from None
