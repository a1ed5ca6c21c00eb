"""Pure data utilities: pairs, windows, splits, the streams layout, scaling."""

import numpy as np
import pytest

from bptt_keras import (
    fit_scaler,
    next_step_pairs,
    sliding_windows,
    split_by_time,
    stream_batches,
)


@pytest.mark.parametrize(
    "series, shape",
    [
        (np.arange(10.0), (1, 9, 1)),
        (np.arange(20.0).reshape(10, 2), (1, 9, 2)),
        (np.arange(60.0).reshape(3, 10, 2), (3, 9, 2)),
    ],
)
def test_next_step_pairs_shift_along_time_not_batch(series, shape):
    x, y = next_step_pairs(series)
    assert x.shape == y.shape == shape
    assert x.dtype == y.dtype == np.float32
    # y at step t is x at step t + 1, within the same sequence.
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    full = np.asarray(series, np.float32).reshape(shape[0], 10, shape[2])
    np.testing.assert_array_equal(x, full[:, :-1])
    np.testing.assert_array_equal(y, full[:, 1:])


def test_next_step_pairs_differs_from_the_documents_batch_shift():
    data = np.random.default_rng(0).random((5, 4, 1))
    x, y = next_step_pairs(data)
    # The document's data[:-1] -> data[1:] asks for sequence i + 1 at step t given sequence i:
    document_target = data[1:, :3]
    assert not np.allclose(y[:4], document_target)
    np.testing.assert_allclose(y, data[:, 1:])


def test_sliding_windows_starts_and_drops_the_tail():
    w = sliding_windows(np.arange(7.0), length=4, stride=2)
    np.testing.assert_array_equal(w[..., 0], [[0, 1, 2, 3], [2, 3, 4, 5]])
    assert sliding_windows(np.arange(7.0), length=7).shape == (1, 7, 1)


def test_split_by_time_is_contiguous_and_ordered():
    series = np.arange(100.0)
    train, val, test = split_by_time(series, val_fraction=0.2, test_fraction=0.1)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    np.testing.assert_array_equal(np.concatenate([train, val, test])[:, 0], series)
    assert train.max() < val.min() and val.max() < test.min()  # no leakage across the split


def test_stream_batches_rows_continue_across_batches():
    series = np.arange(100.0)
    batch_size, seq_len = 3, 5
    x, y = stream_batches(series, batch_size=batch_size, seq_len=seq_len)
    # 99 pairs -> rows of 33 -> 6 chunks of 5 per row (3 steps per row dropped).
    assert x.shape == y.shape == (6 * batch_size, seq_len, 1)
    np.testing.assert_array_equal(y, x + 1)  # targets are the next value
    batches = x.reshape(6, batch_size, seq_len)
    for j in range(5):
        for i in range(batch_size):
            # Row i of batch j+1 starts where row i of batch j ended.
            assert batches[j + 1, i, 0] == batches[j, i, -1] + 1
    # Row i starts at i * row_len: the rows are contiguous slices of the stream.
    np.testing.assert_array_equal(batches[0, :, 0], [0, 33, 66])


def test_stream_batches_keeps_features():
    series = np.stack([np.arange(50.0), -np.arange(50.0)], axis=1)
    x, y = stream_batches(series, batch_size=2, seq_len=4)
    assert x.shape[-1] == 2
    np.testing.assert_array_equal(x[..., 1], -x[..., 0])


def test_scaler_fits_train_only_and_inverts():
    train = np.array([1.0, 2.0, 3.0, 4.0])
    scaler = fit_scaler(train)
    z = scaler.transform(train)
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-6
    test = np.array([10.0, 20.0])
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(test)), test, rtol=1e-6)
    minmax = fit_scaler(train, method="minmax")
    np.testing.assert_allclose(minmax.transform(train), [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
    constant = fit_scaler(np.full(5, 3.0))
    np.testing.assert_array_equal(constant.transform(np.full(2, 3.0)), 0)


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda: next_step_pairs(np.zeros((2, 3, 4, 5))),
            ValueError,
            ["`series`", "1 or 2 or 3", "(2, 3, 4, 5)"],
        ),
        (lambda: next_step_pairs(np.array([])), ValueError, ["`series`", "empty"]),
        (lambda: next_step_pairs(np.array([1.0, np.nan, 2.0])), ValueError, ["NaN", "1 NaN"]),
        (lambda: next_step_pairs(np.array([1.0, np.inf])), ValueError, ["infinite"]),
        (lambda: next_step_pairs(np.array(["a", "b"])), TypeError, ["numeric", "<U1"]),
        (lambda: next_step_pairs(np.array([True, False])), TypeError, ["numeric", "bool"]),
        (lambda: next_step_pairs([[1, 2], [3]]), TypeError, ["rectangular"]),
        (lambda: next_step_pairs(None), TypeError, ["`series`", "None"]),
        (lambda: next_step_pairs(np.array([1.0])), ValueError, ["at least 2 time steps"]),
        (
            lambda: sliding_windows(np.arange(5.0), length=8),
            ValueError,
            ["shorter than the window", "5", "8"],
        ),
        (
            lambda: sliding_windows(np.arange(5.0), length=2, stride=0),
            ValueError,
            ["`stride`", ">= 1"],
        ),
        (
            lambda: split_by_time(np.arange(10.0), val_fraction=1.5),
            ValueError,
            ["`val_fraction`", "1.5"],
        ),
        (
            lambda: split_by_time(np.arange(3.0), val_fraction=0.4, test_fraction=0.4),
            ValueError,
            ["leave", "training"],
        ),
        (
            lambda: stream_batches(np.arange(20.0), batch_size=4, seq_len=8),
            ValueError,
            ["batch_size=4", "seq_len=8", "at least 33"],
        ),
        (lambda: fit_scaler(np.arange(3.0), method="robust"), ValueError, ["`method`", "'robust'"]),
        (
            lambda: fit_scaler(np.arange(3.0)).transform(np.zeros((2, 3))),
            ValueError,
            ["3 feature", "fitted on 1"],
        ),
    ],
)
def test_bad_input_names_argument_and_value(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
