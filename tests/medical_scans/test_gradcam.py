"""Grad-CAM of the medical-scans models: the CNN's ``features`` layer is what the shared
Grad-CAM block explains, and ``ServedScans.explain`` checks the kept Keras model against the
served signature before drawing heatmaps. The generic Grad-CAM tests live in
tests/blocks/test_gradcam.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from apps.medical_scans import data
from apps.medical_scans.config import MedicalConfig, ModelConfig
from apps.medical_scans.explain import ServedScans
from apps.medical_scans.model import FEATURES, build_model
from blocks.vision import gradcam

SIZE = 32
CONFIG = MedicalConfig(model=ModelConfig(kind="cnn", image_size=SIZE, filters=(4, 8),
                                         dropout=0.0))


def _scans(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [data.encode_png(rng.integers(0, 256, size=(40, 40), dtype=np.uint8))
            for _ in range(n)]


def _served(tmp_path, model: keras.Model, shift: float = 0.0) -> ServedScans:
    """A ServedScans whose serving_default runs ``model`` on the decoded images (plus
    ``shift`` in probability), without an export on disk."""
    served = ServedScans.__new__(ServedScans)
    served.model_dir = str(tmp_path / "medical_scans" / "1")
    served.metadata = {}
    served.app_config = CONFIG
    served.threshold = 0.5
    served._keras = model

    def serve(examples):
        spec = {data.IMAGE: tf.io.FixedLenFeature([], tf.string)}
        images = tf.io.parse_example(examples, spec)[data.IMAGE]
        probabilities = model(served.decoded(images.numpy()), training=False) + shift
        class_ids = tf.argmax(probabilities, axis=-1)
        classes = tf.gather(tf.constant(list(CONFIG.data.classes)), class_ids)
        return {"probabilities": probabilities, "class_ids": class_ids, "classes": classes,
                "decision": classes, "threshold": tf.fill([len(images)], 0.5)}

    served._serve = serve
    return served


def test_cnn_features_layer_is_the_default_grad_cam_layer():
    keras.utils.set_random_seed(0)
    model = build_model(CONFIG)
    assert FEATURES == "features"
    x = np.random.default_rng(1).uniform(size=(3, SIZE, SIZE, 1)).astype(np.float32)
    maps = gradcam.grad_cam(model, x, class_ids=[0, 1, 1])
    assert maps.shape == (3, SIZE, SIZE) and maps.min() >= 0.0 and maps.max() <= 1.0
    np.testing.assert_allclose(
        gradcam.grad_cam(model, x, class_ids=[0, 1, 1], layer_name=FEATURES), maps)


def test_explain_writes_heatmaps_of_the_served_decisions(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(CONFIG)
    images = _scans(3)
    served = _served(tmp_path, model)
    out = tmp_path / "heat"
    results = served.explain(images, ["a/scan.png", "b/scan.png", "c.dcm"], str(out))
    assert sorted(os.listdir(out)) == ["c_gradcam.png", "scan_1_gradcam.png",
                                       "scan_gradcam.png"]
    expected = served.predict_images(images)
    x = served.decoded(images)
    maps = gradcam.grad_cam(model, x, class_ids=expected["class_ids"].tolist(),
                            layer_name=FEATURES)
    for i, result in enumerate(results):
        assert result["label"] == expected["labels"][i]
        assert result["probability"] == pytest.approx(float(expected["probabilities"][i][1]))
        with Image.open(result["heatmap"]) as image:
            np.testing.assert_array_equal(np.asarray(image), gradcam.overlay(x[i], maps[i]))


def test_explain_refuses_a_keras_model_that_disagrees_with_the_served_one(tmp_path):
    keras.utils.set_random_seed(0)
    served = _served(tmp_path, build_model(CONFIG), shift=0.01)
    with pytest.raises(RuntimeError, match=r"medical_scans.1: the kept Keras model and the "
                                           r"served signature disagree by 0\.01"):
        served.explain(_scans(2), ["a.png", "b.png"], str(tmp_path / "heat"))
    assert not os.path.exists(tmp_path / "heat")
