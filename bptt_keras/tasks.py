"""Synthetic sequence tasks with known structure (and, where possible, a known best loss)."""

from __future__ import annotations

import numpy as np

from bptt_keras._validation import check_float, check_int


def noisy_sines(
    n: int,
    length: int,
    *,
    noise: float = 0.1,
    min_period: float = 10.0,
    max_period: float = 40.0,
    seed: int | None = None,
) -> np.ndarray:
    """Sine waves with random period and phase plus Gaussian observation noise.

    `s[i, t] = sin(2 pi t / P_i + phi_i) + noise * e[i, t]`, with `P_i ~ U(min_period,
    max_period)`, `phi_i ~ U(0, 2 pi)`, `e ~ N(0, 1)`. Unlike the source document's uniform
    noise, the next value is predictable from the past up to the noise: no next-step
    predictor can have an expected MSE below `noise**2`, and a good one approaches it.

    Args:
        n: number of sequences.
        length: steps per sequence.
        noise: standard deviation of the observation noise (>= 0).
        min_period, max_period: range of periods, in steps.
        seed: seed of the NumPy generator (same seed, same data).

    Returns:
        float32 array `(n, length, 1)`.

    Example:

    >>> x, y = next_step_pairs(noisy_sines(1000, 101, seed=0))  # (1000, 100, 1) each
    """
    n = check_int(n, name="n")
    length = check_int(length, name="length")
    noise = check_float(noise, name="noise", low=0.0)
    min_period = check_float(min_period, name="min_period", low=2.0)
    max_period = check_float(max_period, name="max_period", low=min_period)
    rng = np.random.default_rng(seed)
    period = rng.uniform(min_period, max_period, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    t = np.arange(length)[None, :]
    clean = np.sin(2 * np.pi * t / period + phase)
    return (clean + noise * rng.standard_normal((n, length)))[..., None].astype(np.float32)


def delayed_echo(
    n: int, length: int, *, lag: int, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A task whose only dependency has a known length: repeat the input `lag` steps later.

        x   x0 x1 x2 x3 x4 x5 ...        (i.i.d. N(0, 1))
        y    0  0  0 x0 x1 x2 ...        (lag = 3: y_t = x_(t - lag), and 0 for t < lag)

    The best mean squared error is known exactly: 0 for a model that keeps `x_(t-lag)` in its
    state, and `(length - lag) / length` for one that cannot (its best guess is the mean, 0).
    Gradient paths must span `lag` steps, so truncated BPTT with a window that is too short
    cannot learn it — the experiment that shows what truncation costs.

    Args:
        n: number of sequences.
        length: steps per sequence, `> lag`.
        lag: the delay, `>= 1`.
        seed: NumPy generator seed.

    Returns:
        `(x, y)`, float32 arrays `(n, length, 1)`.
    """
    n = check_int(n, name="n")
    length = check_int(length, name="length", minimum=2)
    lag = check_int(lag, name="lag")
    if lag >= length:
        raise ValueError(
            f"`lag` must be smaller than `length`. Received: lag={lag}, length={length}"
        )
    x = np.random.default_rng(seed).standard_normal((n, length, 1)).astype(np.float32)
    y = np.zeros_like(x)
    y[:, lag:] = x[:, :-lag]
    return x, y


def delayed_echo_losses(length: int, lag: int) -> dict[str, float]:
    """The exact reference losses of `delayed_echo` (expected MSE over all steps).

    Returns:
        `{"remembers": 0.0, "forgets": (length - lag) / length}`.
    """
    return {"remembers": 0.0, "forgets": (length - lag) / length}


ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1, the mean of the target: Var(u1 + u2) = 2/12 for u ~ U(0, 1)."""


def adding_problem(
    n: int, length: int, *, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adding problem: sum the two marked numbers of a long sequence.

    Two input channels per step, the variant of Le, Jaitly & Hinton 2015 and Arjovsky, Shah &
    Bengio 2016 (Hochreiter & Schmidhuber's 1997 original draws values from [-1, 1] and
    scores 0.5 + (X1 + X2) / 4 with success at an absolute error below 0.04):

        values   0.31 0.86 0.05 0.72 0.44 0.97 ...   U(0, 1)
        markers  0    1    0    0    0    1    ...   one 1 in each half of the sequence
        target at the last step: 0.86 + 0.97 (nothing is scored before it)

    The target's mean is 1 and its variance 2/12, so a model that ignores the inputs scores
    MSE 1/6 (`ADDING_BASELINE_MSE`); beating it needs a memory of `length/2` steps or more.

    Args:
        n: number of sequences.
        length: steps per sequence (`>= 2`).
        seed: NumPy generator seed.

    Returns:
        `(x, y, mask)`: `x` float32 `(n, length, 2)`, `y` float32 `(n, length, 1)` (the sum at
        the last step, 0 elsewhere), `mask` float32 `(n, length)` (1 at the last step only: use
        it as `sample_weight`).

    Example:

    >>> x, y, mask = adding_problem(1000, 100, seed=0)
    >>> fit(model, x, y, sample_weight=mask)
    """
    n = check_int(n, name="n")
    length = check_int(length, name="length", minimum=2)
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = np.zeros((n, length, 1), np.float32)
    y[:, -1, 0] = values[rows, first] + values[rows, second]
    mask = np.zeros((n, length), np.float32)
    mask[:, -1] = 1.0
    return x, y, mask


COPY_SYMBOLS = 8
"""Data symbols of the copy task (classes 1..8; class 0 is the blank, 9 the delimiter)."""


def copy_baseline_loss(delay: int, *, copied: int = 10, symbols: int = COPY_SYMBOLS) -> float:
    """Cross-entropy of the memoryless strategy on `copy_memory` (Arjovsky et al. 2016):
    blanks predicted perfectly, then a uniform guess over `symbols` for each copied symbol,
    averaged over all `delay + 2 * copied` steps: `copied * log(symbols) / (delay + 2 copied)`.
    """
    return copied * float(np.log(symbols)) / (delay + 2 * copied)


def copy_memory(
    n: int, delay: int, *, copied: int = 10, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task: read `copied` symbols, wait `delay` steps, write them back.

    Arjovsky, Shah & Bengio 2016, copying memory problem (classes: 0 blank, 1..8 symbols,
    9 delimiter):

        input    3 7 1 ... 5 | 0 0 ... 0 9 | 0 0 ... 0       copied + delay + copied steps
        target   0 0 0 ... 0 | 0 0 ... 0 0 | 3 7 1 ... 5
                 (copied)      (delay; the delimiter at its last step)

    Args:
        n: number of sequences.
        delay: blank steps between the symbols and the recall (`T` in the paper), `>= 1`.
        copied: symbols to copy (10 in the paper).
        seed: NumPy generator seed.

    Returns:
        `(x, y)`: `x` float32 one-hot `(n, delay + 2 copied, 10)`, `y` int32 classes
        `(n, delay + 2 copied)` in `[0, 9)` for `loss="sparse_categorical_crossentropy"` with
        `output_dim=9`. The memoryless baseline is `copy_baseline_loss(delay)`.
    """
    n = check_int(n, name="n")
    delay = check_int(delay, name="delay")
    copied = check_int(copied, name="copied")
    rng = np.random.default_rng(seed)
    length = delay + 2 * copied
    symbols = rng.integers(1, COPY_SYMBOLS + 1, size=(n, copied))
    tokens = np.zeros((n, length), np.int64)
    tokens[:, :copied] = symbols
    tokens[:, copied + delay - 1] = COPY_SYMBOLS + 1  # the delimiter: "write now"
    y = np.zeros((n, length), np.int32)
    y[:, -copied:] = symbols
    x = np.eye(COPY_SYMBOLS + 2, dtype=np.float32)[tokens]
    return x, y


def addition_pairs(digits: int, n: int, *, seed: int | None = None) -> list[tuple[str, str]]:
    """Number addition as strings, exactly as Keras' example `addition_rnn.py` makes it.

    Each operand has a uniformly drawn number of digits in `[1, digits]`, each digit uniform
    (so `"07"` is drawn and becomes 7); a question whose unordered pair was already drawn is
    skipped (no `a+b` after `b+a`); the query `"a+b"` is padded with spaces to
    `2 digits + 1` characters and the answer to `digits + 1`. Reversal is not applied here:
    `PairCodec(reverse=True)` reverses the padded query, as the example's `REVERSE` does
    (`"12+345  "` -> `"  543+21"`).

    Args:
        digits: the operands' largest number of digits, `>= 1`.
        n: number of distinct questions, at most `(10**digits) * (10**digits + 1) / 2`.
        seed: NumPy generator seed.

    Returns:
        `n` pairs `(query, answer)`, e.g. `("535+61 ", "596 ")` for `digits=3`.

    Example:

    >>> pairs = addition_pairs(2, 3, seed=0)
    >>> all(int(a) + int(b) == int(s) for (q, s) in pairs for a, b in [q.split("+")])
    True
    """
    digits = check_int(digits, name="digits")
    n = check_int(n, name="n")
    distinct = (10**digits) * (10**digits + 1) // 2
    if n > distinct:
        raise ValueError(
            f"`n` must be at most {distinct}, the number of distinct unordered pairs of "
            f"numbers with at most {digits} digit(s). Received n={n}"
        )
    rng = np.random.default_rng(seed)
    maxlen = 2 * digits + 1
    pairs, seen = [], set()

    def number() -> int:
        return int("".join(rng.choice(list("0123456789"), size=rng.integers(1, digits + 1))))

    while len(pairs) < n:
        a, b = number(), number()
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        query = f"{a}+{b}"
        pairs.append((query.ljust(maxlen), str(a + b).ljust(digits + 1)))
    return pairs


MONTHS = (
    "January February March April May June July August September October November December"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

# Human-readable layouts of one date (d: datetime.date). Locale-independent on purpose
# (strftime's %B follows the process locale). Day-first numeric only, so no layout is
# ambiguous: "03/04/1999" always means 3 April.
DATE_FORMATS = {
    "d MMMM yyyy": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "MMMM d, yyyy": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "d.m.yy": lambda d: f"{d.day}.{d.month}.{d.year % 100:02d}",
    "MMM d yyyy": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    "dd MMM yyyy": lambda d: f"{d.day:02d} {MONTHS[d.month - 1][:3].upper()} {d.year}",
    "EEEE, MMMM d, yyyy": lambda d: (
        f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}"
    ),
    "EEE d MMM yyyy": lambda d: (
        f"{WEEKDAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}"
    ),
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    "d-MMM-yy": lambda d: f"{d.day}-{MONTHS[d.month - 1][:3].lower()}-{d.year % 100:02d}",
}
"""Layout name -> function of a `datetime.date`: the source side of `date_pairs`."""

DATE_RANGE = ("1950-01-01", "2049-12-31")  # two-digit years ("d.m.yy") stay unambiguous


def date_pairs(
    n_train: int, n_test: int, *, seed: int | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Human-readable dates in many layouts -> ISO 8601 (`yyyy-mm-dd`): a translation-like task.

    The test dates are a random set of calendar days that never occur in training (in any
    layout), so test accuracy measures generalisation to unseen dates, not recall. Each
    example draws its layout uniformly from `DATE_FORMATS`, its day uniformly from
    `DATE_RANGE`.

    Args:
        n_train: training pairs (days may repeat, in different layouts).
        n_test: test pairs, one per held-out day.
        seed: NumPy generator seed.

    Returns:
        `(train, test)`: lists of `(source, target)`, e.g.
        `("Sunday, March 3, 1991", "1991-03-03")`.
    """
    import datetime

    n_train = check_int(n_train, name="n_train")
    n_test = check_int(n_test, name="n_test")
    first, last = (datetime.date.fromisoformat(s) for s in DATE_RANGE)
    days = (last - first).days + 1
    if n_test > days // 2:
        raise ValueError(
            f"`n_test` must be at most {days // 2} (half of the {days} days in {DATE_RANGE}). "
            f"Received n_test={n_test}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(days)
    test_days, train_days = order[:n_test], order[n_test:]
    layouts = list(DATE_FORMATS.values())

    def pair(offset) -> tuple[str, str]:
        day = first + datetime.timedelta(days=int(offset))
        return layouts[rng.integers(len(layouts))](day), day.isoformat()

    test = [pair(d) for d in test_days]
    train = [pair(d) for d in rng.choice(train_days, size=n_train)]
    return train, test
