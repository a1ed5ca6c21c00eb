"""The main job as a function: determinism, no leakage, sane results."""

import dataclasses

import numpy as np
import pytest

from bptt_keras import TrainConfig, train
from bptt_keras.run import prepare_data

SMALL = TrainConfig(epochs=4, units=8)


def test_same_seed_same_loss_sequence_and_forecast():
    a, b = train(SMALL, verbose=0), train(SMALL, verbose=0)
    assert a.history == b.history
    np.testing.assert_array_equal(a.predictions["closed loop"][1], b.predictions["closed loop"][1])
    c = train(dataclasses.replace(SMALL, seed=1), verbose=0)
    assert c.history["loss"] != a.history["loss"]


def test_prepared_data_has_no_leakage_and_right_shapes():
    config = TrainConfig(window=10, val_fraction=0.2, test_fraction=0.1)
    data = prepare_data(config)
    assert data.n_train + data.n_val + data.n_test == 309
    x, y = data.train
    assert x.shape[1:] == (10, 1) and x.shape == y.shape
    # The scaler saw only the training segment: it has mean 0 there, not on the whole series.
    train_scaled = data.scaled[: data.n_train]
    assert abs(float(train_scaled.mean())) < 1e-5
    assert abs(float(data.scaled.mean())) > 1e-3
    # Training windows end before the validation segment begins.
    assert x.shape[0] == data.n_train - 10


def test_training_improves_on_the_initial_loss_and_beats_persistence_one_step():
    result = train(dataclasses.replace(SMALL, epochs=40, units=16), verbose=0)
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    m = result.metrics
    assert m["one_step_rmse"] < m["persistence_rmse"]


def test_bad_config_is_rejected_before_training():
    with pytest.raises(ValueError, match="`epochs`"):
        train(dataclasses.replace(SMALL, epochs=0))
