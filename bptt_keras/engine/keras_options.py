"""What a Keras user brings to `fit`: `compile()` settings, clipping, validation options.

A user who moves from `model.fit` to `bptt_keras.fit` keeps what they wrote: the optimizer,
loss and metrics given to `model.compile` are used when `fit` is not given its own; `clipnorm`
and `global_clipnorm` mean what they mean in Keras; `validation_split`, `initial_epoch`,
`validation_freq` and `verbose="auto"` behave as in `keras.Model.fit`. Anything that would be
silently ignored is refused with a message instead (an activity regulariser, a
`BackupAndRestore` callback).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from bptt_keras._validation import check_float, check_int, describe
from bptt_keras.losses import get_loss


def compiled_settings(model) -> dict:
    """`{"optimizer", "loss", "metrics"}` as given to `model.compile` (empty when the model
    was not compiled). `bptt_keras.fit` sets `model.optimizer` without compiling, so only a
    user's `compile` counts."""
    if not getattr(model, "compiled", False):
        return {}
    config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    return {
        "optimizer": getattr(model, "optimizer", None),
        "loss": config.get("loss", getattr(model, "loss", None)),
        "metrics": config.get("metrics"),
    }


def resolve_loss(model, loss):
    """`loss`, else the compiled loss, else "mse"; a conflict between the two is an error.

    Raises:
        ValueError: `loss` differs from the loss the model was compiled with, or the compiled
            loss is a list / dict (several outputs), which the engine does not train.
    """
    compiled = compiled_settings(model).get("loss")
    if isinstance(compiled, (list, tuple, dict)):
        raise ValueError(
            "The model was compiled with several losses; bptt_keras trains one per-step loss. "
            f"Pass `loss=`. Received compiled loss: {describe(compiled)}"
        )
    if loss is None:
        return get_loss("mse" if compiled is None else compiled, model)
    resolved = get_loss(loss, model)
    if compiled is not None and get_loss(compiled, model) != resolved:
        raise ValueError(
            f"`loss`={describe(loss)} conflicts with the loss the model was compiled with "
            f"({describe(compiled)}). Leave `loss` out to use the compiled one, pass the same, "
            "or compile the model again."
        )
    return resolved


def resolve_optimizer(model, optimizer):
    """`optimizer`, else the one given to `model.compile`, else None (the default Adam)."""
    if optimizer is not None:
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"`optimizer` must be a Keras optimizer. Received: {describe(optimizer)}"
            )
        return optimizer
    return compiled_settings(model).get("optimizer")


def resolve_metrics(model, metrics):
    """`metrics`, else those given to `model.compile` (None: no metrics)."""
    return compiled_settings(model).get("metrics") if metrics is None else metrics


def check_clipping(optimizer, clipnorm, global_clipnorm) -> tuple[float | None, float | None]:
    """`(clipnorm, global_clipnorm)` checked: Keras' meanings (each variable's gradient norm;
    the global norm of all of them), at most one of them, and none when the optimizer clips
    already (a warning: the gradient is clipped once, by the optimizer)."""
    if clipnorm is not None:
        clipnorm = check_float(clipnorm, name="clipnorm", low=0.0, low_inclusive=False)
    if global_clipnorm is not None:
        global_clipnorm = check_float(
            global_clipnorm, name="global_clipnorm", low=0.0, low_inclusive=False
        )
    if clipnorm is not None and global_clipnorm is not None:
        raise ValueError(
            "Pass at most one of `clipnorm` (each variable's gradient norm, as Keras) and "
            f"`global_clipnorm` (the global norm). Received: clipnorm={clipnorm}, "
            f"global_clipnorm={global_clipnorm}"
        )
    own = {
        name: getattr(optimizer, name, None)
        for name in ("clipnorm", "global_clipnorm", "clipvalue")
        if getattr(optimizer, name, None) is not None
    }
    if own and (clipnorm is not None or global_clipnorm is not None):
        warnings.warn(
            f"The optimizer clips already ({own}); `fit`'s clipnorm={clipnorm}, "
            f"global_clipnorm={global_clipnorm} are not applied, so that gradients are not "
            "clipped twice.",
            UserWarning,
            stacklevel=4,
        )
        return None, None
    return clipnorm, global_clipnorm


def check_callbacks(callbacks) -> list:
    """The callbacks as a list (read once); `BackupAndRestore` is refused: `fit` restores
    with `checkpoint_dir` / `resume`, which also restore the position within an epoch."""
    callbacks = list(callbacks or [])
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            raise ValueError(
                "`callbacks`: keras.callbacks.BackupAndRestore is not supported by "
                "bptt_keras.fit (it would restore the weights and restart at epoch 0). Use "
                "`checkpoint_dir=...` and `resume=True`, which restore the weights, the "
                "optimizer and the exact position in the epoch."
            )
    return callbacks


def check_regularisers(model) -> None:
    """Weight regularisers are trained (`model.losses`); activity regularisers are not: the
    engine unrolls the recurrent layers itself, so their activity losses are never added."""
    found = [layer.name for layer in model.layers if getattr(layer, "activity_regularizer", None)]
    if found:
        raise ValueError(
            f"Layer(s) {found} have an activity_regularizer, which bptt_keras does not train "
            "(its loss would be silently dropped). Use kernel_regularizer / "
            "recurrent_regularizer / bias_regularizer, or remove it."
        )


def check_verbose(verbose) -> int:
    """0, 1, 2, or "auto": 1 (a progress bar) in a terminal or notebook, else 2 (one line per
    epoch). Keras' "auto" is always 1, whose bar becomes one endless line in a log file."""
    if verbose == "auto":
        from bptt_keras.progress import interactive

        return 1 if interactive() else 2
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'. Received: {describe(verbose)}")
    return int(verbose)


def check_epoch_options(epochs, initial_epoch, validation_freq) -> tuple[int, int, int]:
    """`(epochs, initial_epoch, validation_freq)` checked (Keras' meanings: train epochs
    `initial_epoch ... epochs - 1`, validate after every `validation_freq`-th)."""
    epochs = check_int(epochs, name="epochs")
    initial_epoch = check_int(initial_epoch, name="initial_epoch", minimum=0)
    validation_freq = check_int(validation_freq, name="validation_freq")
    return epochs, initial_epoch, validation_freq


def split_validation(x, y, w, validation_split, validation_data, *, weighted: bool):
    """Keras' `validation_split`: the last `fraction` of the rows (before any shuffling)
    become the validation data. Returns `(x, y, w, validation_data)`.

    Raises:
        ValueError: a fraction outside [0, 1), or one that leaves no row on either side.
    """
    if not validation_split:
        return x, y, w, validation_data
    fraction = check_float(validation_split, name="validation_split", low=0.0, high=1.0)
    if fraction >= 1.0:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: {validation_split}")
    if validation_data is not None:
        return x, y, w, validation_data  # as Keras: validation_data takes precedence
    rows = x.shape[0]
    split = int(rows * (1.0 - fraction))
    if split in (0, rows):
        raise ValueError(
            f"`validation_split`={validation_split} of {rows} sequences leaves "
            f"{split} to train on and {rows - split} to validate on; both must be > 0."
        )
    held = (x[split:], y[split:], np.asarray(w)[split:]) if weighted else (x[split:], y[split:])
    return x[:split], y[:split], None if w is None else np.asarray(w)[:split], held
