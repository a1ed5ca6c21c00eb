"""An epoch's plan: the order of its rows, its updates, and how they are grouped into calls.

`fit` makes one update per block of the truncation plan (`bptt_keras.truncation`) of every
batch. An epoch is the flat list of those updates, numbered batch-major:

    update u  =  batch  u // blocks,  block  u % blocks

    batch 0              batch 1              batch 2
    | b0 | b1 | b2 | b3 || b0 | b1 | b2 | b3 || b0 | ...        (blocks = 4)
    u=0   1    2    3     4    5    6    7     8
    |------ call ------|------ call -----||-- call --| ...      (limit = 6, cut at a
                                                                 checkpoint boundary)

A compiled call trains a run of consecutive updates inside one `tf.while_loop`, so that a
TBPTT epoch of many tiny updates costs one host round trip per call instead of one per
update. XLA needs static shapes, so every update of a call has the same block *shape*
(forward length, loss length): the first blocks of TBPTT(k1, k2) (whose look-back is cut
at step 0) and a last shorter block each start a new call. Calls also end where the host
must act between updates: at a checkpoint's batch boundary, or after every batch when
callbacks need to see each batch.

The rows of an epoch come in an order drawn from the seed and the epoch number (so that a
resumed run sees the same order), padded to whole batches:

    order    7 2 9 0 4 | 1 8 3 6 5 | 11 10 ~10 ~10 ~10      (12 rows, batch 5)
                                            ^ padding: a real row repeated, weight 0

so that a last partial batch has the static shape of every other batch.

Everything here is pure NumPy and Python on integers; the engine owns the TensorFlow side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bptt_keras.losses import Normaliser
from bptt_keras.truncation import Block


def row_order(rows: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's order of the `rows` sequences: a permutation drawn from `(seed, epoch)`,
    or `0 ... rows - 1` without shuffling."""
    if not shuffle:
        return np.arange(rows)
    return np.random.default_rng([seed, epoch]).permutation(rows)


def pad_to_batches(order: np.ndarray, batches: int, batch: int) -> np.ndarray:
    """`order` cut or padded to `batches * batch` positions (padding repeats its last row)."""
    padded = np.resize(order[-1:], batches * batch)
    padded[: min(len(order), len(padded))] = order[: len(padded)]
    return padded


@dataclass(frozen=True)
class EpochPlan:
    """One epoch: the row order, padded, and each update's loss denominator and count.

    Attributes:
        order: `(rows,)` the order of the sequences.
        padded: `(batches * batch,)` the order padded to whole batches.
        denominators: `(batches * blocks,)` the `N` of each update.
        counts: `(batches * blocks,)` scored elements of each update (for reported means).
    """

    order: np.ndarray
    padded: np.ndarray
    denominators: np.ndarray
    counts: np.ndarray


def plan_epoch(
    *,
    rows: int,
    batches: int,
    batch: int,
    blocks: Sequence[Block],
    normaliser: Normaliser,
    weights: np.ndarray | None,
    seed: int,
    epoch: int,
    shuffle: bool,
) -> EpochPlan:
    """The `EpochPlan` of epoch `epoch` (weights None: all ones)."""
    order = row_order(rows, seed=seed, epoch=epoch, shuffle=shuffle)
    padded = pad_to_batches(order, batches, batch)
    denominators, counts = normaliser.per_update(padded, rows, weights, blocks, batch)
    return EpochPlan(order, padded, denominators, counts)


def block_shape(block: Block) -> tuple[int, int]:
    """`(forward length, loss length)` of a block: the static shape of its compiled step."""
    return block.end - block.start, block.end - block.loss_start


def next_call(
    first: int,
    *,
    blocks: Sequence[Block],
    end: int,
    limit: int,
    cut_before: Callable[[int], bool] = lambda batch: False,
) -> int:
    """How many updates the compiled call that starts at update `first` trains.

    Args:
        first: the epoch's update number the call starts at.
        blocks: the truncation plan of one batch (`plan_blocks`).
        end: one past the epoch's last update (`batches * len(blocks)`).
        limit: the most updates one call may train (`steps_per_execution`).
        cut_before: called with a batch number `b` (> the batch of `first`); True when the
            call must end before batch `b` starts (a checkpoint falls there, or callbacks
            must see every batch).

    Returns:
        `count >= 1`: updates `first ... first + count - 1` share one block shape, stay within
        `limit` and `end`, and cross no batch boundary that `cut_before` marks.

    Example:

    >>> blocks = plan_blocks(10, 4, 4)  # shapes (4, 4), (4, 4), (2, 2)
    >>> next_call(0, blocks=blocks, end=9, limit=8)
    2
    >>> next_call(2, blocks=blocks, end=9, limit=8)  # the short last block alone
    1
    """
    per_batch = len(blocks)
    shape = block_shape(blocks[first % per_batch])
    count = 1
    while count < limit and first + count < end:
        update = first + count
        batch, index = divmod(update, per_batch)
        if index == 0 and cut_before(batch):
            break
        if block_shape(blocks[index]) != shape:
            break
        count += 1
    return count
