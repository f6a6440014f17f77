"""Models of the sensor-vibration app, built from config with Keras 3 (no training here)."""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
from keras import layers

from apps.sensor_vibration.config import VibrationConfig
from apps.sensor_vibration.preprocessing import SIGNAL_XF

MODEL_KINDS = ("wdcnn", "lstm", "gru", "spectral")
# Floor of the power spectrum before the log (z-scored signal, so power is O(1)).
_LOG_FLOOR = 1e-6
# L2 weight of the spectral model's softmax layer: keeps the linear read-out of the
# standardized log spectrum from leaning on a few bins, which is what carries it across
# motor loads.
_SPECTRAL_L2 = 1e-2


def _conv_block(x, filters: int, kernel: int, stride: int = 1, name: str = ""):
    x = layers.Conv1D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.MaxPooling1D(2, name=f"{name}_pool")(x)


def _remove_window_mean(x):
    """Subtracts each window's mean per channel: an accelerometer's DC offset drifts between
    recordings and carries no fault information, but a model would happily learn it."""
    mean = layers.GlobalAveragePooling1D(keepdims=True, name="window_mean")(x)
    return layers.Subtract(name="remove_dc")([x, mean])


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


def _log_power_spectrum(x, frame: int, hop: int, n_channels: int):
    """Welch estimate of each window's log power spectrum: fixed (non-trainable) DFT
    convolutions over Hann-windowed frames, power averaged over the frames, then the log."""
    real_kernel, imag_kernel = _dft_kernels(frame, n_channels)
    parts = []
    for name, kernel in (("dft_real", real_kernel), ("dft_imag", imag_kernel)):
        conv = layers.Conv1D(kernel.shape[-1], frame, strides=hop, use_bias=False,
                             trainable=False, name=name)
        y = conv(x)
        conv.set_weights([kernel])
        parts.append(layers.Multiply(name=f"{name}_squared")([y, y]))
    power = layers.Add(name="power")(parts)
    psd = layers.GlobalAveragePooling1D(name="welch_average")(power)
    return keras.ops.log(psd + _LOG_FLOOR)


def build_model(config: VibrationConfig) -> keras.Model:
    """Returns an uncompiled model: z-scored window [window, channels] -> class probabilities.

    Every kind first removes each window's mean (sensor DC offset).
    wdcnn: a 1D CNN whose wide, strided first kernel acts as a learned filter bank and
    suppresses high-frequency noise (Zhang et al., Sensors 2017), then small kernels.
    lstm / gru: the same wide first convolution shortens the sequence, then a recurrent layer
    reads the feature sequence.
    spectral: the window's log power spectrum (Welch: Hann frames of ``first_kernel`` samples,
    hop ``first_stride``, as fixed DFT convolutions), standardized, read out by a softmax
    layer (after a hidden layer when ``dense_units`` > 0). It carries over to unseen motor
    loads far better than the convolutional and recurrent models, which pick up
    load-specific waveform details.
    ``dense_units`` = 0 leaves out the hidden dense layer (and its dropout).
    """
    m, d = config.model, config.data
    if m.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind: expected one of {MODEL_KINDS}, got {m.kind!r}")
    inputs = keras.Input((d.window, len(d.channels)), name=SIGNAL_XF)
    x = _remove_window_mean(inputs)
    regularizer = None
    if m.kind == "spectral":
        if not 2 <= m.first_kernel <= d.window:
            raise ValueError(f"model.first_kernel: the spectral model's frame must be 2 .. "
                             f"data.window ({d.window}) samples, got {m.first_kernel}")
        x = _log_power_spectrum(x, m.first_kernel, m.first_stride, len(d.channels))
        # Per-bin standardization; a short memory so that the inference statistics follow
        # the (shifting) log spectra of the first training steps closely.
        x = layers.BatchNormalization(momentum=0.9, center=False, scale=False,
                                      name="standardize")(x)
        regularizer = keras.regularizers.L2(_SPECTRAL_L2)
    else:
        x = _conv_block(x, m.filters[0], m.first_kernel, m.first_stride, name="wide")
        if m.kind == "wdcnn":
            for i, filters in enumerate(m.filters[1:], start=1):
                x = _conv_block(x, filters, 3, name=f"block{i}")
            x = layers.Flatten(name="flatten")(x)
        else:
            if len(m.filters) > 1:
                x = _conv_block(x, m.filters[1], 3, name="block1")
            recurrent = layers.LSTM if m.kind == "lstm" else layers.GRU
            x = recurrent(m.rnn_units, name=m.kind)(x)
    if m.dense_units > 0:
        x = layers.Dense(m.dense_units, activation="relu", name="dense")(x)
        x = layers.Dropout(m.dropout, name="dropout")(x)
    outputs = layers.Dense(len(d.classes), activation="softmax", kernel_regularizer=regularizer,
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"sensor_vibration_{m.kind}")
