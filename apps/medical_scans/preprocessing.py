"""preprocessing_fn of the medical-scans app (TF ops only).

Ingestion stores each image as its encoded file bytes (PNG or JPEG); decoding, grayscale or
RGB conversion and resizing happen here, inside the transform graph, so the served model
takes exactly the bytes a client sends. The transformed image is the decoded image itself
(intensities in [0, 1]): that is what the TFLite models take. Intensity normalisation is the
model's first layer (model.py).
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from apps.medical_scans.config import MedicalConfig
from suite.config import config_from_custom as from_custom

# Feature names; data.py writes the raw ones.
IMAGE = "image"
LABEL = "label"
IMAGE_XF = "image_xf"


def config_from_custom(custom_config: dict | None) -> MedicalConfig:
    """The app config carried in a TFX custom_config (defaults when absent)."""
    return from_custom(MedicalConfig, custom_config)


def decode_images(encoded: tf.Tensor, image_size: int, channels: int) -> tf.Tensor:
    """Encoded PNG / JPEG strings [batch] -> float32 images [batch, size, size, channels] in
    [0, 1] (8- and 16-bit images alike), resized with antialiasing."""

    def decode(one):
        image = tf.io.decode_image(one, channels=channels, dtype=tf.float32,
                                   expand_animations=False)
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.ensure_shape(image, [image_size, image_size, channels])

    return tf.map_fn(decode, tf.reshape(encoded, [-1]), fn_output_signature=tf.TensorSpec(
        [image_size, image_size, channels], tf.float32))


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Encoded images -> decoded images [batch, size, size, channels] in [0, 1], and the
    label."""
    model = config_from_custom(custom_config).model
    outputs = {IMAGE_XF: decode_images(inputs[IMAGE], model.image_size, model.channels)}
    if LABEL in inputs:
        outputs[LABEL] = tf.reshape(inputs[LABEL], [-1])
    return outputs


def raw_feature_spec() -> dict:
    """Feature spec of the examples written by ingestion (data.py)."""
    return {
        IMAGE: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        "subtype": tf.io.FixedLenFeature([], tf.string),
        "patient": tf.io.FixedLenFeature([], tf.string),
        "source_file": tf.io.FixedLenFeature([], tf.string),
    }
