"""The self-supervised pretext task of anomaly mode: tell a good part from the same image
altered in one of several ways (TF ops, training only).

Good parts are all the anomaly model ever sees; to learn features that respond to what makes
a part look wrong, a small CNN learns to name which alteration, if any, was applied to a good
image: a dark or a bright blob, a thin line, a patch cut and pasted elsewhere (local
defects); zoomed in or out, blurred, noisier, its quadrants swapped, or turned by 90 degrees
(a different texture). Its feature maps then feed the Gaussians of the good parts
(trainer.py). Turning is left out where the surfaces may come in any orientation
(``anomaly.invariance``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf


def _grid(size: int) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.meshgrid(tf.range(size, dtype=tf.float32), tf.range(size, dtype=tf.float32),
                       indexing="ij")


def _blob(image: tf.Tensor, sign: float) -> tf.Tensor:
    size = tf.shape(image)[0]
    s = tf.cast(size, tf.float32)
    yy, xx = _grid(size)
    cx, cy = tf.random.uniform([], 0.15, 0.85) * s, tf.random.uniform([], 0.15, 0.85) * s
    rx, ry = tf.random.uniform([], 0.03, 0.15) * s, tf.random.uniform([], 0.03, 0.15) * s
    inside = 1.0 - tf.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    mask = tf.sigmoid(inside * 6.0)[..., None]
    return image + sign * tf.random.uniform([], 0.15, 0.4) * mask


def dark_blob(image: tf.Tensor) -> tf.Tensor:
    """A soft dark ellipse (3 to 15 % of the size across)."""
    return _blob(image, -1.0)


def bright_blob(image: tf.Tensor) -> tf.Tensor:
    """A soft bright ellipse."""
    return _blob(image, 1.0)


def line(image: tf.Tensor) -> tf.Tensor:
    """A thin dark or bright line at a random angle (a scratch)."""
    size = tf.shape(image)[0]
    s = tf.cast(size, tf.float32)
    yy, xx = _grid(size)
    angle = tf.random.uniform([], 0.0, math.pi)
    cx, cy = tf.random.uniform([], 0.2, 0.8) * s, tf.random.uniform([], 0.2, 0.8) * s
    length = tf.random.uniform([], 0.2, 0.6) * s
    width = tf.random.uniform([], 0.5, 2.0) * tf.maximum(s / 64.0, 1.0)
    along = (xx - cx) * tf.cos(angle) + (yy - cy) * tf.sin(angle)
    across = -(xx - cx) * tf.sin(angle) + (yy - cy) * tf.cos(angle)
    mask = tf.exp(-tf.square(across / width)) * tf.cast(tf.abs(along) < length / 2, tf.float32)
    amount = tf.random.uniform([], 0.15, 0.4) * tf.sign(tf.random.uniform([], -1.0, 1.0))
    return image + amount * mask[..., None]


def cut_paste(image: tf.Tensor) -> tf.Tensor:
    """A patch (1/8 to 1/3 of the size) copied elsewhere, maybe mirrored and brightened."""
    size = tf.shape(image)[0]
    low, high = tf.maximum(size // 8, 1), tf.maximum(size // 3, 2)
    ph = tf.random.uniform([], low, high, tf.int32)
    pw = tf.random.uniform([], low, high, tf.int32)
    y0 = tf.random.uniform([], 0, size - ph, tf.int32)
    x0 = tf.random.uniform([], 0, size - pw, tf.int32)
    y1 = tf.random.uniform([], 0, size - ph, tf.int32)
    x1 = tf.random.uniform([], 0, size - pw, tf.int32)
    patch = image[y0:y0 + ph, x0:x0 + pw]
    patch = tf.cond(tf.random.uniform([]) < 0.5, lambda: tf.image.flip_left_right(patch),
                    lambda: patch)
    patch = patch + tf.random.uniform([], -0.1, 0.1)
    padding = [[y1, size - ph - y1], [x1, size - pw - x1], [0, 0]]
    mask = tf.pad(tf.ones_like(patch), padding)
    return image * (1.0 - mask) + tf.pad(patch, padding)


def zoom_in(image: tf.Tensor) -> tf.Tensor:
    """The texture coarser: a central share (50 to 75 %) scaled up to the full size."""
    size = tf.shape(image)[0]
    crop = tf.cast(tf.random.uniform([], 0.5, 0.75) * tf.cast(size, tf.float32), tf.int32)
    patch = tf.image.random_crop(image, tf.stack([crop, crop, tf.shape(image)[2]]))
    return tf.image.resize(patch, tf.stack([size, size]))


def zoom_out(image: tf.Tensor) -> tf.Tensor:
    """The texture finer: the image scaled down (50 to 75 %) and tiled."""
    size = tf.shape(image)[0]
    small = tf.cast(tf.random.uniform([], 0.5, 0.75) * tf.cast(size, tf.float32), tf.int32)
    shrunk = tf.image.resize(image, tf.stack([small, small]), antialias=True)
    return tf.image.random_crop(tf.tile(shrunk, [2, 2, 1]),
                                tf.stack([size, size, tf.shape(image)[2]]))


_BLUR = np.outer(*[np.exp(-np.arange(-3, 4) ** 2 / 4.0)] * 2)
_BLUR = (_BLUR / _BLUR.sum()).astype(np.float32)


def blur(image: tf.Tensor) -> tf.Tensor:
    """A Gaussian blur (sigma about 1.4 pixels)."""
    channels = image.shape[-1] or 1
    kernel = tf.tile(tf.constant(_BLUR)[..., None, None], [1, 1, channels, 1])
    return tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]


def noise(image: tf.Tensor) -> tf.Tensor:
    """White noise (3 to 8 % of the range)."""
    return image + tf.random.normal(tf.shape(image)) * tf.random.uniform([], 0.03, 0.08)


def swap_quadrants(image: tf.Tensor) -> tf.Tensor:
    """The four quadrants in reverse order (large-scale structure broken)."""
    half = tf.shape(image)[0] // 2
    top = tf.concat([image[half:, half:], image[half:, :half]], axis=1)
    bottom = tf.concat([image[:half, half:], image[:half, :half]], axis=1)
    return tf.concat([top, bottom], axis=0)


def turn(image: tf.Tensor) -> tf.Tensor:
    """Turned by 90 degrees (an oriented texture in another orientation)."""
    return tf.image.rot90(image, 1)


ALTERATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "dark_blob": dark_blob, "bright_blob": bright_blob, "line": line, "cut_paste": cut_paste,
    "zoom_in": zoom_in, "zoom_out": zoom_out, "blur": blur, "noise": noise,
    "swap_quadrants": swap_quadrants, "turn": turn,
}


def alterations(invariance: str) -> list[str]:
    """The alterations of the task: all of them, less turning where the surfaces may come
    turned (``invariance`` "dihedral")."""
    return [name for name in ALTERATIONS if not (name == "turn" and invariance == "dihedral")]


def orient(image: tf.Tensor, invariance: str) -> tf.Tensor:
    """A random orientation among those ``invariance`` allows ("none", "flips",
    "dihedral")."""
    if invariance in ("flips", "dihedral"):
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
    if invariance == "dihedral":
        image = tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32))
    return image


def pretext_dataset(images: np.ndarray, names: list[str], invariance: str, batch_size: int,
                    seed: int) -> tf.data.Dataset:
    """One epoch of (image, k) batches: k = 0 the good image (in an allowed orientation),
    k = i the image with alteration ``names[i - 1]``, each with probability 1 / (n + 1)."""
    functions = [ALTERATIONS[n] for n in names]
    size, channels = images.shape[1], images.shape[3]

    def make(image, k):
        image = orient(image, invariance)
        branches = [lambda: image] + [lambda f=f: f(image) for f in functions]
        altered = tf.switch_case(k, branches)
        return tf.clip_by_value(tf.ensure_shape(altered, [size, size, channels]), 0.0, 1.0), k

    return (tf.data.Dataset.from_tensor_slices(images)
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
            .map(lambda image: (image, tf.random.uniform([], 0, len(functions) + 1, tf.int32)))
            .map(make, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))
