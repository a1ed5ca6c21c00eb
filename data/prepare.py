"""Export the two example series bundled with statsmodels to CSV files in ``data/``.

This script is run only by maintainers, to (re)generate ``sunspots.csv`` and
``co2.csv`` next to it; the package and its tests read those committed CSVs and
never call this script. Nothing is downloaded: both series ship inside the
statsmodels wheel (``statsmodels.datasets.sunspots`` and
``statsmodels.datasets.co2``).

Outputs
-------
sunspots.csv
    ``year,sunspots``: yearly sunspot numbers, 1700-2008 (309 rows).
co2.csv
    ``week,co2_ppm,interpolated``: weekly Mauna Loa CO2 (ppmv), 1958-03-29 to
    2001-12-29, one row per week of the source's regular weekly index (W-SAT).
    Weeks without a measurement are filled by linear interpolation in time
    (``Series.interpolate(method="time")``; on this evenly spaced index it gives
    the same values as ``method="linear"``) and flagged with ``interpolated=1``.
    Missing weeks before the first or after the last observation would be
    dropped, not extrapolated (statsmodels 0.15.0 has none).

Floats are written with a fixed format and ``\\n`` line endings, so re-running
the script with the same statsmodels version gives byte-identical files.

Usage::

    python data/prepare.py
"""

from pathlib import Path

import pandas as pd
from statsmodels.datasets import co2, sunspots

DATA_DIR = Path(__file__).resolve().parent


def sunspots_frame() -> pd.DataFrame:
    """Return the yearly sunspot numbers as columns ``year`` (int) and ``sunspots`` (float)."""
    raw = sunspots.load_pandas().data
    return pd.DataFrame(
        {
            "year": raw["YEAR"].round().astype(int),
            "sunspots": raw["SUNACTIVITY"].astype(float),
        }
    )


def co2_frame() -> pd.DataFrame:
    """Return weekly CO2 with gaps filled by linear interpolation in time, plus a flag column."""
    series = co2.load_pandas().data["co2"].astype(float).sort_index()
    # Keep only the span between the first and last observation: no extrapolation.
    series = series.loc[series.first_valid_index() : series.last_valid_index()]
    missing = series.isna()
    filled = series.interpolate(method="time").round(2)
    return pd.DataFrame(
        {
            "week": series.index.strftime("%Y-%m-%d"),
            "co2_ppm": filled.to_numpy(),
            "interpolated": missing.astype(int).to_numpy(),
        }
    )


def write_csv(frame: pd.DataFrame, path: Path, float_format: str) -> None:
    """Write ``frame`` without an index, with a fixed float format and ``\\n`` line endings."""
    if frame.isna().to_numpy().any():
        raise ValueError(f"{path.name}: refusing to write missing values")
    frame.to_csv(path, index=False, float_format=float_format, lineterminator="\n")
    print(f"wrote {path} ({len(frame)} rows)")


def main() -> None:
    """Write ``sunspots.csv`` and ``co2.csv`` next to this script."""
    # Source values carry one decimal; sunspots keep it, CO2 uses two for the filled weeks.
    write_csv(sunspots_frame(), DATA_DIR / "sunspots.csv", "%.1f")
    co2_df = co2_frame()
    write_csv(co2_df, DATA_DIR / "co2.csv", "%.2f")
    print(f"co2: {int(co2_df['interpolated'].sum())} weeks filled by interpolation")


if __name__ == "__main__":
    main()
