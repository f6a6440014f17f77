"""Grad-CAM heatmaps of image classifiers (Selvaraju et al., 2017).

Pure functions: ``grad_cam`` computes, for a batch of images, where the model looked to score
a class; ``overlay`` blends a heatmap over the image in a jet-like colour map; ``save_png``
writes the result atomically.

Grad-CAM weights each channel ``k`` of a feature map ``A`` (the output of ``layer_name``,
typically the last one before global average pooling) by the spatial mean of the gradient of
the class score, ``w_k = mean_ij d y_c / d A_ij^k``, and keeps ``relu(sum_k w_k A^k)``. The
class score ``y_c`` is the pre-softmax logit when the model ends with a softmax that can be
undone cleanly (a ``Dense(..., activation="softmax")`` or a softmax ``Activation`` /
``Softmax`` layer), else the model's output itself (the probability).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
from PIL import Image

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

DEFAULT_BATCH_SIZE = 64


def grad_cam(model: keras.Model, images: np.ndarray | tf.Tensor,
             class_ids: Sequence[int] | int | None = None, layer_name: str = "features",
             *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Grad-CAM heatmaps of ``images`` for ``class_ids``.

    Args:
        model: a Keras 3 model with one input (images [N, H, W, C]) and one output of class
            probabilities [N, n_classes]; also a model loaded back with
            ``keras.saving.load_model(path, compile=False)``.
        images: [N, H, W, C] (or a single [H, W, C] image, treated as N = 1), as the model
            takes them (e.g. decoded images in [0, 1]).
        class_ids: the class explained per image (N ints, or one int for all); None = the
            class the model predicts for each image.
        layer_name: the layer whose 4-D output [N, h, w, k] is the feature map.
        batch_size: images per forward/backward pass.

    Returns:
        float32 [N, H, W] in [0, 1] at the input resolution (bilinear upsampling); each map
        is divided by its own maximum (a map with no positive evidence stays all zero).

    Raises:
        ValueError: the layer does not exist or its output is not 4-D; the images are not
            [N, H, W, C]; class_ids has the wrong length or an id out of range.
    """
    grad_model, score_from = _gradient_model(model, layer_name)
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[tf.newaxis]
    if images.shape.rank != 4:
        raise ValueError(f"grad_cam expects images [N, H, W, C], got shape {images.shape}")
    images = tf.cast(images, model.inputs[0].dtype or "float32")
    n, height, width = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    if n == 0:
        return np.zeros((0, height, width), np.float32)
    ids = _class_ids(class_ids, n)
    n_classes = model.outputs[0].shape[-1]
    if ids is not None and n_classes is not None and np.any(ids >= n_classes):
        raise ValueError(f"class_ids must lie in [0, {n_classes}), got {class_ids!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    maps = []
    for start in range(0, n, batch_size):
        batch = images[start:start + batch_size]
        with tf.GradientTape() as tape:
            features, head = grad_model(batch, training=False)
            scores = score_from(head)  # [b, n_classes]
            if ids is None:
                chosen = tf.argmax(scores, axis=-1, output_type=tf.int32)
            else:
                chosen = tf.constant(ids[start:start + batch_size], tf.int32)
            target = tf.gather(scores, chosen, axis=1, batch_dims=1)  # [b]
        grads = tape.gradient(target, features)  # [b, h, w, k]
        if grads is None:
            raise ValueError(f"the class score does not depend on layer {layer_name!r}")
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # [b, 1, 1, k]
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))  # [b, h, w]
        # Resize first, then divide by the peak: bilinear upsampling (a convex blend) keeps the
        # map non-negative, and each map at the input resolution then peaks at exactly 1.
        cam = tf.image.resize(cam[..., tf.newaxis], (height, width), method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        maps.append(np.clip(cam.numpy(), 0.0, 1.0).astype(np.float32))
    return np.concatenate(maps, axis=0)


def _gradient_model(model: keras.Model, layer_name: str):
    """(model returning [feature map, head tensor], head -> class scores)."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} has no layer named {layer_name!r}") from error
    feature_map = layer.output
    if len(feature_map.shape) != 4:
        raise ValueError(f"layer {layer_name!r} must output a 4-D feature map [N, h, w, k], "
                         f"got shape {tuple(feature_map.shape)}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("grad_cam expects a model with one input and one output, got "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")

    head, score_from = model.outputs[0], (lambda probabilities: probabilities)
    last = _producing_layer(model, model.outputs[0])
    if last is not None and last is not layer and _is_softmax(getattr(last, "activation", None)):
        if isinstance(last, keras.layers.Dense):
            # Dense(..., activation="softmax"): take its input and redo the affine part.
            head = last.input

            def score_from(x, dense=last):
                logits = tf.tensordot(x, tf.cast(dense.kernel, x.dtype), axes=1)
                return logits if dense.bias is None else logits + tf.cast(dense.bias, x.dtype)
        elif isinstance(last, keras.layers.Activation):
            head = last.input  # the logits fed to a softmax Activation layer
    elif isinstance(last, keras.layers.Softmax) and last is not layer:
        head = last.input
    grad_model = keras.Model(model.inputs[0], [feature_map, head])
    return grad_model, score_from


def _producing_layer(model: keras.Model, tensor):
    """The layer of ``model`` whose (only) output is ``tensor``, or None."""
    for candidate in reversed(model.layers):
        try:
            if candidate.output is tensor:
                return candidate
        except (AttributeError, ValueError):  # never called, or called more than once
            continue
    return None


def _is_softmax(activation) -> bool:
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def _class_ids(class_ids, n: int) -> np.ndarray | None:
    if class_ids is None:
        return None
    ids = np.asarray(class_ids)
    if ids.ndim == 0:
        ids = np.full((n,), int(ids))
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"class_ids must be {n} integers (one per image), got {class_ids!r}")
    if np.any(ids < 0):
        raise ValueError(f"class_ids must be >= 0, got {class_ids!r}")
    return ids.astype(np.int32)


def jet(values: np.ndarray) -> np.ndarray:
    """Jet-like colour map: values in [0, 1] -> float RGB in [0, 1] (blue, cyan, yellow, red)."""
    x = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., np.newaxis]
    centres = np.array([0.75, 0.5, 0.25], np.float32)  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * (x - centres)), 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB [H, W, 3]: ``image`` blended with the jet colours of ``heatmap``.

    Args:
        image: [H, W], [H, W, 1] or [H, W, 3]; uint8 as is, any other dtype min-max rescaled
            to 0..255 (standardized intensities included).
        heatmap: [h, w] in [0, 1] (values outside are clipped); resized bilinearly to H, W
            when the sizes differ.
        alpha: opacity of the colour map where the heat is 1. The blend weight per pixel is
            ``alpha * heat``, so cold regions keep the plain image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rgb = _to_rgb_uint8(np.asarray(image))
    height, width = rgb.shape[:2]
    heat = np.asarray(heatmap, np.float32)
    if heat.ndim == 3 and heat.shape[-1] == 1:
        heat = heat[..., 0]
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be [h, w], got shape {heat.shape}")
    heat = np.nan_to_num(heat)
    if heat.shape != (height, width):
        resized = Image.fromarray(heat, mode="F").resize((width, height), Image.BILINEAR)
        heat = np.asarray(resized, np.float32)
    heat = np.clip(heat, 0.0, 1.0)
    weight = (alpha * heat)[..., np.newaxis]
    blended = (1.0 - weight) * rgb.astype(np.float32) + weight * 255.0 * jet(heat)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
    if image.dtype != np.uint8:
        values = np.nan_to_num(image.astype(np.float32))
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        span = high - low
        values = (values - low) / span * 255.0 if span > 0 else np.zeros_like(values)
        image = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., np.newaxis], 3, axis=-1)
    return image


def save_png(path: str, rgb: np.ndarray) -> str:
    """Write ``rgb`` (uint8 [H, W, 3] or [H, W]) as a PNG at ``path``, atomically.

    The parent folders are created; the image goes to a temporary file in the same folder
    that then replaces ``path``, so readers never see a partial file. Returns ``path``.
    """
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        raise ValueError(f"save_png expects uint8 pixels, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3))):
        raise ValueError(f"save_png expects [H, W, 3] or [H, W], got shape {array.shape}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(array).save(stream, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
