"""The microcontroller check: an int8 model runs in the TensorFlow Lite for Microcontrollers
interpreter and agrees with the TFLite interpreter; a model with an operator TFLM lacks is
refused, naming the operator."""

import suite  # noqa: F401  (sets the Keras policy before TensorFlow loads)

import keras
import numpy as np
import tensorflow as tf

from serving import mcu, tflite
from tests import harness


def _export(model: keras.Model, shape: tuple[int, ...], folder: str) -> str:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", model.call,
                         input_signature=[tf.TensorSpec([None, *shape], tf.float32)])
    archive.write_out(folder, verbose=False)
    return folder


def test_int8_model_runs_in_tflm_and_agrees_with_tflite(tmp_path):
    model, x, _ = harness.trained_window_cnn(600, 600)
    saved = _export(model, (64, 1), str(tmp_path / "saved"))
    x = x[-120:]
    int8 = tflite.convert(saved, str(tmp_path / "tflite"), x[:80], variants=["int8"])["int8"]
    expected = tflite.run_tflite(int8, x)

    result = mcu.check(int8, x, expected)
    assert result["runs"] is True, result
    assert result["n_examples"] == 120
    assert result["agreement"] >= 0.99
    # Same int8 kernels and tensors: outputs within a quantization step or two.
    assert result["max_abs_diff"] <= 2 / 256 + 1e-6
    # Measured arena: activations of a few hundred bytes plus bookkeeping, far below the
    # 64 MiB offered.
    assert 256 < result["arena_bytes"] < 64 * 1024

    # A shuffled reference no longer agrees: the agreement is computed, not assumed.
    assert mcu.check(int8, x, expected[::-1])["agreement"] < 0.9


def test_operator_tflm_lacks_is_named(tmp_path):
    class TopK(keras.layers.Layer):
        def call(self, v):
            return tf.cast(tf.math.top_k(v, 4).indices, tf.float32)

    inputs = keras.Input((16,))
    saved = _export(keras.Model(inputs, TopK()(keras.layers.Dense(16)(inputs))), (16,),
                    str(tmp_path / "saved"))
    x = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    path = tflite.convert(saved, str(tmp_path / "tflite"), x, variants=["float32"])["float32"]
    result = mcu.check(path, x, tflite.run_tflite(path, x))
    assert result["runs"] is False and result["blocking_operators"] == ["TOPK_V2"]
    assert result["reason"].startswith("TFLM cannot run operator(s) TOPK_V2")
