"""blocks.vision.explanation: the parity check between a kept Keras model and the served
signature, and Grad-CAM of the served decisions."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras

from blocks.vision import gradcam
from blocks.vision.explanation import ParityError, check_parity, explain_grad_cam


def test_check_parity():
    served = np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)
    assert check_parity(served + 5e-4, served, 1e-3, "models/x/1") == pytest.approx(5e-4, rel=1e-3)
    with pytest.raises(ParityError, match="models/x/1: .*disagree by 0.02"):
        check_parity(served + 0.02, served, 1e-3, "models/x/1")
    with pytest.raises(RuntimeError, match=r"shape \[2, 3\].*\[2, 2\]"):
        check_parity(np.zeros((2, 3)), served, 1e-3, "models/x/1")
    with pytest.raises(ParityError, match="nan"):
        check_parity(served * np.nan, served, 1e-3, "models/x/1")


def test_explain_grad_cam_explains_the_given_classes():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="feature_map")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(0).normal(size=(3, 12, 12, 1)).astype(np.float32)
    maps = explain_grad_cam(model, images, np.array([2, 0, 1]), "feature_map")
    np.testing.assert_array_equal(
        maps, gradcam.grad_cam(model, images, class_ids=[2, 0, 1], layer_name="feature_map"))
    assert maps.shape == (3, 12, 12)
