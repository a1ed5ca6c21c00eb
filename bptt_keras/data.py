"""Pure NumPy functions that turn series into training arrays.

Every function here returns new float32 arrays shaped `(n, time, features)` and never touches
TensorFlow, so the layouts can be checked by eye and by tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt_keras._validation import as_float_array, check_choice, check_float, check_int


def as_series(series, *, name: str = "series") -> np.ndarray:
    """Returns a `(time, features)` float32 view of a 1-D or 2-D series, validated."""
    array = as_float_array(series, name=name, ranks=(1, 2))
    return array[:, None] if array.ndim == 1 else array


def next_step_pairs(series) -> tuple[np.ndarray, np.ndarray]:
    """Input/target pairs for next-step prediction: `y[:, t] = x[:, t + 1]`.

    This is the correct version of the source document's `fit(data[:-1], data[1:])`, which
    shifted along the *batch* axis and so asked the model to predict sequence `i + 1` from
    sequence `i`. Here the shift is along *time*, within each sequence:

        series  s0 s1 s2 ... s(T-2) s(T-1)
        x       s0 s1 s2 ... s(T-2)
        y       s1 s2 s3 ... s(T-1)

    Args:
        series: `(time,)`, `(time, features)` or `(n, time, features)` real values, with
            `time >= 2`.

    Returns:
        `(x, y)`, two float32 arrays of shape `(n, time - 1, features)` (`n = 1` for 1-D and
        2-D input).

    Raises:
        TypeError: non-numeric input.
        ValueError: wrong rank, empty, NaN/inf, or fewer than 2 time steps.

    Example:

    >>> x, y = next_step_pairs(np.arange(5.0))
    >>> x[0, :, 0], y[0, :, 0]
    (array([0., 1., 2., 3.], dtype=float32), array([1., 2., 3., 4.], dtype=float32))
    """
    array = as_float_array(series, name="series", ranks=(1, 2, 3))
    if array.ndim == 1:
        array = array[None, :, None]
    elif array.ndim == 2:
        array = array[None]
    if array.shape[1] < 2:
        raise ValueError(
            "`series` needs at least 2 time steps to form a (input, next step) pair. "
            f"Received shape {array.shape} (time axis = {array.shape[1]})"
        )
    return array[:, :-1, :].copy(), array[:, 1:, :].copy()


def sliding_windows(series, *, length: int, stride: int = 1) -> np.ndarray:
    """Cuts one long series into overlapping windows.

        series  s0 s1 s2 s3 s4 s5 s6      (length=4, stride=2)
        win 0   s0 s1 s2 s3
        win 1         s2 s3 s4 s5
                            (s6 is left over: no full window starts at s4)

    Windows start at `0, stride, 2*stride, ...` while a full window fits; the tail that does
    not fill a window is dropped. For next-step training use `length = context + 1` and pass
    the result to `next_step_pairs`.

    Args:
        series: `(time,)` or `(time, features)`.
        length: steps per window.
        stride: steps between window starts.

    Returns:
        float32 array `(n_windows, length, features)`.

    Raises:
        ValueError: if the series is shorter than `length`.
    """
    array = as_series(series)
    length = check_int(length, name="length")
    stride = check_int(stride, name="stride")
    if array.shape[0] < length:
        raise ValueError(
            f"`series` is shorter than the window: it has {array.shape[0]} time steps, "
            f"`length` is {length}."
        )
    starts = np.arange(0, array.shape[0] - length + 1, stride)
    index = starts[:, None] + np.arange(length)[None, :]  # (n_windows, length)
    return array[index]


def split_by_time(
    series, *, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a series into consecutive train / validation / test segments.

        |------------- train -------------|---- val ----|---- test ----|
        t=0                                                          t=T-1

    Splitting by time *before* windowing means no window, and no scaler statistic, ever
    mixes values from two segments: the model is scored on a future it has not seen.

    Args:
        series: `(time,)` or `(time, features)`.
        val_fraction: share of time steps for validation, in `[0, 1)`.
        test_fraction: share of time steps for the test, in `[0, 1)`.

    Returns:
        `(train, val, test)` arrays `(time_i, features)`; val/test may have 0 rows if their
        fraction is 0.

    Raises:
        ValueError: fractions out of range, or a split that leaves train with < 2 steps.
    """
    array = as_series(series)
    val_fraction = check_float(
        val_fraction, name="val_fraction", low=0.0, high=1.0, high_inclusive=False
    )
    test_fraction = check_float(
        test_fraction, name="test_fraction", low=0.0, high=1.0, high_inclusive=False
    )
    total = array.shape[0]
    n_test = int(round(total * test_fraction))
    n_val = int(round(total * val_fraction))
    n_train = total - n_val - n_test
    if n_train < 2:
        raise ValueError(
            f"`val_fraction`={val_fraction} and `test_fraction`={test_fraction} leave "
            f"{n_train} training steps out of {total}; at least 2 are needed."
        )
    return (
        array[:n_train].copy(),
        array[n_train : n_train + n_val].copy(),
        array[n_train + n_val :].copy(),
    )


