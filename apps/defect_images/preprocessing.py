"""preprocessing_fn of the defect-images app (TF ops only).

Ingestion stores each image as its encoded file bytes (JPEG, PNG or BMP); decoding, the
grayscale or RGB conversion and resizing happen here, inside the transform graph, so the
served model takes exactly the bytes a camera sends. The transformed image is the decoded
image itself (intensities in [0, 1]): that is what the TFLite models take. Intensity
standardisation is the models' first layer (model.py). The transform is the same in both
modes; the trainer picks the label (``label`` or ``is_defect``).
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from apps.defect_images.config import DefectConfig, input_size
from apps.defect_images.features import (
    BOX_FRACTION, BOXES, CLASS_NAME, DEFECT_SIZE, IMAGE, IMAGE_XF, IS_DEFECT, LABEL, SOURCE)
from blocks.vision.decode import decode_images
from suite.config import config_from_custom as from_custom


def config_from_custom(custom_config: dict | None) -> DefectConfig:
    """The app config carried in a TFX custom_config (defaults when absent)."""
    return from_custom(DefectConfig, custom_config)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Encoded images -> decoded images [batch, size, size, channels] in [0, 1]; the class
    label and the good / defect label pass through."""
    config = config_from_custom(custom_config)
    outputs = {IMAGE_XF: decode_images(inputs[IMAGE], input_size(config),
                                        config.model.channels)}
    for name in (LABEL, IS_DEFECT):
        if name in inputs:
            outputs[name] = tf.reshape(inputs[name], [-1])
    return outputs


def raw_feature_spec(config: DefectConfig | None = None) -> dict:
    """Feature spec of the examples written by ingestion (data.py)."""
    del config  # the same features in every mode
    return {
        IMAGE: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        IS_DEFECT: tf.io.FixedLenFeature([], tf.int64),
        CLASS_NAME: tf.io.FixedLenFeature([], tf.string),
        SOURCE: tf.io.FixedLenFeature([], tf.string),
        DEFECT_SIZE: tf.io.FixedLenFeature([], tf.string),
        BOX_FRACTION: tf.io.FixedLenFeature([], tf.float32),
        BOXES: tf.io.VarLenFeature(tf.float32),
    }
