"""preprocessing_fn of the sensor-vibration app (TF / TFT ops only).

Signals are standardised per channel with statistics computed by TFT over the whole
training split, so a served model scales a window exactly as training did; the
per-channel mean and standard deviation become constants of the transform graph.
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf
import tensorflow_transform as tft

from apps.sensor_vibration.config import VibrationConfig
from apps.sensor_vibration.features import (
    LABEL, LABEL_NAME, LOAD, RPM, SIGNAL, SIGNAL_XF, SOURCE_FILE, WINDOW_START)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Raw windows -> per-channel z-scored signal [batch, window, channels] and the label."""
    data = VibrationConfig.from_custom(custom_config).data
    n_channels = len(data.channels)
    signal = tf.reshape(tf.cast(inputs[SIGNAL], tf.float32), [-1, data.window, n_channels])
    channels = [tft.scale_to_z_score(signal[:, :, c]) for c in range(n_channels)]
    outputs = {SIGNAL_XF: tf.stack(channels, axis=-1)}
    if LABEL in inputs:
        outputs[LABEL] = inputs[LABEL]
    return outputs


def raw_feature_spec(config: VibrationConfig) -> dict:
    """Feature spec of the raw windows written by ingestion (data.py)."""
    n = config.data.window * len(config.data.channels)
    return {
        SIGNAL: tf.io.FixedLenFeature([n], tf.float32),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        LABEL_NAME: tf.io.FixedLenFeature([], tf.string),
        LOAD: tf.io.FixedLenFeature([], tf.int64),
        RPM: tf.io.FixedLenFeature([], tf.int64),
        SOURCE_FILE: tf.io.FixedLenFeature([], tf.string),
        WINDOW_START: tf.io.FixedLenFeature([], tf.int64),
    }
