"""The shipped real series and the CSV loader."""

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from bptt_keras import available_series, load_csv_series, load_series
from bptt_keras.datasets import data_dir


def test_sunspots_are_the_yearly_record_1700_2008():
    values, years = load_series("sunspots", return_time=True)
    assert values.shape == years.shape == (309,)
    assert years[0] == 1700 and years[-1] == 2008
    np.testing.assert_array_equal(np.diff(years), 1)
    assert values.min() >= 0 and 150 < values.max() < 260
    assert values[years == 1957][0] == pytest.approx(190.2)  # the record maximum


def test_co2_is_weekly_complete_and_rising():
    values, weeks = load_series("co2", return_time=True)
    assert weeks.dtype == np.dtype("datetime64[D]")
    assert str(weeks[0]) == "1958-03-29" and str(weeks[-1]) == "2001-12-29"
    np.testing.assert_array_equal(np.diff(weeks).astype(int), 7)
    assert np.all(np.isfinite(values))
    assert values[-52:].mean() - values[:52].mean() > 50  # ~315 ppm to ~370 ppm


def test_co2_interpolated_weeks_are_flagged_and_linear():
    flags, _ = load_csv_series(data_dir() / "co2.csv", column="interpolated")
    values = load_series("co2")
    assert flags.sum() == 59
    filled = np.flatnonzero(flags == 1)
    for i in filled:
        lo, hi = i - 1, i + 1
        while flags[lo]:
            lo -= 1
        while flags[hi]:
            hi += 1
        expected = values[lo] + (values[hi] - values[lo]) * (i - lo) / (hi - lo)
        assert values[i] == pytest.approx(expected, abs=0.006)  # rounded to 2 decimals


def test_unknown_name_lists_available_series():
    with pytest.raises(ValueError) as info:
        load_series("mnist")
    assert "'mnist'" in str(info.value)
    for name in available_series():
        assert repr(name) in str(info.value)


def test_load_csv_series_reads_columns_and_reports_problems(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("t,a,b\n0,1.5,x\n1,2.5,y\n")
    values, time = load_csv_series(good, column="a", time_column="t")
    np.testing.assert_array_equal(values, [1.5, 2.5])
    np.testing.assert_array_equal(time, [0, 1])
    with pytest.raises(ValueError, match=r"'c' is not a column.*\['t', 'a', 'b'\]"):
        load_csv_series(good, column="c")
    with pytest.raises(ValueError, match="non-numeric value 'x' on line 2"):
        load_csv_series(good, column="b")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_csv_series(tmp_path / "missing.csv", column="a")
    empty = tmp_path / "empty.csv"
    empty.write_text("a\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_csv_series(empty, column="a")


@pytest.mark.slow
def test_wheel_ships_the_data_files(tmp_path):
    """A non-editable install must carry the CSVs and every subpackage: check the wheel."""
    root = data_dir().parent if data_dir().name == "data" else None
    if root is None:  # running against an installed copy: its files are the proof
        assert (data_dir() / "sunspots.csv").is_file()
        assert data_dir().name == "data_files"
        return
    # Build from a clean copy: a stale build/ directory in the checkout would hide a
    # package missing from setup.cfg.
    source = tmp_path / "source"
    shutil.copytree(
        root,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", ".venv", ".git", "runs", "*.ipynb"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("bptt_keras-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("sunspots.csv", "co2.csv", "tinyshakespeare.txt", "README.md"):
        assert f"bptt_keras/data_files/{name}" in names
    # and every module of the source tree (a subpackage missing from setup.cfg's `packages`
    # would import in a checkout and fail after `pip install .`)
    for module in (root / "bptt_keras").rglob("*.py"):
        assert module.relative_to(root).as_posix() in names
