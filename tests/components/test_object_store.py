"""The suite's own steps on an object store, as on Kubeflow / Vertex AI where every artifact
URI and the serving folder are ``gs://`` paths: TensorFlow's ``ram://`` file system stands in
for Cloud Storage (like it, it has no local path and no folder rename). The Trainer's export,
the atomic push, and the TFLite export each read and write there, and what they leave answers
as it does on a local disk."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from suite import files


@pytest.fixture
def store():
    root = f"ram://{uuid.uuid4().hex}"
    yield root
    files.remove_tree(root)


def _artifact(artifact_type, uri, **int_properties):
    artifact = artifact_type()
    artifact.uri = uri
    for name, value in int_properties.items():
        artifact.set_int_custom_property(name, value)
    return artifact


def _served(model_dir: str, examples: list[bytes]) -> np.ndarray:
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    return serve(examples=tf.constant(examples))["probabilities"].numpy()


def test_export_push_and_edge_files_on_an_object_store(pushed_model, store):
    import tensorflow_transform as tft

    from apps.sensor_vibration import trainer
    from apps.sensor_vibration.config import VibrationConfig
    from apps.sensor_vibration.features import LABEL, SIGNAL_XF
    from components.atomic_pusher import AtomicPushExecutor
    from components.tflite_export import export_from_examples
    from serving import export
    from suite.config import from_dict

    local = _served(pushed_model.export_dir, pushed_model.eval_examples)
    transform_dir = f"{store}/Transform/transform_graph"
    files.copy_tree(pushed_model.transform_dir, transform_dir)
    for split in ("train", "eval"):
        files.copy_tree(os.path.join(pushed_model.examples_dir, split),
                        f"{store}/ImportExampleGen/examples/Split-{split}")

    # The Trainer's export, written to the object store from the model and its TFT output.
    metadata = export.load_metadata(pushed_model.export_dir)
    config = from_dict(VibrationConfig, metadata["config"], "config")
    trainer_dir = f"{store}/Trainer/model"
    serving_dir = f"{trainer_dir}/Format-Serving"
    export.export_serving_model(
        export.load_keras_model(pushed_model.export_dir),
        tft.TFTransformOutput(transform_dir), serving_dir, trainer.export_spec(config),
        model_name="sensor_vibration", warmup_examples=pushed_model.eval_examples[:2],
        metadata=metadata)
    assert files.exists(f"{serving_dir}/saved_model.pb")
    assert export.load_metadata(serving_dir) == metadata
    np.testing.assert_allclose(_served(serving_dir, pushed_model.eval_examples), local,
                               atol=1e-5)

    # The atomic push, to a serving folder on the object store.
    base = f"{store}/serving/sensor_vibration"
    destination = proto_utils.proto_to_json(pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)))
    pushed = _artifact(standard_artifacts.PushedModel, f"{store}/Pusher/pushed_model")
    AtomicPushExecutor().Do(
        {"model": [_artifact(standard_artifacts.Model, trainer_dir)],
         "model_blessing": [_artifact(standard_artifacts.ModelBlessing,
                                      f"{store}/Evaluator/blessing", blessed=1)]},
        {"pushed_model": [pushed]}, {"push_destination": destination})
    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_int_custom_property("pushed") == 1
    assert files.listdir(base) == [version]
    assert files.walk_files(f"{base}/{version}") == files.walk_files(serving_dir)
    assert files.walk_files(pushed.uri) == files.walk_files(serving_dir)
    np.testing.assert_allclose(_served(f"{base}/{version}", pushed_model.eval_examples),
                               local, atol=1e-5)

    # The TFLite files, from the pushed version to an edge folder on the object store.
    edge_dir = f"{store}/serving/edge/sensor_vibration/{version}"
    report = export_from_examples(
        f"{base}/{version}", edge_dir, f"{store}/ImportExampleGen/examples", transform_dir,
        edge=config.edge, eval_examples=16, representative_examples=16, label_key=LABEL,
        model_input_key=SIGNAL_XF)
    assert json.loads(files.read_text(f"{edge_dir}/report.json")) == json.loads(
        json.dumps(report))
    published = sorted(f"{v}.tflite" for v, r in report["variants"].items() if r["accepted"])
    assert published and files.listdir(edge_dir) == sorted([*published, "report.json"])
    assert report["variants"]["float32"]["agreement"] == 1.0


def test_the_serving_validator_serves_a_model_from_an_object_store(pushed_model, store):
    from components.serving_validator import validate_serving_model

    files.copy_tree(pushed_model.export_dir, f"{store}/model")
    result = validate_serving_model(f"{store}/model", model_name="sensor_vibration")
    assert result.blessed and result.warmup_requests == 3, result.reason
