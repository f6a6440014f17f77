"""preprocessing_fn through tft_beam, model build and training, export with every signature,
and TFLite parity for the sensor-vibration app (tiny preset, generated recordings)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from apps.sensor_vibration import data, preprocessing
from apps.sensor_vibration.app import APP
from apps.sensor_vibration.config import MODEL_KINDS, VibrationConfig, with_model_kind
from apps.sensor_vibration.features import LABEL, SIGNAL, SIGNAL_XF
from apps.sensor_vibration.model import build_model
from components import transform_local
from pipelines.trainer import WARMUP_EXAMPLES, serving_examples
from serving import export, warmup
from suite import examples_io
from suite.config import replace_path
from tests import harness

TINY = VibrationConfig.preset("tiny")
CONFIG = dataclasses.replace(TINY, data=dataclasses.replace(
    TINY.data, classes=("Normal", "IR007", "OR021"), channels=("DE", "FE")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Generated recordings -> ingested windows -> TFT analysis, shared by the tests."""
    root = tmp_path_factory.mktemp("vibration")
    raw = data.generate_synthetic(str(root / "raw"), classes=CONFIG.data.classes, loads=(0, 1),
                                  n_samples=6000, channels=CONFIG.data.channels)
    return harness.prepare(APP, CONFIG, raw, root)


def _config_dict():
    from suite.config import to_dict
    return to_dict(CONFIG)


