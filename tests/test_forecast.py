"""One-step and closed-loop forecasting against re-running the whole history."""

import numpy as np
import pytest

from bptt_keras import build_model, forecast, predict_next
from bptt_keras.prediction import errors


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_closed_loop_equals_rerunning_the_growing_history(cell):
    model = build_model(cell, 6, num_layers=2, seed=0)
    context = np.sin(np.linspace(0, 3, 15)).astype("float32")[:, None]
    predicted = forecast(model, context, steps=7)
    assert predicted.shape == (7, 1)
    history = context[None]
    for step in range(7):  # the slow reference: feed everything again every step
        nxt = model(history).numpy()[:, -1:, :]
        np.testing.assert_allclose(predicted[step], nxt[0, 0], atol=2e-5)
        history = np.concatenate([history, nxt], axis=1)


def test_forecast_batched_and_one_dimensional_context():
    model = build_model("gru", 4, input_dim=2, output_dim=2, seed=0)
    context = np.random.default_rng(0).normal(size=(3, 10, 2)).astype("float32")
    batched = forecast(model, context, steps=4)
    assert batched.shape == (3, 4, 2)
    np.testing.assert_allclose(forecast(model, context[1], steps=4), batched[1], atol=1e-6)
    assert forecast(build_model(seed=0), np.arange(5.0), steps=3).shape == (3, 1)


def test_forecast_sees_weights_changed_after_a_previous_call():
    model = build_model("simple_rnn", 3, seed=0)
    context = np.ones((5, 1), "float32")
    before = forecast(model, context, steps=2)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    after = forecast(model, context, steps=2)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after[0, 0], model(context[None]).numpy()[0, -1, 0], atol=1e-6)


def test_predict_next_uses_only_the_past_context():
    model = build_model("lstm", 4, seed=0)
    series = np.sin(np.arange(30) / 3.0).astype("float32")
    preds = predict_next(model, series, context=8, start=20)
    assert preds.shape == (10, 1)
    for i, t in enumerate(range(20, 30)):
        window = series[t - 8 : t][None, :, None]
        np.testing.assert_allclose(preds[i], model(window).numpy()[0, -1], atol=1e-5)


def test_forecast_and_predict_next_reject_bad_input():
    model = build_model("simple_rnn", 3, input_dim=2, output_dim=2)
    with pytest.raises(ValueError, match=r"1 feature.*input_dim=2"):
        forecast(model, np.zeros((5, 1)), steps=2)
    with pytest.raises(ValueError, match="`steps`"):
        forecast(model, np.zeros((5, 2)), steps=0)
    with pytest.raises(ValueError, match="NaN"):
        forecast(model, np.full((5, 2), np.nan), steps=2)
    with pytest.raises(ValueError, match="output_dim must equal its input_dim"):
        forecast(build_model(input_dim=2, output_dim=1), np.zeros((5, 2)), steps=2)
    with pytest.raises(ValueError, match=r"context <= start"):
        predict_next(build_model(), np.zeros(10), context=8, start=3)
    with pytest.raises(TypeError, match="keras.Model"):
        forecast("model", np.zeros(5), steps=1)


def test_stream_predict_equals_one_call_over_the_whole_series():
    from bptt_keras import stream_predict

    model = build_model("lstm", 5, seed=0)
    series = np.sin(np.arange(25) / 3.0).astype("float32")
    streamed = stream_predict(model, series)
    np.testing.assert_allclose(streamed, model(series[None, :, None]).numpy()[0], atol=1e-5)


def test_errors_are_rmse_and_mae_in_float64():
    truth = np.array([[1.0], [2.0], [3.0]], np.float32)
    prediction = np.array([1.0, 4.0, 2.0])  # errors 0, 2, -1
    rmse, mae = errors(truth, prediction)
    assert rmse == pytest.approx(np.sqrt(5 / 3)) and mae == pytest.approx(1.0)
