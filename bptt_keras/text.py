"""Character-level text: the shipped Tiny Shakespeare corpus, vocabularies and token layouts.

Pure NumPy, like `bptt_keras.data`: nothing here imports TensorFlow. Text becomes a 1-D int32
array of token ids with a `Vocabulary` (the sorted set of characters, as char-rnn and nanoGPT
build it); `split_text` cuts it by position; `token_rows` and `token_stream_batches` lay the ids
out for truncated BPTT, the integer twins of `bptt_keras.data.stream_batches`.

    text = load_shakespeare()                      # 1,115,394 characters
    vocab = Vocabulary.from_text(text)             # 65 characters
    train, val = split_text(vocab.encode(text))    # first 90% / last 10%
    x, y = token_stream_batches(train, batch_size=32, seq_len=100)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bptt_keras._validation import check_float, check_int, describe
from bptt_keras.data import chunk_rows
from bptt_keras.datasets import data_dir

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
"""sha256 of the shipped `tinyshakespeare.txt` (char-rnn's `data/tinyshakespeare/input.txt`)."""

_FORMAT = "bptt_keras.characters"
_VERSION = 1
_INT32_MAX = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------- reading text


def _read_text(path: str | os.PathLike) -> tuple[str, bytes]:
    """`load_text` that also returns the raw bytes (for a hash)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path (str or Path). Received: {describe(path)}")
    path = Path(path)
    where = repr(str(path))
    if not path.exists():
        raise FileNotFoundError(f"Text file not found: `path`={where}")
    if path.is_dir():
        raise ValueError(f"`path`={where} is a directory; expected a UTF-8 text file.")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"Text file {where} is empty; expected at least 2 characters.")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"{where} contains a NUL byte at byte offset {nul}: it looks like a binary file, "
            "not text (a UTF-16 text file also has NULs: re-save it as UTF-8)."
        )
    try:
        # utf-8-sig: a byte-order mark written by some editors is not part of the text.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{where} is not UTF-8 text: byte {raw[err.start : err.start + 1]!r} at byte "
            f"offset {err.start} (line {line}) cannot be decoded ({err.reason}). Re-save the "
            "file as UTF-8."
        ) from None
    if len(text) < 2:
        raise ValueError(
            f"Text file {where} has {len(text)} character(s); at least 2 are needed to form "
            "one (input, next character) pair."
        )
    return text, raw


def load_text(path: str | os.PathLike) -> str:
    """Reads a UTF-8 text file for character-level modelling.

    The text is returned exactly as stored: no newline translation (a Windows file keeps its
    `"\\r\\n"`, so `"\\r"` is in its vocabulary), no stripping; only a leading UTF-8
    byte-order mark is removed.

    Args:
        path: a UTF-8 text file with at least 2 characters.

    Returns:
        The file's text as a `str`.

    Raises:
        FileNotFoundError: `path` does not exist (the message names it).
        TypeError: `path` is not a `str` or `os.PathLike`.
        ValueError: `path` is a directory, the file is empty or has fewer than 2 characters,
            contains NUL bytes (a binary file) or is not valid UTF-8 (the message gives the
            byte offset and line of the first bad byte). Every message names the path.

    Example:

    >>> text = load_text("notes.txt")  # doctest: +SKIP
    >>> vocab = Vocabulary.from_text(text)  # doctest: +SKIP
    """
    return _read_text(path)[0]


def load_shakespeare() -> str:
    """Loads the shipped Tiny Shakespeare corpus (provenance in `data/README.md`).

    The file's sha256 is checked against `SHAKESPEARE_SHA256`, so a copy altered on the way
    (e.g. line endings converted by a git checkout on Windows) raises instead of silently
    training on a different text.

    Returns:
        The corpus, a `str` of 1,115,394 characters (65 distinct).

    Raises:
        ValueError: the shipped file does not have the expected hash.

    Example:

    >>> text = load_shakespeare()
    >>> len(text), len(set(text)), text[:14]
    (1115394, 65, 'First Citizen:')
    """
    path = data_dir() / "tinyshakespeare.txt"
    text, raw = _read_text(path)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise ValueError(
            f"{str(path)!r} has sha256 {digest}, expected {SHAKESPEARE_SHA256}: the file was "
            "modified (line endings converted by git on Windows?). Restore the original "
            "bytes, e.g. reinstall bptt_keras or check it out with `core.autocrlf=false`."
        )
    return text


# ----------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """A character vocabulary: id `i` stands for `chars[i]`.

    Build it with `Vocabulary.from_text(text)` (the sorted set of the text's characters, as
    char-rnn and nanoGPT do), save it next to a model with `save` and read it back with
    `load`. Two vocabularies are interchangeable exactly when they are equal (`==` compares
    `chars`, order included): a model trained with one must be fed ids from an equal one;
    `check_compatible` raises a readable error when they differ.

    Attributes:
        chars: the characters, one `str` of length 1 each, no duplicates; any order (ids
            follow it), sorted when built by `from_text`.

    Example:

    >>> vocab = Vocabulary.from_text("hello")
    >>> vocab.chars, vocab.size
    (('e', 'h', 'l', 'o'), 4)
    >>> ids = vocab.encode("hole")
    >>> ids
    array([1, 3, 2, 0], dtype=int32)
    >>> vocab.decode(ids)
    'hole'
    """

    chars: tuple[str, ...]
    # Lookup tables for vectorised encode/decode; excluded from ==, hash and repr.
    _codes: np.ndarray = field(init=False, repr=False, compare=False)  # (size,) id -> code point
    # (max code point + 1,) code point -> id, -1 where no character; at most 4.4 MB (U+10FFFF).
    _ids: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        chars = _check_chars(self.chars, source="Vocabulary")
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        ids = np.full(int(codes.max()) + 1, -1, dtype=np.int32)
        ids[codes] = np.arange(len(chars), dtype=np.int32)
        object.__setattr__(self, "chars", chars)
        object.__setattr__(self, "_codes", codes)
        object.__setattr__(self, "_ids", ids)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The sorted set of the characters of `text` (sorted by code point).

        Args:
            text: a non-empty `str`, usually the whole corpus (train and validation), so
                that validation text never holds an unknown character.

        Returns:
            A `Vocabulary`.

        Raises:
            TypeError: `text` is not a `str`.
            ValueError: `text` is empty.
        """
        _check_text(text, name="text")
        if not text:
            raise ValueError("`text` must not be empty: a vocabulary needs at least 1 character.")
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        """The number of characters (the model's number of input and output classes)."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Maps each character of `text` to its id, vectorised (Tiny Shakespeare: ~10 ms).

        Args:
            text: a `str` whose characters are all in the vocabulary; may be empty.

        Returns:
            int32 array `(len(text),)`.

        Raises:
            TypeError: `text` is not a `str`.
            ValueError: a character is not in the vocabulary; the message names the first
                one, its position in `text`, and how many positions are unknown.
        """
        _check_text(text, name="text")
        # One uint32 code point per character (surrogatepass: any Python str encodes).
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        ids = self._ids[np.minimum(codes, self._ids.size - 1)]  # (n,); the last entry is known
        known = (ids >= 0) & (codes < self._ids.size)
        if not known.all():
            bad = np.flatnonzero(~known)
            first = int(bad[0])
            raise ValueError(
                f"Character {text[first]!r} (U+{ord(text[first]):04X}) at position {first} of "
                f"`text` is not in the vocabulary of {self.size} characters "
                f"({bad.size} unknown position(s) in all). Build the vocabulary from the whole "
                "corpus, or remove or replace such characters."
            )
        return ids

    def decode(self, ids) -> str:
        """Maps ids back to text.

        Args:
            ids: 1-D integer array or list of ids in `[0, size)` (a scalar id is one
                character); may be empty.

        Returns:
            A `str` of `len(ids)` characters.

        Raises:
            TypeError: `ids` is not an integer array.
            ValueError: `ids` is not 1-D, or holds an id outside `[0, size)` (the message
                names it and its position).
        """
        array = _as_ids(np.ravel(ids) if np.ndim(ids) == 0 else ids, name="ids", allow_empty=True)
        outside = np.flatnonzero(array >= self.size)
        if outside.size:
            first = int(outside[0])
            raise ValueError(
                f"`ids` holds id {int(array[first])} at position {first}, outside the "
                f"vocabulary's range [0, {self.size})."
            )
        return self._codes[array].tobytes().decode("utf-32-le", "surrogatepass")

    def check_compatible(self, other: Vocabulary, *, what: str = "the other vocabulary") -> None:
        """Raises if `other` differs from this vocabulary (ids would mean other characters).

        Args:
            other: the vocabulary to compare with (e.g. the one saved with a model).
            what: how to name `other` in the message.

        Raises:
            TypeError: `other` is not a `Vocabulary`.
            ValueError: the vocabularies differ; the message gives both sizes and the first
                id whose character differs, or the characters only one of them has.
        """
        if not isinstance(other, Vocabulary):
            raise TypeError(f"`other` must be a Vocabulary. Received: {describe(other)}")
        if other == self:
            return
        only_here = sorted(set(self.chars) - set(other.chars))
        only_there = sorted(set(other.chars) - set(self.chars))
        if only_here or only_there:
            detail = (
                f"characters only in this one: {only_here[:10]}; only in {what}: {only_there[:10]}"
            )
        else:
            index = next(
                i for i, (a, b) in enumerate(zip(self.chars, other.chars, strict=True)) if a != b
            )
            detail = (
                f"same characters in another order (id {index} is {self.chars[index]!r} here, "
                f"{other.chars[index]!r} in {what})"
            )
        raise ValueError(
            f"Vocabulary mismatch: this one has {self.size} characters, {what} has "
            f"{other.size}; {detail}. Ids from one vocabulary mean other characters in the other."
        )

    def to_json(self) -> str:
        """The vocabulary as a small JSON object.

        Returns:
            `'{"format": "bptt_keras.characters", "version": 1, "chars": [...]}'` (non-ASCII
            characters as `\\uXXXX` escapes).
        """
        return json.dumps({"format": _FORMAT, "version": _VERSION, "chars": list(self.chars)})

    @classmethod
    def from_json(cls, text: str, *, source: str = "`text`") -> Vocabulary:
        """Reads a vocabulary written by `to_json`, validated.

        Args:
            text: the JSON string.
            source: how to name the input in error messages (`load` passes the file path).

        Returns:
            A `Vocabulary` with the same `chars`, in the same order.

        Raises:
            TypeError: `text` is not a `str`.
            ValueError: not JSON, not an object of this format and version, or `chars` not a
                non-empty list of distinct single characters. The message names `source`.
        """
        _check_text(text, name="text")
        try:
            content = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not a JSON vocabulary file: {err}") from None
        if not isinstance(content, dict) or content.get("format") != _FORMAT:
            found = (
                f"format {content.get('format')!r}"
                if isinstance(content, dict)
                else describe(content)
            )
            raise ValueError(
                f"{source} is not a bptt_keras character vocabulary: expected a JSON object "
                f'with "format": {_FORMAT!r}. Received: {found}'
            )
        if content.get("version") != _VERSION:
            raise ValueError(
                f"{source} has vocabulary format version {content.get('version')!r}; this "
                f"bptt_keras reads version {_VERSION}."
            )
        return cls(_check_chars(content.get("chars"), source=source))

    def save(self, path: str | os.PathLike) -> None:
        """Writes `to_json()` to `path` (UTF-8)."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a vocabulary written by `save`.

        Raises:
            FileNotFoundError: `path` does not exist.
            ValueError: the file is not a valid vocabulary (see `from_json`); the message
                names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Vocabulary file not found: `path`={str(path)!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"Vocabulary file {str(path)!r} is not UTF-8 text (byte offset {err.start})."
            ) from None
        return cls.from_json(text, source=f"Vocabulary file {str(path)!r}")


def _check_text(text, *, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"`{name}` must be a str. Received: {describe(text)}")


def _check_chars(chars, *, source: str) -> tuple[str, ...]:
    """Validates a list of characters: non-empty, single-character strings, distinct."""
    if isinstance(chars, str) or not isinstance(chars, (list, tuple)):
        raise ValueError(
            f"{source}: `chars` must be a list of single characters. Received: {describe(chars)}"
        )
    if not chars:
        raise ValueError(f"{source}: `chars` is empty; a vocabulary needs at least 1 character.")
    for index, char in enumerate(chars):
        if not isinstance(char, str) or len(char) != 1:
            raise ValueError(
                f"{source}: `chars` entry {index} is {describe(char)}; every entry must be a "
                "string of exactly 1 character."
            )
    if len(set(chars)) != len(chars):
        seen: set[str] = set()
        duplicate = next(c for c in chars if c in seen or seen.add(c))
        raise ValueError(
            f"{source}: `chars` holds {duplicate!r} more than once; each character needs one id."
        )
    return tuple(chars)


# ----------------------------------------------------------------------------- layouts


def _as_ids(ids, *, name: str, allow_empty: bool = False) -> np.ndarray:
    """`ids` as a 1-D int32 array of non-negative token ids, validated."""
    if ids is None or isinstance(ids, (str, bytes)):
        raise TypeError(
            f"`{name}` must be a 1-D array of integer token ids. Received: {describe(ids)}"
        )
    try:
        array = np.asarray(ids)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise TypeError(
            f"`{name}` must be a 1-D array of integer token ids. Received: {describe(ids)}"
        ) from err
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (time,). Received: {describe(array)}")
    if array.size == 0:
        if not allow_empty:
            raise ValueError(f"`{name}` must not be empty. Received: {describe(array)}")
        return np.zeros(0, dtype=np.int32)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`{name}` must have an integer dtype (token ids). Received: {describe(array)}"
        )
    negative = np.flatnonzero(array < 0)
    if negative.size:
        first = int(negative[0])
        raise ValueError(
            f"`{name}` must hold non-negative token ids; found {int(array[first])} at "
            f"position {first}."
        )
    if int(array.max()) > _INT32_MAX:
        raise ValueError(f"`{name}` holds ids above the int32 range (max {int(array.max())}).")
    return array.astype(np.int32, copy=False)


def split_text(data, *, val_fraction: float = 0.1):
    """Splits a text or a token stream by position: the first part trains, the rest validates.

        data   |---------------- train (first 90%) ----------------|-- val (10%) --|
               0                                            int(n * 0.9)            n

    Exactly nanoGPT's `data/shakespeare_char/prepare.py`: `train = data[:int(n * 0.9)]`,
    `val = data[int(n * 0.9):]`, so the validation text is a passage the model never saw,
    and results compare with published ones.

    Args:
        data: a `str` or a 1-D array (or list) of length `n`.
        val_fraction: share for validation, in `(0, 1)`; the cut is at
            `int(n * (1 - val_fraction))`.

    Returns:
        `(train, val)`: two `str` for a `str`, else two new 1-D arrays; `train + val == data`.

    Raises:
        TypeError: `data` is neither a `str` nor array-like.
        ValueError: `data` is not 1-D, `val_fraction` is outside `(0, 1)`, or either part would
            have fewer than 2 items (no (input, target) pair).

    Example:

    >>> split_text("abcdefghij", val_fraction=0.2)
    ('abcdefgh', 'ij')
    """
    if not isinstance(data, str):
        if data is None or isinstance(data, bytes):
            raise TypeError(f"`data` must be a str or a 1-D array. Received: {describe(data)}")
        data = np.asarray(data)
        if data.ndim != 1:
            raise ValueError(f"`data` must be a str or 1-D. Received: {describe(data)}")
    val_fraction = check_float(
        val_fraction,
        name="val_fraction",
        low=0.0,
        high=1.0,
        low_inclusive=False,
        high_inclusive=False,
    )
    n = len(data)
    cut = int(n * (1 - val_fraction))
    if cut < 2 or n - cut < 2:
        raise ValueError(
            f"`val_fraction`={val_fraction} splits {n} items into {cut} for training and "
            f"{n - cut} for validation; each part needs at least 2."
        )
    if isinstance(data, str):
        return data[:cut], data[cut:]
    return data[:cut].copy(), data[cut:].copy()


def _rows(ids: np.ndarray, batch_size: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The `token_rows` layout of validated arguments."""
    inputs, targets = ids[offset:-1], ids[offset + 1 :]
    row_len = inputs.shape[0] // batch_size
    x = inputs[: batch_size * row_len].reshape(batch_size, row_len)
    y = targets[: batch_size * row_len].reshape(batch_size, row_len)
    return x.copy(), y.copy()


def _check_offset(offset: int, *, n: int, batch_size: int) -> None:
    row_len = (n - 1) // batch_size
    if offset >= row_len:
        raise ValueError(
            f"`offset` must be in [0, {row_len}), the row length of {n} ids in "
            f"batch_size={batch_size} rows. Received: {offset}"
        )


def token_rows(ids, *, batch_size: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cuts a token stream into `batch_size` contiguous rows (PyTorch's `batchify`, transposed).

    The next-token stream (inputs `ids[offset:-1]`, targets `ids[offset + 1:]`) is cut into
    `batch_size` equal rows, one after the other in the text; each row is then one long
    sequence for truncated BPTT, walked in windows with the state carried between them
    (PyTorch's word_language_model `batchify` makes the same cut, with time as the first axis):

        ids   o o a0 a1 a2 a3 a4 b0 b1 b2 b3 b4 c0 c1 c2 c3 c4 c5 c6   (offset=2, batch_size=3)

        x  row 0   a0 a1 a2 a3 a4          y  row 0   a1 a2 a3 a4 b0
           row 1   b0 b1 b2 b3 b4             row 1   b1 b2 b3 b4 c0
           row 2   c0 c1 c2 c3 c4             row 2   c1 c2 c3 c4 c5

        row_len = (19 - 1 - 2) // 3 = 5. `o o` are dropped by the offset; the last
        (len(ids) - 1 - offset) % batch_size = 1 pair (input c5, target c6) fills no row.

    `offset` shifts every row's start: a random offset per epoch moves the block boundaries,
    so that no character is always the first of a window (where the carried state is
    cut and the model sees the least context).

    Args:
        ids: `(n,)` non-negative integer token ids (array or list).
        batch_size: number of rows.
        offset: leading tokens to drop, in `[0, (n - 1) // batch_size)`.

    Returns:
        `(x, y)`, int32 arrays `(batch_size, row_len)` with
        `row_len = (n - 1 - offset) // batch_size`,
        `x[i, t] = ids[offset + i * row_len + t]` and `y[i, t]` the token after `x[i, t]`.

    Raises:
        TypeError: `ids` is not an integer array, `batch_size` or `offset` not an integer.
        ValueError: `ids` is not 1-D or holds a negative id, `batch_size < 1`, `offset` out
            of range, or fewer than `batch_size + 1` ids (not one step per row).

    Example:

    >>> x, y = token_rows(np.arange(12), batch_size=2, offset=1)
    >>> x
    array([[ 1,  2,  3,  4,  5],
           [ 6,  7,  8,  9, 10]], dtype=int32)
    >>> y
    array([[ 2,  3,  4,  5,  6],
           [ 7,  8,  9, 10, 11]], dtype=int32)
    """
    ids = _as_ids(ids, name="ids")
    batch_size = check_int(batch_size, name="batch_size")
    offset = check_int(offset, name="offset", minimum=0)
    n = ids.shape[0]
    if n < batch_size + 1:
        raise ValueError(
            f"`ids` has {n} tokens, i.e. {n - 1} (input, target) pairs: not enough for one "
            f"step in each of batch_size={batch_size} rows. Need at least {batch_size + 1}."
        )
    _check_offset(offset, n=n, batch_size=batch_size)
    return _rows(ids, batch_size, offset)


def token_stream_batches(
    ids, *, batch_size: int, seq_len: int, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Lays a token stream out in batches for stateful training / truncated BPTT.

    The integer twin of `bptt_keras.data.stream_batches` (same layout and remainder rules,
    no feature axis): the rows of `token_rows` are cut into chunks of `seq_len` tokens and
    batch `j` holds chunk `j` of every row, so **row `i` of batch `j + 1` continues row `i`
    of batch `j`**:

        stream  a0 a1 a2 a3 a4 a5 | b0 b1 b2 b3 b4 b5 | c0 c1 ...   (batch_size=3, seq_len=3)

                   batch 0      batch 1
        row 0     a0 a1 a2  ->  a3 a4 a5
        row 1     b0 b1 b2  ->  b3 b4 b5
        row 2     c0 c1 c2  ->  c3 c4 c5

        returned x (flat, in order):  [a0..a2], [b0..b2], [c0..c2], [a3..a5], [b3..b5], ...

    The remainder is dropped: after the `offset` leading tokens, the last
    `(len(ids) - 1 - offset) % batch_size` tokens of the stream (equal rows), then the last
    `row_len % seq_len` tokens of every row. With `offset=0` the result equals
    `stream_batches(ids.astype(float), ...)` without its feature axis. Feed it in order
    (`shuffle=False`, `batch_size=batch_size`).

    Args:
        ids: `(n,)` non-negative integer token ids (array or list).
        batch_size: number of parallel rows (the stateful model's batch size).
        seq_len: tokens per chunk (the truncation length for truncated BPTT).
        offset: leading tokens to drop, in `[0, (n - 1) // batch_size)`; a random offset per
            epoch moves the chunk boundaries.

    Returns:
        `(x, y)`, int32 arrays `(n_batches * batch_size, seq_len)`, with `y[k, t]` the token
        after `x[k, t]` in `ids`.

    Raises:
        TypeError: `ids` is not an integer array, or an integer argument is not an integer.
        ValueError: `ids` is not 1-D or holds a negative id, `batch_size` or `seq_len < 1`,
            `offset` out of range, or too few tokens for one full batch, i.e.
            `(n - 1 - offset) // batch_size < seq_len`.

    Example:

    >>> x, y = token_stream_batches(np.arange(13), batch_size=2, seq_len=3)
    >>> x  # batch 0 is rows 0-1, batch 1 is rows 2-3
    array([[ 0,  1,  2],
           [ 6,  7,  8],
           [ 3,  4,  5],
           [ 9, 10, 11]], dtype=int32)
    """
    ids = _as_ids(ids, name="ids")
    batch_size = check_int(batch_size, name="batch_size")
    seq_len = check_int(seq_len, name="seq_len")
    offset = check_int(offset, name="offset", minimum=0)
    n = ids.shape[0]
    if (n - 1) // batch_size < seq_len:  # the same rule and message as stream_batches
        raise ValueError(
            f"`ids` of {n} tokens gives {n - 1} (input, target) pairs, i.e. rows of "
            f"{(n - 1) // batch_size} steps for batch_size={batch_size}: not enough for one "
            f"chunk of seq_len={seq_len}. Need at least {batch_size * seq_len + 1} tokens."
        )
    _check_offset(offset, n=n, batch_size=batch_size)
    row_len = (n - 1 - offset) // batch_size
    if row_len < seq_len:
        raise ValueError(
            f"`offset`={offset} leaves rows of {row_len} steps in `ids` of {n} tokens: not "
            f"enough for one chunk of seq_len={seq_len}. Use offset <= "
            f"{n - 1 - batch_size * seq_len} (or a smaller seq_len)."
        )
    x, y = _rows(ids, batch_size, offset)  # (batch_size, row_len)
    return chunk_rows(x, seq_len), chunk_rows(y, seq_len)
