"""Character-level text: the shipped corpus, vocabularies, the split and the token layouts."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from bptt_keras import (
    SHAKESPEARE_SHA256,
    Vocabulary,
    load_shakespeare,
    load_text,
    split_text,
    stream_batches,
    token_rows,
    token_stream_batches,
)
from bptt_keras.datasets import data_dir


@pytest.fixture(scope="module")
def shakespeare():
    return load_shakespeare()


# ----------------------------------------------------------------------------- the corpus


def test_shipped_corpus_is_tiny_shakespeare(shakespeare):
    raw = (data_dir() / "tinyshakespeare.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHAKESPEARE_SHA256
    assert SHAKESPEARE_SHA256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert len(shakespeare) == 1_115_394
    assert len(set(shakespeare)) == 65
    assert shakespeare.startswith("First Citizen:\nBefore we proceed any further")


def test_whole_corpus_round_trips_through_its_vocabulary(shakespeare):
    vocab = Vocabulary.from_text(shakespeare)
    ids = vocab.encode(shakespeare)
    assert vocab.size == len(vocab) == 65
    assert ids.shape == (1_115_394,) and ids.dtype == np.int32
    assert vocab.chars[0] == "\n" and vocab.chars[-1] == "z"  # sorted, as char-rnn/nanoGPT
    assert vocab.decode(ids) == shakespeare


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_text_module_does_not_import_tensorflow():
    probe = (
        "import sys, bptt_keras.text as t; t.Vocabulary.from_text('ab').encode('ba'); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_round_trips_non_ascii_text():
    text = "naïve — ünïcode 😀"
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == tuple(sorted(set(text)))
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert [vocab.chars[i] for i in ids] == list(text)
    assert vocab.decode(ids) == text
    assert vocab.decode(list(ids)) == text
    assert vocab.decode(np.int64(ids[0])) == text[0]
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)


def test_ids_follow_the_order_of_chars_given():
    vocab = Vocabulary(("z", "a", "é"))
    np.testing.assert_array_equal(vocab.encode("aéz"), [1, 2, 0])
    assert vocab.decode([2, 0, 1]) == "éza"


def test_unknown_character_names_character_position_and_size():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(ValueError, match=r"'é' \(U\+00E9\) at position 3 of `text`.* 3 char"):
        vocab.encode("abcé!a")
    with pytest.raises(ValueError, match=r"'z' .*position 0"):  # above every known code point
        vocab.encode("z")
    with pytest.raises(TypeError, match="`text` must be a str"):
        vocab.encode(b"abc")


@pytest.mark.parametrize("bad, expected", [([0, 3], "id 3 at position 1"), ([-1], "found -1")])
def test_decode_of_an_id_outside_the_vocabulary_errors(bad, expected):
    with pytest.raises(ValueError, match=expected):
        Vocabulary.from_text("abc").decode(bad)


def test_equality_detects_a_vocabulary_mismatch():
    vocab = Vocabulary.from_text("hello")
    assert vocab == Vocabulary(("e", "h", "l", "o"))
    assert hash(vocab) == hash(Vocabulary(tuple("ehlo")))
    assert vocab != Vocabulary.from_text("hello!")
    vocab.check_compatible(Vocabulary.from_text("olleh"))
    with pytest.raises(ValueError, match=r"5 char.*saved one has 4.*only in this one: \['!'\]"):
        Vocabulary.from_text("hello!").check_compatible(vocab, what="the saved one")
    with pytest.raises(ValueError, match=r"another order \(id 0 is 'o' here, 'e'"):
        Vocabulary(("o", "l", "h", "e")).check_compatible(vocab)


def test_json_save_and_load_round_trip(tmp_path):
    vocab = Vocabulary(("b", "a", "ü", "\n"))
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.chars == ("b", "a", "ü", "\n")
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    assert '"format": "bptt_keras.characters"' in path.read_text()


@pytest.mark.parametrize(
    "content, expected",
    [
        ("not json", "not a JSON vocabulary"),
        ('["a", "b"]', "not a bptt_keras character vocabulary"),
        ('{"format": "other", "version": 1, "chars": ["a"]}', "format 'other'"),
        ('{"format": "bptt_keras.characters", "version": 2, "chars": ["a"]}', "version 2"),
        ('{"format": "bptt_keras.characters", "version": 1, "chars": ["a", "a"]}', "'a' more"),
        ('{"format": "bptt_keras.characters", "version": 1, "chars": ["ab"]}', "entry 0 is 'ab'"),
        ('{"format": "bptt_keras.characters", "version": 1, "chars": [1]}', "entry 0 is 1"),
        ('{"format": "bptt_keras.characters", "version": 1, "chars": []}', "is empty"),
        ('{"format": "bptt_keras.characters", "version": 1, "chars": "ab"}', "must be a list"),
    ],
)
def test_a_malformed_vocabulary_file_names_the_file(tmp_path, content, expected):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=expected) as info:
        Vocabulary.load(path)
    assert str(path) in str(info.value)


def test_missing_vocabulary_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        Vocabulary.load(tmp_path / "nowhere.json")


# ----------------------------------------------------------------------------- split


@pytest.mark.parametrize("n, val_fraction", [(1_115_394, 0.1), (101, 0.1), (10, 0.25)])
def test_split_text_cuts_where_nanogpt_does(n, val_fraction):
    data = np.arange(n)
    train, val = split_text(data, val_fraction=val_fraction)
    cut = int(n * (1 - val_fraction))  # nanoGPT data/shakespeare_char/prepare.py
    np.testing.assert_array_equal(train, data[:cut])
    np.testing.assert_array_equal(val, data[cut:])
    np.testing.assert_array_equal(np.concatenate([train, val]), data)


def test_split_text_of_the_corpus_is_first_90_last_10(shakespeare):
    train, val = split_text(shakespeare)
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert train + val == shakespeare
    assert isinstance(train, str) and isinstance(val, str)


@pytest.mark.parametrize(
    "data, val_fraction, error, expected",
    [
        ("abcdefghij", 0.0, ValueError, r"`val_fraction` must be a finite number in \(0.0, 1.0\)"),
        ("abcdefghij", 1.0, ValueError, r"`val_fraction` must be"),
        ("abcdefghij", 0.05, ValueError, "9 for training and 1 for validation"),
        ("abc", 0.5, ValueError, "1 for training and 2 for validation"),
        (np.zeros((3, 3)), 0.1, ValueError, r"`data` must be a str or 1-D.*\(3, 3\)"),
        (None, 0.1, TypeError, "`data` must be a str"),
    ],
)
def test_split_text_errors(data, val_fraction, error, expected):
    with pytest.raises(error, match=expected):
        split_text(data, val_fraction=val_fraction)


# ----------------------------------------------------------------------------- layouts


def test_token_rows_are_contiguous_and_targets_are_the_next_token():
    ids = np.random.default_rng(0).integers(0, 65, size=103)
    x, y = token_rows(ids, batch_size=4)
    row_len = (103 - 1) // 4
    assert x.shape == y.shape == (4, row_len) and x.dtype == y.dtype == np.int32
    for i in range(4):  # row i is one unbroken stretch of the stream, y one token later
        np.testing.assert_array_equal(x[i], ids[i * row_len : (i + 1) * row_len])
        np.testing.assert_array_equal(y[i], ids[i * row_len + 1 : (i + 1) * row_len + 1])
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])  # row i ends where row i + 1 begins


def test_token_rows_offset_drops_leading_tokens():
    ids = np.arange(50)
    x, y = token_rows(ids, batch_size=3, offset=5)
    row_len = (50 - 1 - 5) // 3
    assert x.shape == (3, row_len)
    assert x[0, 0] == 5
    np.testing.assert_array_equal(x.ravel(), np.arange(5, 5 + 3 * row_len))
    np.testing.assert_array_equal(y, x + 1)
    x0, _ = token_rows(ids, batch_size=3)
    assert x0[0, 0] == 0 and not np.array_equal(x0[:, :row_len], x)


def test_token_stream_batches_rows_continue_across_batches():
    ids = np.random.default_rng(1).integers(0, 65, size=200)
    batch_size, seq_len = 3, 7
    x, y = token_stream_batches(ids, batch_size=batch_size, seq_len=seq_len)
    row_len = (200 - 1) // batch_size
    n_batches = row_len // seq_len
    assert x.shape == y.shape == (n_batches * batch_size, seq_len) and x.dtype == np.int32
    batches = x.reshape(n_batches, batch_size, seq_len)
    targets = y.reshape(n_batches, batch_size, seq_len)
    for i in range(batch_size):
        # Row i over all batches, concatenated, is one stretch of the original ids.
        row = np.concatenate([batches[j, i] for j in range(n_batches)])
        start = i * row_len
        np.testing.assert_array_equal(row, ids[start : start + n_batches * seq_len])
        row_y = np.concatenate([targets[j, i] for j in range(n_batches)])
        np.testing.assert_array_equal(row_y, ids[start + 1 : start + 1 + n_batches * seq_len])


@pytest.mark.parametrize("n, batch_size, seq_len", [(200, 3, 7), (64, 1, 9), (41, 4, 10)])
def test_token_stream_batches_equal_the_float_stream_batches_layout(n, batch_size, seq_len):
    ids = np.random.default_rng(n).integers(0, 1000, size=n)
    x, y = token_stream_batches(ids, batch_size=batch_size, seq_len=seq_len)
    fx, fy = stream_batches(ids.astype(float), batch_size=batch_size, seq_len=seq_len)
    np.testing.assert_array_equal(x, fx[..., 0].astype(np.int32))
    np.testing.assert_array_equal(y, fy[..., 0].astype(np.int32))


def test_token_stream_batches_offset_shifts_every_chunk():
    ids = np.arange(100)
    x, y = token_stream_batches(ids, batch_size=2, seq_len=5, offset=3)
    row_len = (100 - 1 - 3) // 2
    assert x[0, 0] == 3 and x[1, 0] == 3 + row_len
    np.testing.assert_array_equal(y, x + 1)


@pytest.mark.parametrize(
    "call, error, expected",
    [
        (lambda: token_rows([0, 1, 2], batch_size=3), ValueError, "Need at least 4"),
        (lambda: token_rows(np.arange(10), batch_size=3, offset=3), ValueError, r"\[0, 3\)"),
        (lambda: token_rows(np.arange(10), batch_size=3, offset=-1), ValueError, ">= 0"),
        (lambda: token_rows(np.arange(10), batch_size=0), ValueError, "`batch_size` must be"),
        (lambda: token_rows(np.arange(10), batch_size=2.0), TypeError, "`batch_size` must be"),
        (lambda: token_rows(np.arange(10.0), batch_size=2), TypeError, "integer dtype"),
        (lambda: token_rows([[1, 2]], batch_size=1), ValueError, r"1-D.*\(1, 2\)"),
        (lambda: token_rows([1, -2, 3], batch_size=1), ValueError, "found -2 at position 1"),
        (lambda: token_rows("abc", batch_size=1), TypeError, "Received: 'abc'"),
        (lambda: token_rows([], batch_size=1), ValueError, "must not be empty"),
        (
            lambda: token_stream_batches(np.arange(20), batch_size=3, seq_len=7),
            ValueError,
            "rows of 6 steps.*seq_len=7. Need at least 22 tokens",
        ),
        (
            lambda: token_stream_batches(np.arange(22), batch_size=3, seq_len=7, offset=1),
            ValueError,
            "`offset`=1 leaves rows of 6 steps",
        ),
        (
            lambda: token_stream_batches(np.arange(22), batch_size=3, seq_len=0),
            ValueError,
            "`seq_len` must be",
        ),
    ],
)
def test_layout_errors_name_the_argument(call, error, expected):
    with pytest.raises(error, match=expected):
        call()


# ----------------------------------------------------------------------------- load_text


def test_user_text_file_round_trip(tmp_path):
    text = "Zeile eins: Grüße\r\nline two — ok\n"
    path = tmp_path / "mine.txt"
    path.write_bytes(text.encode("utf-8"))
    loaded = load_text(path)
    assert loaded == text  # no newline translation
    vocab = Vocabulary.from_text(loaded)
    assert "\r" in vocab.chars
    assert vocab.decode(vocab.encode(loaded)) == text
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfab")
    assert load_text(str(bom)) == "ab"


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "not found"),
        ("dir", "is a directory"),
        (b"", "is empty"),
        (b"a", "has 1 character"),
        (b"\x7fELF\x02\x01\x01\x00\x00", "NUL byte at byte offset 7"),
        (b"caf\xc3\xa9\nna\xefve", r"not UTF-8 text: byte b'\\xef' at byte offset 8 \(line 2\)"),
    ],
)
def test_load_text_errors_name_the_path(tmp_path, content, expected):
    path = tmp_path / "input.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError), match=expected) as info:
        load_text(path)
    assert str(path) in str(info.value)


def test_load_shakespeare_refuses_an_altered_corpus(tmp_path, monkeypatch):
    original = (data_dir() / "tinyshakespeare.txt").read_bytes()
    (tmp_path / "tinyshakespeare.txt").write_bytes(original.replace(b"\n", b"\r\n"))
    monkeypatch.setattr("bptt_keras.text.data_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=f"expected {SHAKESPEARE_SHA256}: the file was modified"):
        load_shakespeare()
