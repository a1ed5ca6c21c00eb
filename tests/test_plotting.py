"""Plots draw as pandas and seaborn do: on pyplot's current axes when `ax` is None (so a
notebook shows them), on the given axes otherwise, and off pyplot with `new_axes()`."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bptt_keras import new_axes, plot_forecast, plot_loss_curves


def test_loss_curves_plot_train_and_validation():
    ax = plot_loss_curves({"loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.7, 0.5]}, log_scale=True)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["train", "validation"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    assert ax.get_yscale() == "log"


@pytest.fixture(autouse=True)
def no_figures():
    """Each test starts without pyplot figures (plots with `ax=None` use the current one)."""
    plt.close("all")
    yield
    plt.close("all")


def test_without_ax_plots_draw_on_the_current_pyplot_axes():
    ax = plot_loss_curves({"loss": [1.0, 0.5]})
    assert plt.get_fignums() == [ax.figure.number] and ax is plt.gca()
    again = plot_forecast(np.arange(4.0), {})  # seaborn's rule: the same current axes
    assert again is ax and len(ax.get_lines()) == 2
    plt.figure()
    assert plot_loss_curves({"loss": [1.0]}) is not ax  # a new current figure is used


def test_explicit_axes_and_new_axes_leave_pyplot_alone():
    ax = plot_loss_curves({"loss": [1.0, 0.5]}, ax=new_axes((3.0, 2.0)))
    assert plt.get_fignums() == []  # the CLI and experiments save such figures, then drop them
    assert tuple(ax.figure.get_size_inches()) == (3.0, 2.0)
    with pytest.raises(TypeError, match="`ax` must be a matplotlib Axes"):
        plot_loss_curves({"loss": [1.0]}, ax="left")


def test_a_notebook_cell_shows_the_plot(tmp_path, monkeypatch):
    """The issue's case: `bk.plot_loss_curves(h)` in a Jupyter cell displays a picture (no
    `%matplotlib` magic, no MPLBACKEND: the kernel's defaults, as a user has them)."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    import nbformat
    from nbclient import NotebookClient

    cell = "import bptt_keras as bk\nbk.plot_loss_curves({'loss': [1.0, 0.5, 0.3]})"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = notebook.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs


def test_loss_curves_accept_keras_history_and_existing_axes():
    class History:  # the attribute keras.callbacks.History exposes
        history = {"loss": [3.0, 2.0]}

    fig, ax = plt.subplots()
    assert plot_loss_curves(History(), ax=ax) is ax
    plt.close(fig)


def test_forecast_plot_draws_truth_predictions_and_split():
    truth = np.arange(10.0)
    ax = plot_forecast(truth, {"closed loop": (np.arange(7, 10), [7.5, 8.5, 9.5])}, split=7)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["truth", "closed loop", "held-out data starts"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [7.5, 8.5, 9.5])


def test_plots_reject_bad_input():
    with pytest.raises(TypeError, match="`history`"):
        plot_loss_curves([1, 2, 3])
    with pytest.raises(ValueError, match="not in the history"):
        plot_loss_curves({"loss": [1.0]}, keys=["val_loss"])
    with pytest.raises(ValueError, match="2 times but 3 values"):
        plot_forecast(np.arange(5.0), {"p": (np.arange(2), np.arange(3))})
    with pytest.raises(ValueError, match="same shape as `truth`"):
        plot_forecast(np.arange(5.0), {}, time=np.arange(4))


def test_gradient_norm_plot_is_log_scale_with_one_line_per_model():
    from bptt_keras import plot_gradient_norms

    ax = plot_gradient_norms({"a": np.array([1e-8, 1e-4, 1.0]), "b": np.ones(3)})
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [2, 1, 0])  # distance to T-1
    with pytest.raises(TypeError, match="`norms`"):
        plot_gradient_norms([1.0, 2.0])


def test_block_plan_plot_has_one_row_per_block():
    from bptt_keras import plot_block_plan

    ax = plot_block_plan(10, 4, 6)
    assert len(ax.get_yticks()) == 3  # plan_blocks(10, 4, 6) has 3 blocks
    assert "k1 = 4, k2 = 6" in ax.get_title()
