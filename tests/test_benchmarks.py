"""The benchmark script still runs (it measures; nothing here asserts a time)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.mark.slow
def test_bench_quick_runs_full_and_truncated_workloads_and_reports_ratios():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--rounds",
            "1",
            "--workloads",
            "small,tbptt",
            "--configs",
            "keras_fit_spe16,engine_fast,engine_fast_spe1,engine_rows,engine_stream,keras_stateful",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for config in ("keras_fit", "keras_fit_spe16", "engine_fast", "engine_fast_spe1"):
        assert f"| {config} |" in done.stdout
    assert "vs Keras fit" in done.stdout
    # the roofline measured in the same rounds, and the machine that ran it
    assert "| of roofline |" in done.stdout and "Roofline: " in done.stdout
    assert "| weight gradient over all steps | 18 x 320 x 16 x 1 |" in done.stdout  # B16 H16 T20
    assert "An empty XLA-compiled call takes" in done.stdout
    assert "instruction set: " in done.stdout
    for config in ("engine_rows", "engine_stream", "keras_stateful"):
        assert f"| simple_rnn(4) | 4 | {config} |" in done.stdout
    assert "vs Keras stateful fit" in done.stdout and "ms / update" in done.stdout


@pytest.mark.slow
def test_bench_quick_runs_the_character_language_model_workload():
    """The charlm workload trains and scores our model (and PyTorch's where installed: the
    test extra does not install it, so CI runs the engine configurations alone)."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--workloads", "charlm", "--charlm-seconds", "3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for config in ("engine", "engine_rows"):
        assert f"| {config} |" in done.stdout
    assert "nats/char" in done.stdout
    # the same-run matrix-product rates that bound the step (XLA loop; PyTorch if installed)
    assert "| forward, layer 1 | 8 x 49 x 128 |" in done.stdout  # quick: B 8, H 32, E 16
    assert "GFLOP/s" in done.stdout


@pytest.mark.slow
def test_sweep_quick_writes_its_table_and_plot(tmp_path):
    sweep = BENCH.parent / "sweep.py"
    done = subprocess.run(
        [sys.executable, str(sweep), "--quick", "--configs", "keras_fit,engine_fast",
         "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "sweep.md").read_text()
    assert "| 10 | 4 | 128 |" in table and "| 20 | 4 | 128 |" in table
    assert "Keras fit" in table and "bptt_keras fit" in table and "instruction set" in table
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow
def test_input_paths_benchmark_quick_runs_every_configuration():
    script = BENCH.with_name("inputs.py")
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for config in ("arrays", "dataset", "generator", "masked", "plain", "bptt_model"):
        assert f"| full | {config} |" in done.stdout and f"| k1=20 | {config} |" in done.stdout
    assert "| full | keras_fit_masked |" in done.stdout and "instruction set: " in done.stdout
