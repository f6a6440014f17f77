"""blocks.vision.decode: PNG (8- and 16-bit), JPEG and BMP strings -> resized float images,
grayscale or RGB."""

from __future__ import annotations


import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from tests import harness
from blocks.vision.decode import decode_images

GRAY = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)


def test_grayscale_png_16_bit_png_and_bmp_decode_alike():
    rgb = np.stack([GRAY, 255 - GRAY, GRAY // 2], axis=-1)
    encoded = [harness.encode_image(GRAY, "PNG"),
               harness.encode_image(GRAY.astype(np.uint16) * 257, "PNG"),
               harness.encode_image(GRAY, "BMP"), harness.encode_image(rgb, "BMP"),
               harness.encode_image(rgb, "PNG")]
    out = decode_images(tf.constant(encoded), 8, 1).numpy()
    assert out.shape == (5, 8, 8, 1) and out.dtype == np.float32
    expected = GRAY / 255.0
    for i in range(3):  # 8-bit PNG, 16-bit PNG (scaled to [0, 1]) and 8-bit BMP
        np.testing.assert_allclose(out[i, :, :, 0], expected, atol=1e-3)
    # RGB BMP to grayscale: the same luma as PNG's own conversion, within a grey level.
    np.testing.assert_allclose(out[3], out[4], atol=1.5 / 255)


def test_rgb_and_resize():
    rgb = np.stack([GRAY, 255 - GRAY, np.full_like(GRAY, 30)], axis=-1)
    encoded = [harness.encode_image(rgb, "PNG"), harness.encode_image(rgb, "BMP"),
               harness.encode_image(GRAY, "PNG")]
    out = decode_images(tf.constant(encoded), 8, 3).numpy()
    np.testing.assert_allclose(out[0], rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[1], rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[2], np.repeat(GRAY[..., None], 3, -1) / 255.0, atol=1e-6)
    small = decode_images(tf.constant([harness.encode_image(GRAY, "JPEG")]), 4, 1).numpy()
    assert small.shape == (1, 4, 4, 1)
    # Antialiased: each output pixel is close to the mean of its 2x2 block.
    blocks = GRAY.reshape(4, 2, 4, 2).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(small[0, :, :, 0], blocks, atol=0.05)
