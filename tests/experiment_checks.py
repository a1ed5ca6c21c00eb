"""Direction checks of each experiment's quick-mode results, read back from its run directory.

The notebooks' test executes each experiment notebook in quick mode and then calls the check
of that experiment on the files it wrote, so every notebook run is also a test of the
experiment's outcome. Only directions that are robust at quick size are asserted, never
exact floats.
"""

import csv
import json
import math
from pathlib import Path


def read_table(run_dir: Path, name: str = "results") -> list[dict]:
    with open(run_dir / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def _common(run_dir: Path, name: str, tables: list[str], figures: list[str]) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["experiment"] == name and config["quick"] is True and config["seed"] == 0
    readme = (run_dir / "README.md").read_text()
    for table in tables:
        assert (run_dir / f"{table}.md").read_text().count("|") > 10
        assert (run_dir / f"{table}.md").read_text() in readme
    for figure in figures:
        png = run_dir / f"{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert f"({figure}.png)" in readme


def _curves(run_dir: Path, per_run: int, runs: int) -> None:
    """The raw learning curves behind the plot: one row per run and evaluation."""
    rows = read_table(run_dir, "curves")
    assert len(rows) == per_run * runs
    assert all(float(r["val_loss"]) >= 0 for r in rows)


def check_gradients(run_dir: Path) -> None:
    _common(run_dir, "gradients", ["gradient_norms", "cliff"], ["gradient_norms", "cliff"])
    rows = {r["model"]: r for r in read_table(run_dir, "gradient_norms")}
    small, large = rows["tanh RNN, lambda_1 = 0.5"], rows["tanh RNN, lambda_1 = 3"]
    assert float(small["far / near"]) < 1e-6  # vanished over 30 steps
    assert float(large["far / near"]) > 10.0  # exploded
    for scale in ("0.5", "0.9", "1", "1.5", "3"):
        row = rows[f"tanh RNN, lambda_1 = {scale}"]
        assert abs(float(row["lambda_1 (measured)"]) - float(scale)) < 1e-4
        assert row["bound holds"] == "True"
        assert float(row["max ||dh_T/dh_t|| / lambda_1^(T-t)"]) <= 1.0 + 1e-6
    factors = [
        float(rows[f"tanh RNN, lambda_1 = {s}"]["per-step factor"])
        for s in ("0.5", "0.9", "1", "1.5", "3")
    ]
    assert factors == sorted(factors)  # a larger recurrent scale, a slower decay
    plain, clipped = read_table(run_dir, "cliff")
    assert float(plain["largest step"]) > 10.0  # thrown off the cliff
    assert float(clipped["largest step"]) <= 0.5 + 1e-9  # lr 1 x threshold 0.5
    assert float(clipped["final loss"]) < float(plain["final loss"])


def check_adding(run_dir: Path) -> None:
    _common(run_dir, "adding", ["results"], ["learning_curves"])
    rows = read_table(run_dir)
    assert {r["model"] for r in rows} == {"tanh RNN", "IRNN", "LSTM", "GRU"}
    config = json.loads((run_dir / "config.json").read_text())
    _curves(run_dir, config["epochs"] + 1, len(rows))
    for r in rows:
        # The data: predicting 1 on the 256 validation sequences scores 1/6 within sampling
        # error (the standard error of a mean of 256 squared deviations is about 0.012).
        assert abs(float(r["baseline on the validation set"]) - 1 / 6) < 0.05
    measured = float(rows[0]["baseline on the validation set"])
    gated = [float(r["final MSE"]) for r in rows if r["model"] in ("LSTM", "GRU")]
    assert min(gated) < 0.5 * measured  # at T = 10 a gated cell clearly uses the markers
    for r in rows:  # the verdict column follows the stated criterion
        beats = float(r["final MSE"]) < 0.9 * measured
        assert r["beats the baseline (< 0.9x)"] == str(beats)


def check_copy(run_dir: Path) -> None:
    _common(run_dir, "copy", ["results"], ["learning_curves"])
    rows = read_table(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    _curves(run_dir, config["epochs"] + 1, len(rows))
    for r in rows:
        baseline = float(r["baseline on the validation set"])
        assert float(r["initial loss"]) > 2 * baseline  # untrained: about log(9) per step
        accuracy = float(r["recall accuracy"])
        if float(r["final loss"]) < 0.9 * baseline:  # below the line: symbols are recalled
            assert accuracy > 1 / 8 + 0.1, r
    # At delay 5 at least one model gets below the memoryless line, recalling above chance.
    best = min(rows, key=lambda r: float(r["final loss"]))
    assert float(best["final loss"]) < 0.9 * float(best["baseline on the validation set"])
    assert float(best["recall accuracy"]) > 1 / 8 + 0.1


def check_truncation(run_dir: Path) -> None:
    _common(run_dir, "truncation", ["results"], ["truncation"])
    rows = {r["run"]: r for r in read_table(run_dir)}
    config = json.loads((run_dir / "config.json").read_text())
    _curves(run_dir, config["epochs"], len(rows))
    forgets = float(rows["full"]["forgets on the validation set"])
    assert abs(forgets - float(rows["full"]["forgets (T - lag)/T"])) < 0.1  # the same level
    assert float(rows["full"]["share of steps whose window covers the lag"]) == 1.0
    assert float(rows["k = 2"]["share of steps whose window covers the lag"]) == 0.0
    assert float(rows["full"]["final val MSE"]) < 0.5 * forgets
    assert float(rows["k = 2"]["final val MSE"]) > 0.5 * forgets  # window shorter than the lag
    assert float(rows["full"]["final val MSE"]) < float(rows["k = 2"]["final val MSE"])


def check_memory(run_dir: Path) -> None:
    _common(run_dir, "memory", ["results"], ["memory_time"])
    growth = {
        r["mode"]: float(r["growth above T = 100 (MiB)"])
        for r in read_table(run_dir)
        if r["T"] == "1000"
    }
    assert len(growth) == 4  # plain, fast, recompute, truncated

    def of(prefix):
        (value,) = [v for mode, v in growth.items() if mode.startswith(prefix)]
        return value

    plain = of("full BPTT, plain autodiff")
    assert plain > 50  # full BPTT stores every step: ~175 MiB more at T = 1000
    assert of("truncated BPTT") < 0.2 * plain  # truncated BPTT(100): flat in T
    assert of("full BPTT, recompute") < 0.5 * plain  # one segment at a time


def check_forecasting(run_dir: Path) -> None:
    _common(run_dir, "forecasting", ["results"], ["forecasts"])
    rows = read_table(run_dir)
    by = {(r["series"], r["forecast"], r["model"].split("(")[0].strip()): r for r in rows}
    assert len(rows) == 12
    for r in rows:
        assert math.isfinite(float(r["RMSE"]))
    for series in ("sunspots", "co2"):  # least squares on the same windows beats persistence
        ar = float(by[(series, "one-step", "linear AR")]["RMSE"])
        assert ar < float(by[(series, "one-step", "persistence")]["RMSE"])


def check_charlm(run_dir: Path) -> None:
    _common(run_dir, "charlm", ["results", "published"], ["charlm"])
    rows = read_table(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    expected = {f"LSTM k = {k}" for k in config["ks"]} | {
        f"{label} k = {config['cell_k']}" for label in ("GRU", "tanh RNN")
    }
    assert {r["run"] for r in rows} == expected
    chars = [int(r["training chars"]) for r in rows]
    assert max(chars) - min(chars) <= config["batch_size"] * max(config["ks"]) * config["epochs"]
    for r in rows:
        nats = float(r["val nats/char"])
        assert math.isclose(float(r["val bits/char"]), nats / math.log(2), rel_tol=1e-9)
        assert math.isclose(float(r["val perplexity"]), math.exp(nats), rel_tol=1e-9)
        assert nats < 0.8 * float(r["untrained val nats/char"])  # learned from the text
        assert 3.0 < float(r["untrained val nats/char"]) < 4.5  # about ln(vocabulary)
    curves = read_table(run_dir, "curves")
    assert len(curves) == len(rows) * (config["epochs"] + 1)
    published = read_table(run_dir, "published")
    assert [p["val loss (nats/char)"] for p in published[:2]] == ["1.4697", "1.88"]
    samples = (run_dir / "samples.txt").read_text(encoding="utf-8")
    assert samples.count("--- temperature") == 3


def check_seq2seq(run_dir: Path) -> None:
    tables = ["addition", "reversal", "gradient_path", "dates", "dates_examples"]
    _common(run_dir, "seq2seq", tables, ["seq2seq"])
    config = json.loads((run_dir / "config.json").read_text())
    (row,) = read_table(run_dir, "addition")
    assert int(row["training examples"]) + int(row["validation examples"]) == 800
    assert row["published (Keras example)"].startswith("One layer LSTM (128 HN), 5k training")
    # Learned something: above the untrained level on held-out questions, per character.
    for r in read_table(run_dir, "reversal"):
        assert float(r["val chars"]) > 0.3
    curves = read_table(run_dir, "curves")
    assert len(curves) == 2 * (config["reversal"]["epochs"] + 1)
    # The gradient path: untrained, the question's first character gets a larger gradient
    # when the source is reversed, its last character a smaller one.
    path = read_table(run_dir, "gradient_path")
    first, last = path[0], path[-1]
    assert float(first["reversed, untrained"]) > 1.5 * float(first["as written, untrained"])
    assert float(last["reversed, untrained"]) < float(last["as written, untrained"])
    (dates,) = read_table(run_dir, "dates")
    assert float(dates["test chars"]) > 0.3
    examples = read_table(run_dir, "dates_examples")
    assert len(examples) == 6 and all(float(e["beam 3, log p"]) < 0 for e in examples)


CHECKS = {
    "04_vanishing_exploding_gradients": ("gradients", check_gradients),
    "05_adding_problem": ("adding", check_adding),
    "06_copy_memory": ("copy", check_copy),
    "07_truncation_vs_lag": ("truncation", check_truncation),
    "08_memory_and_time": ("memory", check_memory),
    "09_real_data_forecasts": ("forecasting", check_forecasting),
    "10_language_model": ("charlm", check_charlm),
    "11_seq2seq": ("seq2seq", check_seq2seq),
}
