"""The README's quickstart is real code: run it (with fewer epochs)."""

import re
from pathlib import Path

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
