"""End to end: the shared pipeline on tiny generated FSDD-style clips with LocalDagRunner,
through the command line, checked through ML Metadata; predict on the pushed model in
process and through the suite's model server; the Kubeflow V2 compile of both modes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import suite  # noqa: F401
from apps.speech import cli, data, wav
from apps.speech.app import APP
from apps.speech.config import SpeechConfig
from components.evaluation_results import evaluation_metrics
from tests import harness

pytestmark = pytest.mark.pipeline

MODEL = "speech"
CONFIG = SpeechConfig.preset("tiny")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_pipeline")
    clips = data.generate_synthetic(str(root / "clips"), "fsdd", speakers=4, per_speaker=5)
    workspace = root / "ws"
    code, summary = harness.run_pipeline(APP, ["--data", clips, "--preset", "tiny"], workspace)
    return code, summary, workspace, clips


def _clips(folder: str) -> list[str]:
    return [os.path.join(folder, f"{d}_george_0.wav") for d in ("3", "7")]


def test_every_component_ran_and_the_model_was_blessed_and_pushed(run):
    code, summary, workspace, _ = run
    harness.check_pipeline_run(APP, CONFIG, code, summary, workspace)
    metrics = evaluation_metrics(summary.evaluation_uri)
    overall = metrics["overall"]
    assert overall["sparse_categorical_accuracy"] >= CONFIG.eval.min_accuracy
    assert {f"recall/class_{i}" for i in range(10)} <= set(overall)
    assert {"speaker=george", "speaker=jackson", "speaker=lucas", "speaker=nicolas"} <= set(
        metrics)
    meta = json.load(open(os.path.join(summary.pushed_destination, "assets.extra",
                                       "suite_metadata.json")))
    assert meta["mode"] == "keywords" and meta["classes"] == list("0123456789")
    report = json.load(open(os.path.join(summary.edge_dir, "report.json")))
    assert report["model_input"] == "audio_xf"
    assert set(report["variants"]) == {"float32", "float16", "dynamic_range", "int8"}
    effective = json.loads((workspace / "speech" / "config.json").read_text())
    assert effective["config"]["data"]["classes"] == list("0123456789")


def test_tflite_takes_the_log_mel_front_end_and_matches_the_served_model(run):
    """The .tflite files start after the log-mel front end (a device computes it; an int8
    tensor cannot hold the power spectrum): fed the front end's output for the eval clips,
    the float32 file gives the served model's probabilities."""
    import tensorflow as tf

    from apps.speech.model import NORMALIZE
    from serving import tflite
    from serving.export import load_keras_model, split_front_end
    from suite import examples_io

    _, summary, workspace, _ = run
    report = json.load(open(os.path.join(summary.edge_dir, "report.json")))
    assert report["variants"]["float32"]["max_abs_diff"] < 1e-4
    assert report["front_end"]["head_from"] == NORMALIZE
    assert f"at {CONFIG.data.sample_rate_hz} Hz" in report["front_end"]["computes"]
    loaded = tf.saved_model.load(summary.pushed_destination)
    files = examples_io.expand_files(str(workspace / "speech" / "examples" / "*" / "eval" / "*"))
    examples = examples_io.first_examples(files, 8)
    pcm = loaded.signatures["transform_features"](examples=tf.constant(examples))["audio_xf"]
    assert pcm.shape == (8, CONFIG.clip_samples)
    front_end, _ = split_front_end(load_keras_model(summary.pushed_destination), NORMALIZE)
    features = front_end.predict(pcm.numpy(), verbose=0)
    assert list(features.shape[1:]) == report["front_end"]["output_shape"]
    served = loaded.signatures["serving_default"](examples=tf.constant(examples))
    got = tflite.run_tflite(os.path.join(summary.edge_dir, "float32.tflite"), features)
    np.testing.assert_allclose(got, served["probabilities"].numpy(), atol=1e-4)


def test_predict_in_process_and_through_the_model_server(run, tmp_path, capsys):
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions

    _, summary, workspace, clips = run
    files = _clips(clips)
    # The same clip as a 44.1 kHz stereo float WAV: converted and resampled on the way.
    samples, _ = wav.read_wav(open(files[0], "rb").read(), files[0])
    hifi = wav.resample(samples[:, 0], 8000, 44100)
    other = tmp_path / "hifi.wav"
    other.write_bytes(wav.encode_wav(np.stack([hifi, hifi], 1), 44100, "float32"))
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    base = str(workspace / "serving" / "models" / MODEL)
    capsys.readouterr()
    assert cli.main(["predict", "--model", base, *files, str(other), str(bad)]) == 2
    captured = capsys.readouterr()
    local = captured.out.splitlines()
    assert local[0] == f"model: {summary.pushed_destination}"
    assert [line.split(": ")[0] for line in local[1:]] == [*files, str(other)]
    assert str(bad) in captured.err and "not a WAV file" in captured.err
    with ModelServer([ModelEntry(MODEL, base)], ServerOptions(grpc_port=0, rest_port=0)) as srv:
        assert cli.main(["predict", "--server", srv.grpc_target, *files]) == 0
        remote = capsys.readouterr().out.splitlines()
        from apps.speech.client import SpeechClient

        result = SpeechClient(srv.grpc_target).predict(files)
    assert remote[0] == f"server: {srv.grpc_target} (model {MODEL})"
    assert remote[1:] == local[1:3]  # the same labels and probabilities
    assert result.labels == [line.split(": ")[1].split()[0] for line in local[1:3]]
    assert result.probabilities.shape == (2, 10)
    assert cli.main(["transcribe", "--model", base, files[0]]) == 2
    assert "a keywords model; use `speech predict`" in capsys.readouterr().err


def test_kubeflow_v2_compile_of_both_modes(tmp_path):
    for mode, name in (("keywords", "speech"), ("transcribe", "speech_transcribe")):
        out = tmp_path / f"{mode}.json"
        assert cli.main(["compile", "--image", "example.com/suite:1", "--out", str(out),
                         "--pipeline-root", "gs://bucket/speech", "--mode", mode,
                         "--set", 'data.classes=["yes", "no"]']) == 0
        text = out.read_text()
        assert "apps.speech.trainer.fit" in text
        assert f"gs://bucket/speech/serving/models/{name}" in text
        spec = json.loads(text)
        tasks = spec.get("pipelineSpec", spec)["root"]["dag"]["tasks"]
        example_gen = json.loads(tasks["ImportExampleGen"]["inputs"]["parameters"]
                                 ["input_config"]["runtimeValue"]["constantValue"]
                                 ["stringValue"])
        assert [s["name"] for s in example_gen["splits"]] == [
            "train", "validation", "eval", "noise"]


def test_compiled_spec_replays_task_by_task(run, tmp_path):
    harness.check_replay(APP, run[2], tmp_path / "kfp", ["--preset", "tiny"])
