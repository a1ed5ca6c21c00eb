"""The experiments' building blocks against independent references, and `bptt-keras reproduce`.

The outcomes of the experiments themselves are checked when their notebooks run in quick mode
(tests/test_notebooks.py + experiment_checks.py).
"""

import csv
import io
import json
import re

import keras
import numpy as np
import pytest
from experiment_checks import check_gradients

import bptt_keras as bk
from bptt_keras.cli import main
from bptt_keras.experiments import (
    EXPERIMENTS,
    Report,
    get_experiment,
    markdown_table,
    run_experiment,
)
from bptt_keras.experiments.forecasting import ar_closed_loop, ar_one_step, fit_linear_ar
from bptt_keras.experiments.gradients import (
    cliff_loss_and_grad,
    descend,
    jacobian_bound_ratio,
)
from bptt_keras.progress import Progress
from bptt_keras.tasks import (
    ADDING_BASELINE_MSE,
    adding_problem,
    copy_baseline_loss,
    copy_memory,
)

# ---- tasks -------------------------------------------------------------------------------


def test_adding_problem_layout_target_and_baseline():
    x, y, mask = adding_problem(4000, 30, seed=0)
    assert x.shape == (4000, 30, 2) and y.shape == (4000, 30, 1) and mask.shape == (4000, 30)
    markers = x[..., 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :15].sum(axis=1) == 1) and np.all(markers[:, 15:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, -1, 0], (x[..., 0] * markers).sum(axis=1), rtol=1e-6)
    assert np.all(y[:, :-1] == 0) and np.all(mask[:, -1] == 1) and mask.sum() == 4000
    # the constant prediction 1 scores Var(u1 + u2) = 1/6 (Monte Carlo, 4000 samples)
    assert np.mean((y[:, -1, 0] - 1.0) ** 2) == pytest.approx(ADDING_BASELINE_MSE, rel=0.05)
    again = adding_problem(4000, 30, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((x, y, mask), again, strict=True))


def test_copy_memory_layout_and_the_memoryless_baseline():
    x, y = copy_memory(500, 7, seed=1)
    assert x.shape == (500, 27, 10) and y.shape == (500, 27)
    tokens = x.argmax(-1)
    assert np.all(x.sum(-1) == 1)  # one-hot
    assert np.all((tokens[:, :10] >= 1) & (tokens[:, :10] <= 8))
    assert np.all(tokens[:, 16] == 9) and np.all(np.delete(tokens[:, 10:], 6, axis=1) == 0)
    np.testing.assert_array_equal(y[:, -10:], tokens[:, :10])
    assert np.all(y[:, :-10] == 0)
    # the memoryless strategy: blank with certainty, then uniform over the 8 symbols
    probs = np.zeros((27, 9))
    probs[:17, 0] = 1.0
    probs[17:, 1:] = 1 / 8
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    ce = -np.mean(np.take_along_axis(np.broadcast_to(log_probs, (500, 27, 9)), y[..., None], -1))
    assert ce == pytest.approx(copy_baseline_loss(7), rel=1e-12)
    assert copy_baseline_loss(100) == pytest.approx(10 * np.log(8) / 120)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: adding_problem(0, 10), ["n"]),
        (lambda: adding_problem(5, 1), ["length"]),
        (lambda: copy_memory(5, 0), ["delay"]),
        (lambda: copy_memory(5, 3, copied=2.5), ["copied"]),
    ],
)
def test_task_arguments_are_checked(call, words):
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert all(w in str(err.value) for w in words)


# ---- gradients experiment ----------------------------------------------------------------


