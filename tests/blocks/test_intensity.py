"""In-graph intensity normalisation (blocks.vision.intensity) on generated images (a
chest-like radiograph, gradients with texture): ``equalize`` against PIL's
``ImageOps.equalize`` and OpenCV's ``equalizeHist``,
``clahe`` against OpenCV's ``createCLAHE``, the invariance to exposure changes that is the
point of equalising, and the Keras layer through .keras saving and TFLite."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from blocks.vision.intensity import IntensityNormalization, clahe, equalize


def _chest(height: int = 128, width: int = 128, seed: int = 0) -> np.ndarray:
    """A synthetic frontal chest radiograph, float64 [height, width] spanning exactly [0, 1]:
    dark air around a body with a vertical soft-tissue gradient, two darker lung fields
    crossed by curved ribs, a bright mediastinum / spine, slight blur and film-grain noise
    (smooth gradients plus texture, like the real thing)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    y, x = y / (height - 1), x / (width - 1)
    image = np.full((height, width), 0.06)
    body = ((y - 0.55) / 0.5) ** 2 + ((x - 0.5) / 0.46) ** 2 < 1.0
    image[body] = 0.50 + 0.15 * y[body]
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (7.0 * y + 2.5 * (x - 0.5) ** 2))
    for centre in (0.3, 0.7):
        lung = ((y - 0.47) / 0.3) ** 2 + ((x - centre) / 0.15) ** 2 < 1.0
        image[lung] = 0.22 + 0.12 * (1 - y[lung]) + 0.1 * ribs[lung] ** 4
    image[body & (np.abs(x - 0.5) < 0.07)] += 0.25
    image = ndimage.gaussian_filter(image, 1.2) + rng.normal(0.0, 0.015, image.shape)
    return (image - image.min()) / (image.max() - image.min())


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


def _batch(*images: np.ndarray) -> np.ndarray:
    """uint8 or float [H, W] / [H, W, C] images -> float32 [B, H, W, C] in [0, 1]."""
    out = []
    for image in images:
        image = image / 255.0 if image.dtype == np.uint8 else image
        out.append(image[..., None] if image.ndim == 2 else image)
    return np.stack(out).astype(np.float32)


def _grey_levels(y: tf.Tensor | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(y, np.float64) * 255)


