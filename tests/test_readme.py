"""The README's quickstart is real code: run it (with fewer epochs)."""

import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_runs(tmp_path, monkeypatch):
    code = _block_after("## Quickstart")
    assert "epochs=30" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("epochs=30", "epochs=1"), "README quickstart", "exec"), namespace)
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert namespace["future"].shape == (50, 1)


def test_readme_states_the_two_setup_commands():
    text = README.read_text()
    assert ".venv/bin/pip install . && .venv/bin/bptt-keras train" in text
    assert '.venv/bin/pip install ".[test]" && .venv/bin/pytest' in text


@pytest.mark.slow
def test_language_model_example_runs(capsys):
    code = _block_after("## Language models")
    small = (
        code.replace("bk.load_shakespeare()", "bk.load_shakespeare()[:12000]")
        .replace('"lstm", 256', '"lstm", 16')
        .replace("length=200", "length=30")
    )
    assert small.count("12000") == 1 and '"lstm", 16' in small
    namespace: dict = {}
    exec(compile(small, "README language model", "exec"), namespace)
    assert namespace["vocab"].size == len(set(bk_text := namespace["text"])) < 65
    assert namespace["x"].shape[0] == 32 and len(bk_text) == 12000
    assert namespace["nats"] > 0
    out = capsys.readouterr().out  # fit's epoch lines, the two scores, the sample
    scores = re.search(r"^([0-9.e+-]+) ([0-9.e+-]+)\n", out, re.M)
    bits, ppl = float(scores.group(1)), float(scores.group(2))
    sample = [out[scores.end() :]]
    assert bits == pytest.approx(namespace["nats"] / math.log(2))
    assert ppl == pytest.approx(math.exp(namespace["nats"]))
    assert len(sample[0]) >= 30  # the sampled text and print's newline


def test_every_command_line_in_the_readme_parses():
    """Each `bptt-keras ...` line of the README's shell blocks is accepted by the parser (the
    options exist and take the values shown)."""
    import shlex

    from bptt_keras.cli import _parser

    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [
        line.split("#")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("bptt-keras ")
    ]
    assert any(line.startswith("bptt-keras lm") for line in lines)
    parser = _parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        if "--help" in argv or "--version" in argv or "--list" in argv:
            continue
        parser.parse_args(argv)  # SystemExit (exit 2, usage on stderr) on a wrong option


@pytest.mark.slow
def test_seq2seq_example_runs(capsys):
    code = _block_after("## Sequence to sequence")
    small = (
        code.replace("addition_pairs(2, 5000", "addition_pairs(2, 300")
        .replace("pairs[:4500], pairs[4500:]", "pairs[:270], pairs[270:]")
        .replace('"lstm", 128', '"lstm", 16')
        .replace("epochs=30", "epochs=1")
    )
    assert small.count("300") == 1 and "epochs=1," in small and '"lstm", 16' in small
    namespace: dict = {}
    exec(compile(small, "README seq2seq", "exec"), namespace)
    assert len(namespace["val"]) == 30 and len(namespace["history"]["val_exact"]) == 1
    assert len(namespace["best"]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].startswith("[(")


def test_keras_own_fit_example_runs(tmp_path, monkeypatch):
    code = _block_after("### Using Keras' own fit")
    assert "bk.BPTTModel(" in code and "epochs=5" in code
    monkeypatch.chdir(tmp_path)
    small = code.replace("noisy_sines(256, 201", "noisy_sines(16, 41").replace(
        "epochs=5", "epochs=1"
    )
    small = small.replace("k1=20, k2=40", "k1=10, k2=20")
    namespace: dict = {}
    exec(compile(small, "README Keras fit", "exec"), namespace)
    history = namespace["history"].history
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(history)
    assert (tmp_path / "model.keras").stat().st_size > 1000
    assert list((tmp_path / "logs" / "gradients").glob("events.out.tfevents.*"))


def test_streaming_example_runs():
    code = _block_after("### Streaming a tf.data pipeline")
    assert "steps_per_epoch=50" in code and "while True" in code
    small = code.replace("steps_per_epoch=50", "steps_per_epoch=2").replace("epochs=3", "epochs=2")
    small = small.replace("(32, 100, 1)", "(4, 30, 1)").replace("k1=20, k2=40", "k1=10, k2=20")
    namespace: dict = {}
    exec(compile(small, "README streaming", "exec"), namespace)
    history = namespace["history"]
    assert len(history.history["loss"]) == 2 and len(history.update_grad_norms) == 2 * 2 * 3
    assert all(math.isfinite(v) for v in history.history["loss"])
