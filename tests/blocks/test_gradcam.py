"""Grad-CAM (blocks.vision.gradcam) on a small CNN trained on generated images whose label
lives in one known region: the heatmap must land there; plus overlay, save_png, errors and a
reloaded .keras model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras

from blocks.vision import gradcam

SIZE = 32
HALF = SIZE // 2
SQUARE = 4


def _scans(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, 32, 32, 1] standardized images and 0/1 labels.

    Only the positive class has a bright filled 4x4 square, at a random place inside the
    top-left quadrant. Both classes get noise, a soft blob and bright thin bars in the other
    three quadrants, drawn independently of the label.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    images = rng.normal(0.0, 0.3, size=(n, SIZE, SIZE)).astype(np.float32)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for i in range(n):
        # Class-independent distractors, never in the top-left quadrant.
        for _ in range(rng.integers(1, 4)):
            quadrant = rng.integers(1, 4)  # 1 = top-right, 2 = bottom-left, 3 = bottom-right
            r0 = (quadrant // 2) * HALF
            c0 = (quadrant % 2) * HALF
            length = int(rng.integers(6, 12))
            r = r0 + int(rng.integers(0, HALF - 1))
            c = c0 + int(rng.integers(0, HALF - length + 1))
            if rng.random() < 0.5:
                images[i, r, c:c + length] += 2.5
            else:
                images[i, r0 + (c - c0):r0 + (c - c0) + length, c0 + (r - r0)] += 2.5
        quadrant = rng.integers(1, 4)
        centre_r = (quadrant // 2) * HALF + rng.uniform(4, HALF - 4)
        centre_c = (quadrant % 2) * HALF + rng.uniform(4, HALF - 4)
        images[i] += 1.2 * np.exp(-((rows - centre_r) ** 2 + (cols - centre_c) ** 2) / 18.0)
        if labels[i] == 1:
            r, c = rng.integers(0, HALF - SQUARE + 1, size=2)
            images[i, r:r + SQUARE, c:c + SQUARE] += 2.5
    images = (images - images.mean(axis=(1, 2), keepdims=True)) / images.std(
        axis=(1, 2), keepdims=True)
    return images[..., np.newaxis].astype(np.float32), labels.astype(np.int32)


def _cnn() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1), name="image_xf")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, padding="same")(x)
    # [N, 16, 16, 32]: one pooling stage only, so the maps are fine enough to localize a 4x4
    # square (an 8x8 map also works, but spills more of the heat over the quadrant border).
    x = keras.layers.Activation("relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="scan_cnn")


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x_train, y_train = _scans(640, seed=1)
    x_test, y_test = _scans(200, seed=2)
    model = _cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    return model, x_test, y_test


def _top_left_mass(maps: np.ndarray) -> np.ndarray:
    total = maps.sum(axis=(1, 2))
    return maps[:, :HALF, :HALF].sum(axis=(1, 2)) / np.maximum(total, 1e-12)


def test_model_learns_and_heatmap_lands_on_the_labelled_region(trained):
    model, x_test, y_test = trained
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert accuracy > 0.9, accuracy

    positives = x_test[y_test == 1]
    maps = gradcam.grad_cam(model, positives, class_ids=[1] * len(positives))
    assert maps.shape == (len(positives), SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.reshape(len(maps), -1).max(axis=1), 1.0, atol=1e-3)
    mass = _top_left_mass(maps)
    print(f"mean top-left heatmap mass on positives: {mass.mean():.3f}")
    # A uniform map would put 0.25 of its mass there; measured ~0.7-0.8 over training seeds.
    assert mass.mean() > 0.6, mass.mean()
    assert np.median(mass) > 0.6

    # Default class ids = the predicted class; a single image without the batch axis works.
    predicted = model.predict(positives[:4], verbose=0).argmax(-1)
    np.testing.assert_allclose(gradcam.grad_cam(model, positives[:4]),
                               gradcam.grad_cam(model, positives[:4], class_ids=predicted),
                               atol=1e-6)
    np.testing.assert_allclose(gradcam.grad_cam(model, positives[0]), maps[:1], atol=1e-5)
    # Batching does not change the maps.
    np.testing.assert_allclose(
        gradcam.grad_cam(model, positives[:10], class_ids=1, batch_size=3), maps[:10],
        atol=1e-5)


def test_reloaded_keras_model_gives_the_same_maps(trained, tmp_path):
    model, x_test, _ = trained
    path = str(tmp_path / "scan_cnn.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(gradcam.grad_cam(reloaded, x_test[:16]),
                               gradcam.grad_cam(model, x_test[:16]), atol=1e-5)


def test_bad_layer_and_class_ids_raise(trained):
    model, x_test, _ = trained
    with pytest.raises(ValueError, match="no_such_layer"):
        gradcam.grad_cam(model, x_test[:2], layer_name="no_such_layer")
    gap = next(layer.name for layer in model.layers
               if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    with pytest.raises(ValueError, match=f"{gap}.*4-D"):
        gradcam.grad_cam(model, x_test[:2], layer_name=gap)
    with pytest.raises(ValueError, match="class_ids"):
        gradcam.grad_cam(model, x_test[:2], class_ids=[0, 2])
    with pytest.raises(ValueError, match="class_ids"):
        gradcam.grad_cam(model, x_test[:2], class_ids=[0])


def test_overlay_colours_only_where_the_heat_is():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 32)).astype(np.float32)  # standardized, float
    heat = np.zeros((8, 8), np.float32)
    heat[:2, :2] = 1.0  # hot top-left corner, resized to 32x32 inside overlay
    rgb = gradcam.overlay(image, heat)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    plain = gradcam.overlay(image, np.zeros((32, 32), np.float32))
    grey = np.round((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(plain, np.repeat(grey[..., None], 3, axis=-1))
    changed = np.abs(rgb.astype(int) - plain.astype(int)).sum(axis=-1)
    assert changed[:6, :6].mean() > 30
    assert changed[20:, 20:].max() == 0  # cold region keeps the plain scan
    # uint8 grayscale and RGB inputs keep their pixels where there is no heat.
    scan = rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(gradcam.overlay(scan, np.zeros((4, 5))), scan)
    assert gradcam.overlay(scan[..., :1], np.ones((16, 20)), alpha=1.0)[0, 0].tolist() == [
        128, 0, 0]  # jet(1) is dark red
    with pytest.raises(ValueError):
        gradcam.overlay(image, heat, alpha=1.5)


def test_save_png_writes_atomically(tmp_path):
    rgb = np.zeros((12, 20, 3), np.uint8)
    rgb[..., 0] = 200
    path = str(tmp_path / "nested" / "folder" / "cam.png")
    assert gradcam.save_png(path, rgb) == path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (20, 12) and image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), rgb)
    gradcam.save_png(path, rgb[::-1] // 2)  # overwrite in place
    assert os.listdir(os.path.dirname(path)) == ["cam.png"]  # no temp file left over
    with pytest.raises(ValueError):
        gradcam.save_png(str(tmp_path / "bad.png"), rgb.astype(np.float32))


@pytest.mark.parametrize("head", ["activation", "softmax_layer"])
def test_class_score_is_the_logit_whatever_the_softmax_head(head):
    """Dense(softmax), Dense + Activation("softmax") and Dense + Softmax() with the same weights
    give the same maps (all explain the logit); explaining the probability differs."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 1), name="image_xf")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    fused = keras.Model({"image_xf": inputs}, dense(pooled))
    logits = keras.layers.Dense(2)
    softmax = keras.layers.Activation("softmax") if head == "activation" else keras.layers.Softmax()
    split = keras.Model(inputs, softmax(logits(pooled)))
    logits.set_weights(dense.get_weights())
    probability = keras.Model(inputs, keras.layers.Lambda(lambda p: p * 1.0)(split.output))

    images = np.random.default_rng(0).normal(size=(4, 12, 12, 1)).astype(np.float32)
    expected = gradcam.grad_cam(fused, images, class_ids=[0, 1, 0, 1])
    np.testing.assert_allclose(gradcam.grad_cam(split, images, class_ids=[0, 1, 0, 1]),
                               expected, atol=1e-5)
    assert not np.allclose(gradcam.grad_cam(probability, images, class_ids=[0, 1, 0, 1]),
                           expected, atol=1e-3)
