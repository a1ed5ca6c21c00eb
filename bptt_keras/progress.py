"""Progress output that reads well both in a terminal and in a log file.

Keras' progress bar redraws one line with backspaces and carriage returns; it decides that it
may do so whenever the `posix` module is loaded, i.e. always on Linux, so redirected output (CI
logs, `| tee`, nohup) becomes one endless line. Here a bar is drawn only where a redraw shows
(a terminal or a Jupyter kernel); anywhere else each epoch or unit of work gets its own line.
This module imports no TensorFlow (the experiments' registry uses it); the training callback
built on it is `bptt_keras.run.EpochProgress`.
"""

from __future__ import annotations

import sys
import time


def _in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (not merely a process that imported one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def interactive(stream=None) -> bool:
    """Whether `stream` (default `sys.stdout`) redraws a line in place: a terminal or Jupyter."""
    stream = sys.stdout if stream is None else stream
    if _in_jupyter_kernel():
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """One line per finished unit of a long job: what finished, how far, elapsed, time left.

    The time left assumes the remaining units cost the mean of the finished ones (units of an
    experiment differ in cost, so it is an estimate, shown with "~").

    Args:
        name: the job's name (printed in brackets).
        total: how many units the job has.
        enabled: False prints nothing.
        stream: where lines go (default `sys.stdout`).

    Example:

    >>> progress = Progress("adding", total=12)
    >>> progress.done("LSTM, T = 100")   # [adding] 1/12 LSTM, T = 100 - 0:41 elapsed, ~7:31 left
    """

    def __init__(self, name: str, total: int, *, enabled: bool = True, stream=None):
        self.name, self.total, self.enabled, self._stream = name, int(total), enabled, stream
        self.count = 0
        self._start = time.perf_counter()

    def done(self, label: str) -> str:
        """Records one finished unit; prints and returns its line."""
        self.count += 1
        elapsed = time.perf_counter() - self._start
        left = elapsed / self.count * max(self.total - self.count, 0)
        line = f"[{self.name}] {self.count}/{self.total} {label} - {duration(elapsed)} elapsed" + (
            f", ~{duration(left)} left" if self.count < self.total else ""
        )
        if self.enabled:
            stream = sys.stdout if self._stream is None else self._stream
            print(line, file=stream)
            stream.flush()
        return line
