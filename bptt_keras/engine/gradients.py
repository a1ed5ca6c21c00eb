"""`bptt_gradients`: the loss and its (truncated) BPTT gradient, weights unchanged."""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from bptt_keras.engine.arguments import check_run, check_strategy, model_strategy, step_weights
from bptt_keras.engine.step import Engine, block_spec
from bptt_keras.losses import Normaliser
from bptt_keras.truncation import plan_blocks

# Per model: engines by settings, so that repeated gradient evaluations trace once.
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_for(model, *, loss, strategy, fast, recompute, metrics=()) -> Engine:
    """The (uncompiled-for-training) engine of `bptt_gradients` and `evaluate` for these
    settings, made once per model."""
    key = (loss, id(strategy), fast, recompute, metrics)
    engines = _ENGINES.setdefault(model, {})
    if key not in engines:
        engines[key] = Engine(
            model, loss=loss, strategy=strategy, fast=fast, recompute=recompute, metrics=metrics
        )
    return engines[key]


def bptt_gradients(
    model: keras.Model,
    x,
    y,
    *,
    k1: int | None = None,
    k2: int | None = None,
    loss=None,
    reduction: str = "mean",
    strategy: tf.distribute.Strategy | None = None,
    fast: bool = True,
    recompute: int | str | None = "auto",
    sample_weight=None,
) -> tuple[float, list[np.ndarray]]:
    """The loss and its (truncated) BPTT gradient at the model's current weights.

    Args:
        model: a `build_model` model (recurrent stack + per-step head).
        x: `(batch, time, input_dim)` inputs.
        y: `(batch, time, output_dim)` targets for `loss="mse"`; `(batch, time)` integer
            classes for `"sparse_categorical_crossentropy"` (the head's outputs are logits).
        k1: None for full BPTT; else the block length of truncated BPTT.
        k2: steps each block back-propagates through (default `k1`); `k1 <= k2 <= time`.
        loss: a per-step loss: a name from `bptt_keras.losses.LOSSES` (or a Keras alias)
            or a `keras.losses.Loss` of those (see `bptt_keras.losses.get_loss`: a
            cross-entropy by name takes probabilities after a softmax/sigmoid head, logits
            otherwise). The model's regularisation penalties (`model.losses`) are added to
            `L` and its gradient, as Keras does.
        reduction: `"mean"` (over batch, time and features: Keras' `mse`) or
            `"sum_over_time"` (the document's sum over steps, averaged over batch/features).
        strategy: optional `tf.distribute.Strategy` whose scope the model was built in;
            default: that strategy, if the model was built in one.
        fast: use the hand-derived backward pass for SimpleRNN, LSTM and GRU layers
            (`bptt_keras.fast`; same gradients, faster where per-step overhead dominates,
            more peak memory at long T: use `recompute` there; figures in
            benchmarks/RESULTS.md); False runs plain autodiff through the loop over time, for
            teaching and debugging.
        recompute: full BPTT with recomputation over segments of this many steps (Chen et
            al. 2016; Gruslys et al. 2016). With `fast`, SimpleRNN, LSTM and GRU layers keep
            only their outputs and the state at every `recompute`-th step, and rebuild each
            segment's gates inside their custom gradient, one segment at a time; a Dense
            head right after the last of them is folded into its gradient. Same gradients
            (to float rounding), with a peak that grows far more slowly with T than plain
            autodiff's (benchmarks/RESULTS.md). `recompute` about sqrt(T) balances the
            stored boundary states against one segment's working memory. Other layers
            (other activations, or `fast=False`) fall back to `tf.recompute_grad` per
            segment: same gradients, but TensorFlow schedules those recomputations early,
            so memory does not drop. Full BPTT only. `"auto"` (the default): `round(sqrt(T))`
            for full BPTT over `T >= 1000` steps on the fast path when every recurrent layer
            has one (`engine.arguments.auto_recompute`), else no recomputation; None: never.
        sample_weight: optional `(batch, time)` non-negative weight of each step's loss, e.g.
            a 0/1 mask of the scored steps; "mean" then divides by the sum of the weights
            (times the features) — see the module docstring.

    Returns:
        `(loss, grads)`: the loss `L` (a float; truncation changes gradients, not the loss)
        and a list of arrays aligned with `model.trainable_variables`. With `k1 = k2 = k`,
        the gradient of each chunk `[0, k), [k, 2k), ...` stops at the chunk start; with
        `k1 < k2`, each block's loss reaches back `k2 - k1` steps before the block (see
        `bptt_keras.truncation`). The sum over blocks is normalised like `L`.

    Raises:
        ValueError / TypeError: bad shapes, `y` not aligned with `x`, bad `k1`/`k2`, before
            any TensorFlow tracing.

    Example:

    >>> loss, grads = bptt_gradients(model, x, y)            # full BPTT
    >>> loss, tbptt = bptt_gradients(model, x, y, k1=5, k2=20)
    """
    parts, loss, x, y, k1, k2, recompute = check_run(
        model, x, y, loss, reduction, k1, k2, recompute, fast=bool(fast)
    )
    batch, time = x.shape[:2]
    w = step_weights(parts, x, sample_weight)
    strategy = model_strategy(model, strategy)
    check_strategy(strategy, model, batch, name="x.shape[0]")
    engine = engine_for(model, loss=loss, strategy=strategy, fast=bool(fast), recompute=recompute)
    normaliser = Normaliser(loss, reduction, parts.output_dim, time)
    denominator = normaliser.of_weights(w)
    xs, ys, ws = engine.distribute(x), engine.distribute(y), engine.distribute(w)
    states = engine.zero_states(batch)
    total, grads, penalty = 0.0, None, 0.0
    # Each block's loss is divided by the whole sequence's N, so that the blocks' gradients
    # add up to the gradient of L (truncated where the plan cuts it).
    for number, block in enumerate(plan_blocks(time, k1, k2)):
        # The regularisation penalty (if any) enters the gradient once, with the first block.
        block_total, penalty, block_grads, states = engine.grad_fn(
            xs, ys, ws, states, block_spec(block, denominator), tf.constant(float(number == 0))
        )
        total += float(block_total)
        block_grads = [g.numpy() for g in block_grads]
        grads = (
            block_grads
            if grads is None
            else [a + b for a, b in zip(grads, block_grads, strict=True)]
        )
    return total / denominator + float(penalty), grads
