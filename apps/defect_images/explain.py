"""A pushed defect-images model, as served: predictions through its ``serving_default``
signature, and explanations computed on the Keras model kept inside the same export: the
Grad-CAM heatmap of the decided class (classify mode) or the anomaly map (anomaly mode).

What is explained is what is served: the image under a heatmap is decoded and resized by the
function the transform graph uses (``blocks.vision.decode.decode_images``), and the Keras
model's probabilities are checked against the served ones (``blocks.vision.explanation``)
first. Where Pascal VOC boxes are known, each explanation also gets a number: the share of
its heat inside the boxes against the share of the image the boxes cover
(``evaluation.heat_in_boxes``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf

from apps.defect_images import data, evaluation
from apps.defect_images.config import DefectConfig, input_size
from apps.defect_images.model import FEATURES, explained_classifier, map_and_score
from blocks.vision.decode import decode_images
from blocks.vision.explanation import check_parity, explain_grad_cam, save_overlays
from serving.served import ServedModel

# Largest difference tolerated between the served and the Keras model's probabilities.
_PARITY_TOLERANCE = 1e-3


class ServedDefects:
    """A pushed defect-images model (a version folder or a model base path, its newest
    version), classifier or anomaly detector."""

    def __init__(self, path: str):
        self.served = ServedModel(path, app="defect_images")
        self.model_dir = self.served.model_dir
        self.metadata = self.served.metadata
        self.config = self.served.config(DefectConfig)
        self.mode = self.config.mode

    def predict(self, images: Sequence[bytes]) -> dict:
        """Served outputs for encoded images, with ``labels`` (the class names as str)."""
        outputs = self.served.predict([data.image_example(bytes(image)) for image in images])
        outputs["labels"] = [c.decode() for c in outputs["classes"]]
        return outputs

    def decoded(self, images: Sequence[bytes]) -> np.ndarray:
        """The model inputs for encoded images: decoded, resized, intensities in [0, 1]."""
        return decode_images(tf.constant([bytes(i) for i in images], tf.string),
                             input_size(self.config), self.config.model.channels).numpy()

    def heatmaps(self, images: Sequence[bytes]) -> tuple[dict, np.ndarray, np.ndarray,
                                                          np.ndarray]:
        """(served outputs, decoded images, heat for display [N, H, W] in [0, 1], heat whose
        mass is measured [N, H, W] >= 0), after the parity check of the kept Keras model.

        Classify: the Grad-CAM map of the decided class, both times. Anomaly: the anomaly
        map's excess over what good parts show (``map_reference``, the level 99 % of the
        validation good parts' pixels stay below); displayed so that the level at which the
        map alone would reach the threshold (``map_level``) is half the colour scale."""
        served = self.predict(images)
        x = self.decoded(images)
        keras_model = self.served.keras_model
        local = np.asarray(keras_model(x, training=False))
        if self.mode == "anomaly":
            local = np.asarray(tf.nn.softmax(local, axis=-1))
        check_parity(local, served["probabilities"], _PARITY_TOLERANCE, self.model_dir)
        if self.mode == "anomaly":
            maps, _ = map_and_score(keras_model, x)
            reference = float(self.metadata["map_reference"])
            excess = np.clip(maps - reference, 0.0, None)
            level = max(float(self.metadata["map_level"]) - reference, 1e-12)
            return served, x, np.clip(excess / (2.0 * level), 0.0, 1.0), excess
        heat = explain_grad_cam(explained_classifier(keras_model), x, served["class_ids"],
                                FEATURES)
        return served, x, heat, heat

    def explain(self, images: Sequence[bytes], names: Sequence[str], out_dir: str,
                boxes: Sequence[Sequence[float] | None] | None = None) -> list[dict]:
        """Writes ``<out_dir>/<name stem>_gradcam.png`` (classify) or ``_anomaly.png``
        (anomaly) per image, the heat over the image, and ``explanations.json`` with every
        figure. ``boxes``: per image, VOC boxes as fractions ([xmin, ymin, xmax, ymax] * n)
        or None. Returns per image: label, probability or score, the PNG, and with boxes
        the share of heat inside them (``heat_in_boxes``), their area share and the lift."""
        served, x, shown, mass = self.heatmaps(images)
        suffix = "anomaly" if self.mode == "anomaly" else "gradcam"
        paths = save_overlays(out_dir, names, x, shown, suffix)
        results = []
        size = x.shape[1]
        for i, (name, path) in enumerate(zip(names, paths, strict=True)):
            result = {"file": name, "label": served["labels"][i], "heatmap": path}
            if self.mode == "anomaly":
                result.update(score=float(served["score"][i]),
                              threshold=float(served["threshold"][i]))
            else:
                result["probability"] = float(served["scores"][i])
            if boxes is not None and boxes[i]:
                result.update(evaluation.heat_in_boxes(
                    mass[i], data.boxes_mask(list(boxes[i]), size, size)))
            results.append(result)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "explanations.json"), "w") as f:
            json.dump({"model": self.model_dir, "mode": self.mode, "images": results,
                       "summary": box_summary(results)}, f, indent=2)
        return results


def box_summary(results: Sequence[dict]) -> dict:
    """Mean heat share inside the boxes, mean box area share and their ratio, over the
    results that have boxes (empty when none has)."""
    with_boxes = [r for r in results
                  if "heat_in_boxes" in r and not np.isnan(r["heat_in_boxes"])]
    if not with_boxes:
        return {}
    inside = float(np.mean([r["heat_in_boxes"] for r in with_boxes]))
    area = float(np.mean([r["box_area"] for r in with_boxes]))
    return {"images": len(with_boxes), "heat_in_boxes": inside, "box_area": area,
            "lift": inside / area if area else float("nan")}


def annotation_boxes(image_path: str, folder: str | None) -> list[float] | None:
    """The VOC boxes of an image file (every object, as fractions), or None: from
    ``<folder>/<stem>.xml``, else beside the image or in an annotations/ folder next to its
    folder."""
    here = os.path.dirname(os.path.abspath(image_path))
    folders = [folder] if folder else [here] + [os.path.join(base, name)
                                                for base in (here, os.path.dirname(here))
                                                for name in data.ANNOTATION_FOLDERS]
    for candidate in folders:
        xml = data.find_annotation(image_path, candidate)
        if xml:
            from PIL import Image  # noqa: PLC0415

            with Image.open(image_path) as image:
                size = image.size
            return [v for b in data.read_voc(xml, size)
                    for v in (b.xmin, b.ymin, b.xmax, b.ymax)]
    return None
