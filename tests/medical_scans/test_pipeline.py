"""End to end: the shared pipeline on tiny generated scans with LocalDagRunner, through the
command line, checked through ML Metadata; predict (in process and through the suite's model
server) and explain on the pushed model; the Kubeflow V2 compile of the same pipeline."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import suite  # noqa: F401
from apps.medical_scans import cli, data
from apps.medical_scans.app import APP
from apps.medical_scans.config import MedicalConfig
from components.evaluation_results import evaluation_metrics
from tests import harness

pytestmark = pytest.mark.pipeline

MODEL = "medical_scans"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical_pipeline")
    images = data.generate_synthetic(str(root / "images"), "folders", n_per_class=60, size=48)
    workspace = root / "ws"
    code, summary = harness.run_pipeline(APP, ["--data", images, "--preset", "tiny"], workspace)
    return code, summary, workspace, images


def _image_files(images: str) -> list[str]:
    normal = sorted(os.listdir(os.path.join(images, "NORMAL")))[:2]
    pneumonia = sorted(os.listdir(os.path.join(images, "PNEUMONIA")))[:2]
    return ([os.path.join(images, "NORMAL", f) for f in normal]
            + [os.path.join(images, "PNEUMONIA", f) for f in pneumonia])


def test_every_component_ran_and_the_model_was_blessed_and_pushed(run):
    code, summary, workspace, _ = run
    harness.check_pipeline_run(APP, MedicalConfig.preset("tiny"), code, summary, workspace)

    metrics = evaluation_metrics(summary.evaluation_uri)
    overall = metrics["overall"]
    assert overall["auc"] >= 0.7 and overall["recall"] >= 0.5  # the tiny preset's gate
    assert {"specificity", "precision", "binary_accuracy"} <= set(overall)
    assert "subtype=none" in metrics  # the normal images
    assert {"subtype=bacteria", "subtype=virus"} & set(metrics)

    pushed = summary.pushed_destination
    meta = json.load(open(os.path.join(pushed, "assets.extra", "suite_metadata.json")))
    assert 0.0 < meta["threshold"] < 1.0 and meta["positive_class"] == "PNEUMONIA"
    assert meta["threshold_rule"] == "Youden's J on the validation split"
    assert meta["decision_rule"] == {"rule": "youden", "target": 0.95, "margin": 0.0}
    assert meta["ood_limit"] > 0 and meta["calibration"]["prevalence"] > 0
    assert os.path.getsize(os.path.join(pushed, "assets.extra", "tf_serving_warmup_requests"))

    report = json.load(open(os.path.join(summary.edge_dir, "report.json")))
    assert set(report["variants"]) == {"float32", "float16", "dynamic_range", "int8"}
    assert report["model_input"] == "image_xf"
    assert all(os.path.isfile(v["path"]) for v in report["variants"].values())


def test_predict_locally_and_through_the_model_server(run, tmp_path, capsys):
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions

    _, summary, workspace, images = run
    blank = tmp_path / "blank.png"  # not a chest X-ray: referred, not labelled
    blank.write_bytes(data.encode_png(np.zeros((40, 40), np.uint8)))
    files = [*_image_files(images), str(blank)]
    base = str(workspace / "serving" / "models" / MODEL)
    capsys.readouterr()
    assert cli.main(["predict", "--model", base, *files]) == 0
    local = capsys.readouterr().out.splitlines()
    assert local[0] == f"model: {summary.pushed_destination}"
    labels = [line.split(": ")[1].split()[0] for line in local[1:-1]]
    assert labels[:2] == ["NORMAL", "NORMAL"] and labels[2:] == ["PNEUMONIA", "PNEUMONIA"]
    assert local[-1].startswith(f"{blank}: refer to a reader: this image is unlike the scans")
    with ModelServer([ModelEntry(MODEL, base)], ServerOptions(grpc_port=0, rest_port=0)) as srv:
        assert cli.main(["predict", "--server", srv.grpc_target, *files]) == 0
        remote = capsys.readouterr().out.splitlines()
    assert remote[0] == f"server: {srv.grpc_target} (model {MODEL})"
    assert remote[1:] == local[1:]  # the same labels, probabilities and threshold


def test_predict_answers_every_readable_file_and_lists_the_bad_ones(run, tmp_path, capsys):
    _, _, workspace, images = run
    files = _image_files(images)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    capsys.readouterr()
    base = str(workspace / "serving" / "models" / MODEL)
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")  # a CT slice: refused by its Modality tag
    assert cli.main(["predict", "--model", base, files[0], str(bad), ct, files[2]]) == 2
    captured = capsys.readouterr()
    answered = [line.split(": ")[0] for line in captured.out.splitlines()[1:]]
    assert answered == [files[0], files[2]]
    assert str(bad) in captured.err and "2 file(s) could not be read" in captured.err
    assert f"{ct}: not a radiograph: modality 'CT'" in captured.err
    assert "Traceback" not in captured.err


def test_explain_writes_a_heatmap_per_image(run, tmp_path, capsys):
    _, _, workspace, images = run
    files = _image_files(images)
    capsys.readouterr()
    assert cli.main(["explain", "--model", str(workspace / "serving" / "models" / MODEL),
                     "--out", str(tmp_path / "heat"), *files]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == len(files)
    for path, line in zip(files, lines, strict=True):
        written = line.rsplit(" -> ", 1)[1]
        assert os.path.basename(written) == os.path.splitext(os.path.basename(path))[0] \
            + "_gradcam.png"
        overlay = np.asarray(Image.open(written))
        assert overlay.shape == (32, 32, 3)  # the tiny preset's resolution, coloured


def test_bad_image_stops_the_run_with_the_file_named(tmp_path, capsys):
    images = data.generate_synthetic(str(tmp_path / "images"), "folders", n_per_class=6,
                                     size=32)
    bad = os.path.join(images, "PNEUMONIA", "person999_virus_1.jpeg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert cli.main(["run", "--data", images, "--workspace", str(tmp_path / "ws")]) == 2
    assert bad in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "ws" / MODEL / "metadata.sqlite")


def test_kubeflow_v2_compile_writes_the_same_pipeline(tmp_path):
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--image", "example.com/suite:1", "--out", str(out),
                     "--pipeline-root", "gs://bucket/scans", "--preset", "default"]) == 0
    text = out.read_text()
    assert "apps.medical_scans.trainer.fit" in text
    assert "gs://bucket/scans/serving/models/medical_scans" in text
    spec = json.loads(text)
    tasks = spec.get("pipelineSpec", spec)["root"]["dag"]["tasks"]
    example_gen = json.loads(tasks["ImportExampleGen"]["inputs"]["parameters"]["input_config"]
                             ["runtimeValue"]["constantValue"]["stringValue"])
    assert [s["name"] for s in example_gen["splits"]] == ["train", "validation", "eval"]


def test_compiled_spec_replays_task_by_task(run, tmp_path):
    harness.check_replay(APP, run[2], tmp_path / "kfp", ["--preset", "tiny"])
