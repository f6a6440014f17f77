"""suite.distribute: the strategy, precision, XLA and replica scaling a trainer gets from
its config, and every app's trainer under MirroredStrategy (two logical CPU devices) and
MultiWorkerMirroredStrategy (two worker processes on loopback ports): the replicas end
with the same weights, and the exported model serves.

The distributed runs are fresh processes (``tests/suite/distributed_apps.py``): logical
devices and a cluster's collective ops must be set up before TensorFlow runs an op.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import suite  # noqa: F401
from suite import distribute
from suite.config import TrainBase, replace_path

REPO = Path(__file__).resolve().parents[2]
APPS = ("sensor_vibration", "medical_scans", "clickstreams", "speech", "defect_images")
TIMEOUT_S = 480


def _run_apps(mode: str, root: Path, env: dict | None = None) -> subprocess.Popen:
    inherited = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TPU_NAME")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.suite.distributed_apps", mode, str(root)], cwd=REPO,
        env={**inherited, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    """Waits for every process; when one fails (or time runs out) stops the others, which
    would wait for it in a collective op forever; returns their outputs."""
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in processes):
        failed = any(p.poll() not in (None, 0) for p in processes)
        if failed or time.monotonic() > deadline:
            for p in processes:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.5)
    outputs = [p.communicate()[0] for p in processes]
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out[-6000:]
    return outputs


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _check_served(served: dict, app: str) -> None:
    assert served["shapes"], app
    for name, shape in served["shapes"].items():
        assert shape[:1] == [served["examples"]], (app, name, shape)
    assert served["finite"], app


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Every app trained and exported under MirroredStrategy on two logical CPU devices;
    its inputs stay under the root for the multi-worker run."""
    root = tmp_path_factory.mktemp("distributed")
    _finish([_run_apps("mirrored", root)])
    return root, json.loads((root / "mirrored.local.json").read_text())


def test_mirrored_strategy_keeps_the_replicas_identical_and_the_export_serves(mirrored):
    _, summary = mirrored
    assert sorted(summary) == sorted(APPS)
    for app, run in summary.items():
        assert run["fits"], app
        for fit in run["fits"]:
            assert fit["strategy"] == "MirroredStrategy" and fit["replicas"] == 2, (app, fit)
            assert fit["mirrored_variables"] == fit["variables"] > 0, (app, fit)
            assert fit["max_replica_difference"] <= 1e-6, (app, fit)
        _check_served(run["served"], app)


