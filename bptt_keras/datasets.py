"""Loaders for the real series shipped in `data/` and for users' own CSV files.

Nothing is downloaded: the CSVs are committed to the repository (`data/`, provenance in
`data/README.md`) and installed with the package as `bptt_keras.data_files`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt_keras._validation import describe


@dataclass(frozen=True)
class _SeriesInfo:
    filename: str
    time_column: str
    value_column: str
    time_kind: str  # "int" (years) or "date" (ISO dates)
    description: str


SERIES: dict[str, _SeriesInfo] = {
    "sunspots": _SeriesInfo(
        "sunspots.csv", "year", "sunspots", "int", "yearly sunspot numbers, 1700-2008 (309)"
    ),
    "co2": _SeriesInfo(
        "co2.csv",
        "week",
        "co2_ppm",
        "date",
        "weekly Mauna Loa CO2 in ppm, 1958-2001 (2284; 59 missing weeks interpolated)",
    ),
}
"""The shipped series by name."""


def data_dir() -> Path:
    """The folder holding the shipped CSVs.

    An installed package has them in `bptt_keras/data_files/`; a source checkout (or an
    editable install) reads the repository's `data/` folder.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "data_files", here.parent / "data"):
        if (candidate / "sunspots.csv").is_file():
            return candidate
    raise FileNotFoundError(
        f"The bundled data files were not found next to {here}: reinstall bptt_keras."
    )


def available_series() -> dict[str, str]:
    """Names of the shipped series with a one-line description of each."""
    return {name: info.description for name, info in SERIES.items()}


def load_series(name: str, *, return_time: bool = False):
    """Loads a shipped real series.

    Args:
        name: `"sunspots"` (yearly, 1700-2008) or `"co2"` (weekly Mauna Loa, 1958-2001).
        return_time: if True, also return the time index (int years for sunspots,
            `datetime64[D]` weeks for co2).

    Returns:
        `values`, a 1-D float64 array, or `(values, time)` if `return_time`.

    Raises:
        ValueError: unknown `name`; the message lists the available series.

    Example:

    >>> values, years = load_series("sunspots", return_time=True)
    >>> values.shape, int(years[0]), int(years[-1])
    ((309,), 1700, 2008)
    """
    if not isinstance(name, str) or name not in SERIES:
        listing = "; ".join(f"{key!r}: {text}" for key, text in available_series().items())
        raise ValueError(f"Unknown series `name`={describe(name)}. Available: {listing}")
    info = SERIES[name]
    values, time = load_csv_series(
        data_dir() / info.filename, column=info.value_column, time_column=info.time_column
    )
    if info.time_kind == "int":
        time = time.astype(np.int64)
    else:
        time = time.astype("datetime64[D]")
    return (values, time) if return_time else values


def load_csv_series(
    path: str | os.PathLike, *, column: str, time_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads one numeric column (and optionally a time column) from a CSV file with a header.

    Args:
        path: CSV file with a header row.
        column: name of the column holding the values.
        time_column: optional name of a column to return as the time index (as strings, or
            numbers when they all parse as numbers).

    Returns:
        `(values, time)`: a 1-D float64 array, and the time column as an array or None.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: missing column (the message lists the columns present), empty file,
            or a value that is not a number (the message gives the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: `path`={str(path)!r}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for wanted, label in ((column, "column"), (time_column, "time_column")):
            if wanted is not None and wanted not in header:
                raise ValueError(
                    f"`{label}`={wanted!r} is not a column of {str(path)!r}. "
                    f"Columns present: {header}"
                )
        values, times = [], []
        for line, row in enumerate(reader, start=2):
            text = (row.get(column) or "").strip()
            try:
                values.append(float(text))
            except ValueError:
                raise ValueError(
                    f"Column {column!r} of {str(path)!r} has a non-numeric value {text!r} on "
                    f"line {line}; expected a number (fill or drop missing values first)."
                ) from None
            if time_column is not None:
                times.append(row[time_column])
    if not values:
        raise ValueError(f"CSV file {str(path)!r} has a header but no data rows.")
    time = None
    if time_column is not None:
        try:
            time = np.asarray([float(t) for t in times])
        except ValueError:
            time = np.asarray(times)
    return np.asarray(values, dtype=np.float64), time
