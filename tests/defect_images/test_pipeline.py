"""End to end, once per mode: the shared pipeline on tiny generated surfaces with
LocalDagRunner, through the command line, checked through ML Metadata; predict (in process
and through the suite's model server) and explain on the pushed models; the Kubeflow V2
compile of the anomaly pipeline."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

import suite  # noqa: F401
from apps.defect_images import cli, data
from apps.defect_images.app import APP
from apps.defect_images.config import DefectConfig, with_mode
from components.evaluation_results import evaluation_metrics
from tests import harness

pytestmark = pytest.mark.pipeline

CLASSES = ("ok", "scratch", "spot")
TINY = DefectConfig.preset("tiny")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> str:
    """Class folders of generated surfaces, VOC boxes in raw/annotations/."""
    return data.generate_synthetic(str(tmp_path_factory.mktemp("defects") / "raw"),
                                   classes=CLASSES, n_per_class=30, size=48)


@pytest.fixture(scope="module")
def classify_run(raw, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("classify") / "ws"
    code, summary = harness.run_pipeline(APP, ["--data", raw, "--preset", "tiny"], workspace)
    return code, summary, workspace


@pytest.fixture(scope="module")
def anomaly_run(raw, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("anomaly") / "ws"
    code, summary = harness.run_pipeline(APP, ["--data", raw, "--preset", "tiny", "--mode",
                                               "anomaly"], workspace, "defect-images-anomaly")
    return code, summary, workspace


def _files(raw: str, per_class: int = 2) -> list[str]:
    return [os.path.join(raw, c, f) for c in CLASSES
            for f in sorted(os.listdir(os.path.join(raw, c)))[:per_class]]


def test_classify_pipeline_blesses_and_pushes_with_per_class_metrics(classify_run):
    code, summary, workspace = classify_run
    # The classes come from the data at ingestion; the builder needs them for the metrics.
    effective = dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, classes=CLASSES))
    harness.check_pipeline_run(APP, effective, code, summary, workspace)
    metrics = evaluation_metrics(summary.evaluation_uri)
    overall = metrics["overall"]
    assert overall["sparse_categorical_accuracy"] >= TINY.eval.min_accuracy
    assert {f"{m}/class_{i}" for m in ("recall", "precision") for i in range(3)} \
        <= set(overall)
    assert {f"class_name={c}" for c in CLASSES} <= set(metrics)
    assert {"defect_size=unannotated"} <= set(metrics)
    meta = json.load(open(os.path.join(summary.pushed_destination, "assets.extra",
                                       "suite_metadata.json")))
    assert meta["classes"] == list(CLASSES) and meta["good_classes"] == ["ok"]
    config = json.loads((workspace / APP.name / "config.json").read_text())
    assert config["config"]["data"]["classes"] == list(CLASSES)


def test_anomaly_pipeline_blesses_and_pushes_with_detection_metrics(anomaly_run):
    code, summary, workspace = anomaly_run
    harness.check_pipeline_run(APP, with_mode(TINY, "anomaly"), code, summary, workspace)
    metrics = evaluation_metrics(summary.evaluation_uri)
    overall = metrics["overall"]
    assert overall["auc"] >= TINY.eval.min_auroc
    assert {"recall", "fall_out", "binary_accuracy", "precision"} <= set(overall)
    assert {f"class_name={c}" for c in CLASSES} <= set(metrics)
    meta = json.load(open(os.path.join(summary.pushed_destination, "assets.extra",
                                       "suite_metadata.json")))
    assert meta["mode"] == "anomaly" and meta["threshold_rule"] == "youden"
    assert os.path.basename(os.path.dirname(summary.pushed_destination)) == \
        "defect_images_anomaly"


def test_predict_locally_and_through_the_model_server(classify_run, raw, capsys):
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions

    _, summary, workspace = classify_run
    files = _files(raw)
    base = str(workspace / "serving" / "models" / "defect_images")
    capsys.readouterr()
    assert cli.main(["predict", "--model", base, *files]) == 0
    local = capsys.readouterr().out.splitlines()
    assert local[0] == f"model: {summary.pushed_destination} (classify mode)"
    labels = [line.split(": ")[1].split()[0] for line in local[1:]]
    # The labels are the pushed model's own answers (its accuracy is the pipeline's gate).
    import tensorflow as tf

    serving_default = tf.saved_model.load(summary.pushed_destination).signatures[
        "serving_default"]
    examples = [data.image_example(open(f, "rb").read()) for f in files]
    classes = serving_default(examples=tf.constant(examples))["classes"].numpy()
    assert labels == [c.decode() for c in classes] and set(labels) <= set(CLASSES)
    with ModelServer([ModelEntry("defect_images", base)],
                     ServerOptions(grpc_port=0, rest_port=0)) as server:
        assert cli.main(["predict", "--server", server.grpc_target, *files]) == 0
        remote = capsys.readouterr().out.splitlines()
    assert remote[1:] == local[1:]


def test_anomaly_predict_and_explain_with_boxes(anomaly_run, raw, tmp_path, capsys):
    _, summary, workspace = anomaly_run
    files = _files(raw)
    base = str(workspace / "serving" / "models" / "defect_images_anomaly")
    capsys.readouterr()
    assert cli.main(["predict", "--model", base, *files]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert all("anomaly score" in line and "threshold" in line for line in lines)
    verdicts = [line.split(": ")[1].split()[0] for line in lines]
    assert set(verdicts) <= {"ok", "defect"}
    assert cli.main(["explain", "--model", base, "--out", str(tmp_path / "maps"),
                     *files]) == 0
    out = capsys.readouterr().out
    assert "heat in boxes" in out and "of the heat inside the defect boxes" in out
    written = json.load(open(tmp_path / "maps" / "explanations.json"))
    assert written["mode"] == "anomaly" and len(written["images"]) == len(files)
    for item in written["images"]:
        assert np.asarray(Image.open(item["heatmap"])).shape == (48, 48, 3)
        assert ("heat_in_boxes" in item) == (os.sep + "ok" + os.sep not in item["file"])


def test_explain_grad_cam_reports_heat_in_boxes(classify_run, raw, tmp_path, capsys):
    _, _, workspace = classify_run
    files = _files(raw)[2:]  # defects: they have boxes
    capsys.readouterr()
    assert cli.main(["explain", "--model", str(workspace / "serving" / "models"
                                               / "defect_images"),
                     "--out", str(tmp_path / "heat"), *files]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(files) + 1 and lines[-1].startswith("boxes: ")
    for path, line in zip(files, lines, strict=False):
        written = line.rsplit(" -> ", 1)[1]
        assert os.path.basename(written) == \
            os.path.splitext(os.path.basename(path))[0] + "_gradcam.png"


def test_a_corrupt_image_stops_the_run_with_the_file_named(raw, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(raw, str(tmp_path / "raw"))
    bad = os.path.join(copy, "spot", "spot_99.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert cli.main(["run", "--data", copy, "--workspace", str(tmp_path / "ws")]) == 2
    assert bad in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "ws" / APP.name / "metadata.sqlite")


def test_kubeflow_v2_compile_of_the_anomaly_pipeline(tmp_path):
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--image", "example.com/suite:1", "--out", str(out),
                     "--pipeline-root", "gs://bucket/qc", "--mode", "anomaly",
                     "--set", 'data.classes=["ok","dent"]']) == 0
    text = out.read_text()
    assert "apps.defect_images.trainer.fit" in text
    assert "gs://bucket/qc/serving/models/defect_images_anomaly" in text
    spec = json.loads(text)
    assert spec.get("pipelineSpec", spec)["pipelineInfo"]["name"] == "defect-images-anomaly"


def test_compiled_spec_replays_task_by_task(classify_run, tmp_path):
    harness.check_replay(APP, classify_run[2], tmp_path / "kfp", ["--preset", "tiny"])
