"""Several updates per compiled call, around the one-block step (as Keras' `_make_function`
wraps `train_step` for `steps_per_execution`).

The step (`Engine.train_step`) knows one block of one batch. `train_updates` runs a stretch
of an epoch's updates (`bptt_keras.engine.epochs`) in one `tf.while_loop`: it gathers each
block's window from the whole data, hands the state on from block to block and from batch
to batch, and stops at the first non-finite update. The host then synchronises once per call
instead of once per update.
"""

from __future__ import annotations

import tensorflow as tf


def train_updates(
    engine, x, y, w, order, table, denominators, states, first, count, *, batch, limit, rows,
    shape,
):  # fmt: skip
    """Updates `first ... first + count - 1` of the epoch in one call.

    Update `u` trains block `u % blocks` of batch `u // blocks`; the batch is the rows
    `order[b * batch :][:batch]` of the whole data, and `table[i]` holds block `i`'s
    `(start, loss_start, capture)`. Each block's window is gathered from the data by index
    inside the loop: XLA compiles a function once per static shape, and positions given as
    arguments to slices would be compile-time constants (one compilation per block
    position, per call).

    Args:
        engine: the `Engine` whose step is run.
        x, y, w: the whole data `(rows, time, ...)` and per-step weights `(rows, time)`.
        order: int32 `(batches * batch,)`, the epoch's row order padded to whole batches:
            positions from `rows` on repeat a row of the last batch with weight 0, so that a
            last partial batch has the same static shape and its update is that of its real
            rows (its denominator counts only those).
        table: int32 `(blocks, 3)`, each block's `(start, loss_start, capture)`.
        denominators: float32 `(batches * blocks,)`, every update's loss denominator.
        states: the state the first update starts from. Within a batch each block starts
            from the state its predecessor handed on; a new batch from zero states, or a
            stateful model's final states of the batch before.
        first, count: int32 scalars, the first update and how many to run (<= `limit`).
        batch, limit, rows: Python ints (static): batch size, most updates per call, real
            sequences.
        shape: `(length, loss_length)` of every block of the call (static).

    Returns:
        `(stats (limit, engine.stats_size), updates run, captured states, final states)`:
        each update's stats as `Engine.train_step` returns them; the run stops after the first
        non-finite update (skipped, so the weights stay those of the last finite one).
    """
    from bptt_keras.engine.step import FINITE, BlockSpec  # the step module imports this one

    length, loss_length = shape
    blocks = table.shape[0]
    stats = tf.TensorArray(tf.float64, size=limit, element_shape=(engine.stats_size,))
    zeros = engine.parts.zero_states(batch)

    def body(i, finite, captured, finals, stats):
        update = first + i
        number, index = update // blocks, update % blocks
        start, loss_start, capture = tf.unstack(tf.gather(table, index))
        # A new batch (after the call's first update, whose state the host passes in).
        fresh = (index == 0) & (i > 0)
        reset = finals if engine.stateful else zeros
        begin = tf.nest.map_structure(lambda r, c: tf.where(fresh, r, c), reset, captured)
        positions = number * batch + tf.range(batch)
        where = _window_indices(tf.gather(order, positions), start, batch, length)
        real = tf.cast(positions < rows, w.dtype)[:, None]
        spec = BlockSpec(
            0, loss_start - start, capture, tf.gather(denominators, update), length, loss_length
        )
        row_stats, new_finals, new_captured = engine.train_step(
            tf.gather_nd(x, where), tf.gather_nd(y, where), tf.gather_nd(w, where) * real,
            begin, spec,
        )  # fmt: skip
        return i + 1, row_stats[FINITE] > 0, new_captured, new_finals, stats.write(i, row_stats)

    done, _, captured, finals, stats = tf.while_loop(
        lambda i, finite, *_: (i < count) & finite,
        body,
        (tf.constant(0), tf.constant(True), states, states, stats),
        maximum_iterations=limit,
    )
    return stats.stack(), done, captured, finals


def _window_indices(rows, start, batch: int, length: int):
    """`(batch, length, 2)` indices of steps `[start, start + length)` of each of `rows`."""
    steps = start + tf.range(length)
    return tf.stack(
        [
            tf.broadcast_to(rows[:, None], (batch, length)),
            tf.broadcast_to(steps[None, :], (batch, length)),
        ],
        axis=-1,
    )
