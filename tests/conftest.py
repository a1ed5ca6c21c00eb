"""Test set-up: headless plots, quiet TensorFlow, fast notebooks, seeded randomness."""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("BPTT_KERAS_FAST", "1")
# XLA's LLVM backend at its lowest optimisation level: the suite compiles a few hundred tiny
# training steps, each run only a few times, so compile time dominates; the HLO (fusion, the
# program) is the same, and the numbers compared within a test come from the same settings.
# Benchmarks, the notebooks' committed outputs and users run the default level.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bptt_keras as bk  # noqa: E402
from bptt_keras.tasks import noisy_sines  # noqa: E402

_TESTS_RUN = [0]
_COLLECT_EVERY = 25


@pytest.fixture(autouse=True)
def _seed_everything():
    keras.utils.set_random_seed(1234)
    yield
    # Without Python's garbage collection after every test: over TensorFlow's object graph a
    # full collection takes about a second, which was half of the suite's time (306 s of
    # 560 s of worker time in teardowns, `--durations=0`, 2026-12-06). A collection every
    # 25 tests keeps a worker's memory bounded.
    _TESTS_RUN[0] += 1
    keras.backend.clear_session(free_memory=_TESTS_RUN[0] % _COLLECT_EVERY == 0)
    if "matplotlib.pyplot" in sys.modules:  # plots with `ax=None` open pyplot figures
        sys.modules["matplotlib.pyplot"].close("all")


def small_data(batch=3, steps=12, seed=0, in_dim=2, out_dim=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, steps, in_dim)), rng.normal(size=(batch, steps, out_dim)))


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


TRUNCATIONS = [(None, None), (12, 12), (4, 4), (1, 1), (3, 5), (4, 9), (5, 12), (2, 7)]


def fit_run(cell, per_call, *, n=44, weighted=False, epochs=2, callbacks=None, **kwargs):
    """A small full-BPTT run; 44 sequences in batches of 8 leave a partial batch of 4."""
    x, y = bk.next_step_pairs(noisy_sines(n, 13, seed=3))
    weights = None
    if weighted:
        weights = np.random.default_rng(0).integers(0, 2, size=x.shape[:2]).astype("float32")
        weights[:, -1] = 1.0  # every row scores at least one step
    model = bk.build_model(cell, 5, seed=0)
    optimizer = keras.optimizers.Adam(0.02)
    history = bk.fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=8,
        seed=4,
        verbose=0,
        optimizer=optimizer,
        sample_weight=weights,
        steps_per_execution=per_call,
        callbacks=callbacks,
        **kwargs,
    )
    return model, optimizer, history


class SignalAt(keras.callbacks.Callback):
    """Sends this process a signal (SIGINT, as Ctrl-C does, by default) after a given batch of
    a given epoch."""

    def __init__(self, epoch, batch, signum=signal.SIGINT):
        super().__init__()
        self.at, self.epoch, self.signum = (epoch, batch), 0, signum

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), self.signum)


# Training-heavy tests run in the slow group (`pytest -m slow`, which CI runs after the README's
# command) instead of the README's command, which must stay under 5 minutes on 2 cores: each is
# a variant or a repeat of behaviour that a faster test in the README's command also covers
# (chosen from `pytest --durations=0`, 2026-12-06: 555 tests, 317 s before, about 260 s after).
SLOW_GROUP = {
    "tests/test_cli.py::test_train_on_a_user_csv",
    "tests/test_experiments.py::test_reproduce_writes_the_run_directory_and_refuses_an_existing_one",
    "tests/test_fast.py::test_fast_and_plain_training_give_the_same_weights",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[2-6-lstm-kwargs2]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[2-6-lstm-kwargs3]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[2-6-simple_rnn-kwargs0]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[2-6-simple_rnn-kwargs1]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[3-3-lstm-kwargs3]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[5-11-lstm-kwargs2]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[5-11-lstm-kwargs3]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[5-11-simple_rnn-kwargs0]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[5-11-simple_rnn-kwargs1]",
    "tests/test_fast.py::test_fast_gradients_equal_plain_gradients[None-None-lstm-kwargs3]",
    "tests/test_fast.py::test_fast_lstm_gradients_equal_plain_float64[13-13-2]",
    "tests/test_fast.py::test_fast_lstm_gradients_equal_plain_float64[3-7-2]",
    "tests/test_fast.py::test_fast_lstm_gradients_equal_plain_float64[4-4-2]",
    "tests/test_fast.py::test_fast_lstm_gradients_equal_plain_float64[5-11-2]",
    "tests/test_fast.py::test_fast_lstm_gradients_equal_plain_float64[None-None-2]",
    "tests/test_fast.py::test_one_compiled_fit_step_with_recompute_equals_one_without[lstm]",
    "tests/test_fast.py::test_recompute_trains_like_full_bptt_and_rejects_truncation",
    "tests/test_fast.py::test_recompute_without_fast_path_uses_recompute_grad",
    "tests/test_faults.py::test_resume_in_process_continues_the_history_exactly",
    "tests/test_multi_step.py::test_several_batches_per_call_train_exactly_like_one_call_per_batch[gru-False]",
    "tests/test_multi_step.py::test_several_batches_per_call_train_exactly_like_one_call_per_batch[lstm-True]",
    "tests/test_run.py::test_same_seed_same_loss_sequence_and_forecast",
    "tests/test_rundir.py::test_a_replay_of_the_same_config_gives_the_same_history",
    "tests/test_rundir.py::test_train_config_replays_a_run_and_given_options_override_it",
    "tests/test_tbptt_calls.py::test_a_second_fit_reuses_the_compiled_step_and_a_fresh_default_optimizer",
    "tests/test_tbptt_calls.py::test_ctrl_c_between_calls_that_split_batches_checkpoints_a_whole_batch",
    "tests/test_tbptt_calls.py::test_stateful_stream_truncated_within_each_batch_in_calls_of_several",
    "tests/test_tbptt_calls.py::test_updates_in_calls_of_several_are_bit_for_bit_one_call_per_block[gru-2-None-False]",
    "tests/test_tbptt_calls.py::test_updates_in_calls_of_several_are_bit_for_bit_one_call_per_block[lstm-3-7-True]",
    # Issue 13 (datasets, masking), 2026-12-06: variants of tests kept in the README's command.
    "tests/test_keras_model.py::test_keras_fit_makes_the_updates_of_bptt_fit[gru-3-5]",
    "tests/test_masking.py::test_truncated_bptt_of_a_padded_batch_is_each_sequence_trained_alone[lstm-2-5]",
    "tests/test_masking.py::test_truncated_bptt_of_a_padded_batch_is_each_sequence_trained_alone[gru-2-5]",
    "tests/test_masking.py::test_truncated_bptt_of_a_padded_batch_is_each_sequence_trained_alone[lstm-3-3]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[masking-lstm-pre]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[masking-gru-pre]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[masking-simple_rnn-pre]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[tokens-lstm-post]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[tokens-gru-post]",
    "tests/test_masking.py::test_full_bptt_gradients_equal_keras_own_masked_layers[tokens-simple_rnn-post]",
    "tests/test_fit_dataset.py::test_ctrl_c_mid_epoch_then_resume_continues_exactly[3]",
    "tests/test_fit_dataset.py::test_a_dataset_trains_exactly_as_the_same_rows_as_arrays[4-4]",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_GROUP:
            item.add_marker(pytest.mark.slow)
