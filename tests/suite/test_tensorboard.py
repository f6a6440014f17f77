"""``suite tensorboard``: a real TensorBoard server over the Trainer logs of a workspace,
with the per-epoch scalars the shared callbacks write (including KeepBest's validation
figures)."""

import suite  # noqa: F401  (Keras policy before TensorFlow)

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np

from apps import frontdoor
from suite.training import KeepBest, tensorboard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_serves_every_trainer_run_of_the_workspace(tmp_path):
    logs = tmp_path / "ws" / "sensor_vibration" / "pipeline_root" / "Trainer" / "model_run" \
        / "7" / "logs"
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 2
    best = KeepBest(model, lambda: {"validation_accuracy": 0.5}, lambda f: 0.0, None)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[best, *tensorboard(str(logs))])

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "apps.frontdoor", "tensorboard", "--workspace",
         str(tmp_path / "ws"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert "TensorBoard on 1 run(s)" in server.stdout.readline()
        deadline, tags = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                tags = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
                if tags:
                    break
            except OSError:
                pass
            time.sleep(1)
        run = "sensor_vibration/7/train"
        assert run in tags, tags
        assert {"epoch_loss", "epoch_validation_accuracy"} <= set(tags[run])
        points = _get(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars"
                      f"?run={run}&tag=epoch_loss")
        assert [p[1] for p in points] == [0, 1, 2]  # one point per epoch
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_no_logs_is_a_clear_error(tmp_path, capsys):
    assert frontdoor.main(["tensorboard", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no TensorBoard logs under {tmp_path}" in err and "run an app first" in err