def test_cliff_bptt_gradient_matches_finite_differences():
    w, b = np.array([5.0, 6.0, 2.0, 7.5]), np.array([-2.25, -3.0, 0.5, -4.0])
    _, dw, db = cliff_loss_and_grad(w, b)
    eps = 1e-6
    fd_w = (cliff_loss_and_grad(w + eps, b)[0] - cliff_loss_and_grad(w - eps, b)[0]) / (2 * eps)
    fd_b = (cliff_loss_and_grad(w, b + eps)[0] - cliff_loss_and_grad(w, b - eps)[0]) / (2 * eps)
    np.testing.assert_allclose(dw, fd_w, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(db, fd_b, rtol=1e-5, atol=1e-10)


def test_clipped_descent_never_steps_further_than_lr_times_threshold():
    path = descend([5.0, -2.25], learning_rate=1.0, clip=0.5, updates=30)
    assert np.linalg.norm(np.diff(path, axis=0), axis=1).max() <= 0.5 + 1e-12
    plain = descend([5.0, -2.25], learning_rate=1.0, clip=None, updates=30)
    assert np.linalg.norm(np.diff(plain, axis=0), axis=1).max() > 10


def test_jacobian_bound_ratio_against_a_one_unit_hand_computation():
    # one unit: h_t = tanh(x_t w + h_(t-1) u), dh_T/dh_t = prod_(k>t) (1 - h_k^2) u
    u, w = 0.8, 1.3
    weights = [np.array([[w]]), np.array([[u]]), np.zeros(1), np.ones((1, 1)), np.zeros(1)]
    x = np.array([[[0.4], [-0.2], [0.9], [0.1]]])
    h, hs = 0.0, []
    for t in range(4):
        h = np.tanh(x[0, t, 0] * w + h * u)
        hs.append(h)
    expected = [
        np.prod([(1 - hs[k] ** 2) * u for k in range(t + 1, 4)]) / u ** (3 - t) for t in range(4)
    ]
    np.testing.assert_allclose(jacobian_bound_ratio(weights, x, u), expected, rtol=1e-12)
    model = bk.build_model("simple_rnn", 8, init="orthogonal", seed=0)
    bk.scale_recurrent(model, 1.5)
    rng = np.random.default_rng(0)
    ratios = jacobian_bound_ratio(model.get_weights(), rng.normal(size=(4, 20, 1)), 1.5)
    assert ratios[-1] == pytest.approx(1.0) and np.all(ratios <= 1 + 1e-9)


# ---- forecasting baselines ---------------------------------------------------------------


def test_least_squares_ar_recovers_a_known_ar2_process():
    rng = np.random.default_rng(0)
    series = np.zeros(5000)
    for t in range(2, 5000):
        series[t] = 0.3 + 0.6 * series[t - 1] - 0.2 * series[t - 2] + 0.1 * rng.normal()
    coef = fit_linear_ar(series, 2)
    np.testing.assert_allclose(coef, [-0.2, 0.6, 0.3], atol=0.03)  # oldest lag first
    one = ar_one_step(coef, series, 100)
    manual = coef[0] * series[98:-2] + coef[1] * series[99:-1] + coef[2]
    np.testing.assert_allclose(one, manual, rtol=1e-12)
    loop = ar_closed_loop(coef, series[:100], 3)
    first = coef[0] * series[98] + coef[1] * series[99] + coef[2]
    assert loop[0] == pytest.approx(first)
    assert loop[1] == pytest.approx(coef[0] * series[99] + coef[1] * first + coef[2])


# ---- report and registry -----------------------------------------------------------------


def test_report_writes_csv_markdown_config_and_readme(tmp_path):
    report = Report("demo", tmp_path / "run", quick=True, seed=3, config={"T": [5, 10]})
    report.table("results", [{"model": "lstm", "mse": 0.012345, "ok": True}], title="Demo")
    readme = report.finish("Summary line.")
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    assert rows == [{"model": "lstm", "mse": "0.012345", "ok": "True"}]
    md = (tmp_path / "run" / "results.md").read_text()
    assert "| model | mse | ok |" in md and "| lstm | 0.01235 | yes |" in md
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    # The code that made the run: this checkout's commit (or the installed version).
    assert re.fullmatch(r"[0-9a-f]{7,}(\+changes)?|bptt_keras \S+", config.pop("code"))
    assert 0 <= config.pop("wall_seconds") < 60
    assert config == {"experiment": "demo", "quick": True, "seed": 3, "T": [5, 10]}
    assert "Summary line." in readme.read_text() and md in readme.read_text()
    with pytest.raises(ValueError, match="no rows"):
        report.table("empty", [], title="x")
    assert markdown_table([{"a": float("nan"), "b": None}]).endswith("| nan |  |")


def test_every_experiment_has_a_quick_and_a_full_config_and_a_run():
    assert list(EXPERIMENTS) == [
        "gradients",
        "adding",
        "copy",
        "truncation",
        "memory",
        "forecasting",
        "charlm",
        "seq2seq",
    ]
    for experiment in EXPERIMENTS.values():
        module = experiment.load()
        assert {"quick", "full"} <= set(module.CONFIG) <= {"quick", "full", "paper"}
        assert callable(module.run)
    with pytest.raises(ValueError, match="adding, copy"):
        get_experiment("nope")


# ---- the command -------------------------------------------------------------------------


def test_reproduce_list_names_every_experiment(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.strip().splitlines()] == list(EXPERIMENTS)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["reproduce"], ["experiment name", "--list"]),
        (["reproduce", "nope"], ["unknown experiment", "'nope'", "gradients"]),
        (["reproduce", "gradients", "--seed", "-2"], ["--seed", "-2"]),
        (["reproduce", "gradients", "--scale", "paper"], ["no --scale paper", "full, quick"]),
        (["reproduce", "seq2seq", "--quick", "--scale", "paper"], ["contradict"]),
        (["reproduce", "copy", "--seeds", "0,x"], ["--seeds", "comma-separated", "'0,x'"]),
        (["reproduce", "copy", "--seeds", "1,1"], ["at least two different seeds"]),
        (["reproduce", "copy", "--seeds", "3"], ["at least two different seeds"]),
        (["reproduce", "copy", "--seeds", "0,1", "--jobs", "0"], ["--jobs", "at least 1", "0"]),
        (["reproduce", "copy", "--jobs", "2"], ["--jobs 2", "needs --seeds"]),
    ],
)
def test_reproduce_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bptt-keras: error:") and len(err.splitlines()) == 1
    assert all(w in err for w in words)
    assert not (tmp_path / "r").exists()


