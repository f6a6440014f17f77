"""blocks.signal.noise: white noise at a random SNR on a share of the examples (the vibration
trainer's augmentation), and background noise mixed at a given SNR."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from blocks.signal.noise import add_noise_at_snr, mix_at_snr


def _signals(batch: int = 400, time: int = 512, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.1, 3.0, size=(batch, 1, 1))  # per-example power differs
    t = np.arange(time)[None, :, None]
    return (scale * np.sin(2 * np.pi * t * rng.uniform(0.01, 0.2, (batch, 1, channels))
                           )).astype(np.float32)


def _snr_db(signal: np.ndarray, noise: np.ndarray, axes=(1, 2)) -> np.ndarray:
    return 10 * np.log10((signal ** 2).mean(axis=axes) / (noise ** 2).mean(axis=axes))


def test_add_noise_at_snr_hits_the_share_and_the_snr_range():
    x = _signals()
    tf.random.set_seed(0)
    out = add_noise_at_snr(x, (5.0, 15.0), 0.6).numpy()
    noise = out - x
    noisy = np.abs(noise).max(axis=(1, 2)) > 0
    assert 0.5 < noisy.mean() < 0.7  # probability 0.6 of 400 examples
    snr = _snr_db(x[noisy], noise[noisy])
    # Per-example power: the SNR lies in the range whatever the example's scale (up to the
    # sampling error of 1024 noise values, about 0.3 dB).
    assert snr.min() > 4.0 and snr.max() < 16.0
    assert 9.0 < snr.mean() < 11.0 and snr.std() > 2.0  # uniform over [5, 15]: sd 2.9
    np.testing.assert_array_equal(out[~noisy], x[~noisy])


def test_add_noise_at_snr_matches_the_vibration_trainer_statistics():
    """The trainer's augment() maths (before it moved here), drawn independently: the noise
    power relative to the signal has the same distribution."""
    x = _signals(batch=300)
    tf.random.set_seed(1)
    ours = add_noise_at_snr(x, (0.0, 20.0), 1.0).numpy() - x
    batch = tf.shape(x)[0]
    power = tf.reduce_mean(tf.square(x), axis=[1, 2], keepdims=True)
    snr_db = tf.random.uniform([batch, 1, 1], 0.0, 20.0)
    noise_std = tf.sqrt(power / tf.pow(10.0, snr_db / 10.0))
    noisy = tf.random.uniform([batch, 1, 1]) < 1.0
    noise = tf.random.normal(tf.shape(x)) * noise_std
    theirs = tf.where(noisy, noise, tf.zeros_like(noise)).numpy()
    ours_snr, their_snr = np.sort(_snr_db(x, ours)), np.sort(_snr_db(x, theirs))
    assert abs(ours_snr.mean() - their_snr.mean()) < 1.0
    assert np.abs(ours_snr - their_snr).max() < 2.0  # quantiles of two samples of U(0, 20)


def test_add_noise_at_snr_seed_2d_and_no_op():
    x = _signals(batch=8)[:, :, 0]  # [batch, time]
    tf.random.set_seed(3)
    first = add_noise_at_snr(x, (10.0, 10.0), 1.0, seed=7).numpy()
    tf.random.set_seed(3)
    np.testing.assert_array_equal(add_noise_at_snr(x, (10.0, 10.0), 1.0, seed=7).numpy(),
                                  first)
    np.testing.assert_allclose(_snr_db(x, first - x, axes=1), 10.0, atol=1.0)
    np.testing.assert_array_equal(add_noise_at_snr(x, (5.0, 15.0), 0.0).numpy(), x)
    with pytest.raises(ValueError, match="snr_db_range"):
        add_noise_at_snr(x, (15.0, 5.0), 0.5)
    with pytest.raises(ValueError, match="probability"):
        add_noise_at_snr(x, (5.0, 15.0), 1.5)


def test_mix_at_snr_scales_the_noise_clip():
    rng = np.random.default_rng(0)
    speech = _signals(batch=3, channels=1)[:, :, 0]
    background = rng.normal(0.0, 5.0, size=speech.shape).astype(np.float32)
    mixed = mix_at_snr(speech, background, 6.0).numpy()
    np.testing.assert_allclose(_snr_db(speech, mixed - speech, axes=1), 6.0, atol=1e-3)
    # One SNR per example; the added noise is the clip itself, scaled.
    mixed = mix_at_snr(speech, background, tf.constant([0.0, 10.0, 20.0])).numpy()
    np.testing.assert_allclose(_snr_db(speech, mixed - speech, axes=1), [0, 10, 20], atol=1e-3)
    ratio = (mixed - speech) / background
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-3)
    # Silent noise adds nothing; a silent signal gets no noise.
    np.testing.assert_array_equal(mix_at_snr(speech, np.zeros_like(speech), 0.0).numpy(),
                                  speech)
    silent = np.zeros_like(speech)
    np.testing.assert_array_equal(mix_at_snr(silent, background, 0.0).numpy(), silent)
    with pytest.raises(ValueError, match="noise of the signal's shape"):
        mix_at_snr(speech, background[:, :10], 0.0)
