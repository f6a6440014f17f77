"""The model repository's config files (TF Serving's text protos) and ``suite serve``."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil

import pytest
from google.protobuf import text_format

import suite  # noqa: F401
from serving import serve as serve_cli
from serving.protos import monitoring_config_pb2, session_bundle_config_pb2
from serving.repository import (
    BatchingConfig, ModelEntry, VersionPolicy, discover_models, write_serving_configs)
from serving.versions import list_versions
from tensorflow_serving.config import model_server_config_pb2

from tests.cli_help import run_fresh

MODEL = "sensor_vibration"  # the pushed model's name (conftest.py)


def _parse(path: str, message):
    with open(path) as f:
        return text_format.Parse(f.read(), message)


def test_version_policies():
    assert VersionPolicy.parse("latest").select([3, 1, 2]) == [3]
    assert VersionPolicy.parse("latest:2").select([3, 1, 2]) == [2, 3]
    assert VersionPolicy.parse("all").select([3, 1]) == [1, 3]
    assert VersionPolicy.parse("specific:1,3,9").select([1, 2, 3]) == [1, 3]
    for bad in ("newest", "latest:x", "latest:0", "specific:", "all:2"):
        with pytest.raises(ValueError, match="version policy"):
            VersionPolicy.parse(bad)


def test_discovery_ignores_staging_folders_and_files(tmp_path):
    (tmp_path / "a" / "12").mkdir(parents=True)
    (tmp_path / "a" / ".staging-13-99").mkdir()
    (tmp_path / "a" / "14").write_text("a file, not a version")
    (tmp_path / "empty").mkdir()
    assert list_versions(str(tmp_path / "a")) == [12]
    assert discover_models(str(tmp_path)) == ["a"]
    with pytest.raises(FileNotFoundError, match="make demo"):
        write_serving_configs(str(tmp_path / "empty"))


def test_written_configs_parse_as_tf_serving_messages(pushed_model, tmp_path):
    entries = [ModelEntry(MODEL, pushed_model.base_path),
               ModelEntry("pinned", "rel/pinned", VersionPolicy("specific", versions=(1, 2)),
                          {"stable": 1, "canary": 2}),
               ModelEntry("every", "every", VersionPolicy("all"))]
    files = write_serving_configs(pushed_model.repository, entries,
                                  BatchingConfig(16, 1500, 3, 50), config_dir=str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["batching_parameters.txt", "models.config",
                                            "monitoring.config"]

    config = _parse(files.model_config, model_server_config_pb2.ModelServerConfig())
    first, pinned, every = config.model_config_list.config
    assert (first.name, first.base_path, first.model_platform) == (
        MODEL, pushed_model.base_path, "tensorflow")
    assert first.model_version_policy.latest.num_versions == 1
    assert os.path.isabs(pinned.base_path)
    assert list(pinned.model_version_policy.specific.versions) == [1, 2]
    assert dict(pinned.version_labels) == {"stable": 1, "canary": 2}
    assert every.model_version_policy.WhichOneof("policy_choice") == "all"

    batching = _parse(files.batching_parameters, session_bundle_config_pb2.BatchingParameters())
    assert (batching.max_batch_size.value, batching.batch_timeout_micros.value,
            batching.num_batch_threads.value, batching.max_enqueued_batches.value) == (
        16, 1500, 3, 50)
    monitoring = _parse(files.monitoring, monitoring_config_pb2.MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"

    # By default the files go next to the models folder and list every pushed model.
    default = write_serving_configs(pushed_model.repository)
    assert os.path.dirname(default.model_config) == os.path.dirname(pushed_model.repository)
    listed = _parse(default.model_config, model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in listed.model_config_list.config] == [MODEL]


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_tensorflow_model_server_command_uses_the_written_files(pushed_model, tmp_path):
    args = _serve_args("--base", pushed_model.repository, "--config-dir", str(tmp_path))
    files, models = serve_cli.write_configs(args)
    assert models == [MODEL]
    command = serve_cli.tensorflow_model_server_command(
        files, grpc_port=8500, rest_port=8501, poll_seconds=2, batching=True)
    assert command == [
        "tensorflow_model_server", "--port=8500", "--rest_api_port=8501",
        f"--model_config_file={tmp_path}/models.config",
        f"--monitoring_config_file={tmp_path}/monitoring.config",
        "--file_system_poll_wait_seconds=2", "--enable_batching",
        f"--batching_parameters_file={tmp_path}/batching_parameters.txt"]


def _get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 200, body
    return body


def test_suite_serve_serves_specific_versions_and_labels(pushed_model, push_copy, tmp_path):
    from serving.clients import GrpcClient

    base = tmp_path / "models"
    old = pushed_model.version
    shutil.copytree(pushed_model.version_dir, base / MODEL / str(old))
    new = push_copy(str(base / MODEL))
    args = _serve_args("--base", str(base), "--policy", f"specific:{old},{new}",
                       "--label", f"stable={old}", "--label", f"{MODEL}:canary={new}",
                       "--grpc-port", "0", "--rest-port", "0", "--batch-timeout-micros", "100")
    files, _ = serve_cli.write_configs(args)
    assert os.path.dirname(files.model_config) == str(tmp_path)
    with serve_cli.suite_server(args, files) as server:
        assert server.served_versions(MODEL) == [old, new]
        status = _get(server.rest_port, f"/v1/models/{MODEL}")["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [
            (str(old), "AVAILABLE"), (str(new), "AVAILABLE")]
        for label, version in (("stable", old), ("canary", new)):
            metadata = _get(server.rest_port, f"/v1/models/{MODEL}/labels/{label}/metadata")
            assert metadata["model_spec"]["version"] == str(version)
        with GrpcClient(server.grpc_target) as client:
            examples = {"examples": [pushed_model.eval_examples[0]]}
            assert client.predict(MODEL, examples).version == new  # latest of those served
            assert client.predict(MODEL, examples, label="stable").version == old
        assert server.batching_stats(MODEL).requests == 2  # batching is on by default


def test_suite_serve_without_models_says_how_to_push_one(tmp_path, capsys):
    assert serve_cli.run(_serve_args("--base", str(tmp_path / "nothing"))) == 2
    assert "run `make demo`" in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected \\[MODEL:\\]LABEL=VERSION"):
        serve_cli._labels(["stable"], [MODEL])


def test_suite_serve_help_does_not_load_tensorflow():
    loaded, printed = run_fresh(("apps.frontdoor", ["serve", "--help"]))
    assert "tensorflow" not in loaded
    assert "--max-batch-size" in printed
