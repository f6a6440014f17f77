"""End to end: the shared pipeline on tiny generated vibration data with LocalDagRunner,
checked through ML Metadata; then the cache on an unchanged second run; and the Kubeflow V2
compile of the same pipeline."""

from __future__ import annotations

import json
import os

import pytest

import suite  # noqa: F401
from apps.sensor_vibration import cli, data
from apps.sensor_vibration.app import APP
from apps.sensor_vibration.config import VibrationConfig
from components.evaluation_results import evaluation_metrics
from pipelines.results import latest_run
from tests import harness

pytestmark = pytest.mark.pipeline

CLASSES = ["Normal", "IR014", "OR021"]
ARGS = ["--preset", "tiny", "--set", f"data.classes={json.dumps(CLASSES)}",
        "--set", "eval.min_accuracy=0.6"]
CONFIG = VibrationConfig.preset("tiny")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    raw = data.generate_synthetic(str(root / "raw"), classes=CLASSES, n_samples=9000)
    return root, raw


@pytest.fixture(scope="module")
def first_run(workspace):
    root, raw = workspace
    return harness.run_pipeline(APP, ["--data", raw, *ARGS], root / "ws")


def test_every_component_ran_and_the_model_was_blessed_and_pushed(first_run, workspace):
    code, summary = first_run
    root, _ = workspace
    harness.check_pipeline_run(APP, CONFIG, code, summary, root / "ws")

    metrics = evaluation_metrics(summary.evaluation_uri)
    assert metrics["overall"]["sparse_categorical_accuracy"] >= 0.6
    assert {f"recall/class_{i}" for i in range(3)} <= set(metrics["overall"])
    assert {"load=0", "load=1", "load=2"} <= set(metrics)

    report = json.loads(open(os.path.join(summary.edge_dir, "report.json")).read())
    assert set(report["variants"]) == {"float32", "float16", "dynamic_range", "int8"}

    config = json.loads((root / "ws" / "sensor_vibration" / "config.json").read_text())
    assert config["config"]["data"]["classes"] == CLASSES


def test_run_report_renders_in_headless_chromium(first_run, tmp_path):
    _, summary = first_run
    screenshot = str(tmp_path / "report.png")
    errors, images = harness.open_in_browser(summary.report_path, screenshot)
    assert errors == []
    alts = [alt for alt, _, _ in images]
    assert {"training curves", "confusion matrix", "explanation"} <= set(alts), alts
    assert all(loaded and width > 50 for _, loaded, width in images), images
    from PIL import Image

    assert Image.open(screenshot).size[1] > 2000  # the whole page, every section


def test_unchanged_second_run_reuses_the_cache(first_run, workspace):
    _, first = first_run
    root, raw = workspace
    assert cli.main(["run", "--data", raw, "--workspace", str(root / "ws"), *ARGS]) == 0
    second = latest_run(str(root / "ws" / "sensor_vibration" / "metadata.sqlite"),
                        "sensor-vibration")
    assert second.run_id != first.run_id
    for component in ("ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                      "Transform", "Trainer"):
        assert second.states[component] == "CACHED", (component, second.states)
    # The same model is blessed against itself and not pushed as a second version.
    assert second.blessed is True
    assert second.pushed_version == first.pushed_version
    base = root / "ws" / "serving" / "models" / "sensor_vibration"
    assert os.listdir(base) == [first.pushed_version]


def test_predict_command_classifies_a_recording(first_run, workspace, capsys):
    root, raw = workspace
    base = str(root / "ws" / "serving" / "models" / "sensor_vibration")
    recording = os.path.join(raw, sorted(f for f in os.listdir(raw) if "OR021" in f)[0])
    capsys.readouterr()
    assert cli.main(["predict", "--model", base, recording]) == 0
    out = capsys.readouterr().out
    assert f"{recording}: OR021" in out


def test_kubeflow_v2_compile_writes_the_same_pipeline(tmp_path):
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--target", "kubeflow-v2", "--image", "example.com/suite:1",
                     "--out", str(out), "--pipeline-root", "gs://bucket/vibration"]) == 0
    spec = json.loads(out.read_text())
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = set(pipeline_spec["root"]["dag"]["tasks"])
    # Kubeflow V2 runs the resolver as two tasks: latest blessing, then its model.
    resolver = "latest_blessed_model_resolver"
    components = harness.expected_components(APP, CONFIG, tmp_path)
    assert tasks == components - {resolver} | {f"{resolver}-model-blessing-resolver",
                                                f"{resolver}-model-resolver"}
    executors = pipeline_spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"example.com/suite:1"}
    text = json.dumps(spec)
    assert "apps.sensor_vibration.trainer.fit" in text
    assert "apps.sensor_vibration.preprocessing.preprocessing_fn" in text
    assert "gs://bucket/vibration/sensor_vibration/pipeline_root" in text
    assert "gs://bucket/vibration/serving/models/sensor_vibration" in text


def test_distill_command_adds_a_gated_student_to_the_pushed_version(first_run, workspace,
                                                                      capsys):
    _, summary = first_run
    root, _ = workspace
    ws = str(root / "ws")
    capsys.readouterr()
    assert cli.main(["distill", "--workspace", ws, "--set", "edge.distill_epochs=8"]) == 0
    out = capsys.readouterr().out
    report = json.loads(open(os.path.join(summary.edge_dir, "report.json")).read())
    student = report["student"]
    assert student["variants"] == ["student_float32", "student_int8"]
    assert student["parameters"] < student["teacher_parameters"]
    assert student["epochs_run"] <= 8 and student["examples"] > 100
    for name in student["variants"]:
        variant = report["variants"][name]
        assert variant["accepted"] == (variant["drop"]["accuracy"] <= 0.01), variant
        assert f"  {name} " in out
    # The teacher's variants are still there, gated again; the published files follow.
    assert {"float32", "float16", "dynamic_range", "int8"} <= set(report["variants"])
    harness.check_published(report, summary.edge_dir)
    assert f"student: {student['model']}" in out

    # A workspace without a run: one line naming what is missing.
    assert cli.main(["distill", "--workspace", str(root / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no sensor-vibration run there" in err and "config.json" in err


def test_compiled_spec_replays_task_by_task(first_run, workspace):
    root, _ = workspace
    harness.check_replay(APP, root / "ws", root / "kfp", ARGS)
