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
from apps.medical_scans.features import IMAGE, IMAGE_XF, LABEL, PATIENT, SOURCE, SUBTYPE
from blocks.vision.decode import decode_images


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Encoded images -> decoded images [batch, size, size, channels] in [0, 1], and the
    label."""
    model = MedicalConfig.from_custom(custom_config).model
    outputs = {IMAGE_XF: decode_images(inputs[IMAGE], model.image_size, model.channels)}
    if LABEL in inputs:
        outputs[LABEL] = tf.reshape(inputs[LABEL], [-1])
    return outputs


def raw_feature_spec(config: MedicalConfig) -> dict:
    """Feature spec of the examples written by ingestion (data.py); the same for every
    config."""
    del config
    return {
        IMAGE: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        SUBTYPE: tf.io.FixedLenFeature([], tf.string),
        PATIENT: tf.io.FixedLenFeature([], tf.string),
        SOURCE: tf.io.FixedLenFeature([], tf.string),
    }
