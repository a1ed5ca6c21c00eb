"""bptt_keras: backpropagation through time with Keras 3, done correctly and measured.

The public API:

- models: `build_model`, `reset_states`, `get_states`, `set_states`, `to_stateful`,
  `with_explicit_state`, `zero_states`, `run_with_state`, `recurrent_layers`
- data: `next_step_pairs`, `sliding_windows`, `split_by_time`, `stream_batches`,
  `fit_scaler`, `Scaler`, `load_series`, `load_csv_series`, `available_series`
- text (character level): `load_shakespeare`, `load_text`, `Vocabulary`, `split_text`,
  `token_rows`, `token_stream_batches`, `SHAKESPEARE_SHA256`; language models:
  `build_model(..., vocab_size=V, dropout=p)`, `generate`, `sample_logits`,
  `bits_per_token`, `perplexity`, `LMConfig`, `train_lm`, `LMResult`
- encoder-decoders (`bptt_keras.seq2seq`): `build_seq2seq`, `PairCodec`, `load_pairs`,
  `fit_seq2seq`, `greedy_decode`, `beam_search`, `exact_match`; `source_gradient_norms`
- prediction (`bptt_keras.prediction`): `predict_next`, `forecast`, `stream_predict`
- BPTT engine: `fit`, `evaluate`, `bptt_gradients`, `plan_blocks`, `covered_fraction`; `BPTTModel`
  (truncated BPTT inside Keras' own `model.fit`)
- diagnostics: `gradient_norms_through_time`, `recurrent_spectrum`, `RecurrentSpectrum`,
  `scale_recurrent`, `numpy_bptt` (the NumPy oracle); `GradientNormsThroughTime` (a
  TensorBoard callback)
- plotting: `plot_loss_curves`, `plot_forecast`, `plot_gradient_norms`, `plot_block_plan`,
  `new_axes`
- runs: `TrainConfig`, `train`, `load_run`, `LoadedRun`
- tasks with known answers: `bptt_keras.tasks` (noisy sines, delayed echo, adding problem,
  copy memory, number addition as strings, dates -> ISO)
- experiments: `bptt_keras.experiments.run_experiment(name, quick=..., out=...)`, the code
  behind `bptt-keras reproduce NAME`
"""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that `import bptt_keras` and the
# `bptt-keras --help` / `--version` / `reproduce --list` commands do not pay TensorFlow's
# import (seconds); `bk.fit` or `from bptt_keras import fit` imports what it needs.
# The package changes no environment variable: TensorFlow's C++ start-up lines (printed by
# TensorFlow's own import) are hidden by the command-line tool only; README, "Quiet start-up".

import importlib
import sys

from bptt_keras import _backend

# Checked before Keras is imported, which would otherwise fail first on the other backend's
# own imports (jax, torch, scipy), and again for a Keras that was imported earlier.
if _backend.configured() != "tensorflow":
    raise _backend.error(_backend.configured())
if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "tensorflow":
    raise _backend.error(sys.modules["keras"].backend.backend())

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CheckpointError",), "bptt_keras.checkpoint"),
    **dict.fromkeys(("LMConfig", "TrainConfig"), "bptt_keras.config"),
    **dict.fromkeys(
        (
            "Scaler",
            "fit_scaler",
            "next_step_pairs",
            "sliding_windows",
            "split_by_time",
            "stream_batches",
        ),
        "bptt_keras.data",
    ),
    **dict.fromkeys(("available_series", "load_csv_series", "load_series"), "bptt_keras.datasets"),
    **dict.fromkeys(
        (
            "RecurrentSpectrum",
            "gradient_norms_through_time",
            "recurrent_spectrum",
            "scale_recurrent",
            "source_gradient_norms",
        ),
        "bptt_keras.diagnostics",
    ),
    **dict.fromkeys(("bptt_gradients", "evaluate", "fit"), "bptt_keras.engine"),
    **dict.fromkeys(("forecast", "predict_next", "stream_predict"), "bptt_keras.prediction"),
    **dict.fromkeys(
        (
            "build_model",
            "get_states",
            "recurrent_layers",
            "reset_states",
            "run_with_state",
            "set_states",
            "to_stateful",
            "with_explicit_state",
            "zero_states",
        ),
        "bptt_keras.models",
    ),
    **dict.fromkeys(("numpy_bptt",), "bptt_keras.oracle"),
    **dict.fromkeys(
        (
            "new_axes",
            "plot_block_plan",
            "plot_forecast",
            "plot_gradient_norms",
            "plot_loss_curves",
        ),
        "bptt_keras.plotting",
    ),
    **dict.fromkeys(("train",), "bptt_keras.run"),
    **dict.fromkeys(("GradientNormsThroughTime",), "bptt_keras.tensorboard"),
    **dict.fromkeys(("BPTTModel",), "bptt_keras.keras_model"),
    **dict.fromkeys(("LoadedRun", "load_run"), "bptt_keras.rundir"),
    **dict.fromkeys(
        (
            "SHAKESPEARE_SHA256",
            "Vocabulary",
            "load_shakespeare",
            "load_text",
            "split_text",
            "token_rows",
            "token_stream_batches",
        ),
        "bptt_keras.text",
    ),
    **dict.fromkeys(("covered_fraction", "plan_blocks"), "bptt_keras.truncation"),
    **dict.fromkeys(("generate", "sample_logits"), "bptt_keras.generation"),
    **dict.fromkeys(("bits_per_token", "perplexity"), "bptt_keras.lm_scores"),
    **dict.fromkeys(("LMResult", "train_lm"), "bptt_keras.language_model"),
    **dict.fromkeys(("check_pairs", "load_pairs"), "bptt_keras.pairs"),
    **dict.fromkeys(
        (
            "PairCodec",
            "beam_search",
            "build_seq2seq",
            "exact_match",
            "fit_seq2seq",
            "greedy_decode",
        ),
        "bptt_keras.seq2seq",
    ),
}
_SUBMODULES = ("tasks", "experiments")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"bptt_keras.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bptt_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    keras = sys.modules.get("keras")  # a backend set between `import bptt_keras` and now
    if keras is not None and keras.backend.backend() != "tensorflow":
        raise _backend.error(keras.backend.backend())
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


__all__ = sorted([*_EXPORTS, "tasks"])

# Last, once the names above exist: a saved BPTTModel loads with plain `keras.models.load_model`.
from bptt_keras import _registration  # noqa: E402

_registration.install()
