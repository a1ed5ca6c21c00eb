"""Source/target string pairs: the tab-separated pairs file and the checks on pairs.

No TensorFlow here, so the command line reads and checks a pairs file before TensorFlow's
import (seconds): a malformed file fails at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bptt_keras._validation import describe


def check_pairs(pairs, *, name: str = "pairs") -> list[tuple[str, str]]:
    """`pairs` as a list of `(source, target)` non-empty strings, or a clear error."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(
            f"`{name}` must be a list of (source, target) strings. Received: {describe(pairs)}"
        )
    if not pairs:
        raise ValueError(f"`{name}` must not be empty.")
    out = []
    for i, pair in enumerate(pairs):
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2
        if not ok or not all(isinstance(s, str) and s for s in pair):
            raise ValueError(
                f"`{name}[{i}]` must be a (source, target) pair of non-empty strings. "
                f"Received: {pair!r}"
            )
        out.append((pair[0], pair[1]))
    return out


def load_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Reads a tab-separated pairs file: one `source<TAB>target` per line (UTF-8).

    The layout of the usual translation toy corpora (e.g. the Tatoeba / manythings.org
    files, whose extra columns must be cut first). Blank lines are skipped.

    Args:
        path: the file.

    Returns:
        The pairs, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not UTF-8, holds no pair, or a line is malformed; the message
            names the line number and what was expected.

    Example (`pairs.tsv`: "dog<TAB>chien" lines):

    >>> pairs = load_pairs("pairs.tsv")
    >>> codec = bk.PairCodec.from_pairs(pairs, reverse=True)
    >>> model = bk.build_seq2seq("lstm", 128, source_vocab=codec.source_size,
    ...                          target_vocab=codec.target_size)
    >>> history = bk.fit_seq2seq(model, codec, pairs, epochs=20)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Pairs file {path!r} does not exist (or is not a file).")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line} is not UTF-8 text (byte {err.start}); a pairs file holds "
            "UTF-8 `source<TAB>target` lines."
        ) from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise ValueError(
                f"{path}: line {number} must be `source<TAB>target` (exactly one tab, both "
                f"sides non-empty). Received {len(fields)} field(s): {line[:80]!r}"
            )
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise ValueError(f"{path}: no `source<TAB>target` line in the file.")
    return pairs
