"""Plots return matplotlib objects with the data drawn, and never show."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from bptt_keras import plot_forecast, plot_loss_curves


def test_loss_curves_plot_train_and_validation():
    ax = plot_loss_curves({"loss": [1.0, 0.5, 0.25], "val_loss": [1.2, 0.7, 0.5]}, log_scale=True)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["train", "validation"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    assert ax.get_yscale() == "log"
    assert plt.get_fignums() == []  # library code does not open pyplot figures


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
