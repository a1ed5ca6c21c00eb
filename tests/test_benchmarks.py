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
