"""Encoded image strings -> float images, inside TensorFlow graphs (transform and serving).

PNG (8- and 16-bit), JPEG, BMP (and GIF, first frame) are decoded by ``tf.io.decode_image``.
Its BMP decoder only gives 3 or 4 channels, and reads 8-bit (indexed) BMPs as their palette
indices: right for grayscale-palette files (what cameras and PIL write for gray images), not
for colour-palette ones. 1- and 4-bit BMPs are not supported.
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf


def _is_bmp(encoded: tf.Tensor) -> tf.Tensor:
    return tf.equal(tf.strings.substr(encoded, 0, 2), b"BM")


def decode_images(encoded: tf.Tensor, image_size: int, channels: int) -> tf.Tensor:
    """Encoded PNG / JPEG / BMP strings [batch] -> float32 images [batch, size, size,
    channels] in [0, 1] (8- and 16-bit images alike), resized with antialiasing.

    ``channels`` 1 converts colour images to grayscale, 3 grayscale ones to RGB.
    """

    def read(one, wanted):
        return tf.io.decode_image(one, channels=wanted, dtype=tf.float32,
                                  expand_animations=False)

    def decode(one):
        if channels == 1:
            # BMP decodes to RGB only: gray from its RGB, with the luma weights of PNG's
            # own conversion (to within one grey level).
            image = tf.cond(_is_bmp(one),
                            lambda: tf.image.rgb_to_grayscale(read(one, 3)),
                            lambda: read(one, 1))
        else:
            image = read(one, channels)
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.ensure_shape(image, [image_size, image_size, channels])

    return tf.map_fn(decode, tf.reshape(encoded, [-1]), fn_output_signature=tf.TensorSpec(
        [image_size, image_size, channels], tf.float32))
