"""One-step and closed-loop multi-step prediction with a trained next-step model."""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from bptt_keras._validation import as_float_array, check_int
from bptt_keras.data import as_series, sliding_windows
from bptt_keras.models import with_explicit_state, zero_states

# model -> (explicit-state twin, its compiled call). The twin's structure is reused; its
# weights are refreshed from the model on every call, so later training is always seen.
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _dims(model: keras.Model) -> tuple[int, int]:
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model).__name__}")
    output = model.outputs[0] if isinstance(model.outputs, list) else model.outputs
    return int(model.inputs[0].shape[-1]), int(output.shape[-1])


def _check_features(array: np.ndarray, input_dim: int, name: str) -> None:
    if array.shape[-1] != input_dim:
        raise ValueError(
            f"`{name}` has {array.shape[-1]} feature(s) on its last axis but the model expects "
            f"input_dim={input_dim}. Received shape {array.shape}"
        )


def _twin(model: keras.Model):
    if model not in _TWINS:
        twin = with_explicit_state(model)
        _TWINS[model] = (twin, tf.function(lambda inputs: twin(inputs, training=False)))
    twin, call = _TWINS[model]
    twin.set_weights(model.get_weights())
    return twin, call


def predict_next(model: keras.Model, series, *, context: int, start: int) -> np.ndarray:
    """Rolling one-step-ahead predictions: step `t` is predicted from steps `t-context .. t-1`.

    Each prediction sees only true past values (teacher forcing), from a fresh zero state,
    exactly like the windows the model was trained on. All windows go through the model as
    one batch.

    Args:
        model: a next-step model, `(batch, time, f) -> (batch, time, f_out)`.
        series: `(time,)` or `(time, f)` values, scaled as the model was trained.
        context: steps of history each prediction sees.
        start: first step to predict; `context <= start < len(series)`.

    Returns:
        float32 array `(len(series) - start, f_out)`: row `i` predicts `series[start + i]`.

    Raises:
        ValueError: bad `context`/`start`, or a feature size that does not match the model.
    """
    input_dim, _ = _dims(model)
    array = as_series(series)
    _check_features(array, input_dim, "series")
    context = check_int(context, name="context")
    start = check_int(start, name="start", minimum=0)
    if not context <= start < array.shape[0]:
        raise ValueError(
            f"`start` must satisfy context <= start < len(series), i.e. {context} <= start < "
            f"{array.shape[0]}, so every prediction has `context` true past steps. "
            f"Received: start={start}"
        )
    windows = sliding_windows(array[start - context : -1], length=context)  # (n, context, f)
    outputs = model.predict(windows, batch_size=256, verbose=0)
    return np.asarray(outputs[:, -1, :], dtype=np.float32)


def forecast(model: keras.Model, context, *, steps: int) -> np.ndarray:
    """Closed-loop multi-step forecast: each prediction is fed back as the next input.

    The context is run through the model once; from then on each new step costs one
    recurrent step, because the recurrent state is carried explicitly (through an
    explicit-state copy of `model`, see `with_explicit_state`) instead of re-running the whole
    history every step. The forecast starts from a zero state, not from the state a stateful
    model happens to hold.

        context  c0 c1 ... c(T-1) | forecast  p0 p1 p2 ...
        input    c0 c1 ... c(T-1) -> p0 -> p1 -> ...      (p_k = model's output at the
                                                           step whose input is p_(k-1))

    Args:
        model: a next-step model whose output has as many features as its input.
        context: `(time, f)`, `(time,)` or `(n, time, f)` history, scaled like training data.
        steps: number of future steps to predict.

    Returns:
        float32 array `(steps, f)` for 1-D/2-D context, `(n, steps, f)` for 3-D.

    Raises:
        ValueError: feature size mismatch, output size != input size, bad `steps`, NaN/inf.

    Example:

    >>> future = forecast(model, series[-30:], steps=10)  # (10, 1)
    """
    input_dim, output_dim = _dims(model)
    steps = check_int(steps, name="steps")
    array = as_float_array(context, name="context", ranks=(1, 2, 3))
    batched = array.ndim == 3
    if array.ndim == 1:
        array = array[None, :, None]
    elif array.ndim == 2:
        array = array[None]
    _check_features(array, input_dim, "context")
    if output_dim != input_dim:
        raise ValueError(
            f"Closed-loop forecasting feeds each output back as the next input, so the model's "
            f"output_dim must equal its input_dim. Received: input_dim={input_dim}, "
            f"output_dim={output_dim}"
        )
    twin, call = _twin(model)
    outputs = call([array, *zero_states(twin, array.shape[0])])
    last, states = outputs[0][:, -1:, :], list(outputs[1:])
    predictions = [last]
    for _ in range(steps - 1):
        outputs = call([last, *states])
        last, states = outputs[0], list(outputs[1:])
        predictions.append(last)
    result = np.concatenate([np.asarray(p) for p in predictions], axis=1)  # (n, steps, f)
    return result if batched else result[0]


def stream_predict(model: keras.Model, series) -> np.ndarray:
    """Streams a series through a batch-1 stateful copy of `model`, one step per call.

    Prediction `i` is made after seeing steps `0..i` only, with the state carried from call
    to call, as a deployed model that receives one value at a time would.

    Args:
        model: a next-step model (stateful or not; its weights are copied).
        series: `(time,)` or `(time, f)` values, scaled like the training data.

    Returns:
        float32 array `(time, f_out)`: row `i` predicts step `i + 1`.
    """
    from bptt_keras.models import reset_states, to_stateful

    input_dim, _ = _dims(model)
    array = as_series(series)
    _check_features(array, input_dim, "series")
    streamer = to_stateful(model, batch_size=1)
    reset_states(streamer)
    step = tf.function(lambda x_t: streamer(x_t, training=False))
    out = [step(tf.constant(array[None, t : t + 1])).numpy()[0] for t in range(array.shape[0])]
    return np.concatenate(out, axis=0)


def errors(truth, prediction) -> tuple[float, float]:
    """Root-mean-square and mean absolute error of `prediction` against `truth` (any shapes
    with the same number of elements), computed in float64.

    Returns:
        `(rmse, mae)`.

    Example:

    >>> errors([1.0, 2.0], [1.0, 4.0])
    (1.4142135623730951, 1.0)
    """
    diff = np.asarray(prediction, np.float64).ravel() - np.asarray(truth, np.float64).ravel()
    return float(np.sqrt(np.mean(diff**2))), float(np.mean(np.abs(diff)))
