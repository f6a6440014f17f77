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
from suite.config import config_from_custom as from_custom

SIGNAL = "signal"
LABEL = "label"
SIGNAL_XF = "signal_xf"


def config_from_custom(custom_config: dict | None) -> VibrationConfig:
    """The app config carried in a TFX custom_config (defaults when absent)."""
    return from_custom(VibrationConfig, custom_config)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Raw windows -> per-channel z-scored signal [batch, window, channels] and the label."""
    data = config_from_custom(custom_config).data
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
        "label_name": tf.io.FixedLenFeature([], tf.string),
        "load": tf.io.FixedLenFeature([], tf.int64),
        "rpm": tf.io.FixedLenFeature([], tf.int64),
        "source_file": tf.io.FixedLenFeature([], tf.string),
        "window_start": tf.io.FixedLenFeature([], tf.int64),
    }
