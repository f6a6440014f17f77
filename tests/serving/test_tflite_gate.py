"""The gate on TFLite variants: a model built to quantize badly has its int8 file rejected by
the metric drop measured on held-out examples, while the float variants pass."""

import suite  # noqa: F401  (sets the Keras policy before TensorFlow loads)

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.tflite_export import gate_limits
from serving import tflite
from suite.config import EdgeConfig


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature 0 spans +-1000 and carries nothing; the label is the sign of feature 1, which
    spans +-1. One int8 scale for the whole input tensor (about 8 per step) rounds feature 1
    to zero, so the int8 model cannot tell the classes apart; float models can."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.uniform(-1000, 1000, n), rng.uniform(0.05, 1, n) * rng.choice([-1, 1], n)],
                 axis=1).astype(np.float32)
    return x, (x[:, 1] < 0).astype(np.int64)


@pytest.fixture(scope="module")
def report_inputs(tmp_path_factory):
    inputs = keras.Input((2,), name="x")
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[0.0, 0.0], [4.0, -4.0]], np.float32), np.zeros(2, np.float32)])
    root = tmp_path_factory.mktemp("gate")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", model.call,
                         input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    archive.write_out(str(root / "saved_model"), verbose=False)
    x_train, _ = _data(300, seed=1)
    x_eval, y_eval = _data(200, seed=2)
    paths = tflite.convert(str(root / "saved_model"), str(root / "tflite"), x_train)
    reference = model.predict(x_eval, verbose=0)
    return paths, x_eval, reference, y_eval


def _evaluated(report_inputs) -> dict:
    paths, x, reference, labels = report_inputs
    return tflite.evaluate(paths, x, reference, labels, latency_examples=20)


def test_int8_rejected_for_its_accuracy_drop_float_variants_accepted(report_inputs):
    report = tflite.gate(_evaluated(report_inputs), gate_limits(), max_latency_ratio=1e9)
    assert report["reference"]["accuracy"] == 1.0
    assert report["reference"]["auc"] == 1.0  # binary: AUC of the last column
    variants = report["variants"]
    for name in ("float32", "float16"):
        assert variants[name]["accepted"], variants[name]
        assert variants[name]["drop"]["accuracy"] <= 0.01
    int8 = variants["int8"]
    assert not int8["accepted"]
    assert int8["drop"]["accuracy"] > 0.3  # about chance: feature 1 is lost
    assert "accuracy drops" in int8["rejected"] and "on 200 held-out examples" in int8["rejected"]
    # With no latency limit the smallest accepted variant ships, and never a rejected one.
    accepted = {v: r["size_bytes"] for v, r in variants.items() if r["accepted"]}
    assert report["ship"] == min(accepted, key=accepted.get)


def test_a_looser_limit_accepts_the_same_int8_file(report_inputs):
    loose = gate_limits(EdgeConfig(max_accuracy_drop=0.6, max_auc_drop=0.6))
    report = tflite.gate(_evaluated(report_inputs), loose, max_latency_ratio=1e9)
    assert report["variants"]["int8"]["accepted"], report["variants"]["int8"]


def _report(sizes: dict, p50: dict, accuracy: dict) -> dict:
    return {"n_examples": 100, "reference": {"accuracy": 0.9},
            "variants": {v: {"size_bytes": sizes[v], "latency_ms_p50": p50[v], "agreement": 1.0,
                             "accuracy": accuracy[v]} for v in sizes}}


def test_ship_rule_weighs_size_against_measured_latency():
    sizes = {"float32": 400, "float16": 200, "dynamic_range": 110, "int8": 100}
    p50 = {"float32": 1.0, "float16": 1.1, "dynamic_range": 1.4, "int8": 2.0}
    accuracy = {"float32": 0.9, "float16": 0.9, "dynamic_range": 0.895, "int8": 0.9}
    report = tflite.gate(_report(sizes, p50, accuracy), {"accuracy": 0.01}, 1.5)
    # int8 is smallest but twice as slow as float32: dynamic range (1.4x) ships.
    assert report["ship"] == "dynamic_range"
    assert any(n.startswith("int8 is slower than float32") for n in report["notes"])
    assert tflite.gate(_report(sizes, p50, accuracy), {"accuracy": 0.01}, 2.0)["ship"] == "int8"
    accuracy["dynamic_range"] = 0.88  # drops 2 points: rejected, so float16 ships
    report = tflite.gate(_report(sizes, p50, accuracy), {"accuracy": 0.01}, 1.5)
    assert not report["variants"]["dynamic_range"]["accepted"]
    assert report["ship"] == "float16"


def test_without_labels_disagreement_is_gated():
    report = _report({"float32": 4, "int8": 1}, {"float32": 1, "int8": 1},
                     {"float32": None, "int8": None})
    report["reference"] = {"accuracy": None}
    report["variants"]["int8"]["agreement"] = 0.95
    tflite.gate(report, {"accuracy": 0.01}, 1.5)
    assert report["variants"]["int8"]["drop"] == {"disagreement": pytest.approx(0.05)}
    assert not report["variants"]["int8"]["accepted"]
    assert report["ship"] == "float32"


def test_auc_and_mrr_against_hand_computed_values():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    assert tflite._auc(scores, labels) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert tflite._auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert tflite._auc(scores, np.zeros(4, int)) is None
    # Ranker: labels at rank 1, rank 2, and outside the top 2 -> MRR@2 = (1 + 1/2 + 0) / 3.
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.7, 0.1], [0.9, 0.8, 0.1]], np.float32)
    reference = tflite.evaluate({}, np.zeros((3, 1), np.int32), scores, np.array([0, 0, 2]),
                                top_k=2)["reference"]
    assert reference["recall_at_k"] == pytest.approx(2 / 3)
    assert reference["mrr_at_k"] == pytest.approx(0.5)
