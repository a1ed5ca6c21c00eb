"""A run directory can be reloaded, forecast from and replayed (bk.load_run, the CLI)."""

import json

import numpy as np
import pytest

import bptt_keras as bk
from bptt_keras.cli import main
from bptt_keras.config import read_config

FAST = ["--epochs", "2", "--units", "6", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), "--cell", "lstm", "--window", "12", *FAST]) == 0
    return out


def test_load_run_reproduces_the_runs_own_test_errors(run_dir):
    run = bk.load_run(run_dir)
    assert run.config == read_config(run_dir / "config.json")
    assert run.config.cell == "lstm" and run.config.window == 12
    recomputed = run.test_metrics()
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key, value in recomputed.items():
        assert value == pytest.approx(saved[key], rel=1e-6), key
    # The scaler is the one fitted on the training segment, in original units.
    data = run.data()
    np.testing.assert_array_equal(run.scaler.offset, data.scaler.offset)
    np.testing.assert_array_equal(run.scaler.scale, data.scaler.scale)


def test_loaded_forecast_is_in_original_units_and_continues_the_time_index(run_dir):
    run = bk.load_run(run_dir)
    data = run.data()
    context = data.values[-12:]
    expected = data.scaler.inverse_transform(
        bk.forecast(run.model, data.scaler.transform(context[:, None]), steps=4)
    )[:, 0]
    np.testing.assert_allclose(run.forecast(context, steps=4), expected, rtol=1e-6)
    times, values = run.future(steps=3)
    np.testing.assert_array_equal(times, data.time[-1] + np.arange(1, 4))  # yearly sunspots
    np.testing.assert_allclose(values, run.forecast(context, steps=3), rtol=1e-6)


def test_run_directory_records_versions_and_a_readme(run_dir):
    versions = json.loads((run_dir / "versions.json").read_text())
    import keras
    import tensorflow as tf

    assert versions["tensorflow"] == tf.__version__ and versions["keras"] == keras.__version__
    assert versions["bptt_keras"] == bk.__version__ and versions["numpy"] == np.__version__
    readme = (run_dir / "README.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['one_step_rmse']:.4g}" in readme and "load_run" in readme


def test_forecast_command_prints_the_future_in_csv(run_dir, tmp_path, capsys):
    out = tmp_path / "future.csv"
    assert main(["forecast", str(run_dir), "--steps", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step,time,value" and len(lines) == 4
    times, values = bk.load_run(run_dir).future(steps=3)
    for line, t, v in zip(lines[1:], times, values, strict=True):
        step, time, value = line.split(",")
        assert float(time) == t and float(value) == pytest.approx(v, rel=1e-5)
    assert out.read_text().splitlines() == lines


@pytest.mark.parametrize(
    "args, words",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--steps", "2", "--out", "{run_dir}/config.json"], "already exists"),
    ],
)
def test_forecast_command_bad_input_is_one_line_and_exit_2(run_dir, args, words, capsys):
    args = [a.format(run_dir=run_dir) for a in args]
    assert main(["forecast", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bptt-keras: error:") and words in err[0]


def test_forecast_command_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["forecast", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["forecast", str(tmp_path)]) == 2
    assert "missing model.keras, scaler.json, config.json" in capsys.readouterr().err


def test_train_config_replays_a_run_and_given_options_override_it(run_dir, tmp_path):
    out = tmp_path / "replay"
    assert main(["train", "--config", str(run_dir / "config.json"), "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 0  # fmt: skip
    original = json.loads((run_dir / "config.json").read_text())
    replayed = json.loads((out / "config.json").read_text())
    assert replayed == {**original, "epochs": 1}  # cell, window, units come from the file


def test_a_replay_of_the_same_config_gives_the_same_history(run_dir, tmp_path):
    out = tmp_path / "same"
    assert main(["train", "--config", str(run_dir / "config.json"), "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    assert (out / "history.json").read_text() == (run_dir / "history.json").read_text()


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "not a JSON configuration"),
        ('["a"]', "JSON object"),
        ('{"clipnorm": 1.0}', "unknown field(s) clipnorm"),
        ('{"units": 0}', "`units`"),
    ],
)
def test_train_config_bad_file_is_one_line_and_exit_2(tmp_path, content, words, capsys):
    config = tmp_path / "config.json"
    config.write_text(content)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and not out.exists()


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        bk.load_run(tmp_path / "nothing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing model.keras, scaler.json"):
        bk.load_run(tmp_path)
