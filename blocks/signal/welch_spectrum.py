"""Welch log power spectrum of multichannel windows, as fixed Keras layers.

The spectrum is computed by non-trainable DFT convolutions (Hann-windowed frames), so the
front end is ordinary Conv1D / Multiply / Add / pooling layers: it exports to SavedModel and
converts to TFLite (int8 included) like any CNN. Layer names are part of the contract:
saved models and tests read "welch_average".
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
from keras import layers

# Floor of the power spectrum before the log (z-scored signal, so power is O(1)).
LOG_FLOOR = 1e-6


def remove_window_mean(x: keras.KerasTensor, name_prefix: str = "") -> keras.KerasTensor:
    """Subtracts each window's mean per channel ([batch, time, channels]): an accelerometer's
    DC offset drifts between recordings and carries no fault information, but a model would
    happily learn it. Layers "window_mean" and "remove_dc" (after ``name_prefix``)."""
    mean = layers.GlobalAveragePooling1D(keepdims=True, name=f"{name_prefix}window_mean")(x)
    return layers.Subtract(name=f"{name_prefix}remove_dc")([x, mean])


def _dft_kernels(frame: int, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed DFT (bins 1 .. frame/2) as Conv1D kernels [frame, channels,
    channels * bins], one block of bins per channel: (real part, imaginary part)."""
    t = np.arange(frame)[:, None]
    k = np.arange(1, frame // 2 + 1)[None, :]
    window = np.hanning(frame)[:, None] / np.sqrt(frame)
    bins = frame // 2
    kernels = []
    for basis in (np.cos, np.sin):
        block = basis(2 * np.pi * t * k / frame) * window
        kernel = np.zeros((frame, n_channels, n_channels * bins), np.float32)
        for c in range(n_channels):
            kernel[:, c, c * bins:(c + 1) * bins] = block
        kernels.append(kernel)
    return kernels[0], kernels[1]


def welch_log_power(x: keras.KerasTensor, frame: int, hop: int, n_channels: int,
                    name_prefix: str = "") -> keras.KerasTensor:
    """Welch estimate of each window's log power spectrum: [batch, time, channels] ->
    [batch, channels * frame // 2] (bins 1 .. frame/2 of channel 0, then channel 1, ...).

    Fixed (non-trainable) DFT convolutions over symmetric-Hann-windowed frames of ``frame``
    samples every ``hop`` samples, |DFT|^2 / frame, averaged over the frames (layer
    "welch_average"), then log(power + LOG_FLOOR). Layer names start with ``name_prefix``.
    """
    real_kernel, imag_kernel = _dft_kernels(frame, n_channels)
    parts = []
    for name, kernel in (("dft_real", real_kernel), ("dft_imag", imag_kernel)):
        conv = layers.Conv1D(kernel.shape[-1], frame, strides=hop, use_bias=False,
                             trainable=False, name=f"{name_prefix}{name}")
        y = conv(x)
        conv.set_weights([kernel])
        parts.append(layers.Multiply(name=f"{name_prefix}{name}_squared")([y, y]))
    power = layers.Add(name=f"{name_prefix}power")(parts)
    psd = layers.GlobalAveragePooling1D(name=f"{name_prefix}welch_average")(power)
    return keras.ops.log(psd + LOG_FLOOR)
