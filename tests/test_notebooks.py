"""Every notebook runs top to bottom (fast mode: BPTT_KERAS_FAST=1, set in conftest).

The experiment notebooks write their run directories under the test's temporary directory,
and the direction of each quick-mode result is then checked (`experiment_checks.py`).
"""

from pathlib import Path

import nbformat
import pytest
from experiment_checks import CHECKS
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 9
    assert set(CHECKS) <= {p.stem for p in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    monkeypatch.setenv("BPTT_KERAS_FAST", "1")
    monkeypatch.setenv("BPTT_KERAS_OUT", str(tmp_path / "runs"))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.stem in CHECKS:
        name, check = CHECKS[path.stem]
        check(tmp_path / "runs" / name)
