"""A pushed medical-scans model, as served: predictions through its ``serving_default``
signature and Grad-CAM explanations on the Keras model kept inside the same export.

The image a heatmap is drawn on is decoded and resized by the same function the transform
graph uses (preprocessing.decode_images), and the Keras model's probabilities are checked
against the served ones, so what is explained is what is served.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf

from apps.medical_scans import data, gradcam
from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.model import FEATURES
from apps.medical_scans.preprocessing import decode_images
from serving.export import load_keras_model, load_metadata, resolve_model_dir
from suite.config import from_dict

# Largest difference tolerated between the served and the Keras model's probabilities.
_PARITY_TOLERANCE = 1e-3


class ServedModel:
    """A pushed medical-scans model: a version folder or a model base path (newest)."""

    def __init__(self, path: str):
        self.model_dir = resolve_model_dir(path)
        self.metadata = load_metadata(self.model_dir)
        if self.metadata.get("app") != "medical_scans":
            raise ValueError(f"{self.model_dir}: expected a medical-scans model, got one of "
                             f"app {self.metadata.get('app')!r}")
        self.config = from_dict(MedicalConfig, self.metadata["config"])
        self.threshold = float(self.metadata["threshold"])
        self._serve = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self._keras = None

    def predict(self, images: Sequence[bytes]) -> dict[str, np.ndarray | list[str]]:
        """Served outputs for encoded images: labels, class_ids, probabilities, threshold."""
        examples = tf.constant([data.image_example(image) for image in images], tf.string)
        outputs = {k: v.numpy() for k, v in self._serve(examples=examples).items()}
        outputs["labels"] = [c.decode() for c in outputs["classes"]]
        return outputs

    def decoded(self, images: Sequence[bytes]) -> np.ndarray:
        """The model inputs for encoded images: decoded, resized, intensities in [0, 1]."""
        m = self.config.model
        return decode_images(tf.constant(list(images), tf.string), m.image_size,
                             m.channels).numpy()

    def explain(self, images: Sequence[bytes], names: Sequence[str],
                out_dir: str) -> list[dict]:
        """Writes ``<out_dir>/<name stem>_gradcam.png`` per image: the Grad-CAM heatmap of
        the served decision over the image. Returns label, positive probability and path."""
        if self._keras is None:
            self._keras = load_keras_model(self.model_dir)
        served = self.predict(images)
        x = self.decoded(images)
        local = self._keras(x, training=False).numpy()
        gap = float(np.max(np.abs(local - served["probabilities"])))
        if gap > _PARITY_TOLERANCE:
            raise RuntimeError(f"{self.model_dir}: the kept Keras model and the served "
                               f"signature disagree by {gap:.2g} in probability; the "
                               f"explanation would not describe the served model")
        heatmaps = gradcam.grad_cam(self._keras, x, class_ids=served["class_ids"].tolist(),
                                    layer_name=FEATURES)
        results, used = [], set()
        for i, name in enumerate(names):
            stem = os.path.splitext(os.path.basename(name))[0] or f"image{i}"
            while stem in used:  # two inputs with the same file name
                stem += f"_{i}"
            used.add(stem)
            path = gradcam.save_png(os.path.join(out_dir, f"{stem}_gradcam.png"),
                                    gradcam.overlay(x[i], heatmaps[i]))
            results.append({"label": served["labels"][i],
                            "probability": float(served["probabilities"][i][1]),
                            "heatmap": path})
        return results