def _gradients(size: int = 160, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image of smooth gradients plus texture whose histograms have no peak (no
    grey level holds more than 1 % of a channel's pixels): a ramp, a curved ramp and a
    radial one, with the same fine texture and noise on each."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    texture = 0.03 * np.sin(2 * np.pi * 9 * x) * np.sin(2 * np.pi * 7 * y) + rng.normal(
        0.0, 0.01, x.shape
    )
    channels = [0.05 + 0.9 * x, 0.05 + 0.9 * y**1.3, np.hypot(x - 0.5, y - 0.5) / 0.75]
    return np.stack([_uint8(np.clip(c + texture, 0.0, 1.0)) for c in channels], -1)


def test_equalize_matches_pil_per_channel():
    """PIL's ``ImageOps.equalize`` on an RGB uint8 image (each band on its own, as ours).

    Known differences of definition: PIL maps grey level ``b`` to ``(step // 2 +
    cdf_exclusive(b)) // step`` with ``step = (n - count of the brightest level) // 255``;
    ours (OpenCV's and the textbook one) is ``255 * (cdf(b) - cdf_min) / (n - cdf_min)``
    with the inclusive cdf. They differ by about ``255 * count(b) / n`` grey levels (the
    pixels of level ``b`` itself) plus PIL's integer step. On an image with no histogram
    peak that is under 2.5 levels, so: every pixel within 2 grey levels, 85 % within 1, and
    ours at least as bright on average (inclusive cdf). (On the chest image, whose dark air
    holds a few % of the pixels per grey level, the gap reaches about 17 levels there; the
    OpenCV test below checks that image exactly.)"""
    rgb = _gradients()
    counts = [np.bincount(rgb[..., c].ravel(), minlength=256).max() for c in range(3)]
    assert max(counts) / rgb[..., 0].size < 0.01

    ours = _grey_levels(equalize(_batch(rgb))[0])
    pil = np.asarray(ImageOps.equalize(Image.fromarray(rgb, "RGB")), np.float64)
    difference = np.abs(ours - pil)
    assert difference.max() <= 2, difference.max()
    assert np.mean(difference <= 1) >= 0.85, np.mean(difference <= 1)
    assert 0.0 <= np.mean(ours - pil) < 1.0
    # The comparison has teeth: unequalised, the image is far from PIL's result.
    assert np.abs(rgb - pil).mean() > 10


def test_equalize_equals_opencv_on_the_chest_image():
    """``cv2.equalizeHist`` has our definition, rounded to grey levels: equal on every pixel
    of each channel of an RGB chest image (three chests under different gammas)."""
    rgb = np.stack([_uint8(_chest(seed=s) ** g) for s, g in ((0, 1.0), (1, 0.7), (2, 1.5))], -1)
    ours = _grey_levels(equalize(_batch(rgb))[0])
    for channel in range(3):
        opencv = cv2.equalizeHist(np.ascontiguousarray(rgb[..., channel]))
        np.testing.assert_array_equal(ours[..., channel], opencv)
    # Per channel, not through one shared histogram: the three channels come out different.
    assert np.abs(ours[..., 0] - ours[..., 1]).mean() > 5


def test_equalize_definition_on_edge_cases():
    """Two grey levels go to 0 and 1 whatever they were; a flat image is left as it is; each
    image of a batch is equalised on its own, the same on every call."""
    two = np.full((8, 8), 0.4)
    two[:, :3] = 0.45
    flat = np.full((8, 8), 0.3)
    batch = _batch(two, flat)
    out = equalize(batch).numpy()
    np.testing.assert_array_equal(out[0, :, :3, 0], 1.0)
    np.testing.assert_array_equal(out[0, :, 3:, 0], 0.0)
    np.testing.assert_allclose(out[1], batch[1])
    np.testing.assert_array_equal(equalize(batch[1:]).numpy()[0], out[1])
    np.testing.assert_array_equal(equalize(batch).numpy(), out)


def test_graph_mode_dynamic_sizes_and_xla():
    """``equalize`` traced once for any batch, height and width; both functions compiled
    with XLA give what they give eagerly."""
    traced = tf.function(equalize, input_signature=[tf.TensorSpec([None, None, None, 1])])
    for shape in ((16, 20), (24, 8)):
        batch = _batch(_chest(*shape, seed=1), _chest(*shape, seed=2))
        np.testing.assert_allclose(traced(batch), equalize(batch), atol=1e-6)

    batch = _batch(_chest(32, 40, seed=3), _chest(32, 40, seed=4) ** 1.5)
    np.testing.assert_allclose(
        tf.function(equalize, jit_compile=True)(batch), equalize(batch), atol=1e-6
    )
    compiled = tf.function(lambda x: clahe(x, tiles=(4, 5), clip_limit=2.0), jit_compile=True)
    np.testing.assert_allclose(compiled(batch), clahe(batch, (4, 5), 2.0), atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "tiles", "clip_limit"),
    [
        ((128, 128), 8, 2.0),  # the common setting (16x16 tiles, clip at 2 counts)
        ((128, 128), 8, 0.0),  # no clipping: adaptive histogram equalisation
        ((124, 109), 8, 3.0),  # neither side a multiple of the grid: reflection padding
        ((96, 130), (4, 6), 2.0),  # rectangular grid; only the width needs padding
    ],
)
def test_clahe_matches_opencv(shape, tiles, clip_limit):
    """Against ``cv2.createCLAHE(clipLimit, tileGridSize=(cols, rows)).apply`` on the uint8
    chest image. OpenCV rounds each tile's mapping to a grey level and then the bilinear
    blend again, half a grey level each at most, so our float output, rounded, may be one
    grey level off but no more, and is mostly exact."""
    u = _uint8(_chest(*shape))
    ours = _grey_levels(clahe(_batch(u), tiles=tiles, clip_limit=clip_limit)[0, ..., 0])
    grid = (tiles, tiles) if isinstance(tiles, int) else tiles
    opencv = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=grid[::-1]).apply(u)

    difference = np.abs(ours - opencv)
    assert difference.max() <= 1, difference.max()
    assert np.mean(difference == 0) >= 0.7, np.mean(difference == 0)
    # The comparison has teeth: the setting changes OpenCV's output far beyond the tolerance.
    other = cv2.createCLAHE(clipLimit=40.0 if clip_limit else 2.0, tileGridSize=grid[::-1]).apply(u)
    assert np.abs(opencv.astype(float) - other).max() > 20


