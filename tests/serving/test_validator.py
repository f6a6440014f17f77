"""The serving validator: plain functions, then the TFX component's executor on a real
exported model, and the Pusher refusing a model that is not infra-blessed."""

from __future__ import annotations

import os
import shutil

import suite  # noqa: F401
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.serving_validator import (
    BLESSED_FILE, NOT_BLESSED_FILE, ServingValidator, validate_serving_model)
from serving.warmup import WARMUP_FILE, write_warmup_requests

MODEL = "sensor_vibration"  # the pushed model's name (conftest.py)


def test_a_servable_model_is_blessed(pushed_model):
    result = validate_serving_model(pushed_model.export_dir, model_name=MODEL)
    assert result.blessed, result.reason
    assert result.warmup_requests == 3  # the export's warmup records, sent over gRPC


def test_models_that_would_not_serve_are_not_blessed(pushed_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pushed_model.export_dir, broken)
    warmup = broken / WARMUP_FILE
    write_warmup_requests(str(broken), MODEL, pushed_model.eval_examples[:1])
    # Rename the warmup request's input: the model cannot answer it.
    records = [r.numpy().replace(b"\n\x08examples", b"\n\x08exemples")
               for r in tf.data.TFRecordDataset(str(warmup))]
    with tf.io.TFRecordWriter(str(warmup)) as writer:
        for record in records:
            writer.write(record)
    result = validate_serving_model(str(broken), model_name=MODEL)
    assert not result.blessed
    assert "did not load" in result.reason
    assert "input tensor alias not found in signature: exemples" in result.reason

    assert not validate_serving_model(str(tmp_path / "missing"), model_name=MODEL).blessed


def _artifact(artifact_type, uri, **int_properties):
    artifact = artifact_type()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    for name, value in int_properties.items():
        artifact.set_int_custom_property(name, value)
    return artifact


def test_component_executor_and_pusher_gate(pushed_model, tmp_path):
    from components.atomic_pusher import AtomicPushExecutor

    model = _artifact(standard_artifacts.Model, tmp_path / "trainer" / "model")
    shutil.copytree(pushed_model.export_dir, os.path.join(model.uri, "Format-Serving"))
    executor = ServingValidator.EXECUTOR_SPEC.executor_class()
    properties = {"model_name": MODEL, "timeout_seconds": 60, "max_warmup_requests": 100}

    blessing = _artifact(standard_artifacts.InfraBlessing, tmp_path / "blessing-1")
    executor.Do({"model": [model]}, {"blessing": [blessing]}, properties)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("warmup_requests") == 3
    assert os.path.exists(os.path.join(blessing.uri, BLESSED_FILE))

    refused = _artifact(standard_artifacts.ModelBlessing, tmp_path / "eval", blessed=0)
    not_blessed = _artifact(standard_artifacts.InfraBlessing, tmp_path / "blessing-2")
    executor.Do({"model": [model], "model_blessing": [refused]}, {"blessing": [not_blessed]},
                properties)
    assert not_blessed.get_int_custom_property("blessed") == 0
    assert "Evaluator" in not_blessed.get_string_custom_property("reason")
    assert os.path.exists(os.path.join(not_blessed.uri, NOT_BLESSED_FILE))

    # The Pusher (given infra_blessing=) pushes only an infra-blessed model.
    base = tmp_path / "serving" / MODEL
    destination = proto_utils.proto_to_json(pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base))))
    evaluator_ok = _artifact(standard_artifacts.ModelBlessing, tmp_path / "eval-ok", blessed=1)
    for infra, expected in ((not_blessed, 0), (blessing, 1)):
        pushed = _artifact(standard_artifacts.PushedModel, tmp_path / f"pushed-{expected}")
        AtomicPushExecutor().Do(
            {"model": [model], "model_blessing": [evaluator_ok], "infra_blessing": [infra]},
            {"pushed_model": [pushed]}, {"push_destination": destination})
        assert pushed.get_int_custom_property("pushed") == expected
        assert (len(os.listdir(base)) if base.exists() else 0) == expected
    assert os.listdir(base) == [pushed.get_string_custom_property("pushed_version")]
