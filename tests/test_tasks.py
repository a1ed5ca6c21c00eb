"""Synthetic tasks: shapes, determinism and the statistics they promise."""

import numpy as np
import pytest

from bptt_keras.tasks import noisy_sines


def test_noisy_sines_shape_seed_and_noise_level():
    a = noisy_sines(50, 80, noise=0.2, seed=3)
    assert a.shape == (50, 80, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, noisy_sines(50, 80, noise=0.2, seed=3))
    assert not np.array_equal(a, noisy_sines(50, 80, noise=0.2, seed=4))
    clean = noisy_sines(50, 80, noise=0.0, seed=3)
    residual = a - clean
    assert abs(residual.std() - 0.2) < 0.01  # the noise is what was asked for
    assert np.abs(clean).max() <= 1.0


def test_noisy_sines_periods_lie_in_range():
    clean = noisy_sines(20, 400, noise=0.0, min_period=10, max_period=20, seed=0)[..., 0]
    spectrum = np.abs(np.fft.rfft(clean, axis=1))
    freq = np.fft.rfftfreq(400)[spectrum.argmax(axis=1)]
    assert np.all((freq >= 1 / 20 - 1 / 400) & (freq <= 1 / 10 + 1 / 400))


def test_noisy_sines_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`noise`"):
        noisy_sines(2, 10, noise=-1.0)
    with pytest.raises(ValueError, match="`max_period`"):
        noisy_sines(2, 10, min_period=30, max_period=20)


def test_delayed_echo_alignment_and_reference_losses():
    from bptt_keras.tasks import delayed_echo, delayed_echo_losses

    x, y = delayed_echo(500, 20, lag=4, seed=0)
    assert x.shape == y.shape == (500, 20, 1)
    np.testing.assert_array_equal(y[:, 4:], x[:, :-4])
    np.testing.assert_array_equal(y[:, :4], 0)
    refs = delayed_echo_losses(20, 4)
    # Predicting 0 (forgetting) scores the stated loss, up to sampling noise.
    assert np.mean(y**2) == pytest.approx(refs["forgets"], rel=0.05)
    assert refs["remembers"] == 0.0
    with pytest.raises(ValueError, match="`lag`"):
        delayed_echo(2, 5, lag=5)
