"""Preprocessing through tft_beam, the models, and the serving export of both modes called on
serialized examples holding encoded PNG / JPEG / BMP bytes (the TFLite files of both modes
are checked by the pipeline runs, test_pipeline.py)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

import suite  # noqa: F401
import keras
import tensorflow as tf

from apps.defect_images import data, evaluation, model as models, preprocessing, trainer
from apps.defect_images.app import APP
from apps.defect_images.config import DefectConfig, input_size, with_mode
from apps.defect_images.features import (
    DECISION_SCORE, IMAGE, IMAGE_XF, IS_DEFECT, LABEL, SCORE, THRESHOLD)
from blocks.vision.decode import decode_images
from suite.config import replace_path, to_dict
from tests import harness
from suite.metrics import decision_threshold, roc_auc

TINY = replace_path(replace_path(DefectConfig.preset("tiny"), "train.epochs", 2),
                    "anomaly.pretrain_epochs", 2)


def test_preprocessing_fn_decodes_every_encoding_to_the_preset_resolution():
    from components.transform_local import transform_rows

    config = replace_path(TINY, "model.image_size", 16)
    gray = np.full((40, 60), 128, np.uint8)
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299 * 255
    rows = [{IMAGE: image, LABEL: label, IS_DEFECT: label}
            for image, label in ((harness.encode_image(gray, "PNG"), 0),
                                 (harness.encode_image(rgb, "JPEG"), 1),
                                 (harness.encode_image(gray, "BMP"), 1),
                                 (harness.encode_image(rgb, "BMP"), 0))]
    spec = {IMAGE: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64),
            IS_DEFECT: tf.io.FixedLenFeature([], tf.int64)}
    out = transform_rows(rows, spec, lambda inputs: preprocessing.preprocessing_fn(
        inputs, {"config": to_dict(config)}))
    images = [np.asarray(r[IMAGE_XF]) for r in out]
    assert all(i.shape == (16, 16, 1) and i.dtype == np.float32 for i in images)
    np.testing.assert_allclose(images[0], 128 / 255, atol=1e-3)
    np.testing.assert_allclose(images[1], 0.299, atol=0.02)
    np.testing.assert_allclose(images[2], 128 / 255, atol=5e-3)
    np.testing.assert_allclose(images[3], 0.299, atol=5e-3)
    assert [int(r[LABEL]) for r in out] == [0, 1, 1, 0]


@pytest.mark.parametrize("kind", ["cnn", "resnet", "cspnet"])
def test_each_classifier_builds_standardises_and_learns(kind):
    config = dataclasses.replace(TINY, model=dataclasses.replace(
        TINY.model, kind=kind, filters=(64, 64) if kind == "resnet" else (8, 16),
        blocks=(1, 1), image_size=32),
        data=dataclasses.replace(TINY.data, classes=("ok", "spot")))
    keras.utils.set_random_seed(0)
    model = models.build_model(config.check())
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 2)
    assert len(model.get_layer(models.FEATURES).output.shape) == 4
    harness.check_image_classifier_learns(model)


def test_thresholds_and_reports_against_hand_computed_values():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels, 1.0), 1)
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    good = np.arange(1.0, 21.0)  # 20 good parts: 5 % may be flagged, i.e. one
    t = evaluation.false_alarm_threshold(good, 0.05)
    assert t == pytest.approx(19.5) and (good >= t).sum() == 1
    assert decision_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9]) == \
        pytest.approx(0.45)
    report = evaluation.detection_report([0, 0, 1, 1, 1], [0.1, 0.7, 0.6, 0.9, 0.2], 0.5)
    assert (report["tp"], report["tn"], report["fp"], report["fn"]) == (2, 1, 1, 1)
    assert report["false_alarm_rate"] == pytest.approx(0.5)
    cls = evaluation.classification_report([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c"])
    assert cls["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert cls["recall"]["a"] == 0.5 and cls["precision"]["b"] == 0.5
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    heat = np.zeros((10, 10))
    heat[:5, :5] = 3.0
    heat[9, 9] = 1.0
    inside = evaluation.heat_in_boxes(heat, mask)
    assert inside["heat_in_boxes"] == pytest.approx(75 / 76)
    assert inside["box_area"] == 0.25 and inside["lift"] == pytest.approx(75 / 76 / 0.25)


def test_anomaly_outputs_give_the_score_back_and_decide_at_the_threshold():
    post = trainer.anomaly_outputs(threshold=10.0, scale=2.0)
    scores = np.array([4.0, 9.9, 10.1, 30.0], np.float32)
    z = (scores - 10.0) / 2.0
    out = {k: v.numpy() for k, v in post(tf.constant(np.stack([-z / 2, z / 2], 1))).items()}
    np.testing.assert_allclose(out[SCORE], scores, rtol=1e-6)
    assert out[IS_DEFECT].tolist() == [0, 0, 1, 1] == out["class_ids"].tolist()
    assert [c.decode() for c in out["classes"]] == ["ok", "ok", "defect", "defect"]
    np.testing.assert_allclose(out[THRESHOLD], 10.0)
    assert ((out[DECISION_SCORE] >= 0.5) == (scores >= 10.0)).all()
    np.testing.assert_allclose(out["probabilities"][:, 1], out[DECISION_SCORE], atol=1e-6)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> str:
    return data.generate_synthetic(str(tmp_path_factory.mktemp("raw") / "parts"),
                                   n_per_class=12, size=40,
                                   extensions=(".png", ".jpg", ".bmp"))


def _exported(mode: str, raw: str, root) -> tuple:
    config = with_mode(TINY, mode)
    ready = harness.prepare(APP, config, raw, root)
    config = APP.with_ingested(config, ready.ingested)
    model_dir, trained = harness.check_export(APP, config, ready, root / "export")
    return config, ready, model_dir, trained


@pytest.fixture(scope="module")
def classifier(raw, tmp_path_factory):
    return _exported("classify", raw, tmp_path_factory.mktemp("classify"))


@pytest.fixture(scope="module")
def detector(raw, tmp_path_factory):
    return _exported("anomaly", raw, tmp_path_factory.mktemp("anomaly"))


def _files(raw: str) -> list[str]:
    return [os.path.join(raw, c, f) for c in ("ok", "scratch", "spot")
            for f in sorted(os.listdir(os.path.join(raw, c)))[:3]]


def test_classifier_serves_encoded_bytes_as_the_keras_model_does(classifier, raw):
    config, _, model_dir, trained = classifier
    images = [data.load_image_bytes(f) for f in _files(raw)]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = {k: v.numpy() for k, v in serve(examples=tf.constant(
        [data.image_example(i) for i in images])).items()}
    assert set(out) == {"probabilities", "class_ids", "classes", "scores", IS_DEFECT}
    x = decode_images(tf.constant(images), config.model.image_size, config.model.channels)
    expected = trained.model(x, training=False).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert out[IS_DEFECT].tolist() == [int(c != 0) for c in out["class_ids"]]
    metadata = json.load(open(os.path.join(model_dir, "assets.extra", "suite_metadata.json")))
    assert metadata["mode"] == "classify" and metadata["classes"] == ["ok", "scratch", "spot"]
    assert len(metadata["history"]) == 2
    assert len(metadata["validation"]["confusion_matrix"]) == 3


def test_detector_serves_score_threshold_and_decision(detector, raw):
    config, _, model_dir, trained = detector
    images = [data.load_image_bytes(f) for f in _files(raw)]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = {k: v.numpy() for k, v in serve(examples=tf.constant(
        [data.image_example(i) for i in images])).items()}
    assert {SCORE, THRESHOLD, IS_DEFECT, DECISION_SCORE, "classes"} <= set(out)
    metadata = trained.metadata
    assert metadata["mode"] == "anomaly" and metadata["threshold_rule"] == "youden"
    assert set(metadata["thresholds"]) == {"youden", "false_alarm"}
    size = input_size(config)
    x = decode_images(tf.constant(images), size, config.model.channels)
    maps, scores = models.map_and_score(trained.model, x.numpy())
    assert maps.shape == (9, size, size) and (maps >= 0).all()
    np.testing.assert_allclose(out[SCORE], scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out[THRESHOLD], metadata["threshold"])
    assert out[IS_DEFECT].tolist() == (scores >= metadata["threshold"]).astype(int).tolist()
    # The score: the larger of the map's smoothed peak and the texture term, each in units
    # of the validation good parts' spread above their median.
    k = config.anomaly.smoothing
    peak = tf.nn.avg_pool2d(maps[..., None], k, 1, "VALID").numpy().max(axis=(1, 2, 3))
    parts = models.anomaly_parts(trained.model, x.numpy())
    np.testing.assert_allclose(parts["local"], peak, rtol=1e-4)
    (m_l, d_l), (m_g, d_g) = metadata["norms"]["local"], metadata["norms"]["global"]
    expected = np.maximum((peak - m_l) / d_l, (parts["global"] - m_g) / d_g)
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-3)
