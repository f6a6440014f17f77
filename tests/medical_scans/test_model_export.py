"""Preprocessing through tft_beam, the models, the threshold, the serving export called on
serialized examples holding encoded PNG bytes, and TFLite parity."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import numpy as np
import pytest

import suite  # noqa: F401
import keras
import tensorflow as tf

from apps.medical_scans import data, evaluation, preprocessing, trainer
from apps.medical_scans.app import APP
from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.features import IMAGE, IMAGE_XF, LABEL
from apps.medical_scans.model import FEATURES, build_model
from blocks.vision.decode import decode_images
from suite.config import replace_path, to_dict
from suite.metrics import roc_auc
from tests import harness

TINY = MedicalConfig.preset("tiny")


def test_preprocessing_fn_decodes_any_encoding_to_the_preset_resolution():
    from components.transform_local import transform_rows

    config = replace_path(TINY, "model.image_size", 16)
    gray = np.full((40, 60), 128, np.uint8)
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299 * 255
    deep = np.full((30, 30), 65535, np.uint16)  # 16-bit PNG, full scale
    rows = [{IMAGE: image, LABEL: label}
            for image, label in ((harness.encode_image(gray, "PNG"), 0),
                                 (harness.encode_image(rgb, "JPEG", quality=95), 1),
                                 (harness.encode_image(deep, "PNG"), 1))]
    spec = {IMAGE: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64)}
    out = transform_rows(rows, spec, lambda inputs: preprocessing.preprocessing_fn(
        inputs, {"config": to_dict(config)}))
    images = [np.asarray(r[IMAGE_XF]) for r in out]
    assert all(i.shape == (16, 16, 1) and i.dtype == np.float32 for i in images)
    np.testing.assert_allclose(images[0], 128 / 255, atol=1e-3)
    np.testing.assert_allclose(images[1], 0.299, atol=0.02)
    np.testing.assert_allclose(images[2], 1.0, atol=1e-3)
    assert [int(r[LABEL]) for r in out] == [0, 1, 1]


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_each_model_builds_standardises_and_learns(kind):
    config = dataclasses.replace(TINY, model=dataclasses.replace(
        TINY.model, kind=kind, filters=(64, 64) if kind == "resnet" else (8, 16),
        blocks=(1, 1), image_size=32))
    keras.utils.set_random_seed(0)
    model = build_model(config.check())
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 2)
    assert len(model.get_layer(FEATURES).output.shape) == 4
    harness.check_image_classifier_learns(model)


def test_config_check_names_the_bad_field():
    with pytest.raises(ValueError, match="data.classes"):
        replace_path(TINY, "data.classes", ("A", "B", "C")).check()
    with pytest.raises(ValueError, match="model.filters"):
        replace_path(TINY, "model.kind", "resnet").check()  # first stage must have 64
    with pytest.raises(ValueError, match="data.format"):
        replace_path(TINY, "data.format", "tiff").check()


def test_auc_threshold_and_report_against_hand_computed_values():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels, 1.0), 1)  # with ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))
    report = evaluation.binary_report([0, 0, 1, 1, 1], [0.1, 0.7, 0.6, 0.9, 0.2], 0.5)
    assert (report["tp"], report["tn"], report["fp"], report["fn"]) == (2, 1, 1, 1)
    assert report["sensitivity"] == pytest.approx(2 / 3)
    assert report["specificity"] == pytest.approx(0.5)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(0.6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model with CLAHE trained for two epochs through the pipeline's fit hook and
    exported."""
    root = tmp_path_factory.mktemp("medical_export")
    config = replace_path(replace_path(TINY, "train.epochs", 2), "model.intensity", "clahe")
    images = data.generate_synthetic(str(root / "images"), "folders", n_per_class=16, size=40)
    ready = harness.prepare(APP, config, images, root)
    export_dir, trained = harness.check_export(APP, config, ready, root / "export")
    assert len(trained.metadata["history"]) == 2 and trained.metadata["best_epoch"] in (1, 2)
    result = SimpleNamespace(model=trained.model, threshold=trained.metadata["threshold"],
                             ready=ready)
    encoded = [data.load_image_bytes(os.path.join(images, c, f), config.data)
               for c in ("NORMAL", "PNEUMONIA")
               for f in sorted(os.listdir(os.path.join(images, c)))[:4]]
    return result, config, export_dir, encoded, root