def test_multi_worker_strategy_ends_with_the_same_weights_on_both_workers(mirrored):
    root, _ = mirrored
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [_run_apps("worker", root, {"TF_CONFIG": json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    _finish(processes)
    chief, other = (json.loads((root / f"worker.worker-{i}.json").read_text())
                    for i in range(2))
    for app in APPS:
        assert len(chief[app]["fits"]) == len(other[app]["fits"]) > 0, app
        for mine, theirs in zip(chief[app]["fits"], other[app]["fits"], strict=True):
            assert mine["strategy"] == "CollectiveAllReduceStrategy", (app, mine)
            assert mine["replicas"] == 2, (app, mine)
            a, b = np.load(mine["weights"]), np.load(theirs["weights"])
            assert len(a.files) == mine["variables"] == len(b.files), app
            for key in a.files:
                np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=f"{app} {key}")
        _check_served(chief[app]["served"], app)
        # The chief exports where it was told; the other worker into a folder of its own.
        assert chief[app]["export_dir"] == str(root / "multi_worker" / app)
        assert other[app]["export_dir"] == f"{root / 'multi_worker' / app}.worker-1"
        assert other[app]["served"] is None


# --------------------------------------------------------------------------------------
# The plan a config gives, without a distributed run


def test_default_config_trains_as_before_on_one_device(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    train = TrainBase(batch_size=24, learning_rate=0.01)
    plan = distribute.plan(train)
    assert plan.strategy is distribute.strategy("default")
    assert (plan.replicas, plan.batch_size, plan.learning_rate) == (1, 24, 0.01)
    assert (plan.policy, plan.jit_compile, plan.mixed) == ("float32", "auto", False)


def test_batch_size_and_learning_rate_scale_with_the_replicas_when_asked(monkeypatch):
    four = SimpleNamespace(num_replicas_in_sync=4)
    monkeypatch.setattr(distribute, "strategy", lambda kind="auto": four)
    monkeypatch.setattr(distribute, "_keras_fixes", lambda: None)
    base = TrainBase(batch_size=16, learning_rate=0.001)
    plan = distribute.plan(base)
    assert (plan.replicas, plan.batch_size, plan.learning_rate) == (4, 16, 0.001)
    scaled = TrainBase(batch_size=16, learning_rate=0.001, scale_batch_with_replicas=True,
                       scale_lr_with_replicas=True, jit_compile=True)
    plan = distribute.plan(scaled)
    assert (plan.batch_size, plan.learning_rate, plan.jit_compile) == (64, 0.004, True)


def test_bad_distribution_settings_name_the_field():
    from apps.sensor_vibration.config import VibrationConfig

    tiny = VibrationConfig.preset("tiny")
    with pytest.raises(ValueError, match=r"train\.distribute: expected one of \['auto', "
                                         r"'default', 'mirrored', 'multi_worker', 'tpu'\], "
                                         r"got 'gpus'"):
        replace_path(tiny, "train.distribute", "gpus")
    with pytest.raises(ValueError, match=r"train\.mixed_precision: .* got 'fp8'"):
        replace_path(tiny, "train.mixed_precision", "fp8")
    with pytest.raises(ValueError, match=r"train\.jit_compile: expected true or false"):
        replace_path(tiny, "train.jit_compile", "yes")
    with pytest.raises(ValueError, match=r"train\.distribute: .* got 'gpus'"):
        distribute.strategy("gpus")
    # A train config that does not extend TrainBase is checked the same way.
    with pytest.raises(ValueError, match=r"train\.distribute: .* got 'all'"):
        distribute.plan(SimpleNamespace(distribute="all", batch_size=8, learning_rate=0.1))


def test_the_cluster_comes_from_tf_config(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert distribute.cluster_tasks() == 0 and distribute.is_chief()
    assert distribute._resolve("auto") == "default"
    out = str(tmp_path / "model")
    cluster = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
    for index, chief, where in ((0, True, out), (1, False, f"{out}.worker-1")):
        monkeypatch.setenv("TF_CONFIG", json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        assert distribute.cluster_tasks() == 2
        assert distribute._resolve("auto") == "multi_worker"
        assert distribute.is_chief() is chief
        assert distribute.task_output_dir(out) == where
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker",
                                                                    "index": 0}}))
    assert not distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG: expected JSON"):
        distribute.cluster()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h:1"]}}))
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert distribute._resolve("auto") == "tpu"


def test_mixed_precision_policy_and_float32_outputs(monkeypatch):
    import keras

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    default = distribute.strategy("default")
    assert distribute.precision_policy("auto", default) == "float32"  # this CPU machine
    assert distribute.precision_policy("off", default) == "float32"
    assert distribute.precision_policy("mixed_bfloat16", default) == "mixed_bfloat16"
    plan = distribute.plan(TrainBase(mixed_precision="mixed_bfloat16"))
    with plan.scope():
        inputs = keras.Input((4,))
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs))
        model = keras.Model(inputs, outputs)
        plan.compile(model, optimizer="adam", loss="sparse_categorical_crossentropy")
    assert keras.config.dtype_policy().name == "float32"  # restored after the scope
    assert [layer.dtype_policy.name for layer in model.layers[1:]] == [
        "mixed_bfloat16", "float32"]
    assert model(np.zeros((2, 4), np.float32)).dtype == "float32"
