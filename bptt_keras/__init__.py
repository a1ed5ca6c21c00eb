"""bptt_keras: backpropagation through time with Keras 3, done correctly and measured.

The public API:

- models: `build_model`, `reset_states`, `get_states`, `set_states`, `to_stateful`,
  `with_explicit_state`, `zero_states`, `run_with_state`, `recurrent_layers`
- data: `next_step_pairs`, `sliding_windows`, `split_by_time`, `stream_batches`,
  `fit_scaler`, `Scaler`, `load_series`, `load_csv_series`, `available_series`
- prediction: `predict_next`, `forecast`, `stream_predict`
- BPTT engine: `fit`, `evaluate`, `bptt_gradients`, `plan_blocks`, `covered_fraction`
- diagnostics: `gradient_norms_through_time`, `recurrent_spectrum`, `RecurrentSpectrum`,
  `scale_recurrent`, `numpy_bptt` (the NumPy oracle)
- plotting: `plot_loss_curves`, `plot_forecast`, `plot_gradient_norms`, `plot_block_plan`
- runs: `TrainConfig`, `train`
- tasks with known answers: `bptt_keras.tasks` (noisy sines, delayed echo, adding problem,
  copy memory)
- experiments: `bptt_keras.experiments.run_experiment(name, quick=..., out=...)`, the code
  behind `bptt-keras reproduce NAME`
"""

__version__ = "0.1.0"

import os

# TensorFlow's C++ INFO lines (CPU feature guard, oneDNN notices) drown the output of a
# command-line tool; keep warnings and errors. A value the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


from bptt_keras import _backend  # noqa: E402  (imports no Keras)

# Checked before `import keras`, which would otherwise fail first on the other backend's own
# imports (jax, torch, scipy), and once more after it, for a Keras imported earlier.
if _backend.configured() != "tensorflow":
    raise _backend.error(_backend.configured())

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise _backend.error(keras.backend.backend())

from bptt_keras import tasks
from bptt_keras.checkpoint import CheckpointError
from bptt_keras.config import TrainConfig
from bptt_keras.data import (
    Scaler,
    fit_scaler,
    next_step_pairs,
    sliding_windows,
    split_by_time,
    stream_batches,
)
from bptt_keras.datasets import available_series, load_csv_series, load_series
from bptt_keras.diagnostics import (
    RecurrentSpectrum,
    gradient_norms_through_time,
    recurrent_spectrum,
    scale_recurrent,
)
from bptt_keras.engine import bptt_gradients, evaluate, fit
from bptt_keras.forecast import forecast, predict_next, stream_predict
from bptt_keras.models import (
    build_model,
    get_states,
    recurrent_layers,
    reset_states,
    run_with_state,
    set_states,
    to_stateful,
    with_explicit_state,
    zero_states,
)
from bptt_keras.oracle import numpy_bptt
from bptt_keras.plotting import (
    plot_block_plan,
    plot_forecast,
    plot_gradient_norms,
    plot_loss_curves,
)
from bptt_keras.run import train
from bptt_keras.truncation import covered_fraction, plan_blocks

__all__ = [
    "covered_fraction",
    "plot_block_plan",
    "stream_predict",
    "tasks",
    "numpy_bptt",
    "CheckpointError",
    "RecurrentSpectrum",
    "bptt_gradients",
    "evaluate",
    "fit",
    "gradient_norms_through_time",
    "plan_blocks",
    "plot_gradient_norms",
    "recurrent_spectrum",
    "scale_recurrent",
    "Scaler",
    "TrainConfig",
    "available_series",
    "build_model",
    "fit_scaler",
    "forecast",
    "get_states",
    "load_csv_series",
    "load_series",
    "next_step_pairs",
    "plot_forecast",
    "plot_loss_curves",
    "predict_next",
    "recurrent_layers",
    "reset_states",
    "run_with_state",
    "set_states",
    "sliding_windows",
    "split_by_time",
    "stream_batches",
    "to_stateful",
    "train",
    "with_explicit_state",
    "zero_states",
]