def test_serving_default_takes_encoded_png_bytes_and_matches_the_keras_model(exported):
    result, config, export_dir, encoded, _ = exported
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    examples = tf.constant([data.image_example(image) for image in encoded], tf.string)
    out = {k: v.numpy() for k, v in serve(examples=examples).items()}
    x = decode_images(tf.constant(encoded), config.model.image_size,
                                    config.model.channels)
    expected = result.model(x, training=False).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(out["threshold"], result.threshold)
    assert out["class_ids"].tolist() == (expected[:, 1] >= result.threshold).astype(int).tolist()
    raw = tf.saved_model.load(export_dir).signatures["serving_raw"]
    raw_out = raw(image=tf.constant(encoded))
    np.testing.assert_allclose(raw_out["probabilities"].numpy(), expected, atol=1e-5)


def test_with_clahe_the_tflite_files_take_the_image_a_device_equalises_with_opencv(exported):
    """With CLAHE in the model, the .tflite files start after it: fed OpenCV's CLAHE of the
    8-bit image they give the served model's probabilities; int8 is made and gated."""
    import cv2

    from serving import tflite

    result, config, export_dir, encoded, root = exported
    m = config.model
    report = harness.check_tflite(APP, config, result.ready, export_dir, root / "edge")
    front_end = report["front_end"]
    assert front_end["head_from"] == "standardize"
    assert front_end["output_shape"] == [m.image_size, m.image_size, m.channels]
    assert f"CLAHE on {m.clahe_tiles}x{m.clahe_tiles} tiles" in front_end["computes"]
    assert "auc" in report["variants"]["int8"]["drop"]

    x = decode_images(tf.constant(encoded), m.image_size, m.channels).numpy()
    grey = np.round(x * 255).astype(np.uint8)  # what the device's 8-bit image holds
    clahe = cv2.createCLAHE(clipLimit=m.clahe_clip, tileGridSize=(m.clahe_tiles,) * 2)
    equalised = np.stack([clahe.apply(g[..., 0])[..., None] for g in grey]) / np.float32(255)
    served = result.model(grey / np.float32(255), training=False).numpy()
    float32 = str(root / "edge" / "float32.tflite")
    on_device = tflite.run_tflite(float32, equalised.astype(np.float32))
    np.testing.assert_allclose(on_device, served, atol=0.005)
    # The image before CLAHE gives other outputs: the files do not equalise it again.
    unequalised = tflite.run_tflite(float32, grey / np.float32(255))
    assert np.abs(on_device - served).mean() < 0.05 * np.abs(unequalised - served).mean()


def test_acquisition_augmentation_blurs_and_lowers_resolution_half_the_time():
    tf.random.set_seed(0)
    impulse = np.zeros((2, 33, 33, 1), np.float32)
    impulse[:, 16, 16, 0] = 1.0
    blurred = [trainer._random_blur(tf.constant(impulse), 2.0).numpy() for _ in range(40)]
    changed = [b for b in blurred if not np.allclose(b, impulse, atol=1e-3)]
    assert 10 <= len(changed) <= 30  # about half the batches (a tiny sigma changes nothing)
    for b in changed:  # a normalised, symmetric kernel: mass kept, the peak spread out
        np.testing.assert_allclose(b.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)
        assert b.max() < 1.0 and np.allclose(b, b[:, ::-1, ::-1])
    texture = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    lowered = [trainer._random_resolution(tf.constant(texture), 3.0).numpy()
               for _ in range(40)]
    changed = [x for x in lowered if not np.array_equal(x, texture)]
    assert 10 <= len(changed) <= 30 and all(x.shape == texture.shape for x in changed)
    # Down- then up-sampling removes the finest detail: pixel-to-pixel differences shrink.
    assert all(np.abs(np.diff(x, axis=1)).mean() < np.abs(np.diff(texture, axis=1)).mean()
               for x in changed)

