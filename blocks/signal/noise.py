"""Noise augmentation of time signals (plain TensorFlow functions, for tf.data maps).

``add_noise_at_snr`` adds white noise at a random SNR to a random share of the examples (the
vibration trainer's augmentation); ``mix_at_snr`` mixes a recorded background-noise clip into
a signal at a given SNR (audio keyword spotting). Powers are per example: the mean square
over every axis but the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf


def _example_power(x: tf.Tensor) -> tf.Tensor:
    """Mean square per example, shaped to broadcast against ``x`` ([batch, 1, ...])."""
    return tf.reduce_mean(tf.square(x), axis=list(range(1, x.shape.rank)), keepdims=True)


def _batch_shape(x: tf.Tensor) -> tf.Tensor:
    """[batch, 1, ...]: one value per example, broadcasting against ``x``."""
    return tf.concat([tf.shape(x)[:1], tf.ones([x.shape.rank - 1], tf.int32)], axis=0)


def add_noise_at_snr(signal: tf.Tensor, snr_db_range: Sequence[float], probability: float,
                     seed: int | None = None) -> tf.Tensor:
    """``signal`` [batch, time, ...] with white Gaussian noise added to a random share of the
    examples.

    Each example is noisy with probability ``probability``; its noise has the power of the
    example divided by 10^(snr / 10), snr drawn uniformly in ``snr_db_range`` (low, high) dB.
    ``probability`` <= 0 returns ``signal`` unchanged. ``seed`` is the op seed of the random
    draws (None: unseeded); the draws are the vibration trainer's, in the same order.
    """
    low, high = (float(v) for v in snr_db_range)
    if low > high:
        raise ValueError(f"snr_db_range: expected (low, high) with low <= high, got "
                         f"{tuple(snr_db_range)}")
    if probability > 1:
        raise ValueError(f"probability: expected a share in [0, 1], got {probability}")
    signal = tf.convert_to_tensor(signal)
    if probability <= 0:
        return signal
    if signal.shape.rank is None or signal.shape.rank < 2:
        raise ValueError(f"add_noise_at_snr: expected a batch [batch, time, ...], got shape "
                         f"{signal.shape}")
    seeds = (None, None, None) if seed is None else (seed, seed + 1, seed + 2)
    shape = _batch_shape(signal)
    power = _example_power(signal)
    snr_db = tf.random.uniform(shape, low, high, dtype=signal.dtype, seed=seeds[0])
    noise_std = tf.sqrt(power / tf.pow(tf.constant(10.0, signal.dtype), snr_db / 10.0))
    noisy = tf.random.uniform(shape, seed=seeds[1]) < probability
    noise = tf.random.normal(tf.shape(signal), dtype=signal.dtype, seed=seeds[2]) * noise_std
    return signal + tf.where(noisy, noise, tf.zeros_like(noise))


def mix_at_snr(signal: tf.Tensor, noise: tf.Tensor, snr_db: float | tf.Tensor) -> tf.Tensor:
    """``signal`` + ``noise`` scaled so that the signal-to-noise power ratio is ``snr_db``.

    ``signal`` and ``noise`` have the same shape, [batch, time, ...] (bring noise clips to the
    signal's length with ``framing.pad_or_crop``); ``snr_db`` is one value or one per example
    [batch]. A silent noise clip adds nothing; a silent signal gets no noise (its SNR is not
    defined).
    """
    signal = tf.convert_to_tensor(signal)
    noise = tf.convert_to_tensor(noise, signal.dtype)
    if signal.shape.rank is None or signal.shape.rank < 2:
        raise ValueError(f"mix_at_snr: expected a batch [batch, time, ...], got shape "
                         f"{signal.shape}")
    if signal.shape.is_fully_defined() and noise.shape.is_fully_defined() and \
            signal.shape != noise.shape:
        raise ValueError(f"mix_at_snr: expected noise of the signal's shape {signal.shape}, "
                         f"got {noise.shape}")
    snr_db = tf.convert_to_tensor(snr_db, signal.dtype)
    if snr_db.shape.rank:  # one SNR per example
        snr_db = tf.reshape(snr_db, _batch_shape(signal))
    target = _example_power(signal) / tf.pow(tf.constant(10.0, signal.dtype), snr_db / 10.0)
    scale = tf.sqrt(tf.math.divide_no_nan(target, _example_power(noise)))
    return signal + scale * noise
