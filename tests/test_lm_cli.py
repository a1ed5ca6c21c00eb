"""`bptt-keras lm`: a character language-model run directory, and bad input refused cleanly."""

import json
import math

import pytest

import bptt_keras as bk
from bptt_keras.cli import main

TINY = ["--units", "8", "--num-layers", "1", "--embedding-dim", "4", "--batch-size", "2",
        "--k1", "10", "--sample-length", "20", "--quiet"]  # fmt: skip


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 12, encoding="utf-8")
    return path


@pytest.mark.slow  # a training run
def test_lm_writes_a_run_directory(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["lm", "--text", str(corpus), "--epochs", "2", "--out", str(out), *TINY]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "README.md", "config.json", "history.csv", "history.json", "loss_curve.png",
        "metrics.json", "model.keras", "samples.txt", "versions.json", "vocab.json",
    }  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_nats_per_char"] / math.log(2))
    assert metrics["val_perplexity"] == pytest.approx(math.exp(metrics["val_nats_per_char"]))
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_bpc"]) == 2
    assert history["val_bpc"][-1] == pytest.approx(history["val_loss"][-1] / math.log(2))
    vocab = bk.Vocabulary.load(out / "vocab.json")
    assert vocab == bk.Vocabulary.from_text(corpus.read_text())
    samples = (out / "samples.txt").read_text()
    assert samples.count("--- temperature") == 3
    config = json.loads((out / "config.json").read_text())
    assert config["text"] == str(corpus) and config["epochs"] == 2
    assert "validation:" in capsys.readouterr().out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bptt-keras: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"abc\x00def" * 20, "NUL"), (b"\xff\xfe\xfa bad" * 20, "UTF-8")],
)
def test_lm_refuses_bad_text_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    out = tmp_path / "run"
    assert main(["lm", "--text", str(path), "--out", str(out), *TINY]) == 2
    line = _one_error_line(capsys)
    assert message in line and "bad.txt" in line
    assert not out.exists()


def test_lm_refuses_a_missing_text_and_a_too_short_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["lm", "--text", str(tmp_path / "nope.txt"), "--out", str(out), *TINY]) == 2
    assert "nope.txt" in _one_error_line(capsys)
    short = tmp_path / "short.txt"
    short.write_text("abcdefghijklmnopqrst")  # 18 training characters: rows of 8 < k1
    assert main(["lm", "--text", str(short), "--out", str(out), *TINY]) == 2
    assert "k1=10" in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.slow  # a training run first
def test_lm_refuses_to_resume_with_another_vocabulary(tmp_path, corpus, capsys):
    ck = tmp_path / "ck"
    args = ["--checkpoint-dir", str(ck), "--epochs", "1", *TINY]
    assert main(["lm", "--text", str(corpus), "--out", str(tmp_path / "a"), *args]) == 0
    capsys.readouterr()
    other = tmp_path / "other.txt"
    other.write_text("THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!\n" * 12)
    out = tmp_path / "b"
    assert main(["lm", "--text", str(other), "--out", str(out), "--resume", *args]) == 2
    assert "vocab" in _one_error_line(capsys).lower()
    assert not out.exists()


def test_lm_refuses_tied_weights_of_unequal_widths(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["lm", "--text", str(corpus), "--out", str(out), "--tie-weights", *TINY]) == 2
    line = _one_error_line(capsys)
    assert "embedding_dim=4" in line and "units=8" in line and "tie_weights" in line
    assert not out.exists()


@pytest.mark.slow  # a training run
def test_lm_with_tied_weights_trains_and_reloads(tmp_path, corpus):
    import keras

    out = tmp_path / "run"
    tiny = [*TINY]
    tiny[tiny.index("--embedding-dim") + 1] = "8"  # = --units: the head is E^T
    assert main(["lm", "--text", str(corpus), "--epochs", "1", "--tie-weights", "--out",
                 str(out), *tiny]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["tie_weights"] is True
    model = keras.models.load_model(out / "model.keras")
    assert isinstance(model.get_layer("embedding"), keras.layers.ReversibleEmbedding)
    params = json.loads((out / "metrics.json").read_text())["parameters"]
    assert params == model.count_params()
    vocab = bk.Vocabulary.load(out / "vocab.json").size
    untied = bk.build_model("lstm", 8, vocab_size=vocab, embedding_dim=8)
    assert params == untied.count_params() - vocab * 8 - vocab
