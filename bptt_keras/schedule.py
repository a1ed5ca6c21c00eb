"""The order of an epoch's optimizer updates, and how they are grouped into compiled calls.

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

Everything here is pure Python on integers; `fit` owns the TensorFlow side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bptt_keras.truncation import Block


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
