"""Progress output: a bar only where a redraw shows, one line per epoch or unit elsewhere."""

import io
import re

import numpy as np

import bptt_keras as bk
from bptt_keras.progress import Progress, duration, interactive
from bptt_keras.run import EpochProgress
from bptt_keras.tasks import noisy_sines


def test_redirected_output_is_not_interactive():
    assert not interactive(io.StringIO())  # a log file, a pipe, pytest's capture


def test_epoch_progress_writes_one_plain_line_per_epoch():
    x, y = bk.next_step_pairs(noisy_sines(16, 9, seed=0))
    log = io.StringIO()
    bk.fit(bk.build_model(units=3, seed=0), x, y, epochs=3, batch_size=8, verbose=0,
           callbacks=[EpochProgress(3, stream=log)])  # fmt: skip
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"epoch {i}/3 - \d+\.\d\ds - grad_norm: \S+ - loss: \S+", line)
    assert "\r" not in log.getvalue() and "\b" not in log.getvalue()


def test_fit_verbose_auto_in_a_log_is_one_line_per_epoch(capsys):
    x, y = bk.next_step_pairs(noisy_sines(16, 9, seed=0))
    bk.fit(bk.build_model(units=3, seed=0), x, y, epochs=2, batch_size=8)  # verbose="auto"
    out = capsys.readouterr().out
    assert "\b" not in out and "\r" not in out  # Keras' bar redraws with these
    assert re.search(r"^Epoch 1/2$", out, re.M) and re.search(r"^Epoch 2/2$", out, re.M)
    assert len(re.findall(r"loss: ", out)) == 2  # one summary line per epoch


def test_progress_lines_count_elapsed_and_estimate_what_is_left():
    log = io.StringIO()
    progress = Progress("copy", 3, stream=log)
    for label in ("LSTM, T = 10", "GRU, T = 10", "LSTM, T = 30"):
        progress.done(label)
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"\[copy\] 1/3 LSTM, T = 10 - 0:00 elapsed, ~0:00 left", lines[0])
    assert lines[2] == "[copy] 3/3 LSTM, T = 30 - 0:00 elapsed"  # nothing left to estimate
    silent = io.StringIO()
    assert Progress("copy", 1, enabled=False, stream=silent).done("x").startswith("[copy] 1/1")
    assert silent.getvalue() == ""


def test_durations_read_as_minutes_and_hours():
    assert [duration(s) for s in (0.4, 59.6, 61, 3600 + 62)] == ["0:00", "1:00", "1:01", "1:01:02"]


def test_in_a_terminal_the_callback_draws_keras_bar(capsys):
    """Where a redraw shows, the same callback draws Keras' Progbar (one line, redrawn)."""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    callback = EpochProgress(2, stream=Terminal())
    callback.on_epoch_end(0, {"loss": np.float32(1.0)})
    callback.on_epoch_end(1, {"loss": np.float32(0.5)})
    out = capsys.readouterr().out
    assert "2/2" in out and "\r" in out and "epoch 1/2 -" not in out
