"""Input checks shared by the public API.

Every public function validates its arguments here, before any TensorFlow op is traced, so a
user sees one `ValueError`/`TypeError` naming the argument, what was received and what was
expected, instead of a graph-construction stack trace.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np


def describe(value: Any) -> str:
    """A short description of `value` for error messages (shape and dtype for arrays)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_float_array(
    value: Any,
    *,
    name: str,
    ranks: Iterable[int],
    allow_nonfinite: bool = False,
    dtype: str = "float32",
) -> np.ndarray:
    """Converts `value` to a float NumPy array after checking type, rank, size and finiteness.

    Args:
        value: array-like of real numbers.
        name: the argument name used in error messages.
        ranks: accepted numbers of dimensions.
        allow_nonfinite: if False, NaN and inf raise a `ValueError`.
        dtype: float dtype of the result.

    Returns:
        A `np.ndarray` of `dtype` with one of the accepted ranks.

    Raises:
        TypeError: if `value` is None, a string, or not numeric.
        ValueError: wrong rank, empty, or containing NaN/inf.
    """
    ranks = tuple(ranks)
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be an array of real numbers. Received: {describe(value)}")
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise TypeError(
            f"`{name}` must be a rectangular array of real numbers. Received: {describe(value)}"
        ) from err
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(
            f"`{name}` must have a real numeric dtype (int or float). Received: {describe(array)}"
        )
    if array.ndim not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(f"`{name}` must have {expected} dimensions. Received: {describe(array)}")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty. Received: {describe(array)}")
    array = array.astype(dtype, copy=False)
    if not allow_nonfinite and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"`{name}` contains {bad} NaN or infinite value(s); clean or interpolate the data "
            f"first. Received: {describe(array)}"
        )
    return array


def check_int(value: Any, *, name: str, minimum: int | None = 1) -> int:
    """Returns `value` as an int after checking that it is an integer `>= minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {value}")
    return int(value)


def check_float(
    value: Any,
    *,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Returns `value` as a finite float after checking it lies in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number. Received: {describe(value)}")
    value = float(value)
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if not np.isfinite(value) or too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        interval = (
            f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        )
        raise ValueError(f"`{name}` must be a finite number in {interval}. Received: {value}")
    return value


def check_choice(value: Any, *, name: str, choices: Iterable[str]) -> str:
    """Returns `value` after checking it is one of `choices` (case-sensitive strings)."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}. "
            f"Received: {describe(value)}"
        )
    return value