def test_clahe_per_channel_and_per_image_in_a_batch():
    """RGB channels and batch members are each their own image: a batch of two RGB images
    equals CLAHE of every [H, W] plane alone."""
    planes = [
        _chest(64, 64, seed=s) ** g
        for s, g in ((0, 1.0), (1, 0.6), (2, 1.6), (3, 1.0), (4, 0.8), (5, 1.2))
    ]
    batch = np.stack([np.stack(planes[:3], -1), np.stack(planes[3:], -1)]).astype(np.float32)
    out = clahe(batch, tiles=4).numpy()
    for i, plane in enumerate(planes):
        alone = clahe(_batch(plane), tiles=4).numpy()[0, ..., 0]
        np.testing.assert_allclose(out[i // 3, ..., i % 3], alone, atol=1e-6)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("exposure", ["gamma 0.6", "gamma 1.6", "contrast squeeze"])
def test_equalize_undoes_exposure_changes(exposure):
    """The same (float) chest image under another exposure: raw, it differs by more than 0.1
    on average; equalised, by under 0.008 (2 grey levels) on average, under 0.005 on the
    median pixel and nowhere by more than 0.07.

    Any monotone change of grey levels leaves each pixel's rank, hence its equalised value,
    as it was; what remains is the binning. A change that compresses a range (gamma 1.6 the
    dark air, the squeeze everything) merges neighbouring bins, and the pixels of a merged
    bin all get its value: an error of up to the merged bins' share of the pixels, largest in
    the air, whose darkest levels hold almost 3 % of the pixels each. Four times as many bins
    cut the mean error about four times, which shows that binning is all that is left."""
    image = _chest()
    changed = {
        "gamma 0.6": image**0.6,
        "gamma 1.6": image**1.6,
        "contrast squeeze": 0.3 + 0.45 * image,
    }[exposure]
    assert np.abs(changed - image).mean() > 0.1

    before, after = equalize(_batch(image, changed)).numpy()
    difference = np.abs(after - before)
    assert difference.mean() < 0.008, difference.mean()
    assert np.median(difference) < 0.005, np.median(difference)
    assert difference.max() < 0.07, difference.max()

    before, after = equalize(_batch(image, changed), bins=1024).numpy()
    assert np.abs(after - before).mean() < 0.0025


def _model(size: int = 64, channels: int = 3) -> keras.Model:
    """All three modes side by side, concatenated on the channel axis (one TFLite file)."""
    images = keras.Input((size, size, channels), name="images")
    outputs = [
        IntensityNormalization("none", name="none")(images),
        IntensityNormalization("equalize", name="equalize")(images),
        IntensityNormalization("clahe", tiles=(4, 3), clip_limit=3.0, name="clahe")(images),
    ]
    return keras.Model(images, keras.layers.Concatenate()(outputs))


def _rgb_batch(n: int, size: int = 64) -> np.ndarray:
    return np.stack(
        [
            np.stack([_chest(size, size, seed=3 * i + c) ** (0.7 + 0.3 * c) for c in range(3)], -1)
            for i in range(n)
        ]
    ).astype(np.float32)


def test_layer_round_trips_through_keras_saving(tmp_path):
    model = _model()
    images = _rgb_batch(3)
    expected = model.predict(images, verbose=0)
    # The modes are what the functions compute (up to float rounding between the traced
    # graph and eager execution).
    np.testing.assert_array_equal(expected[..., :3], images)
    np.testing.assert_allclose(expected[..., 3:6], equalize(images).numpy(), atol=1e-6)
    np.testing.assert_allclose(expected[..., 6:], clahe(images, (4, 3), 3.0).numpy(), atol=1e-6)

    path = str(tmp_path / "intensity.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("clahe")
    assert isinstance(layer, IntensityNormalization)
    assert (layer.mode, layer.tiles, layer.clip_limit, layer.bins) == ("clahe", (4, 3), 3.0, 256)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    # Any batch size, including one.
    np.testing.assert_array_equal(loaded.predict(images[1:2], verbose=0), expected[1:2])


def test_converts_to_tflite_with_builtin_ops_only(tmp_path):
    """ExportArchive SavedModel -> TFLite with TFLITE_BUILTINS alone (no select TF ops);
    equal to Keras within 1e-4 at two batch sizes (the batch axis stays dynamic)."""
    from serving.export import export_core_model

    model = _model()
    saved = export_core_model(model, str(tmp_path / "saved"))
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"SCATTER_ND", "CUMSUM", "GATHER", "MIRROR_PAD"} <= ops, ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops

    run = interpreter.get_signature_runner("serve")
    for n in (2, 5):
        images = _rgb_batch(n)
        (out,) = run(images=images).values()
        np.testing.assert_allclose(out, model.predict(images, verbose=0), atol=1e-4)


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="mode: expected one of"):
        IntensityNormalization("gamma")
    with pytest.raises(ValueError, match="tiles: expected"):
        IntensityNormalization("clahe", tiles=0)
    with pytest.raises(ValueError, match="bins: expected"):
        equalize(np.zeros((1, 4, 4, 1), np.float32), bins=1)
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        equalize(np.zeros((4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="at least that many pixels"):
        clahe(np.zeros((1, 4, 16, 1), np.float32), tiles=8)
    with pytest.raises(ValueError, match="height and width must be known"):
        IntensityNormalization("clahe")(keras.Input((None, None, 1)))
    with pytest.raises(ValueError, match="at least that many pixels"):
        IntensityNormalization("clahe", tiles=(8, 4))(keras.Input((6, 32, 1)))
    # Equalising needs no static size.
    IntensityNormalization("equalize")(keras.Input((None, None, 1)))