def stream_batches(series, *, batch_size: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Lays one long series out for stateful training / truncated BPTT.

    The next-step stream (inputs `s[:-1]`, targets `s[1:]`) is cut into `batch_size`
    contiguous rows, and each row into chunks of `seq_len` steps. Batch `j` holds chunk `j`
    of every row, so **row `i` of batch `j + 1` continues row `i` of batch `j`**: a stateful
    layer (or an explicitly carried state) sees each row as one unbroken sequence.

        stream  a0 a1 a2 a3 a4 a5 | b0 b1 b2 b3 b4 b5 | c0 c1 ...   (batch_size=3, seq_len=3)

                   batch 0      batch 1
        row 0     a0 a1 a2  ->  a3 a4 a5
        row 1     b0 b1 b2  ->  b3 b4 b5
        row 2     c0 c1 c2  ->  c3 c4 c5

        returned x (flat, in order):  [a0..a2], [b0..b2], [c0..c2], [a3..a5], [b3..b5], ...

    The remainder is dropped: the last `(len(s) - 1) % batch_size` steps of the stream (so
    that all rows have equal length), then the last `row_len % seq_len` steps of every row.
    Feed the result with `shuffle=False` and `batch_size=batch_size`; shuffling breaks the
    continuity this layout exists for.

    Args:
        series: `(time,)` or `(time, features)`.
        batch_size: number of parallel rows (the stateful model's batch size).
        seq_len: time steps per chunk (the truncation length for truncated BPTT).

    Returns:
        `(x, y)`, float32 arrays `(n_batches * batch_size, seq_len, features)`, with
        `y[k, t] = ` the step after `x[k, t]` in the original series.

    Raises:
        ValueError: if the series is too short for one full batch, i.e.
            `(len(series) - 1) // batch_size < seq_len`.
    """
    array = as_series(series)
    batch_size = check_int(batch_size, name="batch_size")
    seq_len = check_int(seq_len, name="seq_len")
    inputs, targets = array[:-1], array[1:]
    row_len = inputs.shape[0] // batch_size
    n_batches = row_len // seq_len
    if n_batches == 0:
        raise ValueError(
            f"`series` of {array.shape[0]} steps gives {inputs.shape[0]} (input, target) "
            f"pairs, i.e. rows of {row_len} steps for batch_size={batch_size}: not enough for "
            f"one chunk of seq_len={seq_len}. Need at least {batch_size * seq_len + 1} steps."
        )

    def layout(stream: np.ndarray) -> np.ndarray:
        return chunk_rows(stream[: batch_size * row_len].reshape(batch_size, row_len, -1), seq_len)

    return layout(inputs), layout(targets)


def chunk_rows(rows: np.ndarray, seq_len: int) -> np.ndarray:
    """Cuts contiguous rows into chunks, batch `j` holding chunk `j` of every row (the layout
    of `stream_batches` and `text.token_stream_batches`); each row's last `row_len % seq_len`
    steps are dropped.

    Args:
        rows: `(batch_size, row_len, ...)`, validated, `row_len >= seq_len`.
        seq_len: steps per chunk.

    Returns:
        `(n_batches * batch_size, seq_len, ...)`, a copy, `n_batches = row_len // seq_len`.
    """
    batch_size, row_len, *rest = rows.shape
    n_batches = row_len // seq_len
    chunks = rows[:, : n_batches * seq_len].reshape(batch_size, n_batches, seq_len, *rest)
    # (batch_size, n_batches, seq_len, ...) -> (n_batches, batch_size, seq_len, ...) -> flat
    return chunks.swapaxes(0, 1).reshape(n_batches * batch_size, seq_len, *rest).copy()


@dataclass(frozen=True)
class Scaler:
    """An affine scaling `z = (v - offset) / scale`, per feature, fitted on training data.

    Create it with `fit_scaler(train)` only: statistics from validation or test data would
    leak the future into training.

    Attributes:
        offset: `(features,)` value subtracted.
        scale: `(features,)` positive divisor.
    """

    offset: np.ndarray
    scale: np.ndarray

    def transform(self, values) -> np.ndarray:
        """Scales `(..., features)` values; returns float32 of the same shape."""
        array = as_float_array(values, name="values", ranks=(1, 2, 3), allow_nonfinite=True)
        self._check_features(array)
        return ((array - self.offset) / self.scale).astype(np.float32)

    def inverse_transform(self, values) -> np.ndarray:
        """Undoes `transform` (e.g. to plot predictions in the original units)."""
        array = as_float_array(values, name="values", ranks=(1, 2, 3), allow_nonfinite=True)
        self._check_features(array)
        return (array * self.scale + self.offset).astype(np.float32)

    def _check_features(self, array: np.ndarray) -> None:
        features = 1 if array.ndim == 1 else array.shape[-1]
        if features != self.offset.shape[0]:
            raise ValueError(
                f"`values` has {features} feature(s) on its last axis but the scaler was "
                f"fitted on {self.offset.shape[0]}. Received shape {array.shape}"
            )


def fit_scaler(train, *, method: str = "standard") -> Scaler:
    """Fits a per-feature `Scaler` on training values.

    Args:
        train: `(time,)`, `(time, features)` or `(n, time, features)` training values.
        method: `"standard"` (zero mean, unit variance) or `"minmax"` (to `[0, 1]`).

    Returns:
        A `Scaler`. Constant features get scale 1 so they map to 0 instead of dividing by 0.
    """
    array = as_float_array(train, name="train", ranks=(1, 2, 3))
    check_choice(method, name="method", choices=("standard", "minmax"))
    flat = array.reshape(-1, 1) if array.ndim == 1 else array.reshape(-1, array.shape[-1])
    flat = flat.astype(np.float64)
    if method == "standard":
        offset, scale = flat.mean(axis=0), flat.std(axis=0)
    else:
        offset, scale = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return Scaler(offset=offset.astype(np.float32), scale=scale.astype(np.float32))
