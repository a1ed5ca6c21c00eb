"""`bptt-keras seq2seq` / `translate`: a run directory from a pairs file, bad input refused."""

import json

import pytest

from bptt_keras.cli import main
from bptt_keras.seq2seq_run import split_pairs

TINY = ["--units", "8", "--embedding-dim", "4", "--batch-size", "8", "--quiet"]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.tsv"
    words = ["ab", "ba", "abc", "cab", "bca", "cc", "aab", "bb", "ca", "acb"] * 3
    path.write_text("".join(f"{w}\t{w.upper()}\n" for w in words), encoding="utf-8")
    return path


@pytest.mark.slow  # a training run
def test_seq2seq_writes_a_run_directory_that_translates(tmp_path, pairs_file, capsys):
    out = tmp_path / "run"
    assert main(["seq2seq", str(pairs_file), "--epochs", "2", "--out", str(out), *TINY]) == 0
    assert {p.name for p in out.iterdir()} == {
        "codec.json", "config.json", "examples.txt", "history.csv", "history.json",
        "metrics.json", "model.keras",
    }  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["train_pairs"], metrics["val_pairs"]) == (27, 3)
    assert 0 <= metrics["val_chars"] <= 1
    assert json.loads((out / "config.json").read_text())["reverse"] is True
    assert len(json.loads((out / "history.json").read_text())["val_exact"]) == 2
    assert "held out: 3 pairs" in capsys.readouterr().out
    assert main(["translate", str(out), "abc", "ba", "--beam", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(set(line) <= set("ABC") for line in lines)
    assert main(["translate", str(out), "xyz"]) == 2
    assert "'x'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ab\tAB\nno tab here\n", "line 2 must be `source<TAB>target`"),
        (b"", "no `source<TAB>target` line"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1 is not UTF-8"),
    ],
)
def test_seq2seq_refuses_bad_pairs_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    out = tmp_path / "run"
    assert main(["seq2seq", str(path), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bptt-keras: error:") and message in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_seq2seq_refuses_bad_options_and_paths(tmp_path, pairs_file, capsys):
    cases = [
        (["seq2seq", str(tmp_path / "none.tsv")], "does not exist"),
        (["seq2seq", str(pairs_file), "--cell", "transformer"], "`cell`"),
        (["seq2seq", str(pairs_file), "--val-fraction", "0.9"], "`val_fraction`"),
        (["translate", str(tmp_path / "nodir"), "x"], "is not a directory"),
        (["translate", str(tmp_path), "x"], "not a `bptt-keras seq2seq` run directory"),
    ]
    for argv, message in cases:
        assert main([*argv, *(["--quiet"] if argv[0] == "seq2seq" else [])]) == 2
        err = capsys.readouterr().err
        assert message in err, (argv, err)


def test_split_pairs_is_seeded_and_holds_out():
    pairs = [(str(i), str(i)) for i in range(20)]
    train, val = split_pairs(pairs, val_fraction=0.1, seed=0)
    assert len(val) == 2 and sorted(train + val) == sorted(pairs)
    assert split_pairs(pairs, val_fraction=0.1, seed=0) == (train, val)
    assert split_pairs(pairs, val_fraction=0.1, seed=1) != (train, val)
    with pytest.raises(ValueError, match="too few"):
        split_pairs([("a", "b")], val_fraction=0.5, seed=0)
