"""A run killed with SIGKILL loses nothing: run again with the same command, the steps that
had finished come from the cache (not executed again, as MLMD records), the run completes,
exactly one version is pushed, and the serving base never holds a partial version. A model
server on that base answers from the version served before throughout a killed push and its
rerun, then from the new one, without a failed request."""

from __future__ import annotations

import json
import os
import signal
import glob
import subprocess
import sys
import threading
import time

import pytest

import suite  # noqa: F401
from apps.sensor_vibration import data
from pipelines.results import latest_run

pytestmark = pytest.mark.pipeline

CLASSES = ["Normal", "IR014", "OR021"]
ARGS = ["--preset", "tiny", "--set", f"data.classes={json.dumps(CLASSES)}",
        "--set", "eval.min_accuracy=0.6", "--set", "train.epochs=4"]


def _command(raw: str, workspace: str, *extra: str) -> list[str]:
    code = ("import sys; from apps.sensor_vibration import cli; "
            "sys.exit(cli.main(sys.argv[1:]))")
    return [sys.executable, "-c", code, "run", "--data", raw, "--workspace", workspace, *ARGS,
            *extra]


def _versions(workspace: str) -> list[str]:
    base = os.path.join(workspace, "serving", "models", "sensor_vibration")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def _run_until(command: list[str], marker: str, workspace: str) -> list[str]:
    """Starts the run and SIGKILLs it as soon as it prints ``marker``; returns what it
    printed. While it runs, every numeric folder of the serving base must be complete."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines = []
    deadline = time.monotonic() + 600
    try:
        for line in process.stdout:
            lines.append(line)
            for version in _versions(workspace):
                if version.isdigit():
                    folder = os.path.join(workspace, "serving", "models", "sensor_vibration",
                                          version)
                    assert os.path.exists(os.path.join(folder, "saved_model.pb")), folder
            if marker in line or time.monotonic() > deadline:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert any(marker in line for line in lines), "".join(lines)[-3000:]
    return lines


def test_killed_runs_resume_from_the_cache_and_push_once(tmp_path):
    raw = data.generate_synthetic(str(tmp_path / "raw"), classes=CLASSES, n_samples=9000)
    workspace = str(tmp_path / "ws")
    metadata = os.path.join(workspace, "sensor_vibration", "metadata.sqlite")
    command = _command(raw, workspace)

    _run_until(command, "Trainer running", workspace)  # killed while training
    assert _versions(workspace) == []

    _run_until(command, "TFLiteExport running", workspace)  # killed after the push
    second = latest_run(metadata, "sensor-vibration")
    for component in ("ImportExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert second.states[component] == "CACHED", second.states
    assert second.states["Trainer"] == "COMPLETE"  # the killed one left no result to reuse
    assert len(_versions(workspace)) == 1
    pushed = _versions(workspace)

    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    third = latest_run(metadata, "sensor-vibration")
    for component in ("Transform", "Trainer"):  # the model is not trained again
        assert third.states[component] == "CACHED", third.states
    # The Evaluator has a new input (the model the second run blessed is now the baseline),
    # so it and the steps after it run; the Pusher finds the identical model already served.
    assert third.states["TFLiteExport"] == "COMPLETE"
    assert third.blessed is True
    versions = _versions(workspace)
    assert [v for v in versions if v.isdigit()] == pushed == [third.pushed_version]
    assert os.path.isfile(os.path.join(third.edge_dir, "report.json"))

    # One more epoch: a new model, pushed while a server answers from the one served now.
    from serving.clients import GrpcClient, ServingClientError
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions
    from suite.examples_io import first_examples

    base = os.path.join(workspace, "serving", "models", "sensor_vibration")
    examples = first_examples(glob.glob(os.path.join(
        workspace, "sensor_vibration", "examples", "*", "eval", "*")), 2)
    # (Blessed whether or not one more epoch beats the served model: the gate is not tested
    # here.)
    retrain = _command(raw, workspace, "--set", "train.epochs=5",
                       "--set", "eval.max_accuracy_drop=1.0")
    answered, failures, stop = [], [], threading.Event()
    with ModelServer([ModelEntry("sensor_vibration", base)],
                     ServerOptions(grpc_port=0, rest_port=None, poll_seconds=0.2)) as server:
        def ask() -> None:
            with GrpcClient(server.grpc_target, timeout_s=30, retries=0) as client:
                while not stop.is_set():
                    try:
                        answered.append(client.predict(
                            "sensor_vibration", {"examples": examples}).version)
                    except ServingClientError as e:
                        failures.append(e)
                    time.sleep(0.01)

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            _run_until(retrain, "Pusher running", workspace)  # killed around the push
            result = subprocess.run(retrain, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            fourth = latest_run(metadata, "sensor-vibration")
            deadline = time.monotonic() + 60
            while server.served_versions("sensor_vibration") != [int(fourth.pushed_version)]:
                assert time.monotonic() < deadline, server.served_versions("sensor_vibration")
                time.sleep(0.1)
            count = len(answered)
            while len(answered) < count + 5 and not failures:
                time.sleep(0.05)
        finally:
            stop.set()
            asker.join()
    assert fourth.states["Trainer"] == "CACHED"  # trained by the killed run
    old, new = int(third.pushed_version), int(fourth.pushed_version)
    assert fourth.blessed is True and new > old
    assert [v for v in _versions(workspace) if v.isdigit()] == [str(old), str(new)]
    assert failures == []
    assert answered[0] == old and answered[-1] == new
    assert answered == sorted(answered)  # never back to the old version
