"""Resume: where training stands, checkpoints of it, and interrupts that wait for a batch end.

One object owns resume (as Keras' `BackupAndRestore` does): `Checkpointer.restore` puts the
model, the optimizer and the training position back at the start of `fit`, `save` writes
them at batch boundaries. A checkpoint records the position as the epoch, the next batch,
the batches done and the running sums of the epoch, so that a resumed run reports and
trains exactly as an uninterrupted one (`bptt_keras.checkpoint` writes the file atomically).
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import asdict, dataclass, field

import keras
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
    """Running sums of the current epoch: loss sum, scored elements, gradient norms,
    regularisation penalties, updates, and each metric's `[sum, count]`.

    Sums are added one update at a time, in order, so that a resumed run (with other call
    boundaries) reports bit for bit what an uninterrupted one does.
    """

    loss_sum: float = 0.0
    count: float = 0.0
    grad_norm_sum: float = 0.0
    updates: int = 0
    penalty_sum: float = 0.0
    metric_sums: list = field(default_factory=list)

    def add(
        self, total: float, count: float, grad_norm: float, penalty: float = 0.0,
        metric_sums=(),
    ) -> None:  # fmt: skip
        self.loss_sum += total
        self.count += count
        self.grad_norm_sum += grad_norm
        self.penalty_sum += penalty
        self.updates += 1
        if not self.metric_sums:
            self.metric_sums = [0.0] * len(metric_sums)
        for i, value in enumerate(metric_sums):
            self.metric_sums[i] += value

    def logs(self, normaliser: Normaliser, metrics=()) -> dict:
        """The epoch's `loss` so far (as defined by the reduction, plus the mean regularisation
        penalty of its updates, as Keras reports it), mean `grad_norm`, and each metric."""
        updates = max(self.updates, 1)
        logs = {
            "loss": normaliser.report(self.loss_sum, self.count) + self.penalty_sum / updates,
            "grad_norm": self.grad_norm_sum / updates,
        }
        return logs | metric_logs(metrics, self.metric_sums)


def metric_logs(metrics, sums, prefix: str = "") -> dict:
    """`{prefix + name: sum / count}` from flat `[sum, count, ...]` per metric."""
    logs = {}
    for i, metric in enumerate(metrics):
        total, count = (sums[2 * i], sums[2 * i + 1]) if sums else (0.0, 0.0)
        logs[prefix + metric.name] = total / count if count > 0 else 0.0
    return logs


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
    common = {
        "time": args.time,
        "batch_size": args.batch_size,
        "k1": args.k1,
        "k2": args.k2,
        "loss": args.loss.key,
        "reduction": args.reduction,
        "weights": [list(v.shape) for v in args.model.get_weights()],
    }
    if args.dataset is not None:  # its rows cannot be read without streaming them all
        return {
            "dataset": args.dataset.describe(),
            "steps_per_epoch": args.dataset.steps_per_epoch,
        } | common
    return {"n": args.rows} | common | {"sample_weight_sum": float(args.w.sum())}


def saved_variables(model) -> list:
    """What a checkpoint holds of the model: `model.weights`, then the states of its random
    seed generators (e.g. `Dropout(seed=...)`'s), so that a resumed run draws the same
    dropout masks as an uninterrupted one. Recurrent cells' own generators are left out:
    the engine refuses cell dropout, so they draw nothing."""
    known = {id(v) for v in model.weights}
    seeds = [
        v
        for layer in model.layers
        if not isinstance(layer, keras.layers.RNN)
        for v in layer.variables
        if id(v) not in known and v.name == "seed_generator_state"
    ]
    return [*model.weights, *seeds]


def variable_keys(model) -> list[str]:
    """Names of `saved_variables(model)` that identify them by structure, not by Keras'
    unique names (which differ between two builds of one model in a process): layer
    position, layer class and variable name, e.g. `"1.SimpleRNN/kernel"`."""
    keys = {}
    for i, layer in enumerate(model.layers):
        for variable in layer.variables:
            key = f"{i}.{type(layer).__name__}/{variable.name}"
            while key in keys.values():
                key += "'"
            keys.setdefault(id(variable), key)
    return [keys.get(id(v), v.path) for v in saved_variables(model)]


def optimizer_keys(optimizer, model) -> list[str]:
    """Names of `optimizer.variables` by the model variable they belong to (Keras names a
    slot variable after its variable's path: `<path with _>_momentum`), e.g.
    `"1.SimpleRNN/kernel:momentum"`; others (`iteration`, `learning_rate`) by name."""
    by_prefix = {
        v.path.replace("/", "_"): key
        for v, key in zip(saved_variables(model), variable_keys(model), strict=True)
    }
    keys = []
    for variable in optimizer.variables:
        name = variable.name
        owner = max((p for p in by_prefix if name.startswith(p + "_")), key=len, default=None)
        keys.append(name if owner is None else f"{by_prefix[owner]}:{name[len(owner) + 1 :]}")
    return keys


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints: always, except under a multi-worker strategy,
    where only the chief does (the `chief` task, else worker 0), as `BackupAndRestore`."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    if task_type is None or task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def _assign_by_key(variables, keys, saved_keys, values, path, what: str) -> None:
    """Assigns saved `values` to `variables` by key; the first mismatch is an error."""
    if saved_keys is None:  # a checkpoint written before names were recorded: by position
        if len(values) != len(variables):
            raise CheckpointError(
                f"Checkpoint {str(path)!r} holds {len(values)} {what} variables; this run "
                f"has {len(variables)}."
            )
        saved_keys = keys
    saved = dict(zip(saved_keys, values, strict=True))
    for key in [*keys, *saved_keys]:
        if key not in saved or key not in keys:
            where = "the checkpoint" if key not in saved else "this run"
            raise CheckpointError(
                f"Checkpoint {str(path)!r} does not match this run's {what} variables: "
                f"{key!r} is missing from {where}."
            )
    for variable, key in zip(variables, keys, strict=True):
        if tuple(saved[key].shape) != tuple(variable.shape):
            raise CheckpointError(
                f"Checkpoint {str(path)!r}: {what} variable {key!r} has shape "
                f"{tuple(saved[key].shape)}; this run's has {tuple(variable.shape)}."
            )
        variable.assign(saved[key])


class Checkpointer:
    """Saves and restores a `fit` run in `directory` (None: does nothing).

    Variables are saved with structural names (`variable_keys`) and restored by name, so a
    model whose variables differ is refused, naming the first mismatch. Under a multi-worker
    strategy only the chief writes; every worker restores from the chief's files (a shared
    directory).

    Args:
        directory: the checkpoint directory, or None.
        model, optimizer: what is saved and restored.
        fingerprint: see `fingerprint`; a checkpoint with another is refused.
        state_sizes: a stateful model's state sizes per layer (`Parts.sizes`), or None.
        strategy: the run's `tf.distribute.Strategy`, or None.
    """

    def __init__(
        self, directory, model, optimizer, fingerprint: dict, state_sizes=None, strategy=None
    ):
        self.directory, self.model, self.optimizer = directory, model, optimizer
        self.fingerprint, self.state_sizes = fingerprint, state_sizes
        self.writes = directory is not None and is_chief(strategy)
        # The structural names, once: the model and the (built) optimizer do not change.
        self.keys = {"weights": variable_keys(model), "optimizer": optimizer_keys(optimizer, model)}

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
        names = meta.get("names", {})
        _assign_by_key(
            saved_variables(self.model), self.keys["weights"], names.get("weights"),
            ckpt["weights"], path, "model",
        )  # fmt: skip
        _assign_by_key(
            self.optimizer.variables, self.keys["optimizer"], names.get("optimizer"),
            ckpt["optimizer_variables"], path, "optimizer",
        )  # fmt: skip
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
        """Writes `state` (and the history so far) as the newest checkpoint (the chief
        only)."""
        if not self.writes:
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
            "names": self.keys,
        }
        save_checkpoint(
            self.directory,
            index=state.batches_done,
            weights=[np.asarray(v.numpy()) for v in saved_variables(self.model)],
            optimizer_variables=[np.asarray(v.numpy()) for v in self.optimizer.variables],
            states=flat if self.state_sizes is not None else [],
            meta=meta,
        )


class Interrupt:
    """Turns SIGINT (Ctrl-C) and SIGTERM (schedulers, preemptible machines) into a flag checked
    at batch boundaries, so that a checkpoint is written at a clean batch boundary before
    training stops: `stop` then raises `KeyboardInterrupt` for SIGINT and `SystemExit(143)`
    (128 + SIGTERM, what the default handler's exit status would be) for SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested, self.signum = True, signum

    def stop(self, message: str):
        """Ends training after a requested interrupt (the checkpoint is written already)."""
        if self.signum == signal.SIGTERM:
            print(f"SIGTERM: {message}", file=sys.stderr, flush=True)
            raise SystemExit(128 + signal.SIGTERM)
        raise KeyboardInterrupt(message)

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python
                signal.signal(signum, previous)
        return False
