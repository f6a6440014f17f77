"""A pushed medical-scans model, as served: predictions through its ``serving_default``
signature and Grad-CAM explanations on the Keras model kept inside the same export.

The image a heatmap is drawn on is decoded and resized by the same function the transform
graph uses (``blocks.vision.decode.decode_images``), and the Keras model's probabilities are
checked against the served ones (``blocks.vision.explanation``), so what is explained is what
is served.
"""

from __future__ import annotations

from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf

from apps.medical_scans import data
from apps.medical_scans.app import APP
from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.model import FEATURES
from blocks.vision.decode import decode_images
from blocks.vision.explanation import check_parity, explain_grad_cam, save_overlays
from serving.served import ServedModel

# Largest difference tolerated between the served and the Keras model's probabilities.
_PARITY_TOLERANCE = 1e-3


class ServedScans(ServedModel):
    """A pushed medical-scans model: a version folder or a model base path (newest)."""

    def __init__(self, path: str):
        super().__init__(path, app=APP.name)
        self.app_config = self.config(MedicalConfig)
        self.threshold = float(self.metadata["threshold"])

    def predict_images(self, images: Sequence[bytes]) -> dict[str, np.ndarray | list[str]]:
        """Served outputs for encoded images: labels (the class the threshold gives),
        decisions (the class, or a referral), class_ids, probabilities, threshold,
        ood_score, refer."""
        outputs = self.predict([data.image_example(image) for image in images])
        outputs["labels"] = [c.decode() for c in outputs["classes"]]
        outputs["decisions"] = [d.decode() for d in outputs["decision"]]
        return outputs

    def decoded(self, images: Sequence[bytes]) -> np.ndarray:
        """The model inputs for encoded images: decoded, resized, intensities in [0, 1]."""
        m = self.app_config.model
        return decode_images(tf.constant(list(images), tf.string), m.image_size,
                             m.channels).numpy()

    def explain(self, images: Sequence[bytes], names: Sequence[str],
                out_dir: str) -> list[dict]:
        """Writes ``<out_dir>/<name stem>_gradcam.png`` per image: the Grad-CAM heatmap of
        the served decision over the image. Returns label, positive probability and path."""
        keras_model = self.keras_model
        served = self.predict_images(images)
        x = self.decoded(images)
        local = keras_model(x, training=False).numpy()
        check_parity(local, served["probabilities"], _PARITY_TOLERANCE, self.model_dir)
        heatmaps = explain_grad_cam(keras_model, x, served["class_ids"], FEATURES)
        paths = save_overlays(out_dir, names, x, heatmaps, "gradcam")
        return [{"label": served["labels"][i],
                 "probability": float(served["probabilities"][i][1]), "heatmap": path}
                for i, path in enumerate(paths)]