def test_preprocessing_fn_scales_each_channel_to_z_scores():
    rng = np.random.default_rng(0)
    window, n_ch = CONFIG.data.window, len(CONFIG.data.channels)
    scales = np.array([1.0, 50.0], np.float32)
    rows = [{"signal": (rng.normal(3.0, 1.0, (window, n_ch)) * scales).astype(np.float32).ravel(),
             "label": np.int64(i % 3)} for i in range(6)]
    spec = {k: v for k, v in preprocessing.raw_feature_spec(CONFIG).items()
            if k in (SIGNAL, LABEL)}
    out = transform_local.transform_rows(
        rows, spec, lambda x: preprocessing.preprocessing_fn(x, {"config": _config_dict()}))
    signal = np.stack([r["signal_xf"] for r in out])
    assert signal.shape == (6, window, n_ch)
    np.testing.assert_allclose(signal.mean(axis=(0, 1)), 0.0, atol=1e-3)
    np.testing.assert_allclose(signal.std(axis=(0, 1)), 1.0, atol=1e-3)
    assert [int(r["label"]) for r in out] == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_each_model_kind_builds_and_learns(kind, prepared):
    config = APP.with_model(CONFIG, kind)
    model = build_model(config)
    assert model.input_shape == (None, CONFIG.data.window, 2)
    assert model.output_shape == (None, 3)
    ds = prepared.inputs.dataset(prepared.files("train"), 32, SIGNAL_XF, LABEL)
    x, y = next(iter(ds))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(ds.take(1).repeat(15), verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before


@pytest.fixture(scope="module")
def exported(prepared):
    model_dir, trained = harness.check_export(APP, CONFIG, prepared,
                                              prepared.root / "serving_model")
    return model_dir, trained.model, prepared.files("eval")


def test_export_serves_every_signature_consistently(exported, prepared):
    model_dir, model, eval_files = exported
    examples = examples_io.first_examples(eval_files, 16)
    loaded = tf.saved_model.load(model_dir)
    served = loaded.signatures["serving_default"](examples=tf.constant(examples))
    assert set(served) == {"probabilities", "class_ids", "classes", "scores"}
    probabilities = served["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    classes = [c.decode() for c in served["classes"].numpy()]
    assert classes == [CONFIG.data.classes[i] for i in served["class_ids"].numpy()]

    transformed = loaded.signatures["transform_features"](examples=tf.constant(examples))
    assert transformed[SIGNAL_XF].shape == (16, CONFIG.data.window, 2)
    parsed = tf.io.parse_example(examples, preprocessing.raw_feature_spec(CONFIG))
    np.testing.assert_array_equal(transformed[LABEL].numpy(), parsed[LABEL].numpy())

    raw = loaded.signatures["serving_raw"](signal=parsed[SIGNAL])
    np.testing.assert_allclose(raw["probabilities"].numpy(), probabilities, atol=1e-5)
    direct = model(transformed[SIGNAL_XF], training=False)
    np.testing.assert_allclose(np.asarray(direct), probabilities, atol=1e-5)
    assert export.load_metadata(model_dir)["config"]["data"]["window"] == CONFIG.data.window


def test_warmup_requests_are_real_predict_requests(exported):
    model_dir, _, eval_files = exported
    logs = warmup.read_warmup_requests(model_dir)
    expected = serving_examples(examples_io.first_examples(eval_files, WARMUP_EXAMPLES),
                                (SIGNAL,))
    assert len(logs) == WARMUP_EXAMPLES
    loaded = tf.saved_model.load(model_dir).signatures["serving_default"]
    for log, example in zip(logs, expected, strict=True):
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        sent = tf.make_ndarray(request.inputs["examples"])
        assert sent.tolist() == [example]
        assert loaded(examples=tf.constant(sent))["probabilities"].shape == (1, 3)


def test_tflite_variants_agree_with_the_served_model(exported, prepared, tmp_path):
    model_dir, _, _ = exported
    edge_dir = tmp_path / "edge" / "1"
    report = harness.check_tflite(APP, CONFIG, prepared, model_dir, edge_dir)
    variants = report["variants"]
    assert sorted(variants) == ["dynamic_range", "float16", "float32", "int8"]
    assert sorted(os.listdir(edge_dir)) == sorted(
        [f"{v}.tflite" for v, r in variants.items() if r["accepted"]] + ["report.json"])
    assert json.loads((edge_dir / "report.json").read_text()) == report
    assert variants["float32"]["max_abs_diff"] < 1e-4
    for name, r in variants.items():
        assert r["agreement"] >= 0.9, name
    assert variants["int8"]["size_bytes"] < variants["float32"]["size_bytes"]
    assert not [p for p in os.listdir(tmp_path / "edge") if p.startswith(".staging")]


def test_spectral_model_reads_the_welch_log_power_spectrum():
    import keras

    config = dataclasses.replace(APP.with_model(CONFIG, "spectral"), model=dataclasses.replace(
        APP.with_model(CONFIG, "spectral").model, first_kernel=64, first_stride=32))
    model = build_model(config)
    spectrum = keras.Model(model.inputs, model.get_layer("welch_average").output)
    t = np.arange(CONFIG.data.window)
    # Channel 0: a sine on DFT bin 8 of a 64-sample frame; channel 1: on bin 20.
    x = np.stack([np.sin(2 * np.pi * 8 * t / 64), 0.5 * np.sin(2 * np.pi * 20 * t / 64)],
                 axis=-1)[None].astype(np.float32)
    power = spectrum(x).numpy().reshape(2, 32)  # [channel, bins 1 .. 32]
    assert power[0].argmax() + 1 == 8 and power[1].argmax() + 1 == 20
    # Against numpy: Hann-windowed frames, |DFT|^2 / frame, averaged over frames.
    frames = np.stack([x[0, s:s + 64, 0] for s in range(0, len(t) - 63, 32)])
    expected = (np.abs(np.fft.rfft(frames * np.hanning(64), axis=1)) ** 2 / 64).mean(0)[1:33]
    np.testing.assert_allclose(power[0], expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="model.first_kernel"):
        build_model(dataclasses.replace(config, model=dataclasses.replace(
            config.model, first_kernel=CONFIG.data.window + 1)))


def test_spectral_tflite_files_start_after_the_front_end(prepared, tmp_path):
    """The spectral model's TFLite files take the Welch log spectrum (the device computes
    it): int8 holds the log spectrum, the head runs in the microcontroller runtime, and a
    pruned int8 variant and a distilled student are made when asked."""
    from tflite_micro import runtime

    config = APP.with_model(CONFIG, "spectral")
    for field, value in (("model.first_kernel", 64), ("model.first_stride", 32),
                         ("train.epochs", 10), ("edge.prune_sparsity", 0.5),
                         ("edge.distill", True)):
        config = replace_path(config, field, value)
    model_dir, _ = harness.check_export(APP, config, prepared, tmp_path / "model")
    report = harness.check_tflite(APP, config, prepared, model_dir, tmp_path / "edge",
                                  train_examples=1000)
    bins = len(CONFIG.data.channels) * 32
    assert report["front_end"]["head_from"] == "standardize"
    assert report["front_end"]["output_shape"] == [bins]
    operations = report["front_end"]["operations"]
    assert "welch_average (GlobalAveragePooling1D)" in operations
    assert operations[-1].endswith("(Log)")  # op names are made unique per process
    assert "Hann frames of 64 samples every 32" in report["front_end"]["computes"]
    int8 = report["variants"]["int8"]
    assert int8["accepted"] and int8["agreement"] >= 0.95, int8.get("rejected")
    interpreter = runtime.Interpreter.from_file(str(tmp_path / "edge" / "int8.tflite"))
    assert list(interpreter.get_input_details(0)["shape"]) == [1, bins]
    assert report["mcu"]["runs"] is True and report["mcu"]["agreement"] >= 0.99, report["mcu"]
    # The pruned variant: half its weights zero in the file, gated like the others, and
    # smaller than the dense int8 file once compressed.
    pruned = report["variants"]["pruned_int8"]
    assert pruned["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert pruned["size_gzip_bytes"] < int8["size_gzip_bytes"]
    assert "accuracy" in pruned["drop"] and report["pruning"]["target_sparsity"] == 0.5
    # The student: the app's band-energy model, trained from the served model's outputs and
    # the labels, converted and gated like the others on the same held-out windows.
    student = report["student"]
    assert student["model"] == "sensor_vibration_student"
    assert student["parameters"] < student["teacher_parameters"] / 3
    assert student["validation_agreement"] >= 0.8, student
    assert student["variants"] == ["student_float32", "student_int8"]
    for name in student["variants"]:
        variant = report["variants"][name]
        assert variant["parameters"] == student["parameters"]
        # 16 band levels of generated signals: far above chance (1/3), not the teacher's
        assert variant["agreement"] >= 0.6, variant
        assert variant["accepted"] == (variant["drop"]["accuracy"] <= 0.01), variant


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_models_convert_to_every_tflite_variant(kind, prepared, tmp_path):
    config = replace_path(with_model_kind(CONFIG, kind), "train.epochs", 1)
    model_dir, _ = harness.check_export(APP, config, prepared, tmp_path / "model")
    report = harness.check_tflite(APP, config, prepared, model_dir, tmp_path / "edge")
    assert sorted(report["variants"]) == ["dynamic_range", "float16", "float32", "int8"]
    assert report["skipped"] == {}


def test_a_model_that_does_not_convert_is_recorded_not_a_failed_run(prepared, tmp_path):
    """A GRU left as a loop over a dynamic batch: the converter cannot lower it."""
    from apps.sensor_vibration import trainer
    from components.tflite_export import ALL_VARIANTS, export_edge_models

    transform_output = prepared.inputs.transform_output
    shape = transform_output.transformed_feature_spec()[SIGNAL_XF].shape
    inputs = tf.keras.Input(tuple(shape), name=SIGNAL_XF)
    looped = tf.keras.layers.GRU(4, name="gru")(inputs)
    outputs = tf.keras.layers.Dense(len(CONFIG.data.classes), activation="softmax",
                                    name="probabilities")(looped)
    model_dir = export.export_serving_model(
        tf.keras.Model(inputs, outputs), transform_output, str(tmp_path / "model"),
        trainer.export_spec(CONFIG), model_name=APP.name)
    edge_dir = tmp_path / "edge" / "1"
    report = export_edge_models(
        model_dir, str(edge_dir),
        train_examples=examples_io.first_examples(prepared.files("train"), 16),
        eval_examples=examples_io.first_examples(prepared.files("eval"), 8),
        transform_output_dir=os.path.dirname(
            transform_output.transform_savedmodel_dir.rstrip("/")),
        label_key=LABEL, model_input_key=SIGNAL_XF)
    assert report["variants"] == {} and list(report["skipped"]) == [ALL_VARIANTS]
    assert "does not convert" in report["skipped"][ALL_VARIANTS]
    assert "TensorList" in report["skipped"][ALL_VARIANTS]  # the converter's own reason
    assert os.listdir(edge_dir) == ["report.json"]
    assert json.loads((edge_dir / "report.json").read_text()) == report
