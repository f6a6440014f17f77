"""Explanations of a served image classifier, computed on the Keras model kept in its export.

An explanation only describes the served model if the Keras model it is computed on gives
the served probabilities: ``check_parity`` compares them and raises otherwise;
``explain_grad_cam`` then draws the Grad-CAM heatmaps of the served decisions, and
``save_overlays`` writes them over the images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from blocks.vision import gradcam


class ParityError(RuntimeError):
    """The Keras model kept in an export disagrees with the export's served signature."""


def check_parity(keras_probabilities: np.ndarray, served_probabilities: np.ndarray,
                 tolerance: float, where: str) -> float:
    """Returns the largest absolute difference between the two probability arrays [N,
    n_classes]; raises ParityError naming ``where`` (the model folder) when it exceeds
    ``tolerance`` or the shapes differ."""
    local = np.asarray(keras_probabilities, np.float64)
    served = np.asarray(served_probabilities, np.float64)
    if local.shape != served.shape:
        raise ParityError(f"{where}: the kept Keras model returns probabilities of shape "
                          f"{list(local.shape)}, the served signature {list(served.shape)}; "
                          "expected the same shape")
    gap = float(np.max(np.abs(local - served))) if local.size else 0.0
    if not gap <= tolerance:  # NaN fails too
        raise ParityError(f"{where}: the kept Keras model and the served signature disagree "
                          f"by {gap:.2g} in probability; the explanation would not describe "
                          "the served model")
    return gap


def explain_grad_cam(keras_model: keras.Model, images: np.ndarray | tf.Tensor,
                     class_ids: Sequence[int] | np.ndarray, layer_name: str) -> np.ndarray:
    """Grad-CAM heatmaps float32 [N, H, W] in [0, 1] of ``images`` (the model inputs [N, H,
    W, C]) for the served decisions ``class_ids`` (one per image), on the feature map output
    by ``layer_name``."""
    ids = [int(i) for i in np.asarray(class_ids).reshape(-1)]
    return gradcam.grad_cam(keras_model, images, class_ids=ids, layer_name=layer_name)


def save_overlays(out_dir: str, names: Sequence[str], images: np.ndarray, heat: np.ndarray,
                  suffix: str) -> list[str]:
    """Writes ``<out_dir>/<name stem>_<suffix>.png`` per image: ``heat`` [N, H, W] in [0, 1]
    over ``images`` [N, H, W, C]. Two inputs with the same file name get distinct files.
    Returns the paths."""
    paths, used = [], set()
    for i, name in enumerate(names):
        stem = os.path.splitext(os.path.basename(name))[0] or f"image{i}"
        while stem in used:
            stem += f"_{i}"
        used.add(stem)
        paths.append(gradcam.save_png(os.path.join(out_dir, f"{stem}_{suffix}.png"),
                                      gradcam.overlay(images[i], heat[i])))
    return paths
