"""blocks.signal.welch_spectrum: the Welch log power spectrum against numpy, its layer names
(with a prefix) and the per-window mean removal."""

from __future__ import annotations

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras

from blocks.signal.welch_spectrum import LOG_FLOOR, remove_window_mean, welch_log_power

WINDOW, FRAME, HOP = 256, 32, 16


def test_welch_log_power_matches_numpy():
    inputs = keras.Input((WINDOW, 2))
    outputs = welch_log_power(inputs, FRAME, HOP, 2, name_prefix="front_")
    model = keras.Model(inputs, outputs)
    names = {layer.name for layer in model.layers}
    assert {"front_dft_real", "front_dft_imag", "front_dft_real_squared",
            "front_dft_imag_squared", "front_power", "front_welch_average"} <= names
    assert not model.trainable_weights  # fixed DFT kernels
    t = np.arange(WINDOW)
    x = np.stack([np.sin(2 * np.pi * 4 * t / FRAME), 0.5 * np.cos(2 * np.pi * 9 * t / FRAME)],
                 axis=-1)[None].astype(np.float32)
    spectrum = model(x).numpy().reshape(2, FRAME // 2)  # [channel, bins 1 .. FRAME / 2]
    assert spectrum[0].argmax() + 1 == 4 and spectrum[1].argmax() + 1 == 9
    for c in range(2):
        frames = np.stack([x[0, s:s + FRAME, c] for s in range(0, WINDOW - FRAME + 1, HOP)])
        power = (np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1)) ** 2 / FRAME).mean(0)
        np.testing.assert_allclose(spectrum[c], np.log(power[1:] + LOG_FLOOR), atol=2e-3)


def test_default_layer_names_and_mean_removal():
    inputs = keras.Input((WINDOW, 3))
    centred = remove_window_mean(inputs)
    model = keras.Model(inputs, [centred, welch_log_power(centred, FRAME, HOP, 3)])
    for name in ("window_mean", "remove_dc", "dft_real", "dft_imag", "power", "welch_average"):
        model.get_layer(name)
    x = np.random.default_rng(0).normal(size=(2, WINDOW, 3)).astype(np.float32) + [1, -2, 5]
    out, spectrum = (y.numpy() for y in model(x))
    np.testing.assert_allclose(out, x - x.mean(axis=1, keepdims=True), atol=1e-5)
    assert spectrum.shape == (2, 3 * FRAME // 2)
