"""blocks.vision.decode: PNG (8- and 16-bit), JPEG and BMP strings -> resized float images,
grayscale or RGB."""

from __future__ import annotations

import io

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf
from PIL import Image

from blocks.vision.decode import decode_images

GRAY = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)


def _encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_grayscale_png_16_bit_png_and_bmp_decode_alike():
    rgb = np.stack([GRAY, 255 - GRAY, GRAY // 2], axis=-1)
    encoded = [_encode(GRAY, "PNG"), _encode(GRAY.astype(np.uint16) * 257, "PNG"),
               _encode(GRAY, "BMP"), _encode(rgb, "BMP"), _encode(rgb, "PNG")]
    out = decode_images(tf.constant(encoded), 8, 1).numpy()
    assert out.shape == (5, 8, 8, 1) and out.dtype == np.float32
    expected = GRAY / 255.0
    for i in range(3):  # 8-bit PNG, 16-bit PNG (scaled to [0, 1]) and 8-bit BMP
        np.testing.assert_allclose(out[i, :, :, 0], expected, atol=1e-3)
    # RGB BMP to grayscale: the same luma as PNG's own conversion, within a grey level.
    np.testing.assert_allclose(out[3], out[4], atol=1.5 / 255)


def test_rgb_and_resize():
    rgb = np.stack([GRAY, 255 - GRAY, np.full_like(GRAY, 30)], axis=-1)
    encoded = [_encode(rgb, "PNG"), _encode(rgb, "BMP"), _encode(GRAY, "PNG")]
    out = decode_images(tf.constant(encoded), 8, 3).numpy()
    np.testing.assert_allclose(out[0], rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[1], rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[2], np.repeat(GRAY[..., None], 3, -1) / 255.0, atol=1e-6)
    small = decode_images(tf.constant([_encode(GRAY, "JPEG")]), 4, 1).numpy()
    assert small.shape == (1, 4, 4, 1)
    # Antialiased: each output pixel is close to the mean of its 2x2 block.
    blocks = GRAY.reshape(4, 2, 4, 2).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(small[0, :, :, 0], blocks, atol=0.05)
