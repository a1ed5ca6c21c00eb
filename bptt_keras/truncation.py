"""Where backpropagation through time is cut: the truncation policy, in one place.

Full BPTT, truncated BPTT(k) and Williams & Peng's TBPTT(k1, k2) are one mechanism here:
time is processed in *blocks* of `k1` steps; the loss of block `[s, e)` back-propagates through
the block and through the `k2 - k1` steps before it, back to step `b = max(0, s + k1 - k2)`;
the recurrent state entering step `b` is a constant (`cut_state`). Full BPTT is the special
case `k1 = k2 = T` (one block, no cut), truncated BPTT(k) is `k1 = k2 = k` (no look-back).

    time   0 ......................................................... T
    k1=k2  |== block 0 ==|== block 1 ==|== block 2 ==|== block 3 ==|      state cut at |
    k1<k2  |== block 0 ==|
              <-- look-back --|== block 1 ==|
                                <-- look-back --|== block 2 ==|           loss only on ==

Reference: R. J. Williams and J. Peng, "An efficient gradient-based algorithm for on-line
training of recurrent network trajectories", Neural Computation 2(4), 1990.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple


class Block(NamedTuple):
    """One block of the truncation plan, in time steps of the sequence.

    Attributes:
        start: first step of the forward pass (`b`, where the state is cut).
        loss_start: first step whose loss belongs to this block (`s`).
        end: one past the last step of the block (`e`).
        next_start: `b` of the following block: the forward pass of this block hands on the
            state at this step (`next_start - start` steps into it), so the next block starts
            from a state computed with the weights of this one.
    """

    start: int
    loss_start: int
    end: int
    next_start: int


def check_truncation(k1, k2, time: int) -> tuple[int, int]:
    """Validates `(k1, k2)` for sequences of `time` steps and fills in the defaults.

    Args:
        k1: steps per block (one optimizer update per block in `fit`), or None for full BPTT.
        k2: steps back-propagated per block (`k1 <= k2`), or None for `k2 = k1`.
        time: sequence length `T`.

    Returns:
        `(k1, k2)` as ints; `(T, T)` for full BPTT.

    Raises:
        TypeError: a non-integer value (floats and bools included).
        ValueError: a value `< 1` or `> T`, `k2` without `k1`, or `k1 > k2`.
    """
    for name, value in (("k1", k1), ("k2", k2)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(f"`{name}` must be a positive integer or None. Received: {value!r}")
        if value is not None and not 1 <= value <= time:
            raise ValueError(
                f"`{name}` must be between 1 and the sequence length T={time}. "
                f"Received: {name}={value}"
            )
    if k1 is None:
        if k2 is not None:
            raise ValueError(f"`k2` needs `k1` (the block length). Received: k1=None, k2={k2}")
        return time, time
    k2 = k1 if k2 is None else k2
    if k1 > k2:
        raise ValueError(
            f"TBPTT(k1, k2) needs k1 <= k2: each block of k1 steps back-propagates through "
            f"k2 steps. Received: k1={k1}, k2={k2}"
        )
    return int(k1), int(k2)


def plan_blocks(time: int, k1: int, k2: int) -> list[Block]:
    """The blocks of TBPTT(k1, k2) over a sequence of `time` steps.

    Args:
        time: sequence length `T`.
        k1: block length (validated by `check_truncation`).
        k2: back-propagation length, `>= k1`.

    Returns:
        A list of `Block`s covering `[0, T)` with their loss ranges; the last block is
        shorter when `k1` does not divide `T`.

    Example:

    >>> plan_blocks(10, 4, 6)
    [Block(start=0, loss_start=0, end=4, next_start=2),
     Block(start=2, loss_start=4, end=8, next_start=6),
     Block(start=6, loss_start=8, end=10, next_start=8)]
    """
    lookback = k2 - k1
    blocks = []
    for s in range(0, time, k1):
        e = min(s + k1, time)
        blocks.append(Block(max(0, s - lookback), s, e, max(0, e - lookback)))
    return blocks


def cut_state(states):
    """Treats the recurrent state entering a block as a constant: the truncation itself.

    Why: back-propagating into earlier blocks would cost memory and time proportional to the
    whole sequence; cutting makes each update cost O(k2) steps. What it costs: the gradient no
    longer contains any path longer than `k2` steps, so dependencies longer than that are not
    learned from the gradient (a bias toward short dependencies; Williams & Peng 1990,
    Tallec & Ollivier 2017). The forward state is still carried, so the network *uses*
    information older than `k2` steps, it just cannot be trained to keep it.

    Args:
        states: nested structure of `(batch, units)` state tensors.

    Returns:
        The same structure with gradients stopped.
    """
    # Imported here: the rest of this module is plain Python that `TrainConfig.validate` and
    # the command line use before (or without) importing TensorFlow.
    import tensorflow as tf

    return tf.nest.map_structure(tf.stop_gradient, states)


def covered_fraction(time: int, k1: int, k2: int, lag: int) -> float:
    """Share of the loss steps whose gradient path reaches back `lag` steps under TBPTT(k1, k2).

    A target at step `t` that depends on the input at `t - lag` can only be learned from
    the gradient if `t - lag` lies inside the forward pass of the block that owns step `t`,
    i.e. `t - lag >= start`. Steps `t < lag` have no such dependency and are not counted.

    Args:
        time: sequence length `T`.
        k1, k2: the truncation (`k1 = k2 = T` for full BPTT).
        lag: dependency length in steps, `1 <= lag < T`.

    Returns:
        A fraction in `[0, 1]`: 1 for full BPTT, 0 when `k2 - 1 < lag`.

    Example:

    >>> covered_fraction(40, 12, 12, 8)   # steps 8-11 of each 12-step chunk
    0.375
    """
    k1, k2 = check_truncation(k1, k2, time)
    if not 1 <= lag < time:
        raise ValueError(f"`lag` must be in [1, T={time}). Received: lag={lag}")
    blocks = plan_blocks(time, k1, k2)
    covered = sum(
        t - lag >= block.start
        for block in blocks
        for t in range(max(block.loss_start, lag), block.end)
    )
    return covered / (time - lag)
