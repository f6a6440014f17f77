"""blocks.signal.log_mel: LogMelSpectrogram against a numpy STFT + the tf.signal mel matrix
on a pure tone, its MFCCs against scipy's DCT, saving and loading, and its TFLite conversion
(builtin ops only; full-integer int8)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from blocks.signal.log_mel import LogMelSpectrogram

RATE = 8000
SAMPLES = 2000  # 0.25 s
SETTINGS = dict(sample_rate=RATE, frame_length=200, frame_step=80, fft_length=256,
                num_mel_bins=24, lower_hz=60.0, upper_hz=3800.0)


def _tone(hz: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(SAMPLES) / RATE)).astype(np.float32)


def _reference(x: np.ndarray, log_floor: float = 1e-6) -> np.ndarray:
    """numpy: periodic-Hann frames (no end padding), |rfft|^2, tf.signal's mel matrix, log."""
    n, step, fft = SETTINGS["frame_length"], SETTINGS["frame_step"], SETTINGS["fft_length"]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    starts = range(0, x.shape[-1] - n + 1, step)
    frames = np.stack([x[..., s:s + n] for s in starts], axis=-2).astype(np.float64)
    power = np.abs(np.fft.rfft(frames * window, n=fft, axis=-1)) ** 2
    mel = tf.signal.linear_to_mel_weight_matrix(
        SETTINGS["num_mel_bins"], fft // 2 + 1, RATE, SETTINGS["lower_hz"],
        SETTINGS["upper_hz"], dtype=tf.float64).numpy()
    return np.log(power @ mel + log_floor)


def test_pure_tone_matches_numpy():
    layer = LogMelSpectrogram(**SETTINGS)
    x = np.stack([_tone(1000.0), _tone(440.0, 0.1) + 0.01 * _tone(2500.0)])
    out = layer(x).numpy()
    frames = 1 + (SAMPLES - SETTINGS["frame_length"]) // SETTINGS["frame_step"]
    assert out.shape == (2, frames, SETTINGS["num_mel_bins"], 1) and out.dtype == np.float32
    assert layer.compute_output_shape((None, SAMPLES)) == (None, frames, 24, 1)
    expected = _reference(x)
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-3)
    # The peak mel bin is the one whose centre is nearest the tone (HTK mel scale).
    edges = np.linspace(*(2595 * np.log10(1 + np.array([60.0, 3800.0]) / 700)), 24 + 2)
    centres = 700 * (10 ** (edges[1:-1] / 2595) - 1)
    for i, hz in enumerate((1000.0, 440.0)):
        peak = np.bincount(out[i, :, :, 0].argmax(axis=-1)).argmax()
        assert peak == np.abs(centres - hz).argmin(), (hz, peak)
        assert peak == expected[i].mean(axis=0).argmax()
    assert not layer.trainable_weights and not layer.weights


def test_mfcc_is_the_dct_of_the_log_mel():
    layer = LogMelSpectrogram(**SETTINGS, num_mfcc=13, log_floor=1e-3)
    x = _tone(700.0)[None] + np.random.default_rng(0).normal(0, 0.01, (1, SAMPLES))
    out = layer(x.astype(np.float32)).numpy()
    assert out.shape[2:] == (13, 1)
    log_mel = _reference(x, log_floor=1e-3)
    expected = scipy.fft.dct(log_mel, type=2, axis=-1)[..., :13] / np.sqrt(2 * 24)
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-3)


def test_saved_model_round_trip(tmp_path):
    inputs = keras.Input((SAMPLES,), name="audio")
    x = LogMelSpectrogram(**SETTINGS, num_mfcc=10, name="log_mel")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    path = str(tmp_path / "audio.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("log_mel")
    assert isinstance(layer, LogMelSpectrogram) and layer.get_config() == \
        model.get_layer("log_mel").get_config()
    clip = _tone(300.0)[None]
    np.testing.assert_allclose(loaded(clip).numpy(), model(clip).numpy(), atol=1e-6)
    assert keras.saving.get_registered_name(LogMelSpectrogram) == \
        "suite_blocks>LogMelSpectrogram"


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="fft_length: expected >= frame_length"):
        LogMelSpectrogram(**{**SETTINGS, "fft_length": 128})
    with pytest.raises(ValueError, match="upper_hz"):
        LogMelSpectrogram(**{**SETTINGS, "upper_hz": 5000.0})
    with pytest.raises(ValueError, match="num_mfcc"):
        LogMelSpectrogram(**SETTINGS, num_mfcc=30)
    with pytest.raises(ValueError, match="shorter than one frame"):
        LogMelSpectrogram(**SETTINGS)(keras.Input((100,)))
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        LogMelSpectrogram(**SETTINGS)(keras.Input((SAMPLES, 1)))


def test_converts_to_builtin_tflite_ops_and_to_full_integer(tmp_path):
    """Float32 with builtin ops only, equal to Keras; int8 with integer-only kernels (no float
    islands). The int8 log-mel itself is coarse (the power spectrum's dynamic range exceeds 8
    bits), so only the conversion is checked here."""
    from serving.export import export_core_model

    inputs = keras.Input((SAMPLES,), name="audio")
    model = keras.Model(inputs, LogMelSpectrogram(**SETTINGS)(inputs))
    saved = export_core_model(model, str(tmp_path / "saved"))
    clips = np.stack([_tone(hz) for hz in (200.0, 800.0, 1500.0, 3000.0)])

    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= {"CONV_2D", "EXPAND_DIMS", "RESHAPE", "SPLIT", "MUL", "ADD",
                   "FULLY_CONNECTED", "LOG"}, ops
    run = interpreter.get_signature_runner("serve")
    (out,) = run(audio=clips[:1]).values()
    np.testing.assert_allclose(out, model(clips[:1]).numpy(), atol=1e-3)

    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([clip[None]] for clip in clips)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    details = interpreter._get_ops_details()
    assert not {op["op_name"] for op in details} & {"QUANTIZE", "DEQUANTIZE"}
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
