"""The `bptt-keras` command end to end, in temporary directories."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bptt_keras.cli import main

FAST = ["--epochs", "3", "--units", "8", "--quiet"]


def test_train_writes_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *FAST]) == 0
    expected = {
        "model.keras",
        "config.json",
        "metrics.json",
        "history.json",
        "history.csv",
        "loss_curve.png",
        "forecast.png",
        "gradient_norms.png",
        "gradient_norms.csv",
        "scaler.json",
        "versions.json",
        "README.md",
    }
    assert {p.name for p in out.iterdir()} == expected
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 3
    csv_lines = (out / "history.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,grad_norm,loss,val_loss" and len(csv_lines) == 4
    norms = np.loadtxt(out / "gradient_norms.csv", skiprows=1)
    assert norms.shape == (20,) and np.all(norms > 0)  # one per step of the 20-step window
    assert json.loads((out / "config.json").read_text())["epochs"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("one_step_rmse", "closed_loop_rmse", "persistence_rmse"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    for png in ("loss_curve.png", "forecast.png"):
        assert Image.open(out / png).size[0] > 400
    import keras

    model = keras.saving.load_model(out / "model.keras")
    assert model(np.zeros((2, 5, 1), "float32")).shape == (2, 5, 1)
    assert "test RMSE" in capsys.readouterr().out


def test_train_on_a_user_csv(tmp_path):
    csv = tmp_path / "series.csv"
    t = np.arange(200)
    csv.write_text("day,level\n" + "".join(f"{d},{np.sin(d / 5):.5f}\n" for d in t))
    out = tmp_path / "run"
    args = [
        "train",
        "--csv",
        str(csv),
        "--column",
        "level",
        "--time-column",
        "day",
        "--window",
        "10",
        "--cell",
        "gru",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["cell"] == "gru"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--cell", "cnn"], ["`cell`", "'cnn'"]),
        (["--dataset", "mnist"], ["`dataset`", "'mnist'", "'sunspots'"]),
        (["--window", "400"], ["segment", "window"]),
        (["--units", "0"], ["`units`", ">= 1"]),
        (["--learning-rate", "-1"], ["`learning_rate`", "-1"]),
        (["--init", "irnn", "--cell", "lstm"], ["irnn", "simple_rnn"]),
        (["--csv", "nowhere.csv", "--column", "x"], ["not found", "nowhere.csv"]),
        (["--csv", "x.csv"], ["`column` is required"]),
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], ["< 1"]),
        (["--k1", "30"], ["`k1`", "T=20"]),
        (["--k1", "8", "--k2", "4"], ["k1 <= k2"]),
        (["--k2", "4"], ["`k2` needs `k1`"]),
        (["--global-clipnorm", "0"], ["`global_clipnorm`"]),
        (["--resume"], ["checkpoint_dir"]),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bptt-keras: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err
    assert list(tmp_path.iterdir()) == []  # no run directory, no temporary leftovers


def test_csv_with_missing_values_and_missing_column(tmp_path, capsys):
    csv = tmp_path / "gaps.csv"
    csv.write_text("v,w\n1,0\n2,0\n,0\n4,0\n" + "".join(f"{i},0\n" for i in range(100)))
    assert main(["train", "--csv", str(csv), "--column", "v", "--out", str(tmp_path / "r")]) == 2
    assert "non-numeric value '' on line 4" in capsys.readouterr().err
    assert main(["train", "--csv", str(csv), "--column", "z", "--out", str(tmp_path / "r")]) == 2
    assert "Columns present: ['v', 'w']" in capsys.readouterr().err
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("v\n" + "".join(f"{i}\n" for i in range(50)) + "nan\n")
    assert (
        main(["train", "--csv", str(nan_csv), "--column", "v", "--out", str(tmp_path / "r")]) == 2
    )
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_existing_out_directory_is_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), *FAST]) == 2
    assert "already exists" in capsys.readouterr().err


def test_console_script_help_documents_every_option():
    # The script sits next to the interpreter running the tests (venv/bin), else on PATH.
    beside = Path(sys.executable).parent / "bptt-keras"
    exe = str(beside) if beside.is_file() else shutil.which("bptt-keras")
    assert exe, "the bptt-keras console script is not installed"
    top = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in top
    text = subprocess.run(
        [exe, "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (
        "--dataset",
        "--csv",
        "--column",
        "--cell",
        "--units",
        "--num-layers",
        "--window",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--seed",
        "--out",
        "--init",
    ):
        assert option in text


@pytest.mark.slow  # three training runs (resume is also tested in test_fit, test_faults)
def test_truncated_bptt_with_checkpoints_and_resume(tmp_path):
    ckpt = tmp_path / "ckpt"
    first = [
        "train",
        "--k1",
        "5",
        "--k2",
        "10",
        "--global-clipnorm",
        "1.0",
        "--checkpoint-dir",
        str(ckpt),
        "--units",
        "8",
        "--quiet",
    ]
    assert main([*first, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["k2"] == 10
    assert sorted(p.name for p in ckpt.glob("ckpt-*.npz"))  # checkpoints were written
    # Resuming with more epochs continues the same run: the first 2 epochs are kept as they were.
    assert main([*first, "--epochs", "3", "--resume", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "history.json").read_text())
    b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert b["loss"][:2] == a["loss"] and len(b["loss"]) == 3
    fresh = tmp_path / "fresh"
    assert (
        main(
            [
                "train",
                "--k1",
                "5",
                "--k2",
                "10",
                "--global-clipnorm",
                "1.0",
                "--units",
                "8",
                "--quiet",
                "--epochs",
                "3",
                "--out",
                str(fresh),
            ]
        )
        == 0
    )
    c = json.loads((fresh / "history.json").read_text())
    assert c["loss"] == b["loss"]  # interrupted-and-resumed == uninterrupted


@pytest.mark.slow
def test_ctrl_c_in_the_cli_exits_130_and_writes_no_run_directory(tmp_path):
    exe = Path(sys.executable).parent / "bptt-keras"
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    proc = subprocess.Popen(
        [
            str(exe),
            "train",
            "--epochs",
            "500",
            "--checkpoint-dir",
            str(ckpt),
            "--out",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list(ckpt.glob("ckpt-*.npz")):  # wait until training is under way
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not out.exists()