def test_a_scale_the_experiment_lacks_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`scale` must be one of \['full', 'quick'\]"):
        run_experiment("gradients", scale="paper", out=tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_overrides_replace_settings_and_unknown_ones_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['delay'\].*delays"):
        run_experiment("copy", quick=True, out=tmp_path / "c", overrides={"delay": [5]})
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_reproduce_writes_the_run_directory_and_refuses_an_existing_one(tmp_path, capsys):
    out = tmp_path / "grad"
    assert main(["reproduce", "gradients", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tanh RNN" in printed and f"wrote {out}/" in printed
    check_gradients(out)
    # same seed, same numbers (the command is deterministic on CPU)
    again = tmp_path / "again"
    assert main(["reproduce", "gradients", "--quick", "--out", str(again)]) == 0
    assert (again / "gradient_norms.csv").read_text() == (out / "gradient_norms.csv").read_text()
    assert (again / "cliff.csv").read_text() == (out / "cliff.csv").read_text()
    assert main(["reproduce", "gradients", "--quick", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow  # two training runs
def test_model_comparison_is_deterministic_under_a_seed():
    # the training loop behind `adding` and `copy`, tiny: same seed -> identical curves
    from bptt_keras.experiments._training import compare_models

    cfg = {
        "models": ["LSTM", "GRU"],
        "units": 4,
        "train_sequences": 64,
        "val_sequences": 32,
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": 1e-2,
        "global_clipnorm": 1.0,
    }

    def run(seed, progress=None):
        kwargs = dict(make_data=adding_problem, input_dim=2, output_dim=1, loss="mse")
        return compare_models(cfg, seed, lengths=[6], progress=progress, **kwargs)[6]

    log = io.StringIO()
    first, second, other = run(0, Progress("adding", 2, stream=log)), run(0), run(1)
    lines = log.getvalue().splitlines()  # one line per finished model, with the time left
    assert re.fullmatch(r"\[adding\] 1/2 LSTM, T = 6 - 0:\d\d elapsed, ~0:\d\d left", lines[0])
    assert re.fullmatch(r"\[adding\] 2/2 GRU, T = 6 - 0:\d\d elapsed", lines[1])
    for name in cfg["models"]:
        np.testing.assert_array_equal(first[name][1], second[name][1])
        np.testing.assert_array_equal(first[name][0], [0, 2, 4])  # updates: 2 per epoch
        assert not np.array_equal(first[name][1], other[name][1])


@pytest.mark.slow  # a training run
def test_seq2seq_paper_scale_runs_the_addition_table_only(tmp_path):
    report = run_experiment(
        "seq2seq",
        scale="paper",
        out=tmp_path / "p",
        verbose=0,
        overrides={"units": 8, "addition": [{"digits": 1, "n": 50, "epochs": 1}]},
    )
    assert set(report.tables) == {"addition", "addition_1_examples"}
    assert report.config["scale"] == "paper" and report.config["quick"] is False
    assert "(paper mode, seed 0)" in (tmp_path / "p" / "README.md").read_text()


def test_seed_summaries_report_mean_std_range_and_yes_counts():
    from bptt_keras.experiments.seeds import summarise_cell, summarise_rows

    assert summarise_cell([1.0, 2.0, 3.0]) == "2 ± 1 (1-3)"  # sample std of 1, 2, 3 is 1
    assert summarise_cell([0.8, 0.8, 0.8]) == 0.8  # an exact reference stays a number
    assert summarise_cell([True, False, True]) == "2/3 yes"
    assert summarise_cell(["LSTM", "LSTM"]) == "LSTM"
    assert summarise_cell([0.5, float("nan")]) == "0.5 / nan"  # no mean over a failed run
    rows = summarise_rows(
        [[{"model": "GRU", "T": 10, "loss": 0.1}], [{"model": "GRU", "T": 10, "loss": 0.3}]]
    )
    assert rows == [{"model": "GRU", "T": 10, "loss": "0.2 ± 0.14 (0.1-0.3)"}]
    with pytest.raises(ValueError, match="differ in their rows"):
        summarise_rows([[{"model": "GRU"}], [{"model": "GRU"}, {"model": "LSTM"}]])


@pytest.mark.slow  # three short training runs
def test_reproduce_with_seeds_writes_each_run_and_the_spread(tmp_path, capsys):
    out = tmp_path / "seeds"
    argv = ["reproduce", "truncation", "--quick", "--seeds", "0,1,2", "--quiet", "--out"]
    assert main([*argv, str(out)]) == 0
    for seed in (0, 1, 2):
        assert (out / f"seed-{seed}" / "results.csv").exists()
    with open(out / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    finals = []
    for seed in (0, 1, 2):
        with open(out / f"seed-{seed}" / "results.csv") as f:
            finals.append(float(next(csv.DictReader(f))["final val MSE"]))
    mean = float(rows["full"]["final val MSE"].split(" ±")[0])
    assert abs(mean - np.mean(finals)) < 1e-3 * abs(np.mean(finals))  # the seeds' own runs
    assert rows["full"]["lag"] == "4" and rows["full"]["learned the echo"].endswith("/3 yes")
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1, 2]
    assert "(quick mode, seeds 0, 1, 2)" in (out / "README.md").read_text()
    assert (out / "curves.png").stat().st_size > 10_000


@pytest.mark.slow  # a training run
def test_copy_paper_scale_uses_their_sizes_optimizer_and_clipping(tmp_path):
    report = run_experiment(
        "copy", scale="paper", out=tmp_path / "p", verbose=0,
        overrides={"delays": [4], "epochs": 1, "train_sequences": 40, "val_sequences": 20},
    )  # fmt: skip
    (lstm, rnn) = report.tables["results"]
    assert (lstm["model"], rnn["model"], lstm["updates"]) == ("LSTM", "tanh RNN", 2)
    notes = (tmp_path / "p" / "results.md").read_text()
    assert "RMSprop (decay 0.9)" in notes and "clipped to +-1" in notes
    assert "units: LSTM 40, tanh RNN 80, batch 20" in notes
    assert report.config["scale"] == "paper"


@pytest.mark.slow  # three tiny training runs
def test_adding_paper_scale_uses_their_sizes_optimizer_and_clipping(tmp_path):
    from bptt_keras.experiments.adding import CONFIG

    assert CONFIG["paper"]["lengths"] == [100, 200, 400]
    assert CONFIG["paper"]["epochs"] * CONFIG["paper"]["train_sequences"] // 20 == 20_000
    report = run_experiment(
        "adding", scale="paper", out=tmp_path / "p", verbose=0,
        overrides={"lengths": [6], "epochs": 1, "train_sequences": 40, "val_sequences": 20},
    )  # fmt: skip
    rows = report.tables["results"]
    assert [r["model"] for r in rows] == ["LSTM", "tanh RNN", "IRNN"]
    assert [r["updates"] for r in rows] == [2, 2, 2]
    notes = (tmp_path / "p" / "results.md").read_text()
    assert "RMSprop (decay 0.9)" in notes and "clipped to +-1" in notes
    assert "units: 128, batch 20" in notes


def test_a_diverged_run_is_named_with_the_update_it_stopped_at():
    from bptt_keras.experiments._training import Curves, summary_rows

    curves = Curves()
    updates = np.array([0, 10, 20])
    curves[5] = {
        "LSTM": (updates, np.array([1.0, 0.5, 0.1])),
        "IRNN": (updates, np.array([1.0, np.nan, np.nan])),
    }
    curves.measured_baselines[5] = 0.5
    curves.stopped[(5, "IRNN")] = 3
    lstm, irnn = summary_rows(
        curves,
        baselines={5: 0.5},
        metric="MSE",
        baseline_column="b",
        published={"LSTM": "", "IRNN": ""},
    )
    assert lstm["stopped: non-finite loss at update"] == "-" and lstm["final / baseline"] == 0.2
    assert irnn["stopped: non-finite loss at update"] == 3 and irnn["best MSE"] == 1.0
    assert not irnn["beats the baseline (< 0.9x)"] and np.isnan(irnn["final MSE"])


@pytest.mark.slow  # two short training runs in two processes
def test_seeds_run_as_parallel_jobs_and_are_summarised_from_their_directories(tmp_path, capsys):
    from bptt_keras.experiments.report import load_tables

    out = tmp_path / "jobs"
    argv = ["reproduce", "truncation", "--quick", "--seeds", "0,1", "--jobs", "2", "--out"]
    assert main([*argv, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed 0 done" in printed and "seed 1 done" in printed
    finals = [load_tables(out / f"seed-{s}")["results"][0]["final val MSE"] for s in (0, 1)]
    assert all(isinstance(f, float) for f in finals)  # types survive the round trip
    summary = load_tables(out)["results"][0]["final val MSE"]
    assert abs(float(summary.split(" ±")[0]) - np.mean(finals)) < 1e-3 * np.mean(finals)
    config = json.loads((out / "config.json").read_text())
    assert config["jobs"] == 2
    # The summary's wall time covers both seeds' runs, each of which reports its own.
    seed_seconds = [
        json.loads((out / f"seed-{s}" / "config.json").read_text())["wall_seconds"] for s in (0, 1)
    ]
    assert config["wall_seconds"] >= max(seed_seconds) > 0
    assert "Wall time: " in (out / "README.md").read_text().split("\n\n")[2]
    assert all((out / f"seed-{s}.log").exists() for s in (0, 1))
    with pytest.raises(FileNotFoundError, match="no finished run"):
        load_tables(tmp_path)


def test_wall_time_is_formatted_for_people():
    from bptt_keras.experiments.report import format_seconds

    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(2132) == "35 min 32 s"
    assert format_seconds(3725.2) == "1 h 2 min 5 s"


def test_experiment_optimizers():
    from bptt_keras.experiments._training import make_optimizer

    rms = make_optimizer("rmsprop", 1e-3, clipvalue=1.0)
    assert isinstance(rms, keras.optimizers.RMSprop) and rms.rho == 0.9 and rms.clipvalue == 1.0
    assert isinstance(make_optimizer("adam", 1e-2), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="adam"):
        make_optimizer("sgd", 1e-2)
