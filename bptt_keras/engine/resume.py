"""Resume: where training stands, checkpoints of it, and interrupts that wait for a batch end.

One object owns resume (as Keras' `BackupAndRestore` does): `Checkpointer.restore` puts the
model, the optimizer and the training position back at the start of `fit`, `save` writes
them at batch boundaries. A checkpoint records the position as the epoch, the next batch,
the batches done and the running sums of the epoch, so that a resumed run reports and
trains exactly as an uninterrupted one (`bptt_keras.checkpoint` writes the file atomically).
"""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf

from bptt_keras.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bptt_keras.losses import Normaliser


@dataclass
class Progress:
    """Running sums of the current epoch: loss sum, scored elements, gradient norms, updates.

    Sums are added one update at a time, in order, so that a resumed run (with other call
    boundaries) reports bit for bit what an uninterrupted one does.
    """

    loss_sum: float = 0.0
    count: float = 0.0
    grad_norm_sum: float = 0.0
    updates: int = 0

    def add(self, total: float, count: float, grad_norm: float) -> None:
        self.loss_sum += total
        self.count += count
        self.grad_norm_sum += grad_norm
        self.updates += 1

    def logs(self, normaliser: Normaliser) -> dict:
        """The epoch's `loss` (as defined by the reduction) and mean `grad_norm` so far."""
        return {
            "loss": normaliser.report(self.loss_sum, self.count),
            "grad_norm": self.grad_norm_sum / max(self.updates, 1),
        }


@dataclass
class TrainingState:
    """Where training stands: the epoch, its next batch, batches done in all, the seed of the
    shuffling, the epoch's running sums, the history so far and a stateful model's carried
    states (None for independent sequences, or at an epoch start)."""

    epoch: int = 0
    step: int = 0
    batches_done: int = 0
    seed: int = 0
    progress: Progress = field(default_factory=Progress)
    history: dict = field(default_factory=dict)
    states: list | None = None


def fingerprint(args) -> dict:
    """What a checkpoint must agree with to be resumed: the data's shape, the batching, the
    truncation, the loss and the model's weight shapes."""
    return {
        "n": args.rows,
        "time": args.time,
        "batch_size": args.batch_size,
        "k1": args.k1,
        "k2": args.k2,
        "loss": args.loss,
        "reduction": args.reduction,
        "weights": [list(v.shape) for v in args.model.get_weights()],
        "sample_weight_sum": float(args.w.sum()),
    }


class Checkpointer:
    """Saves and restores a `fit` run in `directory` (None: does nothing).

    Args:
        directory: the checkpoint directory, or None.
        model, optimizer: what is saved and restored.
        fingerprint: see `fingerprint`; a checkpoint with another is refused.
        state_sizes: a stateful model's state sizes per layer (`Parts.sizes`), or None.
    """

    def __init__(self, directory, model, optimizer, fingerprint: dict, state_sizes=None):
        self.directory, self.model, self.optimizer = directory, model, optimizer
        self.fingerprint, self.state_sizes = fingerprint, state_sizes

    def restore(self) -> TrainingState | None:
        """Restores the newest checkpoint into the model and optimizer; returns where it
        stands, or None when there is none.

        Raises:
            CheckpointError: a corrupt checkpoint, or one written by another setup.
        """
        path = None if self.directory is None else latest_checkpoint(self.directory)
        if path is None:
            return None
        ckpt = load_checkpoint(path)
        meta = ckpt["meta"]
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} was written by a run with other data or settings "
                f"({meta.get('fingerprint')}); this run has {self.fingerprint}."
            )
        self.model.set_weights(ckpt["weights"])
        variables = self.optimizer.variables
        if len(ckpt["optimizer_variables"]) != len(variables):
            raise CheckpointError(
                f"Checkpoint {str(path)!r} holds {len(ckpt['optimizer_variables'])} "
                f"optimizer variables; this optimizer has {len(variables)}."
            )
        for variable, value in zip(variables, ckpt["optimizer_variables"], strict=True):
            variable.assign(value)
        states = None
        if ckpt["states"]:
            it = iter(ckpt["states"])
            states = [[tf.constant(next(it)) for _ in sizes] for sizes in self.state_sizes]
        return TrainingState(
            epoch=meta["epoch"],
            step=meta["step"],
            batches_done=meta["batches_done"],
            seed=meta["seed"],
            progress=Progress(**meta["accum"]),
            history=meta["history"],
            states=states,
        )

    def save(self, state: TrainingState, history: dict) -> None:
        """Writes `state` (and the history so far) as the newest checkpoint."""
        if self.directory is None:
            return
        flat = [s.numpy() for layer in (state.states or []) for s in layer]
        meta = {
            "epoch": state.epoch,
            "step": state.step,
            "batches_done": state.batches_done,
            "seed": state.seed,
            "accum": asdict(state.progress),
            "history": history,
            "fingerprint": self.fingerprint,
        }
        save_checkpoint(
            self.directory,
            index=state.batches_done,
            weights=self.model.get_weights(),
            optimizer_variables=[np.asarray(v.numpy()) for v in self.optimizer.variables],
            states=flat if self.state_sizes is not None else [],
            meta=meta,
        )


class Interrupt:
    """Turns SIGINT (Ctrl-C) into a flag checked at batch boundaries, so a checkpoint can be
    written at a clean batch boundary before training stops."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
